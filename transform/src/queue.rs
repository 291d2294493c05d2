//! Queues and tenants: how a queue reference (ARN, URL or bare name) becomes
//! a bare queue name, and how a bare queue name becomes a tenant.
//!
//! - ARN: `arn:PARTITION:sqs:REGION:ACCOUNT:NAME`.
//! - URL: `SCHEME://HOST[:PORT]/ACCOUNT/NAME`, with an optional trailing `/`
//!   and an optional `?query` (or `#fragment`), both ignored. Custom
//!   endpoints (`http://127.0.0.1:4566/000000000000/NAME`) are URLs too.
//! - Anything else is a bare name.
//!
//! A usable queue name is non-empty, at most [`MAX_QUEUE_NAME_LEN`] bytes of
//! ASCII letters, digits, `-`, `_` and `.`, and not `.` or `..` (it may become
//! a key segment through `{queue}`).
//!
//! The tenant is the queue name up to its first `-`; a name without `-` is its
//! own tenant, less a `.fifo` suffix. A valid tenant is non-empty, at most
//! [`MAX_TENANT_LEN`] bytes of ASCII letters, digits, `_` and `.`, and not `.`
//! or `..`. Explicit overrides (see [`crate::Settings`]) are applied by the
//! router before this rule.

/// The longest accepted queue name, in bytes: SQS's 80 plus slack for `.fifo`.
pub const MAX_QUEUE_NAME_LEN: usize = 85;

/// The longest accepted tenant, in bytes.
pub const MAX_TENANT_LEN: usize = 63;

/// The bare queue name of a queue reference (ARN, URL or bare name).
///
/// The name is checked with [`check_queue_name`]. `Err` carries a short
/// reason, without the queue itself.
pub fn queue_name(queue: &str) -> Result<&str, &'static str> {
    let name = if let Some(rest) = queue.strip_prefix("arn:") {
        arn_name(rest)?
    } else if let Some(sep) = find_scheme_separator(queue) {
        url_name(&queue[..sep], &queue[sep + 3..])?
    } else {
        queue
    };
    check_queue_name(name)?;
    Ok(name)
}

/// Where the first `://` starts (a byte scan: no substring searcher to set up
/// for every message).
fn find_scheme_separator(queue: &str) -> Option<usize> {
    let bytes = queue.as_bytes();
    (0..bytes.len()).find(|&i| bytes[i] == b':' && bytes[i + 1..].starts_with(b"//"))
}

/// The NAME of `PARTITION:sqs:REGION:ACCOUNT:NAME` (the text after `arn:`).
fn arn_name(rest: &str) -> Result<&str, &'static str> {
    let mut parts = rest.splitn(5, ':');
    let (Some(partition), Some(service), Some(region), Some(account), Some(name)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err("not an SQS ARN (arn:PARTITION:sqs:REGION:ACCOUNT:NAME)");
    };
    if service != "sqs" {
        return Err("not an SQS ARN (the service is not sqs)");
    }
    if partition.is_empty() || region.is_empty() || account.is_empty() {
        return Err("not an SQS ARN (empty partition, region or account)");
    }
    Ok(name)
}

/// The NAME of `SCHEME://HOST[:PORT]/ACCOUNT/NAME[/][?query]`.
fn url_name<'q>(scheme: &str, rest: &'q str) -> Result<&'q str, &'static str> {
    let scheme_ok = scheme
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic())
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err("not a queue URL (bad scheme)");
    }
    // One pass: the path ends at `?` or `#`; note where its `/`s are.
    let mut end = rest.len();
    let mut slashes = [0; 3];
    let mut count = 0;
    for (i, b) in rest.bytes().enumerate() {
        match b {
            b'?' | b'#' => {
                end = i;
                break;
            }
            b'/' => {
                if let Some(slot) = slashes.get_mut(count) {
                    *slot = i;
                }
                count += 1;
            }
            _ => {}
        }
    }
    // One trailing `/` is ignored.
    if end > 0 && rest.as_bytes()[end - 1] == b'/' {
        end -= 1;
        count -= 1;
    }
    if count != 2 {
        return Err("not a queue URL (SCHEME://HOST/ACCOUNT/NAME)");
    }
    let path = &rest[..end];
    let (host, account, name) = (
        &path[..slashes[0]],
        &path[slashes[0] + 1..slashes[1]],
        &path[slashes[1] + 1..],
    );
    if host.is_empty() || account.is_empty() {
        return Err("not a queue URL (empty host or account)");
    }
    Ok(name)
}

