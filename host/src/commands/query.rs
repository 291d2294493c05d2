//! `audit-archiver query`: prints the archived audit records of one tenant
//! and time range that match the filters, in time order, each with its
//! object key and archived time. Reads only the prefixes of the days asked
//! for, one prefix (a day, with the presets) at a time: its bodies are
//! fetched concurrently (bounded), its matching records sorted and printed,
//! then dropped, so memory follows the busiest day, not the range.

use std::io::Write;

use futures::stream::{self, StreamExt};
use serde_json::Value;

use super::verify::{open_archive, rfc3339, unreadable};
use super::{CommandError, Exit};
use crate::config::{QueryConfig, QueryFormat, RecordFilters};
use crate::read::reader::{FetchedObject, ListedObject, ReadError};

/// The record fields the CSV and table outputs show, in order.
const COLUMNS: &[&str] = &[
    "user",
    "ipAddress",
    "resourceType",
    "resourceName",
    "actionType",
    "action",
    "result",
];

/// One matching record, ready to print.
#[derive(Debug)]
struct Row {
    /// The record's own `timestamp` (epoch ms).
    record_ms: Option<i64>,
    /// What orders it: its `timestamp`, else the archive time, else when
    /// the object was stored.
    time_ms: i64,
    archive_ms: Option<i64>,
    key: String,
    index: usize,
    record: Value,
}

impl RecordFilters {
    /// Whether a record passes every filter given.
    pub fn matches(&self, record: &Value) -> bool {
        let exact = |field: &str, wanted: &Option<String>| match wanted {
            None => true,
            Some(wanted) => record.get(field).is_some_and(|v| match v {
                Value::String(s) => s == wanted,
                Value::Number(n) => wanted.parse::<serde_json::Number>().ok().as_ref() == Some(n),
                Value::Bool(b) => wanted.parse::<bool>().ok() == Some(*b),
                _ => false,
            }),
        };
        exact("user", &self.user)
            && exact("actionType", &self.action_type)
            && exact("result", &self.result)
            && exact("ipAddress", &self.ip)
            && exact("resourceType", &self.resource_type)
            && self
                .contains
                .as_deref()
                .is_none_or(|text| any_text_contains(record, text))
    }
}

/// Whether any string inside `value` contains `text`.
fn any_text_contains(value: &Value, text: &str) -> bool {
    match value {
        Value::String(s) => s.contains(text),
        Value::Array(items) => items.iter().any(|v| any_text_contains(v, text)),
        Value::Object(map) => map.values().any(|v| any_text_contains(v, text)),
        _ => false,
    }
}

/// Runs `query`.
pub async fn query(config: QueryConfig) -> Result<Exit, CommandError> {
    let startup = |e: String| CommandError::Startup(e);
    let reader = open_archive(&config.read).await?;
    let tenant = &config.tenant;
    let exists = reader
        .has_prefix(&format!("{tenant}/"))
        .await
        .map_err(|e| unreadable(&e))?;
    if !exists {
        return Err(startup(format!(
            "unknown --tenant {tenant:?}: s3://{}/ has no {tenant}/ prefix (run `audit-archiver verify --bucket {}` to list its tenants)",
            reader.bucket(),
            reader.bucket()
        )));
    }

    let layout = &config.read.layout;
    let offset = layout.utc_offset_minutes();
    let (first, last) = config.range.days(offset);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut problems = 0_u64;
    let header = match config.format {
        QueryFormat::Ndjson => Ok(()),
        QueryFormat::Csv => writeln!(out, "time,{},archived_at,key", COLUMNS.join(",")),
        QueryFormat::Table => writeln!(
            out,
            "{:<29}  {:<28}  {:<8}  {:<10}  {:<15}  RESOURCE  KEY",
            "TIME", "USER", "ACTION", "RESULT", "IP"
        ),
    };
    if let Err(error) = header {
        return finish_output(error);
    }
    for (prefix, days) in layout.prefixes(tenant, first, last) {
        let mut rows = Vec::new();
        let mut pages = reader.keys(&prefix);
        loop {
            let page = match pages.next_page().await {
                Ok(Some(page)) => page,
                Ok(None) => break,
                Err(error) => return Err(unreadable(&error)),
            };
            // Only the layout's keys of the days asked for (`verify`
            // reports the others).
            let listed: Vec<ListedObject> = page
                .into_iter()
                .filter(|object| {
                    layout
                        .shape(&object.key, tenant)
                        .is_some_and(|shape| shape.day.is_none_or(|day| days.contains(&day)))
                })
                .collect();
            let fetched: Vec<(ListedObject, Result<FetchedObject, ReadError>)> =
                stream::iter(listed)
                    .map(|listed| {
                        let reader = &reader;
                        async move {
                            let object = reader.get(&listed.key).await;
                            (listed, object)
                        }
                    })
                    .buffer_unordered(config.read.concurrency)
                    .collect()
                    .await;
            for (listed, object) in fetched {
                problems += collect_rows(&config, &listed, object, &mut rows);
            }
        }
        rows.sort_by(|a, b| (a.time_ms, &a.key, a.index).cmp(&(b.time_ms, &b.key, b.index)));
        for row in &rows {
            if let Err(error) = write_row(&mut out, config.format, row, offset) {
                return finish_output(error);
            }
        }
        if let Err(error) = out.flush() {
            return finish_output(error);
        }
    }
    if problems > 0 {
        eprintln!("query: {problems} object(s) or record(s) could not be read as audit records (listed above)");
        return Ok(Exit::Failure);
    }
    Ok(Exit::Success)
}

