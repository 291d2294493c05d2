//! Every setting's default, written once: the validation falls back to these,
//! the help texts quote them (through [`with_default!`]) and the tests
//! compare against them. Where a stage owns a default (the sandbox's bounds,
//! the Prisma Cloud API's pace, the quarantine prefix), it is quoted from
//! the stage, so the value is still written once.

use crate::route::SandboxLimits;
use crate::source::prisma::ClientSettings;

pub use audit_archiver_transform::time::JST_OFFSET_MINUTES as UTC_OFFSET_MINUTES;

/// `--key-template`: the layout that never collides.
pub const KEY_TEMPLATE: &str = "default";
/// `--concurrency`, for every command that takes it: messages or records
/// stored at once (`run`, `backfill`), objects read at once (`verify`,
/// `query`). A command that needs another default says so here.
pub const CONCURRENCY: usize = 32;
/// `--quarantine-prefix`.
pub const QUARANTINE_PREFIX: &str = crate::store::DEFAULT_QUARANTINE_PREFIX;
/// `--state-prefix`: `backfill`'s checkpoints.
pub const STATE_PREFIX: &str = "_state/";
/// `--digest-prefix`: the signed digests, one chain per tenant under it.
pub const DIGEST_PREFIX: &str = "_digest/";
/// `--digest-period-mins`: CloudTrail's hour.
pub const DIGEST_PERIOD_MINS: f64 = 60.0;
/// `--digest-delay-mins`: a period is sealed this long after its end.
pub const DIGEST_DELAY_MINS: f64 = 15.0;
/// `--visibility-timeout-secs`.
pub const VISIBILITY_TIMEOUT_SECS: u32 = 60;
/// `--wait-time-secs`: SQS's longest long poll.
pub const WAIT_TIME_SECS: u32 = 20;
/// `--wait-time-secs` with `--drain`: an empty queue is noticed quickly.
pub const DRAIN_WAIT_TIME_SECS: u32 = 2;
/// `--discovery-interval-secs`: how often `--queue-prefix` lists the queues again.
pub const DISCOVERY_INTERVAL_SECS: u64 = 300;
/// `--stats-interval-secs`.
pub const STATS_INTERVAL_SECS: u64 = 60;
/// `--max-attempts`: attempts per AWS request.
pub const MAX_ATTEMPTS: u32 = 5;
/// `--component-timeout-ms`.
pub const COMPONENT_TIMEOUT_MS: u64 = SandboxLimits::DEFAULT.call_timeout.as_millis() as u64;
/// `--component-memory-mib`.
pub const COMPONENT_MEMORY_MIB: usize = SandboxLimits::DEFAULT.memory_bytes >> 20;
/// `lambda --deadline-margin-ms`.
pub const DEADLINE_MARGIN_MS: u64 = 3000;
/// `backfill --follow-interval-mins`.
pub const FOLLOW_INTERVAL_MINS: u64 = 10;
/// `backfill --follow-overlap-mins`.
pub const FOLLOW_OVERLAP_MINS: u64 = 30;
/// `backfill --api-requests-per-sec`: the Prisma Cloud API's limit.
pub const API_REQUESTS_PER_SEC: f64 = ClientSettings::DEFAULT.requests_per_sec;
/// `backfill --api-max-attempts`.
pub const API_MAX_ATTEMPTS: u32 = ClientSettings::DEFAULT.max_attempts;
/// `backfill --page-size`: the most the API returns per page.
pub const PAGE_SIZE: u32 = ClientSettings::DEFAULT.page_size;
/// `backfill --api-token-renew-secs` (tokens live 600 s).
pub const API_TOKEN_RENEW_SECS: u64 = ClientSettings::DEFAULT.token_renew_after.as_secs();

/// A help text ending in `[default: VALUE]`, so the value shown is the one
/// the code uses.
macro_rules! with_default {
    ($text:literal, $default:expr) => {
        format!(concat!($text, " [default: {}]"), $default)
    };
}
pub(crate) use with_default;

/// The name `--help` shows for an enum option's default value.
pub(crate) fn value_name<T: clap::ValueEnum + Default>() -> String {
    T::default()
        .to_possible_value()
        .map(|value| value.get_name().to_string())
        .unwrap_or_default()
}
