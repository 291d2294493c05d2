//! The AWS actions the host calls, in one place.
//!
//! The IAM policy in the README and the host role in
//! `deploy/cloudformation.yaml` are checked against these lists by a test
//! (`host/tests/deploy_policy.rs`), and the reliability suite
//! (`host/tests/reliability/refused.rs`) drains queues with the keys of a user
//! holding exactly the README's policy while moto enforces IAM: a new call on
//! that path needing a permission the policy lacks fails the test.

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

/// Every action the host may call, sorted.
pub fn all_actions() -> Vec<&'static str> {
    let mut all: Vec<&'static str> = [
        SQS_QUEUE_ACTIONS,
        SQS_DISCOVERY_ACTIONS,
        S3_BUCKET_ACTIONS,
        S3_OBJECT_ACTIONS,
        S3_OBJECT_LOCK_ACTIONS,
        KMS_ACTIONS,
    ]
    .concat();
    all.sort_unstable();
    all
}