/// Checks that `name` can be used as a bare queue name (and key segment).
pub fn check_queue_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("the queue name is empty");
    }
    if name.len() > MAX_QUEUE_NAME_LEN {
        return Err("the queue name is longer than 85 bytes");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err("the queue name may only hold ASCII letters, digits, '-', '_' and '.'");
    }
    if name == "." || name == ".." {
        return Err("the queue name is '.' or '..'");
    }
    Ok(())
}

/// The tenant named by a bare queue name, by the naming rule alone (no
/// overrides, no validation): up to the first `-`, else the name less `.fifo`.
///
/// `acme-prismacloud-auditlog.fifo` -> `acme`; `acme.fifo` -> `acme`;
/// `acme` -> `acme`.
pub fn tenant_from_name(name: &str) -> &str {
    match name.split_once('-') {
        Some((tenant, _)) => tenant,
        None => name.strip_suffix(".fifo").unwrap_or(name),
    }
}

/// Checks a tenant: non-empty, at most 63 bytes of ASCII letters, digits, `_`
/// and `.`, and not `.` or `..`.
pub fn check_tenant(tenant: &str) -> Result<(), &'static str> {
    if tenant.is_empty() {
        return Err("the tenant is empty");
    }
    if tenant.len() > MAX_TENANT_LEN {
        return Err("the tenant is longer than 63 bytes");
    }
    if !tenant
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.'))
    {
        return Err("the tenant may only hold ASCII letters, digits, '_' and '.'");
    }
    if tenant == "." || tenant == ".." {
        return Err("the tenant is '.' or '..'");
    }
    Ok(())
}

/// Whether [`check_tenant`] accepts `tenant`.
pub fn is_valid_tenant(tenant: &str) -> bool {
    check_tenant(tenant).is_ok()
}

