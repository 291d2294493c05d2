//! Object keys: the safety rules every key must meet ([`check_key`]), the
//! rules for message ids that become part of keys ([`check_message_id`]), and
//! the deterministic variant of a key used when a different message already
//! holds its name ([`alternate_key`]).
//!
//! The host calls [`check_key`] natively on every placement a component
//! returns, because a component (possibly a third-party one) is untrusted.

use alloc::string::String;
use core::fmt;

use crate::queue::check_tenant;

/// The longest allowed key, in bytes (S3's own limit).
pub const MAX_KEY_LEN: usize = 1024;

/// The longest allowed message id, in bytes.
pub const MAX_MESSAGE_ID_LEN: usize = 128;

/// Why a key is unsafe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// The tenant itself is invalid (see [`crate::queue::check_tenant`]).
    InvalidTenant(&'static str),
    /// The key is longer than [`MAX_KEY_LEN`] bytes; carries the length.
    TooLong(usize),
    /// The key starts with `/`.
    LeadingSlash,
    /// The key does not start with `{tenant}/`.
    NotUnderTenant,
    /// The key holds a control character (Unicode category Cc).
    ControlCharacter,
    /// The key holds a `\`.
    Backslash,
    /// The key has an empty segment (`//`, or a trailing `/`).
    EmptySegment,
    /// The key has a `.` or `..` segment.
    DotSegment,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::InvalidTenant(why) => write!(f, "invalid tenant: {why}"),
            KeyError::TooLong(len) => {
                write!(
                    f,
                    "the key is {len} bytes long; at most {MAX_KEY_LEN} are allowed"
                )
            }
            KeyError::LeadingSlash => f.write_str("the key starts with '/'"),
            KeyError::NotUnderTenant => f.write_str("the key does not start with '{tenant}/'"),
            KeyError::ControlCharacter => f.write_str("the key holds a control character"),
            KeyError::Backslash => f.write_str("the key holds a '\\'"),
            KeyError::EmptySegment => f.write_str("the key has an empty segment"),
            KeyError::DotSegment => f.write_str("the key has a '.' or '..' segment"),
        }
    }
}

/// Checks that `key` is a safe object key for `tenant`.
///
/// A safe key belongs to a valid tenant, starts with `{tenant}/`, is at most
/// [`MAX_KEY_LEN`] bytes, has no leading `/`, no control character, no `\`,
/// and no empty, `.` or `..` segment (so also no trailing `/`).
pub fn check_key(key: &str, tenant: &str) -> Result<(), KeyError> {
    check_tenant(tenant).map_err(KeyError::InvalidTenant)?;
    if key.len() > MAX_KEY_LEN {
        return Err(KeyError::TooLong(key.len()));
    }
    if key.starts_with('/') {
        return Err(KeyError::LeadingSlash);
    }
    let under_tenant = key
        .strip_prefix(tenant)
        .is_some_and(|rest| rest.starts_with('/'));
    if !under_tenant {
        return Err(KeyError::NotUnderTenant);
    }
    let bytes = key.as_bytes();
    if !needs_a_close_look(bytes) {
        return Ok(());
    }
    // Something is suspicious: find the error, keeping the precedence of
    // the rules (a control character anywhere, then a `\` anywhere, then
    // the first bad segment).
    let mut backslash = false;
    let mut bad_segment = None;
    let mut segment_start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if is_control_at(bytes, i) {
            return Err(KeyError::ControlCharacter);
        }
        match b {
            b'\\' => backslash = true,
            b'/' => {
                if bad_segment.is_none() {
                    bad_segment = segment_error(&bytes[segment_start..i]);
                }
                segment_start = i + 1;
            }
            _ => {}
        }
    }
    if backslash {
        return Err(KeyError::Backslash);
    }
    match bad_segment.or_else(|| segment_error(&bytes[segment_start..])) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// False when `key` (already known to start with a valid `{tenant}/`) has
