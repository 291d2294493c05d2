//! Routing the input: the same steps and output as the host's
//! `audit-archiver route` (host/src/commands/route.rs): records the host would
//! refuse before calling the component are refused here the same way, the rest
//! go to the router in batches, and every record gets one line, in order.

use std::io::{Read, Write};

use routing_client::{
    self as router, settings_error_parts, write_result, Message, RouteLine, TimeSource,
};

use crate::flags::{CommandError, Flags};
use crate::lambda_event::{self, EventRecord};

/// Records routed per call into the router.
const BATCH: usize = 1000;

/// Runs the command.
pub fn route(flags: Flags) -> Result<(), CommandError> {
    let settings = flags.settings;
    if let Err(e) = router::validate_settings(&settings) {
        let (case, detail) = settings_error_parts(&e);
        let flag = match case {
            "invalid-offset" => "--utc-offset",
            "invalid-tenant-override" => "--tenant-map",
            _ => "--key-template",
        };
        return Err(CommandError::Usage(format!(
            "invalid {flag}: {case}: {detail}"
        )));
    }
    let input = match &flags.event {
        Some(path) => std::fs::read_to_string(path)
            .map_err(|e| CommandError::Usage(format!("cannot read --event {path}: {e}")))?,
        None => {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| CommandError::Usage(format!("cannot read stdin: {e}")))?;
            text
        }
    };
    let records = lambda_event::parse(&input).map_err(|e| CommandError::Usage(e.to_string()))?;

    let mut out = Vec::with_capacity(records.len() * 128);
    let mut stdout = std::io::stdout().lock();
    for chunk in records.chunks(BATCH) {
        let prepared: Vec<Result<Message, String>> = chunk
            .iter()
            .map(|r| message(r, settings.time_source))
            .collect();
        let routable: Vec<Message> = prepared.iter().filter_map(|p| p.clone().ok()).collect();
        let mut routed = router::route_batch(&settings, &routable).into_iter();
        for (record, prepared) in chunk.iter().zip(&prepared) {
            match prepared {
                Err(error) => RouteLine::Failed {
                    message_id: &record.message_id,
                    error,
                }
                .write_to(&mut out),
                Ok(_) => {
                    let result = routed.next().expect("one result per routed message");
                    write_result(&mut out, &record.message_id, &result);
                }
            }
        }
        stdout.write_all(&out)?;
        out.clear();
    }
    stdout.flush()?;
    Ok(())
}

/// The message for the router, or why the record cannot be one (the host's
/// `invalid-record` and `invalid-time` refusals, word for word).
fn message(record: &EventRecord, time_source: TimeSource) -> Result<Message, String> {
    let (first_receive_ms, sent_ms) = record.times(
        matches!(time_source, TimeSource::FirstReceive),
        matches!(time_source, TimeSource::Sent),
    )?;
    Ok(Message {
        message_id: record.message_id.clone(),
        queue: record.queue.clone(),
        body: record.body.clone(),
        first_receive_ms,
        sent_ms,
    })
}
