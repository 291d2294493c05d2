//! `audit-archiver route`: routes a Lambda-shaped SQS event or NDJSON of
//! records offline and prints one JSON line per record, in input order.

use std::io::{Read, Write};

use anyhow::Context;
use audit_archiver_transform::{Message, TimeSource};
use serde::Serialize;

use super::{load_component, CommandError, Exit};
use crate::config::RouteConfig;
use crate::route::RouteFailure;
use crate::source::lambda_event::{self, EventRecord};

/// Records routed per call into the component.
const BATCH: usize = 1000;

/// One output line.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum RouteLine<'a> {
    /// Where the record would be archived.
    Placed {
        /// The SQS message id.
        message_id: &'a str,
        /// The tenant.
        tenant: String,
        /// The object key.
        key: String,
    },
    /// Why it would not be.
    Failed {
        /// The SQS message id.
        message_id: &'a str,
        /// `case: detail`.
        error: String,
    },
}

/// Runs `route`.
pub fn route(config: RouteConfig) -> Result<Exit, CommandError> {
    let input = match &config.event {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            CommandError::Startup(format!("cannot read --event {}: {e}", path.display()))
        })?,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading the event from stdin")?;
            text
        }
    };
    let records = lambda_event::parse(&input).map_err(|e| CommandError::Startup(e.to_string()))?;
    let component = load_component(&config.routing)?;
    let mut router = component
        .instance()
        .map_err(|e| CommandError::Runtime(anyhow::anyhow!("{e}")))?;
    let time_source = config.routing.settings.time_source;

    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for chunk in records.chunks(BATCH) {
        // Records the host already knows to be bad are reported without a call.
        let prepared: Vec<Result<Message<'_>, String>> =
            chunk.iter().map(|r| message(r, time_source)).collect();
        let routable: Vec<Message<'_>> = prepared.iter().filter_map(|p| p.clone().ok()).collect();
        let mut routed = router.route_batch(&routable).into_iter();
        for (record, prepared) in chunk.iter().zip(&prepared) {
            let line = match prepared {
                Err(error) => RouteLine::Failed {
                    message_id: &record.message_id,
                    error: error.clone(),
                },
                Ok(_) => match routed.next().expect("one result per routed message") {
                    Ok(placement) => RouteLine::Placed {
                        message_id: &record.message_id,
                        tenant: placement.tenant,
                        key: placement.key,
                    },
                    Err(failure) => RouteLine::Failed {
                        message_id: &record.message_id,
                        error: failure_text(&failure),
                    },
                },
            };
            serde_json::to_writer(&mut out, &line).context("writing to stdout")?;
            out.write_all(b"\n").context("writing to stdout")?;
        }
    }
    out.flush().context("writing to stdout")?;
    Ok(Exit::Success)
}

fn failure_text(failure: &RouteFailure) -> String {
    failure.to_string()
}

/// The message for the component, or why the record cannot be one.
fn message(record: &EventRecord, time_source: TimeSource) -> Result<Message<'_>, String> {
    let (first_receive_ms, sent_ms) = record.times(
        time_source == TimeSource::FirstReceive,
        time_source == TimeSource::Sent,
    )?;
    Ok(Message {
        message_id: &record.message_id,
        queue: &record.queue,
        body: &record.body,
        first_receive_ms,
        sent_ms,
    })
}