/// none of the bytes that can make it unsafe: a control character's first
/// byte (below 0x20, 0x7f, or 0xc2, which starts U+0080..=U+00BF), a `\`, a
/// `/` followed by `/` or `.` (an empty, `.` or `..` segment starts that
/// way), or a final `/`. True does not mean unsafe, only "check closely".
fn needs_a_close_look(key: &[u8]) -> bool {
    let Some(&last) = key.last() else {
        return true;
    };
    let marks = ByteMarks::scan(key);
    marks.suspicious || marks.slash_pair || last == b'/'
}

/// Eight bytes as a little-endian `u64` (one load).
pub(crate) fn load_word(bytes: &[u8]) -> u64 {
    let mut word = [0; 8];
    word.copy_from_slice(bytes);
    u64::from_le_bytes(word)
}

/// What [`ByteMarks::scan`] found in a text.
struct ByteMarks {
    /// A byte below 0x20, 0x7f, 0xc2 (the first byte of U+0080..=U+00BF,
    /// which include the C1 controls) or `\`.
    suspicious: bool,
    /// A `/`.
    slash: bool,
    /// A `/` directly followed by `/` or `.`.
    slash_pair: bool,
}

impl ByteMarks {
    /// Scans `text` eight bytes at a time (SWAR: the byte tests are done on
    /// a `u64` with carry-free arithmetic, so they are exact). This runs on
    /// every key and message id, natively and in the host's re-check of
    /// what a component returns, where a byte-at-a-time loop would take most
    /// of the time of routing a message.
    fn scan(text: &[u8]) -> ByteMarks {
        const ONES: u64 = 0x0101_0101_0101_0101;
        const LOWS: u64 = 0x7f7f_7f7f_7f7f_7f7f;
        // The high bit of each byte of `x` that is zero, and nothing else.
        let zero = |x: u64| !(((x & LOWS) + LOWS) | x | LOWS);
        let equal = |x: u64, b: u8| zero(x ^ (ONES * u64::from(b)));
        let mut suspicious = 0;
        let mut slashes = 0;
        let mut pairs = 0;
        // Scans one word; `carry` is the previous byte's `/` mark, moved to
        // bit 7 (that byte precedes this word's first). Returns the word's
        // `/` marks.
        let mut scan_word = |x: u64, carry: u64| {
            suspicious |= zero(x & (ONES * 0xe0)) // below 0x20
                | equal(x, 0x7f)
                | equal(x, 0xc2)
                | equal(x, b'\\');
            let slash = equal(x, b'/');
            // Byte i + 1 follows byte i.
            pairs |= ((slash << 8) | carry) & (slash | equal(x, b'.'));
            slashes |= slash;
            slash
        };
        let mut carry = 0;
        let mut words = text.chunks_exact(8);
        for word in &mut words {
            carry = scan_word(load_word(word), carry) >> 56;
        }
        let rest = words.remainder();
        if !rest.is_empty() {
            if text.len() >= 8 {
                // The last eight bytes again: a second look at a byte changes
                // no mark, and pairs within these eight bytes are real pairs
                // (nothing is carried: the byte before them was seen already).
                scan_word(load_word(&text[text.len() - 8..]), 0);
            } else {
                // Padded with `a`, which no test marks.
                let mut bytes = [b'a'; 8];
                for (to, &from) in bytes.iter_mut().zip(rest) {
                    *to = from;
                }
                scan_word(u64::from_le_bytes(bytes), 0);
            }
        }
        ByteMarks {
            suspicious: suspicious != 0,
            slash: slashes != 0,
            slash_pair: pairs != 0,
        }
    }
}

/// Why a key segment is unsafe, if it is.
fn segment_error(segment: &[u8]) -> Option<KeyError> {
    match segment {
        b"" => Some(KeyError::EmptySegment),
        b"." | b".." => Some(KeyError::DotSegment),
        _ => None,
    }
}

