//! Workloads: documented audit logs, unique names, the scale and seed knobs,
//! and the usual starting point of a scenario.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Moto;

/// What was sent: message id → (queue URL, body).
pub type Sent = BTreeMap<String, (String, String)>;

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Prisma Cloud audit log body, as documented.
pub fn audit_log(user: &str, timestamp_ms: u64, n: usize) -> String {
    format!(
        r#"{{"timestamp":{timestamp_ms},"user":"{user}","ipAddress":"203.0.113.7","resourceType":"Account Group","resourceName":"TEST-{n}","actionType":"CREATE","action":"'{user}'(with role 'System Admin':'System Admin') created the account group.","result":"Successful"}}"#
    )
}

/// Tests that must not share the machine's two cores and moto with another
/// (the reliability scenarios) run one at a time, whatever `--test-threads`
/// says. An async lock: each holds it across its awaits, and a failed one
/// cannot poison it.
pub async fn serial() -> tokio::sync::MutexGuard<'static, ()> {
    static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    LOCK.lock().await
}

/// `RELIABILITY_SCALE` (default 1): multiplies messages, kills and rounds.
pub fn scale() -> usize {
    std::env::var("RELIABILITY_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|v: &usize| *v >= 1)
        .unwrap_or(1)
}

/// A small deterministic PRNG; the seed is printed so a run can be replayed
/// (`RELIABILITY_SEED`).
pub struct Rng(u64);

impl Rng {
    /// From `RELIABILITY_SEED`, or the clock.
    pub fn new(name: &str) -> Rng {
        let seed = std::env::var("RELIABILITY_SEED")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("[{name}] seed {seed} (replay with RELIABILITY_SEED={seed})");
        Rng(seed | 1)
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + (self.next_u64() >> 11) % (high - low).max(1)
    }
}

/// The usual starting point of a scenario: a versioned bucket, a standard
/// (`acme`) and a FIFO (`globex`) tenant queue, and `per_queue` audit logs
/// sent to each.
pub async fn two_tenant_backlog(moto: &Moto, per_queue: usize) -> (String, Vec<String>, Sent) {
    let bucket = moto.versioned_bucket().await;
    let queues = vec![
        moto.tenant_queue("acme", false).await,
        moto.tenant_queue("globex", true).await,
    ];
    let mut sent = Sent::new();
    for queue in &queues {
        moto.send_logs(queue, per_queue, &mut sent).await;
    }
    (bucket, queues, sent)
}

/// The arguments of a long-running `run` (no `--drain`) of `queues` into
/// `bucket` through `endpoint`, with no periodic stats lines, then `extra`.
pub fn daemon_args(bucket: &str, queues: &[String], endpoint: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "--bucket".into(), bucket.into()];
    for queue in queues {
        args.push("--queue".into());
        args.push(queue.clone());
    }
    args.extend(["--endpoint-url".into(), endpoint.into()]);
    args.extend(["--stats-interval-secs".into(), "0".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}
