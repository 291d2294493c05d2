//! Each queue's health as an operator needs it: whether the host can use the
//! queue, the problems only an operator can fix (logged once at error level
//! naming the action and the permission it needs, then reminded every few
//! minutes — never once per message), what the host did with the queue, and
//! its depth. Rendered into `/metrics` as labelled series.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::aws::FailureKind;
use crate::source::{Depth, QueueRef};

/// How often a problem that persists is logged again.
pub const REMIND_EVERY: Duration = Duration::from_secs(300);

/// The calls whose refusal stops a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Action {
    /// `sqs:ReceiveMessage`.
    Receive,
    /// `sqs:DeleteMessage` (the batch call is authorised as the single one).
    Delete,
    /// `sqs:ChangeMessageVisibility`.
    ChangeVisibility,
    /// `s3:PutObject` on the bucket's objects.
    Put,
}

impl Action {
    /// The API call.
    pub fn api(self) -> &'static str {
        match self {
            Self::Receive => "ReceiveMessage",
            Self::Delete => "DeleteMessage",
            Self::ChangeVisibility => "ChangeMessageVisibility",
            Self::Put => "PutObject",
        }
    }

    /// The IAM permission the call needs, on the resource it needs it on.
    pub fn permission(self, queue_arn: &str, bucket: &str) -> String {
        match self {
            Self::Receive => format!("sqs:ReceiveMessage on {queue_arn}"),
            Self::Delete => format!("sqs:DeleteMessage on {queue_arn}"),
            Self::ChangeVisibility => format!("sqs:ChangeMessageVisibility on {queue_arn}"),
            Self::Put => format!("s3:PutObject on arn:aws:s3:::{bucket}/*"),
        }
    }
}

#[derive(Debug)]
struct Alarm {
    since: Instant,
    last_logged: Instant,
    messages: u64,
}

/// One queue's state, shared by its worker, its batches and `/metrics`.
#[derive(Debug)]
pub struct QueueHealth {
    queue: QueueRef,
    bucket: String,
    up: AtomicBool,
    /// Messages received (redeliveries count again).
    pub received: AtomicU64,
    /// Messages archived or quarantined, and deleted.
    pub archived: AtomicU64,
    /// Messages archived but not deleted.
    pub delete_failures: AtomicU64,
    depth: Mutex<Option<Depth>>,
    alarms: Mutex<BTreeMap<Action, Alarm>>,
}

impl QueueHealth {
    /// A queue believed healthy until a call says otherwise.
    pub fn new(queue: &QueueRef, bucket: &str) -> Arc<Self> {
        Arc::new(Self {
            queue: queue.clone(),
            bucket: bucket.to_string(),
            up: AtomicBool::new(true),
            received: AtomicU64::new(0),
            archived: AtomicU64::new(0),
            delete_failures: AtomicU64::new(0),
            depth: Mutex::new(None),
            alarms: Mutex::new(BTreeMap::new()),
        })
    }

    /// Whether the host can currently use the queue.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Records that `action` failed for good on `messages` messages: marks
    /// the queue down and logs at error level the first time, then at most
    /// every [`REMIND_EVERY`].
    pub fn refused(&self, action: Action, kind: FailureKind, detail: &str, messages: u64) {
        self.up.store(false, Ordering::Relaxed);
        let now = Instant::now();
        let mut alarms = self.alarms.lock().expect("alarms lock");
        let alarm = alarms.entry(action).or_insert(Alarm {
            since: now,
            last_logged: now,
            messages: 0,
        });
        let first = alarm.messages == 0;
        alarm.messages += messages;
        if !first && alarm.last_logged.elapsed() < REMIND_EVERY {
            return;
        }
        alarm.last_logged = now;
        let fix = match kind {
            FailureKind::Denied => format!(
                "the host needs {}",
                action.permission(&self.queue.arn, &self.bucket)
            ),
            FailureKind::Gone => "the queue no longer exists".to_string(),
            _ => "retrying cannot fix this; an operator must".to_string(),
        };
        tracing::error!(
            queue = %self.queue.name,
            action = action.api(),
            error = %detail,
            messages = alarm.messages,
            for_secs = alarm.since.elapsed().as_secs(),
            "{} refused on queue {}: {fix}",
            action.api(),
            self.queue.name,
        );
    }

