//! What every reliability scenario shares: a serial lock (scenarios compete
//! for two cores and moto), the scale knob, sending a workload, running and
//! killing the host, and the final audit (nothing lost, nothing duplicated,
//! nothing overwritten, queues empty).

use std::collections::BTreeMap;
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};

use crate::support::{audit_log, drain, unique, Moto};

/// Scenarios run one at a time, whatever `--test-threads` says. An async
/// lock: each scenario holds it across its awaits (and a failed scenario
/// cannot poison it).
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
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `low..high`.
    pub fn range(&mut self, low: u64, high: u64) -> u64 {
        low + (self.next() >> 11) % (high - low).max(1)
    }
}

/// The usual starting point of a scenario: a versioned bucket, a standard
/// (`acme`) and a FIFO (`globex`) tenant queue, and `per_queue` audit logs
/// sent to each.
pub async fn two_tenant_backlog(moto: &Moto, per_queue: usize) -> (String, Vec<String>, Sent) {
    let bucket = moto.versioned_bucket().await;
    let queues = vec![
        queue(moto, "acme", false).await,
        queue(moto, "globex", true).await,
    ];
    let mut sent = Sent::new();
    for q in &queues {
        send_logs(moto, q, per_queue, &mut sent).await;
    }
    (bucket, queues, sent)
}

/// What was sent: message id → (queue URL, body).
pub type Sent = BTreeMap<String, (String, String)>;

/// Sends `count` distinct audit logs to `queue_url` in batches of ten. FIFO
/// queues spread them over five message groups.
pub async fn send_logs(moto: &Moto, queue_url: &str, count: usize, sent: &mut Sent) {
    let fifo = queue_url.ends_with(".fifo");
    let base = sent.len();
    let bodies: Vec<String> = (0..count)
        .map(|n| {
            audit_log(
                &format!("user{}@example.com", (base + n) % 7),
                1_750_991_540_913 + (base + n) as u64 * 997,
                base + n,
            )
        })
        .collect();
    send_bodies(moto, queue_url, &bodies, fifo, sent).await;
}

/// Sends the given bodies (batches of ten; FIFO: five groups).
pub async fn send_bodies(
    moto: &Moto,
    queue_url: &str,
    bodies: &[String],
    fifo: bool,
    sent: &mut Sent,
) {
    for (batch_no, chunk) in bodies.chunks(10).enumerate() {
        let entries: Vec<SendMessageBatchRequestEntry> = chunk
            .iter()
            .enumerate()
            .map(|(i, body)| {
                let mut entry = SendMessageBatchRequestEntry::builder()
                    .id(format!("e{i}"))
                    .message_body(body);
                if fifo {
                    entry = entry
                        .message_group_id(format!("g{}", (batch_no * 10 + i) % 5))
                        .message_deduplication_id(unique("d"));
                }
                entry.build().unwrap()
            })
            .collect();
        let out = moto
            .sqs
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("send batch");
        assert!(out.failed().is_empty(), "send failures: {:?}", out.failed());
        for ok in out.successful() {
            let index: usize = ok.id()[1..].parse().unwrap();
            sent.insert(
                ok.message_id().to_string(),
                (queue_url.to_string(), chunk[index].clone()),
            );
        }
    }
}

/// Creates `{tenant}-{unique}` queues, FIFO when `fifo`.
pub async fn queue(moto: &Moto, tenant: &str, fifo: bool) -> String {
    let suffix = if fifo { ".fifo" } else { "" };
    moto.queue(&format!("{tenant}-{}{suffix}", unique("q")))
        .await
}

/// Visible + in-flight messages of a queue, one figure per kind.
pub async fn depth_parts(moto: &Moto, queue_url: &str) -> (u64, u64) {
    let out = moto
        .sqs
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .expect("queue attributes");
    let attributes = out.attributes().unwrap();
    let get = |name| {
        attributes
            .get(&name)
            .map_or(0, |v: &String| v.parse::<u64>().unwrap())
    };
    (
        get(QueueAttributeName::ApproximateNumberOfMessages),
        get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    )
}

