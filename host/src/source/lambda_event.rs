//! Input of `route`: a Lambda-shaped SQS event (`{"Records": [...]}`) or NDJSON
//! whose lines are records or whole events. Records keep their input order.

use serde::Deserialize;
use serde_json::Value;

/// One SQS record of a Lambda event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    /// `messageId`.
    pub message_id: String,
    /// `body`.
    pub body: String,
    /// `eventSourceARN` (or `queue`/`queueUrl` when given instead).
    pub queue: String,
    /// `attributes.ApproximateFirstReceiveTimestamp`; an error if present but
    /// not epoch milliseconds.
    pub first_receive_ms: Result<Option<u64>, String>,
    /// `attributes.SentTimestamp`, likewise.
    pub sent_ms: Result<Option<u64>, String>,
    /// Why the record cannot be routed as given (e.g. a body that is not a string).
    pub problem: Option<String>,
}

impl EventRecord {
    /// The record's times for the router (first receive, sent), or why it
    /// cannot be routed: the record's own problem (`invalid-record`), or a
    /// garbage attribute that is the chosen time (`invalid-time`; one that is
    /// not chosen does not matter). The texts are `route`'s refusals.
    pub fn times(
        &self,
        first_receive_chosen: bool,
        sent_chosen: bool,
    ) -> Result<(Option<u64>, Option<u64>), String> {
        if let Some(problem) = &self.problem {
            return Err(format!(
                "invalid-record: message {:?}: {problem}",
                self.message_id
            ));
        }
        let time = |value: &Result<Option<u64>, String>, chosen: bool| match value {
            Ok(ms) => Ok(*ms),
            Err(problem) if chosen => Err(format!(
                "invalid-time: message {:?}: {problem}",
                self.message_id
            )),
            Err(_) => Ok(None),
        };
        Ok((
            time(&self.first_receive_ms, first_receive_chosen)?,
            time(&self.sent_ms, sent_chosen)?,
        ))
    }
}

/// The input is not an event at all.
#[derive(Debug, thiserror::Error)]
#[error("invalid --event input: {0}")]
pub struct EventError(String);

#[derive(Deserialize)]
struct RawRecord {
    #[serde(rename = "messageId", default)]
    message_id: Option<String>,
    #[serde(default)]
    body: Option<Value>,
    #[serde(
        rename = "eventSourceARN",
        alias = "eventSourceArn",
        alias = "queueUrl",
        alias = "queue",
        default
    )]
    queue: Option<String>,
    #[serde(default)]
    attributes: serde_json::Map<String, Value>,
}

/// Parses the whole input.
pub fn parse(input: &str) -> Result<Vec<EventRecord>, EventError> {
    let trimmed = input.trim_start();
    // A single JSON document (possibly pretty-printed) or NDJSON.
    if let Ok(document) = serde_json::from_str::<Value>(trimmed) {
        let mut records = Vec::new();
        collect(document, 1, &mut records)?;
        return Ok(records);
    }
    let mut records = Vec::new();
    for (index, line) in input.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| EventError(format!("line {}: not JSON: {e}", index + 1)))?;
        collect(value, index + 1, &mut records)?;
    }
    Ok(records)
}

fn collect(value: Value, line: usize, out: &mut Vec<EventRecord>) -> Result<(), EventError> {
    match value {
        Value::Object(mut object) if object.contains_key("Records") => {
            match object.remove("Records") {
                Some(Value::Array(items)) => {
                    for item in items {
                        out.push(record(item, line)?);
                    }
                    Ok(())
                }
                _ => Err(EventError(format!(
                    "line {line}: \"Records\" is not an array"
                ))),
            }
        }
        Value::Array(items) => {
            for item in items {
                collect(item, line, out)?;
            }
            Ok(())
        }
        other => {
            out.push(record(other, line)?);
            Ok(())
        }
    }
}

fn record(value: Value, line: usize) -> Result<EventRecord, EventError> {
    let raw: RawRecord = serde_json::from_value(value)
        .map_err(|e| EventError(format!("line {line}: not an SQS record: {e}")))?;
    // A missing id or queue is left empty for the component to reject.
    let (body, problem) = match raw.body {
        Some(Value::String(body)) => (body, None),
        Some(other) => {
            let problem = format!("body is {} rather than a string", kind(&other));
            (other.to_string(), Some(problem))
        }
        None => (String::new(), None),
    };
    let millis = |name: &str| match raw.attributes.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
            .parse()
            .map(Some)
            .map_err(|_| format!("attributes.{name} {s:?} is out of range")),
        Some(Value::Number(n)) if n.as_u64().is_some() => Ok(n.as_u64()),
        Some(other) => Err(format!(
            "attributes.{name} {other} is not epoch milliseconds"
        )),
    };
    Ok(EventRecord {
        message_id: raw.message_id.unwrap_or_default(),
        queue: raw.queue.unwrap_or_default(),
        first_receive_ms: millis("ApproximateFirstReceiveTimestamp"),
        sent_ms: millis("SentTimestamp"),
        body,
        problem,
    })
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORD: &str = r#"{"messageId":"m1","body":"{\"timestamp\":1}","eventSourceARN":"arn:aws:sqs:ap-northeast-1:123456789012:acme-q.fifo","attributes":{"ApproximateFirstReceiveTimestamp":"1750991540913","SentTimestamp":"1750991540000"}}"#;

    #[test]
    fn reads_a_lambda_event_in_order() {
        let event = format!(r#"{{"Records":[{RECORD},{}]}}"#, RECORD.replace("m1", "m2"));
        let records = parse(&event).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].message_id, "m1");
        assert_eq!(records[1].message_id, "m2");
        assert_eq!(records[0].first_receive_ms, Ok(Some(1_750_991_540_913)));
        assert_eq!(records[0].sent_ms, Ok(Some(1_750_991_540_000)));
        assert_eq!(records[0].body, "{\"timestamp\":1}");
        assert_eq!(records[0].problem, None);
    }

    #[test]
    fn reads_ndjson_of_records_and_events() {
        let input = format!(
            "{RECORD}\n\n{{\"Records\":[{}]}}\n",
            RECORD.replace("m1", "m2")
        );
        let ids: Vec<String> = parse(&input)
            .unwrap()
            .into_iter()
            .map(|r| r.message_id)
            .collect();
        assert_eq!(ids, ["m1", "m2"]);
    }

    #[test]
    fn garbage_attributes_are_reported_not_guessed() {
        let input = RECORD.replace("\"1750991540913\"", "\"soon\"");
        let record = &parse(&input).unwrap()[0];
        assert!(record
            .first_receive_ms
            .as_ref()
            .unwrap_err()
            .contains("ApproximateFirstReceiveTimestamp"));
        assert_eq!(record.sent_ms, Ok(Some(1_750_991_540_000)));
    }

    #[test]
    fn non_json_input_is_an_error_naming_the_line() {
        let error = parse(&format!("{RECORD}\nnot json\n"))
            .unwrap_err()
            .to_string();
        assert!(error.contains("line 2"), "{error}");
    }
}