    /// Records that `actions` work again; once no refusal is left the queue
    /// is up, and the recovery is logged.
    pub fn resolved(&self, actions: &[Action]) {
        let mut alarms = self.alarms.lock().expect("alarms lock");
        if alarms.is_empty() {
            return;
        }
        let down_for = alarms.values().map(|a| a.since.elapsed()).max();
        alarms.retain(|action, _| !actions.contains(action));
        if alarms.is_empty() {
            self.up.store(true, Ordering::Relaxed);
            tracing::info!(
                queue = %self.queue.name,
                down_secs = down_for.unwrap_or_default().as_secs(),
                "queue works again"
            );
        }
    }

    /// Records the queue's depth.
    pub fn set_depth(&self, depth: Depth) {
        *self.depth.lock().expect("depth lock") = Some(depth);
    }
}

/// The queues the host polls now, as `/metrics` reports them: `run` adds a
/// queue when it starts polling it and removes it once the queue's last
/// batches have settled (`--queue-prefix` follows the account, see
/// `discovery.rs`). Cheap to clone; every clone is the same set.
#[derive(Debug, Clone, Default)]
pub struct PolledQueues(Arc<Mutex<Vec<Arc<QueueHealth>>>>);

impl PolledQueues {
    /// Starts reporting `queue`.
    pub fn insert(&self, queue: Arc<QueueHealth>) {
        self.0.lock().expect("queues lock").push(queue);
    }

    /// Stops reporting the queue at `url`.
    pub fn remove(&self, url: &str) {
        self.0
            .lock()
            .expect("queues lock")
            .retain(|q| q.queue.url != url);
    }

    /// How many queues are polled.
    pub fn len(&self) -> usize {
        self.0.lock().expect("queues lock").len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queues now, in the order they were added.
    pub fn list(&self) -> Vec<Arc<QueueHealth>> {
        self.0.lock().expect("queues lock").clone()
    }
}

impl From<Vec<Arc<QueueHealth>>> for PolledQueues {
    fn from(queues: Vec<Arc<QueueHealth>>) -> Self {
        Self(Arc::new(Mutex::new(queues)))
    }
}

/// One per-queue series: name, type, help, and how to read it.
type Series = (
    &'static str,
    &'static str,
    &'static str,
    fn(&QueueHealth) -> Option<u64>,
);

/// The number of polled queues and each queue's series, in the Prometheus
/// text format.
pub fn prometheus(queues: &PolledQueues) -> String {
    render(&queues.list())
}

/// [`prometheus`] of a given list.
fn render(queues: &[Arc<QueueHealth>]) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "# HELP audit_archiver_queues Queues the host polls now (with --queue-prefix, as last listed).\n\
         # TYPE audit_archiver_queues gauge\naudit_archiver_queues {}\n",
        queues.len()
    );
    let series: [Series; 4] = [
        (
            "queue_up",
            "gauge",
            "1 while the host can receive, archive and delete on the queue; 0 while an operator must act.",
            |q| Some(q.is_up() as u64),
        ),
        (
            "queue_received_total",
            "counter",
            "Messages received from the queue, redeliveries included.",
            |q| Some(q.received.load(Ordering::Relaxed)),
        ),
        (
            "queue_archived_total",
            "counter",
            "Messages of the queue archived (or quarantined) and deleted.",
            |q| Some(q.archived.load(Ordering::Relaxed)),
        ),
        (
            "queue_delete_failures_total",
            "counter",
            "Messages of the queue archived but not deleted.",
            |q| Some(q.delete_failures.load(Ordering::Relaxed)),
        ),
    ];
    for (name, kind, help, value) in series {
        let _ = write!(
            out,
            "# HELP audit_archiver_{name} {help}\n# TYPE audit_archiver_{name} {kind}\n"
        );
        for queue in queues {
            if let Some(v) = value(queue) {
                let _ = writeln!(
                    out,
                    "audit_archiver_{name}{{queue=\"{}\"}} {v}",
                    label(&queue.queue.name)
                );
            }
        }
    }
    let depths: Vec<(String, Depth)> = queues
        .iter()
        .filter_map(|q| Some((label(&q.queue.name), (*q.depth.lock().ok()?)?)))
        .collect();
    if !depths.is_empty() {
        out.push_str(
            "# HELP audit_archiver_queue_messages Messages in the queue by state, as last read from SQS.\n\
             # TYPE audit_archiver_queue_messages gauge\n",
        );
        for (queue, depth) in depths {
            for (state, n) in [
                ("visible", depth.visible),
                ("in_flight", depth.in_flight),
                ("delayed", depth.delayed),
            ] {
                let _ = writeln!(
                    out,
                    "audit_archiver_queue_messages{{queue=\"{queue}\",state=\"{state}\"}} {n}"
                );
            }
        }
    }
    out
}

