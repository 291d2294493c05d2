//! The signed digests' options: where they live and which KMS key (shared
//! by the writers and `verify`), how the writers seal (`run`, `lambda`,
//! `backfill`, `seal`), and what `verify` demands of them.

use std::path::PathBuf;

use clap::Args;

use super::defaults::{self, with_default};
use super::file::{option_group, ConfigFile};
use super::shared::{BucketArgs, ObjectArgs, StateArgs};
use super::validate::{self, check_range};
use super::{bad, ConfigError};
use crate::aws::AwsSettings;
use crate::seal::sealer::{top_folder, SealSettings};
use crate::seal::{SealConfig, SigningKey};
use crate::store::s3::ObjectOptions;

/// `seal` options.
#[derive(Debug, Args)]
#[allow(missing_docs)]
pub struct SealCommandArgs {
    /// TOML file with any option, named in snake_case (the same file `run`
    /// reads; options the command does not use are ignored).
    #[arg(long, env = "AUDIT_ARCHIVER_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub bucket: BucketArgs,
    #[command(flatten)]
    pub objects: ObjectArgs,
    #[command(flatten)]
    pub state: StateArgs,
    #[command(flatten)]
    pub digest: DigestLocationArgs,
    #[command(flatten)]
    pub seal: SealArgs,
}

/// Validated `seal` settings.
#[derive(Debug, Clone)]
pub struct SealCommandConfig {
    /// The bucket.
    pub bucket: String,
    /// Endpoint, region, retries.
    pub aws: AwsSettings,
    /// How digests are written (encryption, Object Lock).
    pub objects: ObjectOptions,
    /// The key and the periods.
    pub seal: SealConfig,
}

impl SealCommandArgs {
    /// Merges and validates `seal` options; a key is required.
    pub fn validate(self) -> Result<SealCommandConfig, ConfigError> {
        let file = ConfigFile::read(self.config.as_deref())?;
        let bucket = file.under(self.bucket)?.validate()?;
        let objects = file
            .under(self.objects)?
            .validate(bucket.expected_bucket_owner)?;
        let state_prefix = file.under(self.state)?.validate()?;
        let seal = file
            .under(self.seal)?
            .validate(file.under(self.digest)?, &state_prefix)?
            .ok_or_else(|| {
                bad("no digest key: pass --digest-kms-key-id KEY or --digest-key-file PEM")
            })?;
        Ok(SealCommandConfig {
            bucket: bucket.bucket,
            aws: bucket.aws,
            objects,
            seal,
        })
    }
}

option_group! {
    /// Where the digests are, and the KMS key that signs them.
    pub struct DigestLocationArgs {
        #[arg(
            long,
            env = "AUDIT_ARCHIVER_DIGEST_PREFIX",
            value_name = "PREFIX",
            help = with_default!(
                "Key prefix of the signed digests (one chain per tenant under it).",
                defaults::DIGEST_PREFIX
            )
        )]
        pub digest_prefix: Option<String>,

        /// An asymmetric AWS KMS key (KeySpec RSA_2048 or larger, KeyUsage
        /// SIGN_VERIFY), by id, ARN or alias: the writers sign digests with
        /// it (kms:Sign), `verify` checks them with its public key
        /// (kms:GetPublicKey). Example: alias/audit-digest
        #[arg(long, env = "AUDIT_ARCHIVER_DIGEST_KMS_KEY_ID", value_name = "KEY")]
        pub digest_kms_key_id: Option<String>,
    }
}

option_group! {
    /// How the writers seal: the local key, the period and the delay.
    /// Sealing is on when a key is given (this file or the KMS key).
    pub struct SealArgs {
        /// Sign digests with this PEM private key (Ed25519 or RSA) instead
        /// of KMS: for S3-compatible stores and tests. Never logged.
        /// Example: openssl genpkey -algorithm ed25519 -out digest-key.pem
        #[arg(long, env = "AUDIT_ARCHIVER_DIGEST_KEY_FILE", value_name = "PEM")]
        pub digest_key_file: Option<PathBuf>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_DIGEST_PERIOD_MINS",
            value_name = "MINS",
            help = with_default!(
                "Length of a digest's period, 1 to 1440 minutes (UTC-aligned); fractions of \
                 a minute down to one second are allowed for tests.",
                defaults::DIGEST_PERIOD_MINS
            )
        )]
        pub digest_period_mins: Option<f64>,

        #[arg(
            long,
            env = "AUDIT_ARCHIVER_DIGEST_DELAY_MINS",
            value_name = "MINS",
            help = with_default!(
                "How long after its end a period is sealed, so objects still being \
                 written are in its digest; 0 to 1440.",
                defaults::DIGEST_DELAY_MINS
            )
        )]
        pub digest_delay_mins: Option<f64>,
    }
}