/// Total depth of several queues.
pub async fn total_depth(moto: &Moto, queues: &[String]) -> u64 {
    let mut total = 0;
    for q in queues {
        total += moto.depth(q).await;
    }
    total
}

/// Number of objects (current versions) in the bucket: cheap progress figure.
pub async fn object_count(moto: &Moto, bucket: &str) -> usize {
    let mut count = 0;
    let mut token = None;
    loop {
        let page = moto
            .s3
            .list_objects_v2()
            .bucket(bucket)
            .set_continuation_token(token)
            .send()
            .await
            .expect("list objects");
        count += page.contents().len();
        token = page.next_continuation_token().map(str::to_string);
        if token.is_none() {
            return count;
        }
    }
}

/// Every version of every key: key → number of versions (delete markers count).
pub async fn versions(moto: &Moto, bucket: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let (mut key_marker, mut version_marker) = (None, None);
    loop {
        let page = moto
            .s3
            .list_object_versions()
            .bucket(bucket)
            .set_key_marker(key_marker)
            .set_version_id_marker(version_marker)
            .send()
            .await
            .expect("list versions");
        for v in page.versions() {
            *counts.entry(v.key().unwrap_or("").to_string()).or_insert(0) += 1;
        }
        for m in page.delete_markers() {
            *counts.entry(m.key().unwrap_or("").to_string()).or_insert(0) += 1;
        }
        if page.is_truncated() != Some(true) {
            return counts;
        }
        key_marker = page.next_key_marker().map(str::to_string);
        version_marker = page.next_version_id_marker().map(str::to_string);
    }
}

/// The result of the final audit.
#[derive(Debug, Default)]
pub struct Audit {
    /// Messages sent.
    pub messages: usize,
    /// Objects in the bucket.
    pub objects: usize,
    /// Sent messages with no object.
    pub lost: usize,
    /// Sent messages with more than one object.
    pub duplicates: usize,
    /// Keys with more than one version.
    pub overwritten: usize,
    /// Objects whose body differs from what was sent.
    pub corrupted: usize,
    /// Messages left in the queues.
    pub left_in_queues: u64,
    /// Objects of quarantined messages (under the quarantine prefix).
    pub quarantined: usize,
}

impl Audit {
    /// `lost=0 duplicates=0 …`.
    pub fn line(&self) -> String {
        format!(
            "messages={} objects={} quarantined={} lost={} duplicates={} overwritten={} corrupted={} left_in_queues={}",
            self.messages,
            self.objects,
            self.quarantined,
            self.lost,
            self.duplicates,
            self.overwritten,
            self.corrupted,
            self.left_in_queues
        )
    }

    /// Panics unless nothing was lost, duplicated, overwritten or left behind.
    pub fn assert_perfect(&self, name: &str) {
        println!("[{name}] audit: {}", self.line());
        assert_eq!(self.lost, 0, "[{name}] lost messages: {}", self.line());
        assert_eq!(self.duplicates, 0, "[{name}] duplicates: {}", self.line());
        assert_eq!(self.overwritten, 0, "[{name}] overwrites: {}", self.line());
        assert_eq!(self.corrupted, 0, "[{name}] corrupted: {}", self.line());
        assert_eq!(
            self.left_in_queues,
            0,
            "[{name}] queues not empty: {}",
            self.line()
        );
        assert_eq!(
            self.objects,
            self.messages,
            "[{name}] stray objects: {}",
            self.line()
        );
    }
}

