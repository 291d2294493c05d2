//! One batch's life after routing: stored, then settled in SQS, its
//! visibility extended meanwhile so no other consumer receives it.

use std::time::Duration;

use tokio::sync::watch;

use super::Shared;
use crate::observe::health::{Action, QueueHealth};
use crate::route::Routed;
use crate::settle::{MessageQueue, SettleStage, Settled};
use crate::source::{Delivery, MessageSource, QueueRef};
use crate::store::{ArchiveStore, Origin, StoreStage};

/// Stores a routed batch, then deletes (or releases) its deliveries,
/// extending their visibility while the work outlasts half the timeout.
pub(super) async fn store_and_settle<Src: MessageSource + MessageQueue, St: ArchiveStore>(
    shared: &Shared<Src, St>,
    queue: &QueueRef,
    health: &QueueHealth,
    batch: Vec<Routed<Delivery>>,
    shutdown: watch::Receiver<bool>,
) -> Vec<Settled> {
    let receipts: Vec<String> = batch
        .iter()
        .map(|routed| routed.message.receipt_handle.clone())
        .collect();
    let store = StoreStage {
        store: &shared.store,
        settings: &shared.settings.store,
        counters: &shared.counters,
        shutdown: shutdown.clone(),
    };
    let settle = SettleStage {
        queue_client: &shared.source,
        queue,
        settings: &shared.settings.settle,
        counters: &shared.counters,
        shutdown,
    };
    let work = async {
        let stored = store.store(&Origin::from(queue), batch).await;
        settle.settle(stored).await
    };
    tokio::pin!(work);
    let half = Duration::from_secs((shared.settings.visibility_secs as u64 / 2).max(1));
    let mut heartbeat = tokio::time::interval_at(tokio::time::Instant::now() + half, half);
    loop {
        tokio::select! {
            settled = &mut work => return settled,
            _ = heartbeat.tick() => {
                tracing::debug!(queue = %queue.name, messages = receipts.len(), "extending visibility");
                let failures = settle.extend_visibility(&receipts, shared.settings.visibility_secs).await;
                // Not fatal: the messages may come back to another consumer,
                // which recognises them as archived.
                match failures.first() {
                    Some(failure) if !failure.kind.is_transient() => health.refused(
                        Action::ChangeVisibility,
                        failure.kind,
                        &failure.detail,
                        failures.len() as u64,
                    ),
                    Some(failure) => tracing::warn!(
                        queue = %queue.name, failed = failures.len(), error = %failure.detail,
                        "could not extend the visibility of messages being archived"
                    ),
                    None => health.resolved(&[Action::ChangeVisibility]),
                }
            }
        }
    }
}
