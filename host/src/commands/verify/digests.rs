//! `verify`'s proof of the signed digests: the chains of the tenants
//! verified, through `crate::seal::validate`.

use super::*;

/// The signed digests proved, when they exist or `--digests` asks: the
/// chains of the verified tenants, and of the quarantine when every tenant
/// is verified. `None` when there is nothing to prove.
pub(super) async fn prove_digests(
    config: &VerifyConfig,
    reader: &ArchiveReader,
    tenants: &[String],
    quarantine_top: Option<&String>,
    read: &KnownBodies,
) -> Result<Option<ChainReport>, CommandError> {
    let check = &config.digests;
    let present = reader
        .has_prefix(&check.digest_prefix)
        .await
        .map_err(|e| unreadable(&e))?;
    if !present && !check.required {
        return Ok(None);
    }
    let key = match (&check.public_key, &check.kms_key_id) {
        (Some(path), _) => PublicKey::from_pem_file(path)
            .map_err(|e| CommandError::Startup(e.to_string()))?,
        (None, Some(key_id)) => {
            let clients = crate::aws::clients(&config.read.aws)
                .await
                .map_err(|e| CommandError::Startup(e.to_string()))?;
            KmsKey::new(clients.kms, key_id.clone())
                .public_key()
                .await
                .map_err(CommandError::Startup)?
        }
        (None, None) => {
            return Err(CommandError::Startup(format!(
                "s3://{}/{} holds signed digests: pass --public-key FILE (PEM) or --digest-kms-key-id KEY to prove them",
                reader.bucket(),
                check.digest_prefix
            )))
        }
    };
    let mut chains = tenants.to_vec();
    if config.tenants.is_empty() {
        if let Some(quarantine) = quarantine_top {
            chains.push(quarantine.trim_end_matches('/').to_string());
        }
    }
    let settings = ValidateSettings {
        digest_prefix: check.digest_prefix.clone(),
        chains,
        from_ms: config.from_ms,
        expect_until_ms: check.expect_until_ms,
        concurrency: config.read.concurrency,
    };
    let layout = config.read.layout.clone();
    let offset = layout.utc_offset_minutes();
    // The time a key's date claims: the end of its day.
    let claimed = move |key: &str| {
        let tenant = key.split('/').next()?;
        Some(layout.shape(key, tenant)?.day?.end_ms(offset))
    };
    let store = BucketDigests::new(reader.clone(), None);
    let report = validate(&store, &key, &settings, &claimed, read)
        .await
        .map_err(|e| CommandError::Runtime(anyhow::anyhow!("proving the digests: {e}")))?;
    Ok(Some(report))
}
