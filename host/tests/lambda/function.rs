//! The function under test and the event source mapping around it.
//!
//! [`Function`] starts the real binary the way Lambda starts a custom runtime:
//! as an executable named `bootstrap`, with no arguments, the Lambda variables
//! (`AWS_LAMBDA_RUNTIME_API` pointing at the [`RuntimeApi`] emulator) and the
//! function's settings in its environment.
//!
//! [`Mapping`] does what an SQS event source mapping does: it receives real
//! messages from moto (so message ids, receipt handles and attributes are
//! moto's own), wraps them in the SQS event Lambda sends (AWS Lambda Developer
//! Guide, "Using Lambda with Amazon SQS", example SQS message event), and after
//! the response deletes every message not named in `batchItemFailures`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use crate::runtime_api::{Outcome, RuntimeApi};
use audit_archiver_test_kit::{self as kit, binary, Moto};

/// A `bootstrap` process; killed on drop.
pub struct Function {
    child: Child,
    stderr: Option<std::thread::JoinHandle<Vec<u8>>>,
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A directory holding the binary as `bootstrap` (a symlink: argv0 is what
/// the binary sees).
pub fn package_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(kit::unique("lambda-package"));
    std::fs::create_dir_all(&dir).unwrap();
    std::os::unix::fs::symlink(binary(), dir.join("bootstrap")).unwrap();
    dir
}

impl Function {
    /// Starts `dir/bootstrap` against `api`, S3 at `endpoint`, bucket
    /// `bucket` (None: unset), plus `env`.
    pub fn start(
        dir: &Path,
        api: &RuntimeApi,
        endpoint: &str,
        bucket: Option<&str>,
        env: &[(&str, &str)],
    ) -> Function {
        let mut command = Command::new(dir.join("bootstrap"));
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_LAMBDA_RUNTIME_API", &api.address)
            .env("AWS_LAMBDA_FUNCTION_NAME", "audit-archiver")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/audit-archiver")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/27/[$LATEST]0123")
            .env("LAMBDA_TASK_ROOT", dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if let Some(bucket) = bucket {
            command.env("S3_BUCKET_NAME", bucket);
        }
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("starting bootstrap");
        let stderr = Some(kit::collect_pipe(child.stderr.take()));
        Function { child, stderr }
    }

    /// kill -9.
    pub fn kill9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Waits up to `limit` for the process to exit; its exit code and stderr.
    pub fn exit(mut self, limit: Duration) -> (Option<i32>, String) {
        let until = std::time::Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break Some(status);
            }
            if std::time::Instant::now() > until {
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let _ = self.child.kill();
        let _ = self.child.wait();
        let stderr = self.stderr.take().unwrap().join().unwrap();
        let code = status.and_then(|s| s.code());
        (code, String::from_utf8_lossy(&stderr).into_owned())
    }

    /// Stops the process; its stderr (the JSON log lines).
    pub fn logs(self) -> String {
        self.exit(Duration::ZERO).1
    }
}

/// One SQS queue with an event source mapping to the function.
pub struct Mapping {
    /// The queue URL.
    pub url: String,
    /// The queue ARN (`eventSourceARN`).
    pub arn: String,
}

impl Mapping {
    /// Creates queue `name` (FIFO if it ends in `.fifo`).
    pub async fn new(moto: &Moto, name: &str) -> Mapping {
        let url = moto.queue(name).await;
        let attributes = moto
            .sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .unwrap();
        let arn = attributes.attributes().unwrap()[&QueueAttributeName::QueueArn].clone();
        Mapping { url, arn }
    }

    /// Receives up to `max` (≤ 10) messages, hidden for `visibility_secs`,
    /// waiting up to `wait_secs`.
    pub async fn receive(
        &self,
        moto: &Moto,
        max: i32,
        visibility_secs: i32,
        wait_secs: i32,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        moto.sqs
            .receive_message()
            .queue_url(&self.url)
            .max_number_of_messages(max)
            .visibility_timeout(visibility_secs)
            .wait_time_seconds(wait_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .unwrap()
            .messages
            .unwrap_or_default()
    }

    /// Receives until `count` messages are in hand (each batch ≤ 10).
    pub async fn receive_all(
        &self,
        moto: &Moto,
        count: usize,
        visibility_secs: i32,
    ) -> Vec<aws_sdk_sqs::types::Message> {
        let mut messages = Vec::new();
        for _ in 0..50 {
            if messages.len() >= count {
                break;
            }
            let want = (count - messages.len()).min(10) as i32;
            messages.extend(self.receive(moto, want, visibility_secs, 1).await);
        }
        assert_eq!(messages.len(), count, "messages received from {}", self.url);
        messages
    }

    /// The SQS event Lambda would send for `messages`.
    pub fn event(&self, messages: &[aws_sdk_sqs::types::Message]) -> serde_json::Value {
        let records: Vec<serde_json::Value> = messages
            .iter()
            .map(|message| {
                let attributes: serde_json::Map<String, serde_json::Value> = message
                    .attributes()
                    .map(|all| {
                        all.iter()
                            .map(|(name, value)| (name.as_str().to_string(), value.clone().into()))
                            .collect()
                    })
                    .unwrap_or_default();
                serde_json::json!({
                    "messageId": message.message_id(),
                    "receiptHandle": message.receipt_handle(),
                    "body": message.body(),
                    "attributes": attributes,
                    "messageAttributes": {},
                    "md5OfBody": message.md5_of_body(),
                    "eventSource": "aws:sqs",
                    "eventSourceARN": self.arn,
                    "awsRegion": "us-east-1",
                })
            })
            .collect();
        serde_json::json!({ "Records": records })
    }

    /// Makes `messages` visible again at once, as if their visibility timeout
    /// had passed. (moto 5.2.5 mishandles several messages of one FIFO group
    /// timing out together: a receive then returns only the group's last
    /// ones. An explicit ChangeMessageVisibility 0 is handled correctly.)
    pub async fn time_out(&self, moto: &Moto, messages: &[aws_sdk_sqs::types::Message]) {
        for message in messages {
            moto.sqs
                .change_message_visibility()
                .queue_url(&self.url)
                .receipt_handle(message.receipt_handle().unwrap())
                .visibility_timeout(0)
                .send()
                .await
                .unwrap();
        }
    }

    /// What Lambda does with a partial batch response: deletes every message
    /// not reported as failed. Returns the ids deleted.
    pub async fn apply(
        &self,
        moto: &Moto,
        messages: &[aws_sdk_sqs::types::Message],
        outcome: &Outcome,
    ) -> Vec<String> {
        let failed = outcome.failures();
        let mut deleted = Vec::new();
        for message in messages {
            let id = message.message_id().unwrap().to_string();
            if failed.contains(&id) {
                continue;
            }
            moto.sqs
                .delete_message()
                .queue_url(&self.url)
                .receipt_handle(message.receipt_handle().unwrap())
                .send()
                .await
                .unwrap();
            deleted.push(id);
        }
        deleted
    }
}

/// The ids of `messages`, in order.
pub fn ids(messages: &[aws_sdk_sqs::types::Message]) -> Vec<String> {
    messages
        .iter()
        .map(|m| m.message_id().unwrap().to_string())
        .collect()
}

/// Every message id found in the bucket's `sqs-message-id` metadata, with the
/// number of objects carrying it.
pub async fn archived(moto: &Moto, bucket: &str) -> std::collections::BTreeMap<String, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for object in moto.objects(bucket).await.values() {
        *counts.entry(object.message_id().to_string()).or_insert(0) += 1;
    }
    counts
}