option_group! {
    /// What `verify` demands of the digests.
    pub struct DigestCheckArgs {
        /// Prove the digest chains even if none is found (then that is a
        /// finding). Without it, chains are proved when digests exist.
        #[arg(long, env = "AUDIT_ARCHIVER_DIGESTS")]
        pub digests: bool,

        /// The digests' public key (PEM), handed to the auditor out of band;
        /// otherwise KMS GetPublicKey of --digest-kms-key-id.
        #[arg(long, env = "AUDIT_ARCHIVER_PUBLIC_KEY", value_name = "PEM")]
        pub public_key: Option<PathBuf>,

        /// Every chain must reach this instant (RFC 3339): deleting the
        /// newest digests is then caught. Example: 2026-12-04T00:00:00Z
        #[arg(long, env = "AUDIT_ARCHIVER_EXPECT_UNTIL", value_name = "TIME")]
        pub expect_until: Option<String>,
    }
}

impl DigestLocationArgs {
    /// The digest prefix and the KMS key.
    pub fn validate(self) -> Result<(String, Option<String>), ConfigError> {
        let prefix = self
            .digest_prefix
            .unwrap_or_else(|| defaults::DIGEST_PREFIX.into());
        validate::check_prefix("--digest-prefix", &prefix, defaults::DIGEST_PREFIX)?;
        let kms = self.digest_kms_key_id.filter(|k| !k.trim().is_empty());
        Ok((prefix, kms))
    }
}

impl SealArgs {
    /// The sealing settings; `None` when no key is given (sealing off).
    /// `state_prefix` holds no audit logs (the checkpoints) and the
    /// writers' manifest for the sealer (`{state_prefix}manifest/`).
    pub fn validate(
        self,
        location: DigestLocationArgs,
        state_prefix: &str,
    ) -> Result<Option<SealConfig>, ConfigError> {
        let (digest_prefix, kms) = location.validate()?;
        let period_ms = minutes_ms(
            "--digest-period-mins",
            self.digest_period_mins,
            defaults::DIGEST_PERIOD_MINS,
            1_000,
        )?;
        let delay_ms = minutes_ms(
            "--digest-delay-mins",
            self.digest_delay_mins,
            defaults::DIGEST_DELAY_MINS,
            0,
        )?;
        let key = match (self.digest_key_file, kms) {
            (None, None) => return Ok(None),
            (Some(path), None) => SigningKey::File(path),
            (None, Some(key)) => SigningKey::Kms(key),
            (Some(_), Some(_)) => return Err(bad(
                "--digest-key-file and --digest-kms-key-id exclude each other: sign with one key",
            )),
        };
        if top_folder(state_prefix) == top_folder(&digest_prefix) {
            return Err(bad(format!(
                "--digest-prefix {digest_prefix:?} shares its top folder with --state-prefix {state_prefix:?}: give the digests a folder of their own, e.g. {}",
                defaults::DIGEST_PREFIX
            )));
        }
        Ok(Some(SealConfig {
            key,
            settings: SealSettings {
                digest_prefix,
                period_ms,
                delay_ms,
                not_chains: vec![top_folder(state_prefix)],
                manifest_prefix: Some(format!("{state_prefix}manifest/")),
            },
        }))
    }
}

/// Minutes (fractions allowed) as whole seconds in ms, within 0..=1440
/// minutes and at least `min_ms`.
fn minutes_ms(
    flag: &str,
    value: Option<f64>,
    default: f64,
    min_ms: i64,
) -> Result<i64, ConfigError> {
    let minutes = value.unwrap_or(default);
    check_range(flag, minutes, min_ms as f64 / 60_000.0..=1440.0, default)?;
    let seconds = minutes * 60.0;
    if (seconds - seconds.round()).abs() > 1e-6 {
        return Err(bad(format!(
            "invalid {flag} {minutes}: use whole seconds ({} is {seconds} s), e.g. {default}",
            minutes
        )));
    }
    Ok(seconds.round() as i64 * 1_000)
}

/// `verify`'s digest settings, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestCheck {
    /// Prove chains even when no digest exists.
    pub required: bool,
    /// Where the digests are.
    pub digest_prefix: String,
    /// The public key file, if given.
    pub public_key: Option<PathBuf>,
    /// The KMS key whose public half to fetch, if given.
    pub kms_key_id: Option<String>,
    /// `--expect-until`, epoch ms.
    pub expect_until_ms: Option<i64>,
}

