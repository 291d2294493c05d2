//! `audit-archiver seal`: writes the signed digest of every closed period
//! of every chain in the bucket, up to now, and prints what it did. Safe to
//! run at any time, from anywhere, beside running archivers: a period
//! already sealed is left as it is.

use super::{open_sealer, open_sink, CommandError, Exit};
use crate::config::SealCommandConfig;
use crate::seal::now_ms;

/// Runs `seal`.
pub async fn seal(config: SealCommandConfig) -> Result<Exit, CommandError> {
    let (clients, mut archive) = open_sink(&config.aws, &config.bucket, &config.objects).await?;
    let sealer = open_sealer(&clients, &mut archive, &config.seal)?;
    let sealed = sealer.seal_all(now_ms()).await.map_err(|e| {
        CommandError::Runtime(anyhow::anyhow!("sealing s3://{}: {e}", config.bucket))
    })?;
    println!(
        "{}",
        serde_json::to_string(&sealed).expect("counters serialise")
    );
    Ok(Exit::Success)
}
