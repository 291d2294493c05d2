//! `audit-archiver lambda` (and the executable started as `bootstrap`): an
//! SQS-triggered AWS Lambda function. Settings are validated and the
//! component, its instance and the S3 client are built once per execution
//! environment, at init; an invalid setting is reported to the Runtime API's
//! init-error endpoint, naming it. Each invocation routes its records in one
//! component call, stores them with `run`'s store stage
//! ([`StoreStage::store`]) and returns the ids not archived as
//! `batchItemFailures`; Lambda deletes the others. It never deletes itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use audit_archiver_transform::{Message, TimeSource};
use aws_lambda_events::event::sqs::{SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Diagnostic, LambdaEvent};
use tokio::sync::watch;
use tracing::Instrument;

use super::{load_component, CommandError, Exit};
use crate::config::{name_env, LambdaArgs, LambdaConfig};
use crate::observe::metrics::Counters;
use crate::route::{
    component_input, ComponentError, ComponentSource, Routed, RouterComponent, RouterInstance,
};
use crate::seal::{BucketDigests, Sealer};
use crate::source::{QueueRef, ReceivedMessage};
use crate::store::s3::S3Archive;
use crate::store::{Origin, Settlement, StoreSettings, StoreStage, Stored};

/// The variables the Lambda service sets for a custom runtime; the runtime
/// loop cannot start without them.
const RUNTIME_VARIABLES: [&str; 4] = [
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
    "AWS_LAMBDA_FUNCTION_VERSION",
];

/// Runs `lambda`.
pub fn lambda(args: LambdaArgs) -> Result<Exit, CommandError> {
    if let Some(path) = &args.precompile_to {
        crate::route::precompiled::write(path).map_err(CommandError::Runtime)?;
        eprintln!("wrote {}", path.display());
        return Ok(Exit::Success);
    }
    if let Some(missing) = RUNTIME_VARIABLES
        .iter()
        .find(|name| std::env::var_os(name).is_none())
    {
        return Err(CommandError::Startup(format!(
            "{missing} is not set: `audit-archiver lambda` runs inside AWS Lambda (as the \
             package's `bootstrap`), which sets it; use `audit-archiver run` elsewhere"
        )));
    }
    let validated = args.validate();
    // One thread: an execution environment runs one invocation at a time, and
    // its records' requests interleave on one thread at less CPU than work
    // stealing across several costs (BENCHMARKS.md, section 8).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| CommandError::Runtime(e.into()))?;
    runtime.block_on(async move {
        let config = match validated {
            Ok(config) => config,
            Err(error) => {
                report_init_error("Runtime.InvalidSetting", &error.0).await;
                return Err(CommandError::Startup(error.0));
            }
        };
        crate::observe::init_logging(config.routing.log_format);
        let function = match Function::init(&config).await {
            Ok(function) => std::sync::Arc::new(function),
            Err(message) => {
                tracing::error!(error = %message, "init failed");
                report_init_error("Runtime.InitFailed", &message).await;
                return Err(CommandError::Startup(message));
            }
        };
        lambda_runtime::run(lambda_runtime::service_fn(
            move |event: LambdaEvent<serde_json::Value>| {
                let function = function.clone();
                async move { function.invoke(event).await }
            },
        ))
        .await
        .map_err(|e| {
            CommandError::Runtime(anyhow::anyhow!("the Lambda runtime loop ended: {e}"))
        })?;
        Ok(Exit::Success)
    })
}

/// Tells Lambda that init failed and why (`POST /runtime/init/error`, the
/// Runtime API's documented body); Lambda then logs it and fails the
/// invocation without sending any event.
async fn report_init_error(error_type: &str, message: &str) {
    use lambda_runtime_api_client::{body::Body, build_request, Client};
    let body = serde_json::json!({
        "errorMessage": message,
        "errorType": error_type,
        "stackTrace": [],
    });
    let request = build_request()
        .method("POST")
        .uri("/2018-06-01/runtime/init/error")
        .header("Lambda-Runtime-Function-Error-Type", error_type)
        .header("Content-Type", "application/json")
        .body(Body::from(body.to_string()));
    let sent = match (Client::builder().build(), request) {
        (Ok(client), Ok(request)) => client.call(request).await.map(|_| ()),
        (Err(e), _) => Err(e.into()),
        (_, Err(e)) => Err(e.into()),
    };
    if let Err(error) = sent {
        eprintln!("error: cannot report the init error to the Runtime API: {error}");
    }
}