/// The bare name of a queue reference, or the reference as given when it
/// does not parse (the router then reports why): for logs, metrics labels
/// and tenant overrides, which must name a queue the way the router will.
pub fn bare_queue_name(queue: &str) -> &str {
    queue_name(queue).unwrap_or(queue)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// URL parsing written plainly, with `str` searches: the oracle.
    fn reference_url_name<'q>(scheme: &str, rest: &'q str) -> Result<&'q str, &'static str> {
        let scheme_ok = scheme
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic())
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
        if !scheme_ok {
            return Err("not a queue URL (bad scheme)");
        }
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        let path = &rest[..end];
        let path = path.strip_suffix('/').unwrap_or(path);
        let mut parts = path.split('/');
        let (Some(host), Some(account), Some(name), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("not a queue URL (SCHEME://HOST/ACCOUNT/NAME)");
        };
        if host.is_empty() || account.is_empty() {
            return Err("not a queue URL (empty host or account)");
        }
        Ok(name)
    }

    #[test]
    fn bare_names_come_from_any_reference_and_unparseable_ones_stay() {
        let name = "acme-prismacloud-auditlog.fifo";
        assert_eq!(bare_queue_name(name), name);
        assert_eq!(
            bare_queue_name("https://sqs.ap-northeast-1.amazonaws.com/123456789012/acme-q"),
            "acme-q"
        );
        assert_eq!(
            bare_queue_name("arn:aws:sqs:ap-northeast-1:123456789012:acme-q.fifo"),
            "acme-q.fifo"
        );
        assert_eq!(bare_queue_name("no/such queue"), "no/such queue");
    }

    #[test]
    fn bare_names() {
        assert_eq!(
            queue_name("acme-prismacloud-auditlog.fifo"),
            Ok("acme-prismacloud-auditlog.fifo")
        );
        assert_eq!(queue_name("acme"), Ok("acme"));
        assert!(queue_name("").is_err());
        assert!(queue_name(".").is_err());
        assert!(queue_name("..").is_err());
        assert!(queue_name("a/b").is_err());
        assert!(queue_name("a b").is_err());
        assert!(queue_name("ä").is_err());
        assert!(queue_name(&"a".repeat(85)).is_ok());
        assert!(queue_name(&"a".repeat(86)).is_err());
    }

    #[test]
    fn arns() {
        assert_eq!(
            queue_name("arn:aws:sqs:ap-northeast-1:123456789012:acme-prismacloud-auditlog.fifo"),
            Ok("acme-prismacloud-auditlog.fifo")
        );
        assert_eq!(
            queue_name("arn:aws-cn:sqs:cn-north-1:123456789012:beta"),
            Ok("beta")
        );
        assert!(queue_name("arn:aws:sns:us-east-1:123456789012:topic").is_err());
        assert!(queue_name("arn:aws:sqs:us-east-1:123456789012").is_err());
        assert!(queue_name("arn:aws:sqs::123456789012:q").is_err());
        assert!(queue_name("arn:aws:sqs:us-east-1:1:a:b").is_err());
        assert!(queue_name("arn:aws:sqs:us-east-1:1:").is_err());
    }

    #[test]
    fn urls() {
        let name = "acme-prismacloud-auditlog.fifo";
        for url in [
            "https://sqs.ap-northeast-1.amazonaws.com/123456789012/acme-prismacloud-auditlog.fifo",
            "https://sqs.ap-northeast-1.amazonaws.com/123456789012/acme-prismacloud-auditlog.fifo/",
            "http://127.0.0.1:5000/123456789012/acme-prismacloud-auditlog.fifo",
            "http://localhost:4566/000000000000/acme-prismacloud-auditlog.fifo?x=1",
            "http://localhost:4566/000000000000/acme-prismacloud-auditlog.fifo/?x=1/2",
        ] {
            assert_eq!(queue_name(url), Ok(name), "{url}");
        }
        assert!(queue_name("https://sqs.amazonaws.com/acme").is_err());
        assert!(queue_name("https://sqs.amazonaws.com/1/2/acme").is_err());
        assert!(queue_name("https:///1/acme").is_err());
        assert!(queue_name("https://h//acme").is_err());
        assert!(queue_name("https://h/1/").is_err());
        assert!(queue_name("://h/1/acme").is_err());
        assert!(queue_name("1http://h/1/acme").is_err());
    }

    #[test]
    fn tenants() {
        assert_eq!(tenant_from_name("acme-prismacloud-auditlog.fifo"), "acme");
        assert_eq!(tenant_from_name("acme-prismacloud-auditlog"), "acme");
        assert_eq!(tenant_from_name("acme.fifo"), "acme");
        assert_eq!(tenant_from_name("acme"), "acme");
        assert_eq!(tenant_from_name("acme.fifo.fifo"), "acme.fifo");
        assert_eq!(tenant_from_name("-x"), "");
        assert_eq!(tenant_from_name(".fifo"), "");
        assert_eq!(tenant_from_name("a.b_c-d"), "a.b_c");
        assert!(is_valid_tenant("acme"));
        assert!(is_valid_tenant("a.b_C9"));
        assert!(is_valid_tenant(&"t".repeat(63)));
        assert!(!is_valid_tenant(&"t".repeat(64)));
        assert!(!is_valid_tenant(""));
        assert!(!is_valid_tenant("."));
        assert!(!is_valid_tenant(".."));
        assert!(!is_valid_tenant("a-b"));
        assert!(!is_valid_tenant("a/b"));
        assert!(!is_valid_tenant("ä"));
    }

    proptest! {
        #[test]
        fn never_panics_and_names_are_substrings(q in any::<String>()) {
            if let Ok(name) = queue_name(&q) {
                prop_assert!(q.contains(name));
                prop_assert!(check_queue_name(name).is_ok());
                let tenant = tenant_from_name(name);
                prop_assert!(name.starts_with(tenant));
            }
        }

        #[test]
        fn url_parsing_agrees_with_the_reference(
            pieces in proptest::collection::vec(prop_oneof![
                Just("://"), Just(":"), Just("/"), Just("//"), Just("?"), Just("#"),
                Just("https"), Just("h"), Just("1"), Just("acme-q.fifo"), Just("arn:"),
            ], 0..10),
        ) {
            let queue = pieces.concat();
            prop_assert_eq!(find_scheme_separator(&queue), queue.find("://"));
            if let Some(sep) = queue.find("://") {
                prop_assert_eq!(
                    url_name(&queue[..sep], &queue[sep + 3..]),
                    reference_url_name(&queue[..sep], &queue[sep + 3..])
                );
            }
        }

        #[test]
        fn forms_agree(name in "[A-Za-z0-9_.-]{1,85}") {
            prop_assume!(name != "." && name != "..");
            let arn = format!("arn:aws:sqs:us-east-1:123456789012:{name}");
            let url = format!("https://sqs.us-east-1.amazonaws.com/123456789012/{name}");
            prop_assert_eq!(queue_name(&name), Ok(name.as_str()));
            prop_assert_eq!(queue_name(&arn), Ok(name.as_str()));
            prop_assert_eq!(queue_name(&url), Ok(name.as_str()));
        }
    }
}
