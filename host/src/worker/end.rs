//! How a queue's worker ends: what `--drain` left in the queue, and why.

use serde::Serialize;

/// Why a received message is still in its queue when a worker ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum LeftReason {
    /// Not stored (see the log for the reason).
    ArchiveFailed,
    /// Stored, but the delete failed.
    DeleteFailed,
}

/// What `--drain` left in the queues, and why; all zero when they were all
/// verified empty.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Left {
    /// Every message still in a queue.
    pub messages: u64,
    /// Never received: behind a stopped queue or a locked FIFO group, or
    /// arrived late.
    pub not_received: u64,
    /// Archived but not deleted (they come back and are recognised).
    pub delete_failed: u64,
    /// Received but not archived.
    pub archive_failed: u64,
    /// Queues not verified empty.
    pub queues: u64,
}

impl Left {
    /// Adds another queue's.
    pub fn add(&mut self, other: &Left) {
        self.messages += other.messages;
        self.not_received += other.not_received;
        self.delete_failed += other.delete_failed;
        self.archive_failed += other.archive_failed;
        self.queues += other.queues;
    }
}

/// How a queue's worker ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueEnd {
    /// `--drain` read the queue's depth as zero after its last receive, with
    /// nothing of its own left unsettled.
    pub verified_empty: bool,
    /// What is left, when not verified empty.
    pub left: Left,
    /// The queue no longer exists: a receive answered that it was deleted.
    pub gone: bool,
}