/// What lives as long as the execution environment.
struct Function {
    router: Mutex<RouterInstance>,
    archive: S3Archive,
    /// Seals on scheduled invocations (an EventBridge rule): SQS
    /// invocations alone never see an hour in which nothing arrived.
    sealer: Option<Sealer<BucketDigests>>,
    store: StoreSettings,
    time_source: TimeSource,
    deadline_margin: Duration,
}

impl Function {
    /// Loads the component (precompiled when the package has it), builds the
    /// S3 client and checks the bucket. An error names the setting.
    async fn init(config: &LambdaConfig) -> Result<Function, String> {
        let started = Instant::now();
        let component = match &config.precompiled {
            Some(path) => RouterComponent::load(
                ComponentSource::Precompiled(path),
                &config.routing.settings,
                config.routing.limits,
                None,
            )
            .map_err(|error| match error {
                ComponentError::Settings(e) => crate::config::settings_error_message(&e),
                other => format!("invalid --precompiled: {other}"),
            }),
            None => {
                if config.routing.component.is_none() {
                    // Not an error (the function works), but every cold
                    // start pays Cranelift's ~100 ms: say how to avoid it.
                    tracing::warn!(
                        "no {} in $LAMBDA_TASK_ROOT or beside the executable: compiling the \
                         component at init; package with scripts/package-lambda.sh",
                        crate::config::PRECOMPILED_FILE
                    );
                }
                load_component(&config.routing).map_err(|e| e.to_string())
            }
        }
        .map_err(|message| name_env(crate::config::ConfigError(message)).0)?;
        let router = component.instance().map_err(|e| e.to_string())?;
        let clients = crate::aws::clients(&config.aws)
            .await
            .map_err(|e| name_env(crate::config::ConfigError(e.to_string())).0)?;
        let mut archive = S3Archive::new(
            clients.s3.clone(),
            config.bucket.clone(),
            config.objects.clone(),
        );
        archive
            .check_bucket()
            .await
            .map_err(|e| format!("S3_BUCKET_NAME (--bucket): {e}"))?;
        let sealer = match &config.seal {
            Some(seal) => Some(
                super::open_sealer(&clients, &mut archive, seal)
                    .map_err(|e| name_env(crate::config::ConfigError(e.to_string())).0)?,
            ),
            None => None,
        };
        tracing::info!(
            bucket = %config.bucket,
            component = component.origin(),
            key_template = %config.routing.settings.key_template,
            init_ms = started.elapsed().as_millis() as u64,
            "audit-archiver function ready"
        );
        Ok(Function {
            router: Mutex::new(router),
            archive,
            sealer,
            store: config.store.clone(),
            time_source: config.routing.settings.time_source,
            deadline_margin: config.deadline_margin,
        })
    }

    /// An SQS event is archived; a scheduled event (EventBridge) seals.
    async fn invoke(
        &self,
        event: LambdaEvent<serde_json::Value>,
    ) -> Result<serde_json::Value, InvalidEvent> {
        let (event, context) = event.into_parts();
        let deadline = UNIX_EPOCH + Duration::from_millis(context.deadline);
        let span = tracing::info_span!("invocation", request_id = %context.request_id);
        if is_scheduled(&event) {
            return self.seal().instrument(span).await;
        }
        let event: SqsEvent = serde_json::from_value(event).map_err(|e| {
            InvalidEvent(format!(
                "neither an SQS event nor a scheduled event (EventBridge): {e}"
            ))
        })?;
        let response = self
            .settle_event(event, deadline, &context.request_id)
            .instrument(span)
            .await?;
        // What was stored is written down for the sealer before the
        // environment may be frozen (one small PUT per tenant).
        if let Some(sealer) = &self.sealer {
            sealer.flush_manifest().await;
        }
        Ok(serde_json::to_value(response).expect("a batch response serialises"))
    }