/// A closed stdout (`| head`) ends the output quietly; other errors fail.
fn finish_output(error: std::io::Error) -> Result<Exit, CommandError> {
    if error.kind() == std::io::ErrorKind::BrokenPipe {
        Ok(Exit::Success)
    } else {
        Err(CommandError::Runtime(anyhow::anyhow!(
            "writing the records: {error}"
        )))
    }
}

/// Adds an object's matching records to `rows`; returns how many problems
/// it reported on stderr (an unreadable object, a body that is not JSON, a
/// record that is not a JSON object).
fn collect_rows(
    config: &QueryConfig,
    listed: &ListedObject,
    object: Result<FetchedObject, ReadError>,
    rows: &mut Vec<Row>,
) -> u64 {
    let bucket = &config.read.bucket;
    let key = listed.key.as_str();
    let object = match object {
        Ok(object) => object,
        Err(error) => {
            eprintln!("query: s3://{bucket}/{key}: cannot read the object: {error}");
            return 1;
        }
    };
    let archive_ms = object
        .metadata
        .get(crate::store::metadata::ARCHIVE_TIME_MS)
        .and_then(|ms| ms.parse::<i64>().ok());
    if archive_ms.is_some_and(|ms| !config.range.contains(ms)) {
        return 0;
    }
    let body = match &object.body {
        Ok(body) => body,
        Err(error) => {
            eprintln!("query: s3://{bucket}/{key}: cannot read the body: {error}");
            return 1;
        }
    };
    let value: Value = match serde_json::from_slice(body) {
        Ok(value) => value,
        Err(error) => {
            eprintln!("query: s3://{bucket}/{key}: the body is not JSON ({error}); not searched");
            return 1;
        }
    };
    let records = match value {
        Value::Array(items) => items,
        other => vec![other],
    };
    let mut problems = 0;
    for (index, record) in records.into_iter().enumerate() {
        if !record.is_object() {
            eprintln!(
                "query: s3://{bucket}/{key}: record {index} is not a JSON object; not searched"
            );
            problems += 1;
            continue;
        }
        if !config.filters.matches(&record) {
            continue;
        }
        let record_ms = record.get("timestamp").and_then(Value::as_i64);
        let time_ms = record_ms
            .or(archive_ms)
            .or(listed.last_modified_ms)
            .unwrap_or(0);
        rows.push(Row {
            record_ms,
            time_ms,
            archive_ms,
            key: key.to_string(),
            index,
            record,
        });
    }
    problems
}

fn text(record: &Value, field: &str) -> String {
    match record.get(field) {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn csv_field(value: &str) -> String {
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

fn write_row(
    out: &mut impl Write,
    format: QueryFormat,
    row: &Row,
    offset: i16,
) -> std::io::Result<()> {
    let time = row.record_ms.map(|ms| rfc3339(ms, offset));
    let archived_at = row.archive_ms.map(|ms| rfc3339(ms, offset));
    match format {
        QueryFormat::Ndjson => {
            let line = serde_json::json!({
                "time": time,
                "archived_at": archived_at,
                "key": row.key,
                "record": row.record,
            });
            serde_json::to_writer(&mut *out, &line)?;
            writeln!(out)
        }
        QueryFormat::Csv => {
            let mut fields = vec![csv_field(time.as_deref().unwrap_or(""))];
            fields.extend(COLUMNS.iter().map(|c| csv_field(&text(&row.record, c))));
            fields.push(csv_field(archived_at.as_deref().unwrap_or("")));
            fields.push(csv_field(&row.key));
            writeln!(out, "{}", fields.join(","))
        }
        QueryFormat::Table => {
            let one_line = |s: String| s.replace(['\n', '\r', '\t'], " ");
            writeln!(
                out,
                "{:<29}  {:<28}  {:<8}  {:<10}  {:<15}  {}: {}  {}",
                time.as_deref().unwrap_or("-"),
                one_line(text(&row.record, "user")),
                one_line(text(&row.record, "actionType")),
                one_line(text(&row.record, "result")),
                one_line(text(&row.record, "ipAddress")),
                one_line(text(&row.record, "resourceType")),
                one_line(text(&row.record, "resourceName")),
                row.key
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_exact_and_contains_searches_every_text() {
        let record = serde_json::json!({
            "timestamp": 1, "user": "alice@example.com", "actionType": "UPDATE",
            "result": "Successful", "ipAddress": "203.0.113.7", "resourceType": "Policy",
            "resourceName": "Prod S3 policy", "nested": {"tags": ["blue"]}
        });
        let pass = |filters: RecordFilters| filters.matches(&record);
        assert!(pass(RecordFilters::default()));
        assert!(pass(RecordFilters {
            user: Some("alice@example.com".into()),
            action_type: Some("UPDATE".into()),
            result: Some("Successful".into()),
            ip: Some("203.0.113.7".into()),
            resource_type: Some("Policy".into()),
            contains: Some("S3 pol".into()),
        }));
        assert!(!pass(RecordFilters {
            user: Some("alice".into()),
            ..RecordFilters::default()
        }));
        assert!(!pass(RecordFilters {
            action_type: Some("update".into()),
            ..RecordFilters::default()
        }));
        assert!(pass(RecordFilters {
            contains: Some("blue".into()),
            ..RecordFilters::default()
        }));
        assert!(!pass(RecordFilters {
            contains: Some("s3 pol".into()),
            ..RecordFilters::default()
        }));
    }

    #[test]
    fn csv_fields_are_quoted_when_needed() {
        assert_eq!(csv_field("plain"), "plain");
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    }
}
