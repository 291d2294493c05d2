//! Where messages come from: SQS queues (`sqs.rs`, what `run` receives and
//! `discovery` lists), the SQS event Lambda hands a function
//! (`lambda_event.rs`), and the Prisma Cloud API that `backfill` pages through
//! (`prisma/`). Each yields [`ReceivedMessage`]s; SQS also gives each
//! delivery its receipt handle ([`Delivery`]), which only the settle stage
//! uses.

use std::future::Future;

use crate::aws::FailureKind;

pub mod lambda_event;
pub mod prisma;
pub mod sqs;

/// One message, as every source yields it: an SQS receive, a record of a
/// Lambda event, a record of the Prisma Cloud API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The SQS message id (for the API, the record's id).
    pub message_id: String,
    /// The body, as received.
    pub body: String,
    /// `ApproximateFirstReceiveTimestamp`, epoch ms.
    pub first_receive_ms: Option<u64>,
    /// `SentTimestamp`, epoch ms.
    pub sent_ms: Option<u64>,
    /// `MessageGroupId` (FIFO queues only).
    pub group_id: Option<String>,
}

/// One SQS delivery of a message: the message and the handle that deletes
/// or releases this delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The message.
    pub message: ReceivedMessage,
    /// The receipt handle of this delivery.
    pub receipt_handle: String,
}

impl AsRef<ReceivedMessage> for Delivery {
    fn as_ref(&self) -> &ReceivedMessage {
        &self.message
    }
}

impl AsRef<ReceivedMessage> for ReceivedMessage {
    fn as_ref(&self) -> &ReceivedMessage {
        self
    }
}

/// The queue a batch came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueRef {
    /// The queue URL (what SQS calls take).
    pub url: String,
    /// The bare queue name.
    pub name: String,
    /// The queue ARN (what IAM policies name).
    pub arn: String,
    /// Whether it is a FIFO queue.
    pub fifo: bool,
}

/// A queue's message counts, as `GetQueueAttributes` reports them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Depth {
    /// `ApproximateNumberOfMessages`: available to receive (in a FIFO queue,
    /// also those held behind a locked message group).
    pub visible: u64,
    /// `ApproximateNumberOfMessagesNotVisible`: received, not yet deleted.
    pub in_flight: u64,
    /// `ApproximateNumberOfMessagesDelayed`.
    pub delayed: u64,
}

impl Depth {
    /// Every message the queue holds.
    pub fn total(&self) -> u64 {
        self.visible + self.in_flight + self.delayed
    }
}

/// A failed receive (or depth read).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action} on {queue}: {detail}")]
pub struct ReceiveError {
    /// The call.
    pub action: &'static str,
    /// The queue name.
    pub queue: String,
    /// What failed.
    pub detail: String,
    /// Whether retrying may help, or a permission is missing.
    pub kind: FailureKind,
}

/// Where messages come from, as the worker needs it; settling them goes
/// through the settle stage's port (`crate::settle`).
pub trait MessageSource: Send + Sync + 'static {
    /// One receive: up to `max` messages, waiting up to `wait_secs` for the
    /// first, hidden from other consumers for `visibility_secs`.
    fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> impl Future<Output = Result<Vec<Delivery>, ReceiveError>> + Send;

    /// The queue's message counts.
    fn depth(&self, queue: &QueueRef) -> impl Future<Output = Result<Depth, ReceiveError>> + Send;
}
