//! The packing rules of contract 1.1's `route-queue` (`wit/router.wit`): a
//! batch's strings travel as one text, each message's id then body, cut by
//! their lengths in bytes; the placements come back the same way, each
//! tenant then key. Every component of the repository (this crate's,
//! `examples/flat-layout`, the hostile test fixture) maps its own generated
//! WIT types onto these functions.

use alloc::string::String;

use crate::router::PackedPlacement;

/// The lengths of a packed batch do not fit its text: they run past its end,
/// cut a character in two, or leave text over. The caller's bug (the host
/// packs the text and the lengths together), so components trap on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BadLengths;

/// Cuts a batch's text into its strings, in the order they were packed.
#[derive(Debug, Clone)]
pub struct Unpacker<'a> {
    rest: &'a str,
}

impl<'a> Unpacker<'a> {
    /// Starts at the beginning of `text`.
    pub fn new(text: &'a str) -> Self {
        Self { rest: text }
    }

    /// The next `len` bytes of the text, or [`BadLengths`] if they run past
    /// its end or end inside a character.
    pub fn take(&mut self, len: u32) -> Result<&'a str, BadLengths> {
        let len = len as usize;
        // `false` past the end too.
        if !self.rest.is_char_boundary(len) {
            return Err(BadLengths);
        }
        let (taken, after) = self.rest.split_at(len);
        self.rest = after;
        Ok(taken)
    }

    /// Checks that the lengths used the whole text ([`BadLengths`] if text
    /// is left over).
    pub fn finish(self) -> Result<(), BadLengths> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(BadLengths)
        }
    }
}

/// Appends a placement's `tenant` and then its `key` to the result's `text`,
/// and gives their lengths with `time_ms`.
pub fn pack(text: &mut String, tenant: &str, key: &str, time_ms: u64) -> PackedPlacement {
    text.push_str(tenant);
    text.push_str(key);
    PackedPlacement {
        tenant_len: tenant.len(),
        key_len: key.len(),
        time_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_the_strings_in_order_and_checks_the_text_was_used_up() {
        let mut unpacker = Unpacker::new("m-1{\"a\":1}m-2");
        assert_eq!(unpacker.take(3), Ok("m-1"));
        assert_eq!(unpacker.take(7), Ok("{\"a\":1}"));
        assert_eq!(unpacker.take(3), Ok("m-2"));
        assert_eq!(unpacker.take(0), Ok(""));
        assert_eq!(unpacker.finish(), Ok(()));
    }

    #[test]
    fn lengths_past_the_end_are_refused() {
        let mut unpacker = Unpacker::new("m-1");
        assert_eq!(unpacker.take(4), Err(BadLengths));
        assert_eq!(unpacker.take(u32::MAX), Err(BadLengths));
        // A refused take consumes nothing.
        assert_eq!(unpacker.take(3), Ok("m-1"));
    }

    #[test]
    fn lengths_inside_a_character_are_refused() {
        // `é` is two bytes.
        let mut unpacker = Unpacker::new("é");
        assert_eq!(unpacker.take(1), Err(BadLengths));
        assert_eq!(unpacker.take(2), Ok("é"));
    }

    #[test]
    fn text_left_over_is_refused() {
        let mut unpacker = Unpacker::new("m-1x");
        assert_eq!(unpacker.take(3), Ok("m-1"));
        assert_eq!(unpacker.finish(), Err(BadLengths));
    }

    #[test]
    fn packing_appends_tenant_then_key_and_gives_their_lengths() {
        let mut text = String::from("acmea/1.json");
        let placed = pack(&mut text, "globex", "globex/2.json", 7);
        assert_eq!(text, "acmea/1.jsonglobexglobex/2.json");
        assert_eq!(
            placed,
            PackedPlacement {
                tenant_len: 6,
                key_len: 13,
                time_ms: 7,
            }
        );
        // Unpacking gives them back.
        let mut unpacker = Unpacker::new(&text);
        unpacker.take(12).unwrap();
        assert_eq!(unpacker.take(placed.tenant_len as u32), Ok("globex"));
        assert_eq!(unpacker.take(placed.key_len as u32), Ok("globex/2.json"));
        assert_eq!(unpacker.finish(), Ok(()));
    }
}