    /// Seals every closed period; a failure fails the invocation, so the
    /// scheduler's retry (or the next tick) completes it.
    async fn seal(&self) -> Result<serde_json::Value, InvalidEvent> {
        let Some(sealer) = &self.sealer else {
            return Err(InvalidEvent(
                "a scheduled invocation seals digests, but no digest key is set: set AUDIT_ARCHIVER_DIGEST_KMS_KEY_ID (--digest-kms-key-id)".into(),
            ));
        };
        let sealed = sealer
            .seal_all(crate::seal::now_ms())
            .await
            .map_err(|e| InvalidEvent(format!("sealing failed: {e}")))?;
        tracing::info!(
            digests_written = sealed.digests_written,
            digests_found = sealed.digests_found,
            chains = sealed.chains,
            "sealed"
        );
        Ok(serde_json::json!({ "sealed": sealed }))
    }

    async fn settle_event(
        &self,
        event: SqsEvent,
        deadline: SystemTime,
        request_id: &str,
    ) -> Result<SqsBatchResponse, InvalidEvent> {
        let started = Instant::now();
        let records = records(event.records)?;

        // Stores per source queue (an event source mapping sends one queue's
        // messages, but nothing here depends on it).
        let mut queues: BTreeMap<&str, (Origin<'_>, Vec<Routed<&Record>>)> = BTreeMap::new();
        for routed in self.route(&records) {
            let queue = &routed.message.queue;
            queues
                .entry(&queue.arn)
                .or_insert_with(|| (Origin::from(queue), Vec::new()))
                .1
                .push(routed);
        }

        let remaining = deadline
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO);
        let stop_puts = remaining.saturating_sub(self.deadline_margin);
        let respond_by = remaining.saturating_sub(self.deadline_margin / 3);
        // No new PUT starts once `stop_puts` has passed (they are Released).
        let (stop, shutdown) = watch::channel(stop_puts.is_zero());
        let counters = Counters::default();
        let stage = StoreStage {
            store: &self.archive,
            settings: &self.store,
            counters: &counters,
            shutdown,
        };
        let work = futures::future::join_all(queues.into_values().map(|(origin, batch)| {
            let stage = &stage;
            async move { stage.store(&origin, batch).await }
        }));
        let clock = async {
            tokio::time::sleep(stop_puts).await;
            let _ = stop.send(true);
            tokio::time::sleep(respond_by.saturating_sub(stop_puts)).await;
        };
        let stored: Vec<Stored<&Record>> = tokio::select! {
            stored = work => stored.into_iter().flatten().collect(),
            // PUTs still in flight are abandoned: their records are reported,
            // and a redelivery finds whatever landed (same message id).
            () = clock => Vec::new(),
        };

        // `batchItemFailures` names messages by id: a record is reported
        // unless its message was archived (if an id came twice, unless both were).
        let mut outcome: HashMap<&str, &Settlement> = HashMap::new();
        for Stored {
            message,
            settlement,
        } in &stored
        {
            let id = message.message.message_id.as_str();
            if outcome.get(id).is_none_or(|held| held.deletable()) {
                outcome.insert(id, settlement);
            }
        }
        let outcome = |record: &Record| outcome.get(record.message.message_id.as_str()).copied();
        let failures: Vec<&str> = records
            .iter()
            .filter(|record| !outcome(record).is_some_and(Settlement::deletable))
            .map(|record| record.message.message_id.as_str())
            .collect();
        let unfinished: Vec<&str> = records
            .iter()
            .filter(|record| matches!(outcome(record), None | Some(Settlement::Released)))
            .map(|record| record.message.message_id.as_str())
            .collect();
        if !unfinished.is_empty() {
            tracing::warn!(
                message_ids = ?unfinished,
                remaining_ms = remaining.as_millis() as u64,
                "deadline near: records left unfinished are reported as failures"
            );
        }
        let summary = counters.snapshot();
        tracing::info!(
            request_id,
            records = records.len(),
            stored = summary.stored,
            collisions = summary.collisions,
            already_present = summary.already_present,
            quarantined = summary.quarantined,
            failed = summary.failed,
            unfinished = unfinished.len(),
            retries = summary.retries,
            batch_item_failures = failures.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "invocation settled"
        );
        let mut response = SqsBatchResponse::default();
        for id in failures {
            response.add_failure(id);
        }
        Ok(response)
    }

    /// One component call for the whole event.
    fn route<'r>(&self, records: &'r [Record]) -> Vec<Routed<&'r Record>> {
        let routes = {
            // The ARN: the component takes the queue name from it.
            let inputs: Vec<Message<'_>> = records
                .iter()
                .map(|record| component_input(&record.message, &record.queue.arn, self.time_source))
                .collect();
            self.router
                .lock()
                .expect("a routing call never panics while holding the instance")
                .route_batch(&inputs)
        };
        Routed::pair(records.iter().collect(), routes)
    }
}

