//! The TOML config file and how it layers under flags and environment: each
//! group of options is one struct deriving both the flags (clap) and the
//! file keys (serde), declared with [`option_group!`]; a group given on the
//! command line is completed from the same group read from the file
//! ([`Layer::or_file`]), so flags win over environment (clap's order) and
//! both over the file. One file serves every command: a key of another
//! command is ignored, a key of no command is an error.

use std::path::{Path, PathBuf};

use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::{bad, ConfigError};

/// A value given on the command line (or in the environment), completed
/// from the file's value of the same option when not given.
pub trait Layer {
    /// `self` where given, else `file`.
    fn or_file(self, file: Self) -> Self;
}

impl<T> Layer for Option<T> {
    fn or_file(self, file: Self) -> Self {
        self.or(file)
    }
}

/// A switch: on if either turns it on.
impl Layer for bool {
    fn or_file(self, file: Self) -> Self {
        self || file
    }
}

/// A repeatable option: the command line's values replace the file's.
impl<T> Layer for Vec<T> {
    fn or_file(self, file: Self) -> Self {
        if self.is_empty() {
            file
        } else {
            self
        }
    }
}

/// Declares a group of options: the struct (flags from `#[arg]`, file keys
/// from the field names, `#[serde(skip)]` for a flag the file cannot set)
/// and its [`Layer`] impl, field by field. Every field is an `Option`, a
/// `bool` switch or a `Vec`, so "not given" is visible and the default is
/// applied once, in validation.
macro_rules! option_group {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$field_meta:meta])* pub $field:ident : $type:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        // An option quoting its default is documented by its `help = ...`.
        #[allow(missing_docs)]
        #[derive(Debug, Default, clap::Args, serde::Deserialize)]
        #[serde(default)]
        pub struct $name {
            $( $(#[$field_meta])* pub $field: $type ),*
        }

        impl $crate::config::file::Layer for $name {
            fn or_file(self, file: Self) -> Self {
                Self {
                    $( $field: $crate::config::file::Layer::or_file(self.$field, file.$field) ),*
                }
            }
        }
    };
}
pub(crate) use option_group;

/// The file's key names of every group, for the unknown-key check. A new
/// group is listed here; a new option in a group needs nothing.
fn known_keys() -> &'static [&'static str] {
    use super::*;
    static KEYS: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    KEYS.get_or_init(|| {
        let mut keys: Vec<&'static str> = [
            keys_of::<LayoutArgs>(),
            keys_of::<RoutingArgs>(),
            keys_of::<SandboxArgs>(),
            keys_of::<BucketArgs>(),
            keys_of::<ObjectArgs>(),
            keys_of::<ConcurrencyArgs>(),
            keys_of::<StateArgs>(),
            keys_of::<QueueArgs>(),
            keys_of::<MetricsArgs>(),
            keys_of::<PrismaApiArgs>(),
            keys_of::<DigestLocationArgs>(),
            keys_of::<SealArgs>(),
            keys_of::<DigestCheckArgs>(),
        ]
        .concat();
        keys.sort_unstable();
        keys.dedup();
        keys
    })
}

/// The config file (`--config`), read once per command.
#[derive(Debug, Default)]
pub struct ConfigFile {
    /// The file and its text; `None` without `--config`.
    source: Option<(PathBuf, String)>,
}

impl ConfigFile {
    /// Reads `path` and checks its syntax and key names; no path is an empty file.
    pub fn read(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path)
            .map_err(|e| bad(format!("cannot read --config {}: {e}", path.display())))?;
        toml::from_str::<KnownKeys>(&text).map_err(|e| invalid(path, e))?;
        Ok(Self {
            source: Some((path.to_path_buf(), text)),
        })
    }

    /// One group's options as the file sets them (all unset without a file).
    pub fn section<T: DeserializeOwned + Default>(&self) -> Result<T, ConfigError> {
        match &self.source {
            None => Ok(T::default()),
            Some((path, text)) => toml::from_str(text).map_err(|e| invalid(path, e)),
        }
    }

    /// `args` completed from the file's values of the same group.
    pub fn under<T: DeserializeOwned + Default + Layer>(&self, args: T) -> Result<T, ConfigError> {
        Ok(args.or_file(self.section()?))
    }
}

