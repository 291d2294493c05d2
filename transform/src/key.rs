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
    if message_id.contains(['/', '\\']) {
        return Err("the message id holds a '/' or '\\'");
    }
    if message_id.chars().any(char::is_control) {
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
