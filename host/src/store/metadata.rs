//! The names of the S3 user metadata the archive carries, written once: the
//! writers (the store stage, `s3`, `backfill`, the sealer) set them and the
//! readers (`verify`, `query`, the digest validator) look them up by the same
//! constants. S3 returns them lower-case and without `x-amz-meta-`, as written
//! here. They are part of the archive's format: a stored object keeps them
//! for its whole retention, so a name never changes.

/// The SQS message id an object holds: what makes a repeated delivery
/// recognisable as already archived.
pub const MESSAGE_ID: &str = "sqs-message-id";
/// The bare name of the queue the message came from.
pub const QUEUE: &str = "sqs-queue";
/// The tenant, the key's first segment.
pub const TENANT: &str = "tenant";
/// The time (epoch ms) that placed the object, per `--time-source`.
pub const ARCHIVE_TIME_MS: &str = "archive-time-ms";
/// SQS's `ApproximateFirstReceiveTimestamp` (epoch ms), when known.
pub const FIRST_RECEIVE_MS: &str = "sqs-first-receive-ms";
/// SQS's `SentTimestamp` (epoch ms), when known.
pub const SENT_MS: &str = "sqs-sent-ms";
/// The FIFO message group, when there is one.
pub const MESSAGE_GROUP_ID: &str = "sqs-message-group-id";
/// Why a quarantined message could not be routed.
pub const QUARANTINE_REASON: &str = "quarantine-reason";

/// The metadata every archived (not quarantined) object carries; `verify`
/// reports an object without one of them.
pub const REQUIRED: &[&str] = &[MESSAGE_ID, QUEUE, TENANT, ARCHIVE_TIME_MS];

/// `backfill`: where the record came from (`prisma-api`).
pub const SOURCE: &str = "source";
/// `backfill`: the Prisma Cloud API host the record was fetched from.
pub const PRISMA_API_URL: &str = "prisma-api-url";
/// `backfill`: when the record was fetched (epoch ms).
pub const FETCHED_AT_MS: &str = "fetched-at-ms";

/// A signed digest's signature (hex), as CloudTrail's.
pub const SIGNATURE: &str = "signature";
/// The algorithm of a digest's signature.
pub const SIGNATURE_ALGORITHM: &str = "signature-algorithm";
