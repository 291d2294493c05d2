//! Building an archive the way production does: messages on real queues,
//! drained by the real binary into a real (moto) bucket.

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use sha2::{Digest, Sha256};

use audit_archiver_test_kit::{stderr, unique, Moto, StoredObject};

/// 2025-06-27T02:32:20.913Z = 2025-06-27 11:32:20.913 JST.
pub const T: u64 = 1_750_991_540_913;
/// An hour, in ms.
pub const HOUR: u64 = 3_600_000;
/// A day, in ms.
pub const DAY: u64 = 24 * HOUR;

/// One audit record, as Prisma Cloud documents it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub timestamp: u64,
    pub user: &'static str,
    pub ip: &'static str,
    pub resource_type: &'static str,
    pub resource_name: &'static str,
    pub action_type: &'static str,
    pub result: &'static str,
}

impl Record {
    /// The record as JSON text.
    pub fn json(&self) -> String {
        serde_json::json!({
            "timestamp": self.timestamp,
            "user": self.user,
            "ipAddress": self.ip,
            "resourceType": self.resource_type,
            "resourceName": self.resource_name,
            "actionType": self.action_type,
            "action": format!("'{}' did {} on {}", self.user, self.action_type, self.resource_name),
            "result": self.result,
        })
        .to_string()
    }
}

/// A bucket, optionally versioned or with Object Lock.
pub async fn bucket(moto: &Moto, versioned: bool, object_lock: bool) -> String {
    match (object_lock, versioned) {
        (true, _) => moto.locked_bucket().await,
        (false, true) => moto.versioned_bucket().await,
        (false, false) => moto.bucket().await,
    }
}

/// Sends each (tenant, body) to the tenant's queue and drains every queue
/// into `bucket` with `run --drain` and `extra` options; returns the bucket's
/// objects afterwards.
pub async fn archive(
    moto: &Moto,
    bucket: &str,
    messages: &[(&str, String)],
    extra: &[&str],
) -> std::collections::BTreeMap<String, StoredObject> {
    let mut queues: Vec<(String, String)> = Vec::new();
    for (tenant, body) in messages {
        let url = match queues.iter().find(|(t, _)| t == tenant) {
            Some((_, url)) => url.clone(),
            None => {
                let url = moto
                    .queue(&format!("{tenant}-{}", unique("auditlog")))
                    .await;
                queues.push((tenant.to_string(), url.clone()));
                url
            }
        };
        moto.send(&url, body, None).await;
    }
    let mut args = vec!["run", "--drain", "--bucket", bucket];
    for (_, url) in &queues {
        args.extend(["--queue", url.as_str()]);
    }
    args.extend_from_slice(extra);
    let output = moto.run(&args);
    assert!(output.status.success(), "run --drain: {}", stderr(&output));
    moto.objects(bucket).await
}

/// A PUT as an operator (or an intruder) would do it with the SDK:
/// unconditional, with whatever metadata and checksum it is given.
pub async fn put_raw(
    moto: &Moto,
    bucket: &str,
    key: &str,
    body: &str,
    metadata: &std::collections::BTreeMap<String, String>,
    checksum_of: Option<&str>,
) {
    let mut request = moto
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .content_type("application/json")
        .body(ByteStream::from(body.as_bytes().to_vec()));
    if let Some(text) = checksum_of {
        request = request
            .checksum_algorithm(ChecksumAlgorithm::Sha256)
            .checksum_sha256(aws_smithy_types::base64::encode(Sha256::digest(
                text.as_bytes(),
            )));
    }
    for (name, value) in metadata {
        request = request.metadata(name, value);
    }
    request.send().await.expect("put object");
}