impl DigestCheckArgs {
    /// `verify`'s digest settings.
    pub fn validate(self, location: DigestLocationArgs) -> Result<DigestCheck, ConfigError> {
        let (digest_prefix, kms_key_id) = location.validate()?;
        let expect_until_ms = match self.expect_until {
            None => None,
            Some(text) => Some(crate::seal::digest::parse_instant(&text).ok_or_else(|| {
                bad(format!(
                    "invalid --expect-until {text:?}: use an RFC 3339 instant, e.g. 2026-12-04T00:00:00Z"
                ))
            })?),
        };
        if self.public_key.is_some() && kms_key_id.is_some() {
            return Err(bad(
                "--public-key and --digest-kms-key-id exclude each other: give the one key the digests were signed with",
            ));
        }
        if (self.digests || expect_until_ms.is_some())
            && self.public_key.is_none()
            && kms_key_id.is_none()
        {
            return Err(bad(
                "proving the digests needs their key: pass --public-key FILE (PEM) or --digest-kms-key-id KEY",
            ));
        }
        Ok(DigestCheck {
            required: self.digests || expect_until_ms.is_some(),
            digest_prefix,
            public_key: self.public_key,
            kms_key_id,
            expect_until_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seal(args: SealArgs, kms: Option<&str>) -> Result<Option<SealConfig>, ConfigError> {
        args.validate(
            DigestLocationArgs {
                digest_prefix: None,
                digest_kms_key_id: kms.map(str::to_string),
            },
            "_state/",
        )
    }

    #[test]
    fn sealing_is_off_without_a_key_and_defaults_otherwise() {
        assert_eq!(seal(SealArgs::default(), None).unwrap(), None);
        let config = seal(SealArgs::default(), Some("alias/k")).unwrap().unwrap();
        assert_eq!(config.key, SigningKey::Kms("alias/k".into()));
        assert_eq!(config.settings.period_ms, 60 * 60_000);
        assert_eq!(config.settings.delay_ms, 15 * 60_000);
        assert_eq!(config.settings.digest_prefix, "_digest/");
        assert_eq!(config.settings.not_chains, vec!["_state/".to_string()]);
        assert_eq!(
            config.settings.manifest_prefix.as_deref(),
            Some("_state/manifest/")
        );
    }

    #[test]
    fn bad_values_name_the_flag() {
        let with = |period: Option<f64>, delay: Option<f64>| {
            seal(
                SealArgs {
                    digest_key_file: Some("k.pem".into()),
                    digest_period_mins: period,
                    digest_delay_mins: delay,
                },
                None,
            )
        };
        assert_eq!(
            with(Some(0.05), Some(0.0))
                .unwrap()
                .unwrap()
                .settings
                .period_ms,
            3_000
        );
        for (period, delay, flag) in [
            (Some(0.0), None, "--digest-period-mins"),
            (Some(1441.0), None, "--digest-period-mins"),
            (Some(0.001), None, "--digest-period-mins"),
            (None, Some(-1.0), "--digest-delay-mins"),
        ] {
            let error = with(period, delay).unwrap_err().to_string();
            assert!(error.contains(flag), "{error}");
        }
        let both = seal(
            SealArgs {
                digest_key_file: Some("k.pem".into()),
                ..SealArgs::default()
            },
            Some("alias/k"),
        )
        .unwrap_err()
        .to_string();
        assert!(both.contains("exclude each other"), "{both}");
        let shared = SealArgs {
            digest_key_file: Some("k.pem".into()),
            ..SealArgs::default()
        }
        .validate(
            DigestLocationArgs {
                digest_prefix: Some("_state/digests/".into()),
                digest_kms_key_id: None,
            },
            "_state/",
        )
        .unwrap_err()
        .to_string();
        assert!(shared.contains("--digest-prefix"), "{shared}");
    }

    #[test]
    fn verify_needs_a_key_to_prove_and_a_real_instant() {
        let check = |args: DigestCheckArgs| args.validate(DigestLocationArgs::default());
        assert!(!check(DigestCheckArgs::default()).unwrap().required);
        let error = check(DigestCheckArgs {
            digests: true,
            ..DigestCheckArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("--public-key"), "{error}");
        let error = check(DigestCheckArgs {
            public_key: Some("p.pem".into()),
            expect_until: Some("yesterday".into()),
            ..DigestCheckArgs::default()
        })
        .unwrap_err()
        .to_string();
        assert!(error.contains("--expect-until"), "{error}");
    }
}

#[cfg(test)]
mod flags {
    use clap::CommandFactory;

    use crate::config::Cli;

    /// The digest options are one declaration each, taken by every command
    /// that seals (and `verify`). Their documentation is each command's
    /// option table, generated from these declarations and checked by
    /// `host/tests/docs.rs`.
    #[test]
    fn every_sealing_command_takes_the_same_digest_flags() {
        let cli = Cli::command();
        let flags_of = |name: &str| -> Vec<String> {
            cli.find_subcommand(name)
                .unwrap_or_else(|| panic!("no {name} command"))
                .get_arguments()
                .filter_map(|a| a.get_long().map(str::to_string))
                .collect()
        };
        let sealing = [
            "digest-key-file",
            "digest-kms-key-id",
            "digest-period-mins",
            "digest-delay-mins",
            "digest-prefix",
        ];
        for command in ["run", "lambda", "backfill", "seal"] {
            let flags = flags_of(command);
            for flag in sealing {
                assert!(flags.iter().any(|f| f == flag), "{command} lacks --{flag}");
            }
        }
        let verify = flags_of("verify");
        for flag in [
            "digests",
            "public-key",
            "expect-until",
            "digest-kms-key-id",
            "digest-prefix",
        ] {
            assert!(verify.iter().any(|f| f == flag), "verify lacks --{flag}");
        }
    }
}