/// A label value: backslash, quote and newline escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue() -> QueueRef {
        QueueRef {
            url: "http://q".into(),
            name: "acme-q.fifo".into(),
            arn: "arn:aws:sqs:us-east-1:123456789012:acme-q.fifo".into(),
            fifo: true,
        }
    }

    #[test]
    fn a_refusal_marks_the_queue_down_until_it_works_again() {
        let health = QueueHealth::new(&queue(), "archive");
        assert!(health.is_up());
        health.refused(Action::Delete, FailureKind::Denied, "HTTP 403", 10);
        health.refused(Action::Delete, FailureKind::Denied, "HTTP 403", 10);
        assert!(!health.is_up());
        assert_eq!(health.alarms.lock().unwrap()[&Action::Delete].messages, 20);
        let text = render(std::slice::from_ref(&health));
        assert!(
            text.contains("audit_archiver_queue_up{queue=\"acme-q.fifo\"} 0\n"),
            "{text}"
        );
        health.refused(Action::Put, FailureKind::Denied, "HTTP 403", 1);
        health.resolved(&[Action::Delete]);
        assert!(!health.is_up(), "the put is still refused");
        health.resolved(&[Action::Put]);
        assert!(health.is_up());
        assert!(health.alarms.lock().unwrap().is_empty());
    }

    #[test]
    fn permissions_name_the_resource() {
        let q = queue();
        assert_eq!(
            Action::Delete.permission(&q.arn, "archive"),
            "sqs:DeleteMessage on arn:aws:sqs:us-east-1:123456789012:acme-q.fifo"
        );
        assert_eq!(
            Action::Put.permission(&q.arn, "archive"),
            "s3:PutObject on arn:aws:s3:::archive/*"
        );
    }

    #[test]
    fn depth_is_exported_once_known() {
        let health = QueueHealth::new(&queue(), "archive");
        assert!(!render(std::slice::from_ref(&health)).contains("queue_messages{"));
        health.set_depth(Depth {
            visible: 3,
            in_flight: 2,
            delayed: 1,
        });
        let queues = PolledQueues::default();
        queues.insert(health);
        let text = prometheus(&queues);
        assert!(text.contains("audit_archiver_queues 1\n"), "{text}");
        assert!(text.contains(
            "audit_archiver_queue_messages{queue=\"acme-q.fifo\",state=\"in_flight\"} 2\n"
        ));
        assert_eq!(label("a\"b\\c"), "a\\\"b\\\\c");
    }

    #[test]
    fn the_queue_gauge_follows_the_polled_set() {
        let queues = PolledQueues::default();
        assert!(prometheus(&queues).contains("\naudit_archiver_queues 0\n"));
        let mut other = queue();
        other.url = "http://other".into();
        other.name = "globex-q".into();
        queues.insert(QueueHealth::new(&queue(), "archive"));
        queues.insert(QueueHealth::new(&other, "archive"));
        let text = prometheus(&queues);
        assert!(text.contains("\naudit_archiver_queues 2\n"), "{text}");
        assert!(text.contains("queue_up{queue=\"globex-q\"} 1\n"), "{text}");
        queues.remove("http://other");
        let text = prometheus(&queues);
        assert!(text.contains("\naudit_archiver_queues 1\n"), "{text}");
        assert!(
            !text.contains("globex-q"),
            "a removed queue's series go: {text}"
        );
    }
}