/// Whether the UTF-8 text `bytes` holds a control character (Unicode
/// category Cc: U+0000..=U+001F, U+007F..=U+009F) starting at byte `i`.
/// U+0080..=U+009F are encoded as `C2 80`..=`C2 9F`; in valid UTF-8 a `C2`
/// byte always starts a character, so no decoding is needed.
#[inline]
fn is_control_at(bytes: &[u8], i: usize) -> bool {
    match bytes[i] {
        b if b < 0x20 || b == 0x7f => true,
        0xc2 => bytes.get(i + 1).is_some_and(|&next| next <= 0x9f),
        _ => false,
    }
}

/// Checks that a message id can be part of a key: non-empty, at most
/// [`MAX_MESSAGE_ID_LEN`] bytes, no `/`, no `\`, no control character, and
/// not `.` or `..`. `Err` carries a short reason.
pub fn check_message_id(message_id: &str) -> Result<(), &'static str> {
    if message_id.is_empty() {
        return Err("the message id is empty");
    }
    if message_id.len() > MAX_MESSAGE_ID_LEN {
        return Err("the message id is longer than 128 bytes");
    }
    let bytes = message_id.as_bytes();
    let marks = ByteMarks::scan(bytes);
    if !marks.suspicious && !marks.slash {
        return match message_id {
            "." | ".." => Err("the message id is '.' or '..'"),
            _ => Ok(()),
        };
    }
    // A `/` or `\` anywhere wins over a control character.
    let mut control = false;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'/' || b == b'\\' {
            return Err("the message id holds a '/' or '\\'");
        }
        control |= is_control_at(bytes, i);
    }
    if control {
        return Err("the message id holds a control character");
    }
    if message_id == "." || message_id == ".." {
        return Err("the message id is '.' or '..'");
    }
    Ok(())
}

