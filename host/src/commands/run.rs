//! `audit-archiver run`: checks everything at start-up, then polls every
//! queue, routes each batch through the component, stores and settles it, and
//! stops cleanly on SIGINT/SIGTERM (or, with `--drain`, once every queue is
//! verified empty or cannot be emptied).

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{watch, Semaphore};

use super::{load_component, open_sealer, open_sink, CommandError, Exit};
use crate::config::{QueueSelection, RunConfig};
use crate::observe::health::PolledQueues;
use crate::observe::metrics::{self, Counters, Snapshot};
use crate::route::ComponentRouter;
use crate::source::sqs::SqsSource;
use crate::worker::discovery::{self, Discovery, Ended, Fleet};
use crate::worker::{Left, Shared, WorkerSettings};

/// How often each queue's depth is read for `/metrics`.
const DEPTH_EVERY: Duration = Duration::from_secs(60);

/// What `run` prints on stdout when it ends: the counters, and with
/// `--drain` what was left in the queues.
#[derive(Debug, Serialize)]
struct RunSummary {
    #[serde(flatten)]
    counters: Snapshot,
    #[serde(skip_serializing_if = "Option::is_none")]
    left: Option<Left>,
    /// What sealing did, when a digest key is given.
    #[serde(skip_serializing_if = "Option::is_none")]
    sealed: Option<crate::seal::Sealed>,
}

/// Runs `run`.
pub async fn run(config: RunConfig) -> Result<Exit, CommandError> {
    let component = load_component(&config.routing)?;
    let (clients, mut archive) = open_sink(&config.aws, &config.bucket, &config.objects).await?;
    let sealer = match &config.seal {
        Some(seal) => Some(open_sealer(&clients, &mut archive, seal)?),
        None => None,
    };
    let sqs = SqsSource::new(clients.sqs.clone());
    let queues = match &config.queues {
        QueueSelection::Listed(names) => {
            let mut queues = Vec::new();
            for name in names {
                queues.push(
                    sqs.resolve(name)
                        .await
                        .map_err(|e| CommandError::Startup(e.to_string()))?,
                );
            }
            queues
        }
        QueueSelection::Prefix(prefix) => sqs
            .discover(prefix)
            .await
            .map_err(|e| CommandError::Startup(e.to_string()))?,
    };
    let counters = Arc::new(Counters::default());
    let polled = PolledQueues::default();
    if let Some(addr) = config.metrics_addr {
        let listener = metrics::bind(addr).await.map_err(|e| {
            CommandError::Startup(format!("cannot listen on --metrics-addr {addr}: {e}"))
        })?;
        tokio::spawn(metrics::serve(listener, counters.clone(), polled.clone()));
    }
    tracing::info!(
        bucket = %config.bucket,
        queues = ?queues.iter().map(|q| q.name.as_str()).collect::<Vec<_>>(),
        component = component.origin(),
        key_template = %config.routing.settings.key_template,
        drain = config.drain,
        discovery_interval_secs = config.discovery_interval.map(|d| d.as_secs()),
        "audit-archiver started"
    );

    let (stop, shutdown) = watch::channel(false);
    tokio::spawn(super::stop_on_signal(
        stop,
        "stopping: no new receives; settling messages in hand (signal again to exit now)",
        "second signal: exiting now; unsettled messages reappear after their visibility timeout",
    ));
    let stats = config
        .stats_interval
        .map(|every| tokio::spawn(log_stats(counters.clone(), every)));

    let shared = Arc::new(Shared {
        source: sqs,
        store: archive,
        counters: counters.clone(),
        permits: Arc::new(Semaphore::new(config.concurrency)),
        settings: WorkerSettings {
            batch_size: config.receive_batch,
            wait_secs: config.wait_time_secs as i32,
            visibility_secs: config.visibility_timeout_secs as i32,
            drain: config.drain,
            depth_every: config.metrics_addr.map(|_| DEPTH_EVERY),
            store: config.store.clone(),
            settle: crate::settle::SettleSettings::default(),
        },
    });
    let sealing = sealer.map(crate::seal::Sealing::start);
    let time_source = config.routing.settings.time_source;
    let mut fleet = Fleet::new(
        shared,
        shutdown,
        &config.bucket,
        polled,
        Box::new(move |_| {
            Ok(ComponentRouter {
                instance: component.instance().map_err(|e| e.to_string())?,
                time_source,
            })
        }),
    );
    let mut left = Left::default();
    for queue in queues {
        if !fleet.add(queue) {
            left.queues += 1;
        }
    }
    let discovery = match (&config.queues, config.discovery_interval) {
        (QueueSelection::Prefix(prefix), Some(every)) => Some(Discovery {
            prefix: prefix.clone(),
            every,
        }),
        _ => None,
    };
    let ended = discovery::poll(&mut fleet, discovery).await;
    left.add(&fleet.left());
    if let Some(stats) = stats {
        stats.abort();
    }
    // One last pass, so a batch job leaves every closed period sealed.
    let sealed = match sealing {
        Some(sealing) => Some(sealing.finish().await),
        None => None,
    };
    let snapshot = counters.snapshot();
    snapshot.log("audit-archiver finished");
    let summary = RunSummary {
        counters: snapshot,
        left: config.drain.then_some(left),
        sealed,
    };
    println!(
        "{}",
        serde_json::to_string(&summary).expect("the summary serializes")
    );
    if ended == Ended::NoQueueLeft {
        tracing::error!("every queue was deleted: nothing is left to poll; stopping");
        return Ok(Exit::Failure);
    }
    if config.drain && left.queues > 0 {
        tracing::error!(
            queues = left.queues,
            left = left.messages,
            not_received = left.not_received,
            delete_failed = left.delete_failed,
            archive_failed = left.archive_failed,
            "drain incomplete: {} message(s) left in {} queue(s) ({} not received, {} not deleted, {} not archived)",
            left.messages, left.queues, left.not_received, left.delete_failed, left.archive_failed,
        );
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

async fn log_stats(counters: Arc<Counters>, every: Duration) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        ticker.tick().await;
        counters.snapshot().log("progress");
    }
}
