//! The checks settings share, each naming the flag at fault and a value
//! that works: ranges, bucket names, account IDs, endpoints, key prefixes,
//! storage classes, and the component's verdict on the routing settings.

use std::fmt::Display;
use std::ops::RangeInclusive;

use audit_archiver_transform::SettingsError;

use super::{bad, ConfigError};

/// `value` within `range`, else "invalid FLAG VALUE: use LO to HI, e.g. EXAMPLE".
pub fn check_range<T: PartialOrd + Display>(
    flag: &str,
    value: T,
    range: RangeInclusive<T>,
    example: T,
) -> Result<(), ConfigError> {
    if range.contains(&value) {
        return Ok(());
    }
    Err(bad(format!(
        "invalid {flag} {value}: use {} to {}, e.g. {example}",
        range.start(),
        range.end()
    )))
}

/// A key prefix (quarantine, checkpoints) cannot escape into the tenants' keys.
pub fn check_prefix(flag: &str, prefix: &str, example: &str) -> Result<(), ConfigError> {
    if prefix.is_empty()
        || prefix.starts_with('/')
        || !prefix.ends_with('/')
        || prefix.split('/').any(|s| s == "." || s == "..")
        || prefix.chars().any(char::is_control)
    {
        return Err(bad(format!(
            "invalid {flag} {prefix:?}: it must end with `/`, not start with `/`, \
             and have no `.` or `..` segment, e.g. {example}"
        )));
    }
    Ok(())
}

/// A 12-digit AWS account ID.
pub fn check_account_id(owner: &str) -> Result<(), ConfigError> {
    if owner.len() != 12 || !owner.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(format!(
            "invalid --expected-bucket-owner {owner:?}: use a 12-digit AWS account ID"
        )));
    }
    Ok(())
}

/// An `http://` or `https://` endpoint.
pub fn check_endpoint_url(url: &str) -> Result<(), ConfigError> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad(format!(
            "invalid --endpoint-url {url:?}: expected http:// or https://, e.g. http://127.0.0.1:5000"
        )));
    }
    Ok(())
}

/// S3's bucket naming rules, so a typo fails before any request.
pub fn check_bucket_name(bucket: &str) -> Result<(), ConfigError> {
    let valid = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket.as_bytes()[0].is_ascii_alphanumeric()
        && bucket.as_bytes()[bucket.len() - 1].is_ascii_alphanumeric();
    if valid {
        Ok(())
    } else {
        Err(bad(format!(
            "invalid --bucket {bucket:?}: S3 bucket names are 3-63 lowercase letters, digits, `-` or `.`"
        )))
    }
}

/// The storage classes S3 accepts on a PUT.
const STORAGE_CLASSES: &[&str] = &[
    "STANDARD",
    "STANDARD_IA",
    "ONEZONE_IA",
    "INTELLIGENT_TIERING",
    "GLACIER",
    "GLACIER_IR",
    "DEEP_ARCHIVE",
    "REDUCED_REDUNDANCY",
];

/// One of [`STORAGE_CLASSES`].
pub fn check_storage_class(class: &str) -> Result<(), ConfigError> {
    if STORAGE_CLASSES.contains(&class) {
        return Ok(());
    }
    Err(bad(format!(
        "invalid --storage-class {class:?}: use one of {}",
        STORAGE_CLASSES.join(", ")
    )))
}

/// A tenant as `verify` and `query` take it.
pub fn check_tenant(tenant: &str) -> Result<(), ConfigError> {
    audit_archiver_transform::queue::check_tenant(tenant).map_err(|why| {
        bad(format!(
            "invalid --tenant {tenant:?}: {why}; a tenant is 1-63 letters, digits, `_` or `.`"
        ))
    })
}

/// The message for settings the component rejected, naming the flag.
pub fn settings_error_message(error: &SettingsError) -> String {
    match error {
        SettingsError::InvalidOffset(_) => format!("invalid --utc-offset: {error}"),
        SettingsError::InvalidTenantOverride(_) => {
            format!("invalid --tenant-map: {error}; a tenant is 1-63 letters, digits, `_` or `.`")
        }
        _ => format!(
            "invalid --key-template: {error}; use `default`, `seed`, or a template such as \
             {{tenant}}/%Y/%m/%d/{{message_id}}.json (see docs/configuration.md)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_prefixes_name_the_flag_and_a_working_value() {
        assert!(check_range("--concurrency", 32, 1..=1024, 32).is_ok());
        assert_eq!(
            check_range("--visibility-timeout-secs", 5u32, 10..=43_200, 60)
                .unwrap_err()
                .0,
            "invalid --visibility-timeout-secs 5: use 10 to 43200, e.g. 60"
        );
        for prefix in ["", "/q/", "q", "a/../", "./", "q\n/"] {
            let error = check_prefix("--state-prefix", prefix, "_state/")
                .unwrap_err()
                .0;
            assert!(
                error.starts_with("invalid --state-prefix") && error.ends_with("e.g. _state/"),
                "{error}"
            );
        }
        assert!(check_prefix("--quarantine-prefix", "_quarantine/", "_quarantine/").is_ok());
    }
}