/// One record of the event, as the stages see it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Record {
    /// From the record's `eventSourceARN` (`url` too: no SQS call is made).
    queue: QueueRef,
    message: ReceivedMessage,
}

impl AsRef<ReceivedMessage> for Record {
    fn as_ref(&self) -> &ReceivedMessage {
        &self.message
    }
}

/// An event that cannot be answered record by record: Lambda retries the
/// whole batch (and, after the redrive policy's count, moves it to the DLQ).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct InvalidEvent(String);

impl From<InvalidEvent> for Diagnostic {
    fn from(error: InvalidEvent) -> Diagnostic {
        Diagnostic {
            error_type: "InvalidEvent".into(),
            error_message: error.0,
        }
    }
}

/// An EventBridge scheduled event (`"source": "aws.events"`, `"detail-type":
/// "Scheduled Event"`), as the rule in deploy/cloudformation.yaml sends.
fn is_scheduled(event: &serde_json::Value) -> bool {
    event.get("Records").is_none()
        && (event.get("source").and_then(|s| s.as_str()) == Some("aws.events")
            || event.get("detail-type").and_then(|s| s.as_str()) == Some("Scheduled Event"))
}

/// The records, in event order. A record without a `messageId` cannot be named
/// in `batchItemFailures`, so it fails the whole invocation.
fn records(messages: Vec<SqsMessage>) -> Result<Vec<Record>, InvalidEvent> {
    messages
        .into_iter()
        .enumerate()
        .map(|(index, message)| {
            let message_id = message
                .message_id
                .filter(|id| !id.is_empty())
                .ok_or_else(|| {
                    InvalidEvent(format!(
                        "record {index} has no messageId, so it cannot be reported in \
                         batchItemFailures: is this an SQS event?"
                    ))
                })?;
            let arn = message.event_source_arn.unwrap_or_default();
            let name = audit_archiver_transform::queue::bare_queue_name(&arn).to_string();
            let millis = |name: &str| message.attributes.get(name)?.parse::<u64>().ok();
            Ok(Record {
                queue: QueueRef {
                    fifo: name.ends_with(".fifo"),
                    name,
                    // No SQS call is ever made with it: Lambda deletes.
                    url: arn.clone(),
                    arn,
                },
                message: ReceivedMessage {
                    first_receive_ms: millis("ApproximateFirstReceiveTimestamp"),
                    sent_ms: millis("SentTimestamp"),
                    group_id: message.attributes.get("MessageGroupId").cloned(),
                    message_id,
                    body: message.body.unwrap_or_default(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(json: serde_json::Value) -> Vec<SqsMessage> {
        serde_json::from_value::<SqsEvent>(json).unwrap().records
    }

    #[test]
    fn records_carry_queue_group_and_times_from_the_documented_event_shape() {
        let records = records(event(serde_json::json!({"Records": [{
            "messageId": "m1",
            "receiptHandle": "r1",
            "body": "{}",
            "attributes": {
                "ApproximateReceiveCount": "1",
                "SentTimestamp": "1750991540000",
                "ApproximateFirstReceiveTimestamp": "1750991540913",
                "MessageGroupId": "g1"
            },
            "messageAttributes": {},
            "eventSource": "aws:sqs",
            "eventSourceARN": "arn:aws:sqs:ap-northeast-1:123456789012:acme-auditlog.fifo",
            "awsRegion": "ap-northeast-1"
        }]})))
        .unwrap();
        assert_eq!(records[0].queue.name, "acme-auditlog.fifo");
        assert!(records[0].queue.fifo);
        assert_eq!(records[0].message.first_receive_ms, Some(1_750_991_540_913));
        assert_eq!(records[0].message.sent_ms, Some(1_750_991_540_000));
        assert_eq!(records[0].message.group_id.as_deref(), Some("g1"));
    }

    #[test]
    fn a_record_without_a_message_id_fails_the_whole_event() {
        let error = records(event(serde_json::json!({"Records": [
            {"messageId": "m1", "body": "x"},
            {"body": "y"}
        ]})))
        .unwrap_err();
        assert!(error.0.contains("record 1"), "{error}");
    }
}