fn invalid(path: &Path, error: toml::de::Error) -> ConfigError {
    bad(format!(
        "invalid --config {}: {error}(options are the long flag names in snake_case, e.g. key_template)",
        path.display()
    ))
}

/// A whole file whose top-level keys are all known; the check runs as each
/// key is read, so the parser's error points at the line.
struct KnownKeys;

impl<'de> Deserialize<'de> for KnownKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(KnownKeys)
    }
}

impl<'de> Visitor<'de> for KnownKeys {
    type Value = KnownKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a table of options")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_key_seed(KnownKey)?.is_some() {
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(KnownKeys)
    }
}

/// One top-level key, refused unless some group has it.
struct KnownKey;

impl<'de> DeserializeSeed<'de> for KnownKey {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de> Visitor<'de> for KnownKey {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an option name")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<(), E> {
        if known_keys().contains(&key) {
            Ok(())
        } else {
            Err(E::unknown_field(key, known_keys()))
        }
    }
}

/// The key names a derived `Deserialize` struct reads: serde hands them to
/// `deserialize_struct`, which this deserializer answers by returning them.
fn keys_of<T: DeserializeOwned>() -> &'static [&'static str] {
    #[derive(Debug)]
    struct Keys(&'static [&'static str]);

    impl std::fmt::Display for Keys {
        fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            write!(f, "{:?}", self.0)
        }
    }
    impl std::error::Error for Keys {}
    impl serde::de::Error for Keys {
        fn custom<M: std::fmt::Display>(_: M) -> Self {
            Keys(&[])
        }
    }

    struct Reveal;

    impl<'de> Deserializer<'de> for Reveal {
        type Error = Keys;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Keys> {
            Err(Keys(&[]))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Keys> {
            Err(Keys(fields))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    match T::deserialize(Reveal) {
        Err(Keys(keys)) => keys,
        Ok(_) => &[],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_of_the_file_is_known_and_no_other() {
        // The file's keys before the options were grouped (unchanged), and
        // those added since.
        let mut before = vec![
            "key_template",
            "time_source",
            "utc_offset",
            "tenant_map",
            "component",
            "cache_dir",
            "no_cache",
            "log_format",
            "bucket",
            "queues",
            "queue_prefix",
            "endpoint_url",
            "region",
            "drain",
            "concurrency",
            "quarantine_prefix",
            "visibility_timeout_secs",
            "wait_time_secs",
            "sse",
            "sse_kms_key_id",
            "expected_bucket_owner",
            "storage_class",
            "object_lock_mode",
            "object_lock_retain_days",
            "metrics_addr",
            "stats_interval_secs",
            "max_attempts",
            "component_timeout_ms",
            "component_memory_mib",
            "tenants",
            "state_prefix",
            "api_requests_per_sec",
            // The signed digests.
            "digest_prefix",
            "digest_kms_key_id",
            "digest_key_file",
            "digest_period_mins",
            "digest_delay_mins",
            "digests",
            "public_key",
            "expect_until",
            // `--queue-prefix` following the account.
            "discovery_interval_secs",
        ];
        before.sort_unstable();
        assert_eq!(known_keys(), before.as_slice());
    }

    #[test]
    fn unknown_keys_and_bad_syntax_name_the_file() {
        let dir = std::env::temp_dir().join(format!("aa-config-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config.toml");
        std::fs::write(&path, "bucket = \"b\"\nqueue = [\"typo\"]\n").unwrap();
        let error = ConfigFile::read(Some(&path)).unwrap_err().0;
        assert!(
            error.contains("--config")
                && error.contains("unknown field `queue`")
                && error.contains("line 2"),
            "{error}"
        );
        std::fs::write(&path, "bucket = \n").unwrap();
        let error = ConfigFile::read(Some(&path)).unwrap_err().0;
        assert!(error.starts_with("invalid --config"), "{error}");
        let error = ConfigFile::read(Some(&dir.join("absent.toml")))
            .unwrap_err()
            .0;
        assert!(error.starts_with("cannot read --config"), "{error}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