/// Reads the whole bucket and checks it against what was sent: every body in
/// exactly one object (matched by `sqs-message-id`), byte for byte, every key
/// with a single version, and the queues empty.
pub async fn audit(moto: &Moto, bucket: &str, sent: &Sent, queues: &[String]) -> Audit {
    let objects = moto.objects(bucket).await;
    let mut by_id: BTreeMap<&str, Vec<(&String, &crate::support::StoredObject)>> = BTreeMap::new();
    for (key, object) in &objects {
        by_id
            .entry(object.message_id())
            .or_default()
            .push((key, object));
    }
    let mut audit = Audit {
        messages: sent.len(),
        objects: objects.len(),
        ..Audit::default()
    };
    for (id, (_, body)) in sent {
        match by_id.get(id.as_str()).map(Vec::as_slice) {
            None | Some([]) => audit.lost += 1,
            Some([(key, object)]) => {
                if &object.body != body {
                    audit.corrupted += 1;
                }
                if key.starts_with("_quarantine/") {
                    audit.quarantined += 1;
                }
            }
            Some(_) => audit.duplicates += 1,
        }
    }
    audit.overwritten = versions(moto, bucket)
        .await
        .values()
        .filter(|n| **n > 1)
        .count();
    audit.left_in_queues = total_depth(moto, queues).await;
    audit
}

/// A running `audit-archiver` whose output is collected in the background.
pub struct Host {
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Host {
    /// Spawns `command` (from `Moto::command`).
    pub fn spawn(mut command: Command) -> Host {
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn audit-archiver");
        let stdout = Some(drain(child.stdout.take()));
        let stderr = Some(drain(child.stderr.take()));
        Host {
            child,
            stdout,
            stderr,
        }
    }

    /// Whether it still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// SIGKILL, then collect.
    pub fn kill9(mut self) -> Output {
        let _ = self.child.kill();
        self.collect()
    }

    /// Sends SIGTERM (without waiting).
    pub fn term(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits up to `limit` for the exit; `None` (and a SIGKILL) if it did not.
    pub fn wait(mut self, limit: Duration) -> Result<Output, Output> {
        let deadline = Instant::now() + limit;
        while self.running() {
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return Err(self.collect());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(self.collect())
    }

    fn collect(&mut self) -> Output {
        let status = self.child.wait().unwrap();
        Output {
            status,
            stdout: self.stdout.take().unwrap().join().unwrap(),
            stderr: self.stderr.take().unwrap().join().unwrap(),
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.stdout.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `run` (long-running, not `--drain`) against `endpoint` with short timeouts.
pub fn run_args(bucket: &str, queues: &[String], endpoint: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = vec!["run".into(), "--bucket".into(), bucket.into()];
    for q in queues {
        args.push("--queue".into());
        args.push(q.clone());
    }
    args.extend(["--endpoint-url".into(), endpoint.into()]);
    args.extend(["--stats-interval-secs".into(), "0".into()]);
    args.extend(extra.iter().map(|s| s.to_string()));
    args
}

/// Polls `check` every 200 ms until it holds; panics after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for_every(what, limit, Duration::from_millis(200), check).await;
}

/// Polls `check` every `poll` until it holds; panics after `limit`.
pub async fn wait_for_every<F, Fut>(what: &str, limit: Duration, poll: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(poll).await;
    }
}

/// Waits (polling closely, so a signal can follow at once) until the bucket
/// holds at least `target` objects.
pub async fn wait_for_objects(moto: &Moto, bucket: &str, target: usize) {
    wait_for_every(
        &format!("{target} objects"),
        Duration::from_secs(120),
        Duration::from_millis(25),
        || async { object_count(moto, bucket).await >= target },
    )
    .await;
}

/// Waits until every queue is empty and the bucket holds `expected` objects.
pub async fn wait_settled(
    moto: &Moto,
    bucket: &str,
    queues: &[String],
    expected: usize,
    limit: Duration,
) {
    wait_for(
        "every message archived and the queues empty",
        limit,
        || async {
            total_depth(moto, queues).await == 0 && object_count(moto, bucket).await >= expected
        },
    )
    .await;
}

/// The host's final JSON summary (last stdout line), if any.
pub fn summary_of(output: &Output) -> Option<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
}

/// A summary counter, 0 when absent.
pub fn counter(summary: &Option<serde_json::Value>, name: &str) -> u64 {
    summary.as_ref().and_then(|s| s[name].as_u64()).unwrap_or(0)
}

/// The stderr of a run.
pub fn err(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
