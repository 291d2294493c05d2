//! The AWS actions the host calls, in one place: the archiver's (`run`), the
//! sealer's (`seal`, and `run`, `backfill` and the Lambda function, which seal
//! too) and the auditor's (`verify`, `query`), which only read.
//!
//! The IAM policies in `docs/iam.md` and the host and auditor roles in
//! `deploy/cloudformation.yaml` are checked against these lists by a test
//! (`host/tests/deploy_policy.rs`), and the reliability suite
//! (`host/tests/reliability/refused.rs`) drains queues with the keys of a user
//! holding exactly the documented host policy while moto enforces IAM: a new call
//! on that path needing a permission the policy lacks fails the test. The
//! Lambda function's role in the template is checked against
//! [`lambda_actions`], the auditor's policy against [`auditor_actions`]. The
//! same test checks the digest key's key policy: only the host's and the
//! function's roles may `kms:Sign` ([`DIGEST_SIGN_ACTIONS`]), the auditor gets
//! [`AUDITOR_DIGEST_KEY_ACTIONS`].

/// SQS actions on the tenant queues. `DeleteMessageBatch` and
/// `ChangeMessageVisibilityBatch` are authorised by the single-message actions.
pub const SQS_QUEUE_ACTIONS: &[&str] = &[
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:GetQueueUrl",
    "sqs:ReceiveMessage",
];

/// SQS actions needed only with `--queue-prefix` (queue discovery).
pub const SQS_DISCOVERY_ACTIONS: &[&str] = &["sqs:ListQueues"];

/// S3 actions on the bucket itself: `HeadBucket` at start-up needs `ListBucket`,
/// and so does `backfill`'s listing of its checkpoints (under the state prefix).
pub const S3_BUCKET_ACTIONS: &[&str] = &["s3:ListBucket"];

/// S3 actions on the bucket's objects: the conditional `PutObject` (of
/// messages, records and `backfill` checkpoints), and `HeadObject` (authorised
/// by `GetObject`) to tell a redelivery from a collision.
pub const S3_OBJECT_ACTIONS: &[&str] = &["s3:GetObject", "s3:PutObject"];

/// S3 actions needed only with `--object-lock-mode` (retention set on PUT).
pub const S3_OBJECT_LOCK_ACTIONS: &[&str] = &["s3:PutObjectRetention"];

/// KMS actions needed only with `--sse aws:kms` (and to receive from
/// KMS-encrypted queues).
pub const KMS_ACTIONS: &[&str] = &["kms:Decrypt", "kms:GenerateDataKey"];

/// KMS actions needed only with `--digest-kms-key-id` (digests signed by an
/// asymmetric AWS KMS key; a `--digest-key-file` needs none): `Sign`, with
/// `RSASSA_PKCS1_V1_5_SHA_256` and `MessageType=RAW`, on the digest key only.
/// Only the writer (the host, the Lambda function) gets it: never the auditor,
/// never anyone else, so a digest signed by the key was written by the writer.
pub const DIGEST_SIGN_ACTIONS: &[&str] = &["kms:Sign"];

/// Every action `run` (the archiver, which also seals) and `backfill` may
/// call, sorted: the host's policy.
pub fn all_actions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = [
        SQS_QUEUE_ACTIONS,
        SQS_DISCOVERY_ACTIONS,
        S3_BUCKET_ACTIONS,
        S3_OBJECT_ACTIONS,
        S3_OBJECT_LOCK_ACTIONS,
        KMS_ACTIONS,
        DIGEST_SIGN_ACTIONS,
    ]
    .concat();
    all.sort_unstable();
    all
}

/// Every action `seal` may call, sorted: list the bucket, read the archived
/// objects and the earlier digests, write the new digests (conditional
/// `PutObject` under the digest prefix), sign them with a KMS digest key
/// ([`DIGEST_SIGN_ACTIONS`]), and [`KMS_ACTIONS`] only when the bucket uses
/// SSE-KMS. A subset of the host's and of the Lambda function's policies.
pub fn seal_actions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = [
        S3_BUCKET_ACTIONS,
        S3_OBJECT_ACTIONS,
        DIGEST_SIGN_ACTIONS,
        KMS_ACTIONS,
    ]
    .concat();
    all.sort_unstable();
    all
}

/// S3 actions of the read commands on the bucket: `HeadBucket` and
/// `ListObjectsV2` (`s3:ListBucket`), `ListObjectVersions`
/// (`s3:ListBucketVersions`), and `GetObjectLockConfiguration` to know whether
/// every object must have a retention.
pub const AUDITOR_BUCKET_ACTIONS: &[&str] = &[
    "s3:GetBucketObjectLockConfiguration",
    "s3:ListBucket",
    "s3:ListBucketVersions",
];

/// S3 actions of the read commands on the objects: `GetObject` and
/// `HeadObject` (`s3:GetObject`); `s3:GetObjectRetention` makes `GetObject`
/// return the retention; `s3:GetObjectVersion` lets the auditor read the
/// earlier versions `verify` reports (`aws s3api get-object --version-id`).
/// Nothing that writes or deletes.
pub const AUDITOR_OBJECT_ACTIONS: &[&str] = &[
    "s3:GetObject",
    "s3:GetObjectRetention",
    "s3:GetObjectVersion",
];

/// KMS actions the read commands need only when the bucket uses SSE-KMS.
pub const AUDITOR_KMS_ACTIONS: &[&str] = &["kms:Decrypt"];

/// KMS actions on the digest key, only when digests are signed by KMS:
/// `verify` fetches the public key (`GetPublicKey`) and checks the signatures
/// itself; `kms:Verify` is not called by the host, it lets an auditor check a
/// signature with KMS as well (`aws kms verify`). Never `kms:Sign`.
pub const AUDITOR_DIGEST_KEY_ACTIONS: &[&str] = &["kms:GetPublicKey", "kms:Verify"];

/// Every action the read commands may call, sorted: the auditor's policy.
pub fn auditor_actions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = [
        AUDITOR_BUCKET_ACTIONS,
        AUDITOR_OBJECT_ACTIONS,
        AUDITOR_KMS_ACTIONS,
        AUDITOR_DIGEST_KEY_ACTIONS,
    ]
    .concat();
    all.sort_unstable();
    all
}

/// SQS actions on the tenant queues that Lambda's event source mapping
/// performs with the function's role (the function itself calls no SQS API).
pub const LAMBDA_SQS_ACTIONS: &[&str] = &[
    "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
];

/// CloudWatch Logs actions Lambda uses to write the function's log stream
/// (the log group is created by the template, not by the function).
pub const LAMBDA_LOG_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];

/// Every action the Lambda function's role needs, sorted: the event source
/// mapping's, the log's, and the same S3 (and optional Object Lock and KMS)
/// actions as the host, and `kms:Sign` on the digest key for the scheduled
/// sealing invocations.
pub fn lambda_actions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = [
        LAMBDA_SQS_ACTIONS,
        LAMBDA_LOG_ACTIONS,
        S3_BUCKET_ACTIONS,
        S3_OBJECT_ACTIONS,
        S3_OBJECT_LOCK_ACTIONS,
        KMS_ACTIONS,
        DIGEST_SIGN_ACTIONS,
    ]
    .concat();
    all.sort_unstable();
    all
}