/// The deterministic alternative name for `key`, used when its name is
/// already taken by a different message: `-{message_id}` inserted before the
/// final extension of the last segment (`a/b/x.json` -> `a/b/x-ID.json`), or
/// appended when it has none (`a/b/x` -> `a/b/x-ID`).
///
/// Leading dots of the segment do not start an extension (`a/.json` ->
/// `a/.json-ID`), as in Python's `os.path.splitext`. The result is not
/// re-checked: the caller validates `message_id` ([`check_message_id`]) and
/// the result ([`check_key`], which fails if it grew past [`MAX_KEY_LEN`]).
pub fn alternate_key(key: &str, message_id: &str) -> String {
    let seg_start = key.rfind('/').map_or(0, |i| i + 1);
    let segment = &key[seg_start..];
    let stem_start = segment.len() - segment.trim_start_matches('.').len();
    let insert_at = match segment[stem_start..].rfind('.') {
        Some(dot) if dot > 0 => seg_start + stem_start + dot,
        _ => key.len(),
    };
    let mut out = String::with_capacity(key.len() + message_id.len() + 1);
    out.push_str(&key[..insert_at]);
    out.push('-');
    out.push_str(message_id);
    out.push_str(&key[insert_at..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn good_keys() {
        assert_eq!(check_key("acme/2025/06/27/x.json", "acme"), Ok(()));
        assert_eq!(check_key("acme/x", "acme"), Ok(()));
        assert_eq!(check_key("acme/.hidden/..x/x..", "acme"), Ok(()));
        assert_eq!(check_key("acme/日本語 ?#%", "acme"), Ok(()));
        let long = format!("acme/{}", "x".repeat(MAX_KEY_LEN - 5));
        assert_eq!(check_key(&long, "acme"), Ok(()));
    }

    #[test]
    fn bad_keys() {
        use KeyError::*;
        let long = format!("acme/{}", "x".repeat(MAX_KEY_LEN - 4));
        assert_eq!(check_key(&long, "acme"), Err(TooLong(1025)));
        assert_eq!(check_key("/acme/x", "acme"), Err(LeadingSlash));
        assert_eq!(check_key("acmex/y", "acme"), Err(NotUnderTenant));
        assert_eq!(check_key("acme", "acme"), Err(NotUnderTenant));
        assert_eq!(check_key("", "acme"), Err(NotUnderTenant));
        assert_eq!(check_key("other/x", "acme"), Err(NotUnderTenant));
        assert_eq!(check_key("acme/x\ny", "acme"), Err(ControlCharacter));
        assert_eq!(check_key("acme/x\u{7f}", "acme"), Err(ControlCharacter));
        assert_eq!(check_key("acme/x\u{85}", "acme"), Err(ControlCharacter));
        assert_eq!(check_key("acme/x\\y", "acme"), Err(Backslash));
        assert_eq!(check_key("acme//x", "acme"), Err(EmptySegment));
        assert_eq!(check_key("acme/x/", "acme"), Err(EmptySegment));
        assert_eq!(check_key("acme/", "acme"), Err(EmptySegment));
        assert_eq!(check_key("acme/../x", "acme"), Err(DotSegment));
        assert_eq!(check_key("acme/./x", "acme"), Err(DotSegment));
        assert_eq!(check_key("acme/x/..", "acme"), Err(DotSegment));
        assert!(matches!(check_key("../x", ".."), Err(InvalidTenant(_))));
        assert!(matches!(check_key("/x", ""), Err(InvalidTenant(_))));
        assert!(matches!(check_key("a-b/x", "a-b"), Err(InvalidTenant(_))));
        for e in [
            TooLong(1025),
            LeadingSlash,
            NotUnderTenant,
            ControlCharacter,
            Backslash,
            EmptySegment,
            DotSegment,
            InvalidTenant("x"),
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn message_ids() {
        assert!(check_message_id("0a1b2c3d-4e5f-6789-abcd-ef0123456789").is_ok());
        assert!(check_message_id("...").is_ok());
        assert!(check_message_id(&"m".repeat(128)).is_ok());
        assert!(check_message_id(&"m".repeat(129)).is_err());
        assert!(check_message_id("").is_err());
        assert!(check_message_id(".").is_err());
        assert!(check_message_id("..").is_err());
        assert!(check_message_id("a/b").is_err());
        assert!(check_message_id("a\\b").is_err());
        assert!(check_message_id("a\tb").is_err());
    }

    #[test]
    fn alternates() {
        assert_eq!(alternate_key("a/b/x.json", "ID"), "a/b/x-ID.json");
        assert_eq!(alternate_key("a/b/x", "ID"), "a/b/x-ID");
        assert_eq!(alternate_key("a/b.d/x", "ID"), "a/b.d/x-ID");
        assert_eq!(alternate_key("a/x.tar.gz", "ID"), "a/x.tar-ID.gz");
        assert_eq!(alternate_key("a/.json", "ID"), "a/.json-ID");
        assert_eq!(alternate_key("a/..x.json", "ID"), "a/..x-ID.json");
        assert_eq!(alternate_key("a/x.", "ID"), "a/x-ID.");
        assert_eq!(alternate_key("x.json", "ID"), "x-ID.json");
        assert_eq!(
            alternate_key(
                "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json",
                "m-2"
            ),
            "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-m-2.json"
        );
    }

    /// The rules written plainly, character by character: the one-pass
    /// checks must agree with them on every input.
    fn reference_check_key(key: &str, tenant: &str) -> Result<(), KeyError> {
        check_tenant(tenant).map_err(KeyError::InvalidTenant)?;
        if key.len() > MAX_KEY_LEN {
            return Err(KeyError::TooLong(key.len()));
        }
        if key.starts_with('/') {
            return Err(KeyError::LeadingSlash);
        }
        if !key
            .strip_prefix(tenant)
            .is_some_and(|rest| rest.starts_with('/'))
        {
            return Err(KeyError::NotUnderTenant);
        }
        if key.chars().any(char::is_control) {
            return Err(KeyError::ControlCharacter);
        }
        if key.contains('\\') {
            return Err(KeyError::Backslash);
        }
        for segment in key.split('/') {
            match segment {
                "" => return Err(KeyError::EmptySegment),
                "." | ".." => return Err(KeyError::DotSegment),
                _ => {}
            }
        }
        Ok(())
    }

    fn reference_check_message_id(id: &str) -> Result<(), &'static str> {
        if id.is_empty() {
            return Err("the message id is empty");
        }
        if id.len() > MAX_MESSAGE_ID_LEN {
            return Err("the message id is longer than 128 bytes");
        }
        if id.contains(['/', '\\']) {
            return Err("the message id holds a '/' or '\\'");
        }
        if id.chars().any(char::is_control) {
            return Err("the message id holds a control character");
        }
        if id == "." || id == ".." {
            return Err("the message id is '.' or '..'");
        }
        Ok(())
    }

    /// Keys built from the pieces that matter to the rules.
    fn key_like() -> impl Strategy<Value = String> {
        let piece = prop_oneof![
            Just("/".to_string()),
            Just(".".to_string()),
            Just("..".to_string()),
            Just("\\".to_string()),
            Just("acme".to_string()),
            proptest::sample::select(vec![
                '\u{0}', '\n', '\u{1f}', '\u{7f}', '\u{80}', '\u{85}', '\u{9f}', '\u{a0}',
                '\u{100}', '\u{2028}', 'é', '日'
            ])
            .prop_map(String::from),
            "[a-z0-9._/-]{1,4}",
            any::<String>(),
        ];
        proptest::collection::vec(piece, 0..12).prop_map(|p| p.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        #[test]
        fn byte_marks_are_exact(text in proptest::collection::vec(prop_oneof![
            any::<u8>(),
            proptest::sample::select(vec![b'/', b'.', b'\\', 0x1f, 0x20, 0x7f, 0xc2, b'a']),
        ], 0..40)) {
            let marks = ByteMarks::scan(&text);
            let suspicious = text.iter().any(|&b| b < 0x20 || b == 0x7f || b == 0xc2 || b == b'\\');
            let pair = text.windows(2).any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'));
            prop_assert_eq!(marks.suspicious, suspicious);
            prop_assert_eq!(marks.slash, text.contains(&b'/'));
            prop_assert_eq!(marks.slash_pair, pair);
        }

        #[test]
        fn one_pass_checks_agree_with_the_reference(key in key_like(), tenant in prop_oneof![Just("acme".to_string()), "[a-z.]{0,3}"]) {
            let prefixed = format!("{tenant}/{key}");
            prop_assert_eq!(check_key(&key, &tenant), reference_check_key(&key, &tenant));
            prop_assert_eq!(check_key(&prefixed, &tenant), reference_check_key(&prefixed, &tenant));
            prop_assert_eq!(check_message_id(&key), reference_check_message_id(&key));
        }
    }

    proptest! {
        #[test]
        fn check_key_never_panics(key in any::<String>(), tenant in any::<String>()) {
            let _ = check_key(&key, &tenant);
        }

        #[test]
        fn alternate_keeps_safe_keys_safe(
            tenant in "[a-z0-9_.]{1,10}",
            segs in proptest::collection::vec("[a-zA-Z0-9._ -]{1,12}", 1..5),
            id in "[a-zA-Z0-9._-]{1,40}",
        ) {
            let key = format!("{tenant}/{}", segs.join("/"));
            prop_assume!(check_key(&key, &tenant).is_ok() && check_message_id(&id).is_ok());
            let alt = alternate_key(&key, &id);
            prop_assert_ne!(&alt, &key);
            prop_assert_eq!(alt.len(), key.len() + id.len() + 1);
            prop_assert_eq!(alternate_key(&key, &id), alt.clone());
            // Only the last segment changes, and it is never '.' or '..'.
            prop_assert!(check_key(&alt, &tenant).is_ok());
            let (prefix, _) = key.rsplit_once('/').unwrap();
            let dir = format!("{prefix}/");
            prop_assert!(alt.starts_with(&dir));
        }
    }
}
