//! The SQS source. Resolves queues at start-up and lists them
//! (`--queue-prefix`, at start-up and again every `--discovery-interval-secs`),
//! long-polls them and reads their depth. Deleting and releasing deliveries
//! is the settle stage's (`settle/sqs.rs`), on the same client.

use std::collections::HashMap;

use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};

use super::{Delivery, Depth, MessageSource, QueueRef, ReceiveError, ReceivedMessage};
use aws_sdk_sqs::error::ProvideErrorMetadata;

use crate::aws::{classify, describe, is_gone};

/// SQS limits a batch call to ten entries.
pub const MAX_BATCH: usize = 10;

/// The SQS client and what the host does with it.
#[derive(Debug, Clone)]
pub struct SqsSource {
    client: aws_sdk_sqs::Client,
}

/// A queue cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// No queue of that name or URL.
    #[error("queue {0:?} does not exist (check --queue, --region and --endpoint-url)")]
    NotFound(String),
    /// No queue starts with the prefix.
    #[error("no queue name starts with {0:?} (check --queue-prefix, --region and --endpoint-url)")]
    NoneWithPrefix(String),
    /// Any other failure.
    #[error("cannot use queue {queue:?}: {detail}")]
    Other {
        /// The queue.
        queue: String,
        /// What failed.
        detail: String,
    },
}

impl SqsSource {
    /// The client, for the settle stage's calls on the same queues.
    pub(crate) fn client(&self) -> &aws_sdk_sqs::Client {
        &self.client
    }

    /// A source using `client`.
    pub fn new(client: aws_sdk_sqs::Client) -> Self {
        Self { client }
    }

    /// Resolves `--queue` values (URLs or names) to queues, checking each exists.
    pub async fn resolve(&self, queue: &str) -> Result<QueueRef, QueueError> {
        let url = if queue.starts_with("https://") || queue.starts_with("http://") {
            queue.to_string()
        } else {
            let name = audit_archiver_transform::queue::bare_queue_name(queue);
            match self.client.get_queue_url().queue_name(name).send().await {
                Ok(out) => out.queue_url().unwrap_or_default().to_string(),
                Err(error) if is_gone(error.code()) => {
                    return Err(QueueError::NotFound(queue.to_string()))
                }
                Err(error) => {
                    return Err(QueueError::Other {
                        queue: queue.to_string(),
                        detail: describe(&error),
                    })
                }
            }
        };
        self.describe_queue(queue, url).await
    }

    /// Every queue whose name starts with `prefix` (ListQueues, all pages),
    /// described; an error when there is none.
    pub async fn discover(&self, prefix: &str) -> Result<Vec<QueueRef>, QueueError> {
        let urls = self.list(prefix).await?;
        if urls.is_empty() {
            return Err(QueueError::NoneWithPrefix(prefix.to_string()));
        }
        let mut queues = Vec::with_capacity(urls.len());
        for url in urls {
            queues.push(self.describe(url).await?);
        }
        Ok(queues)
    }

    /// The URLs of every queue whose name starts with `prefix`, sorted:
    /// ListQueues, page after page (SQS gives at most 1,000 a page).
    pub async fn list(&self, prefix: &str) -> Result<Vec<String>, QueueError> {
        let mut urls = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .client
                .list_queues()
                .queue_name_prefix(prefix)
                .max_results(1000)
                .set_next_token(token)
                .send()
                .await
                .map_err(|error| QueueError::Other {
                    queue: format!("{prefix}*"),
                    detail: describe(&error),
                })?;
            urls.extend(page.queue_urls().iter().cloned());
            token = page.next_token().map(str::to_string);
            if token.is_none() {
                break;
            }
        }
        urls.sort();
        urls.dedup();
        Ok(urls)
    }

    /// A listed queue's name, ARN and type (GetQueueAttributes).
    pub async fn describe(&self, url: String) -> Result<QueueRef, QueueError> {
        self.describe_queue(&url.clone(), url).await
    }

    async fn describe_queue(&self, given: &str, url: String) -> Result<QueueRef, QueueError> {
        let result = self
            .client
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(QueueAttributeName::QueueArn)
            .attribute_names(QueueAttributeName::FifoQueue)
            .send()
            .await;
        let attributes = match result {
            Ok(out) => out.attributes().cloned().unwrap_or_default(),
            Err(error) if is_gone(error.code()) => {
                return Err(QueueError::NotFound(given.to_string()))
            }
            Err(error) => {
                return Err(QueueError::Other {
                    queue: given.to_string(),
                    detail: describe(&error),
                })
            }
        };
        let name = audit_archiver_transform::queue::bare_queue_name(&url).to_string();
        let fifo = attributes
            .get(&QueueAttributeName::FifoQueue)
            .map_or(name.ends_with(".fifo"), |v| v == "true");
        let arn = attributes
            .get(&QueueAttributeName::QueueArn)
            .cloned()
            .unwrap_or_else(|| format!("arn:aws:sqs:*:*:{name}"));
        Ok(QueueRef {
            url,
            name,
            arn,
            fifo,
        })
    }
}

impl MessageSource for SqsSource {
    /// One long poll: up to `max` messages, waiting up to `wait_secs`, hidden
    /// from other consumers for `visibility_secs`.
    async fn receive(
        &self,
        queue: &QueueRef,
        max: usize,
        wait_secs: i32,
        visibility_secs: i32,
    ) -> Result<Vec<Delivery>, ReceiveError> {
        let out = self
            .client
            .receive_message()
            .queue_url(&queue.url)
            .max_number_of_messages(max.clamp(1, MAX_BATCH) as i32)
            .wait_time_seconds(wait_secs)
            .visibility_timeout(visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .map_err(|error| ReceiveError {
                action: "ReceiveMessage",
                queue: queue.name.clone(),
                kind: classify(&error),
                detail: describe(&error),
            })?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                let empty = HashMap::new();
                let attributes = m.attributes().unwrap_or(&empty);
                let millis = |name: MessageSystemAttributeName| {
                    attributes.get(&name).and_then(|v| v.parse::<u64>().ok())
                };
                Some(Delivery {
                    receipt_handle: m.receipt_handle()?.to_string(),
                    message: ReceivedMessage {
                        message_id: m.message_id()?.to_string(),
                        body: m.body().unwrap_or_default().to_string(),
                        first_receive_ms: millis(
                            MessageSystemAttributeName::ApproximateFirstReceiveTimestamp,
                        ),
                        sent_ms: millis(MessageSystemAttributeName::SentTimestamp),
                        group_id: attributes
                            .get(&MessageSystemAttributeName::MessageGroupId)
                            .cloned(),
                    },
                })
            })
            .collect())
    }

    /// The queue's message counts (visible, in flight, delayed).
    async fn depth(&self, queue: &QueueRef) -> Result<Depth, ReceiveError> {
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(&queue.url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|error| ReceiveError {
                action: "GetQueueAttributes",
                queue: queue.name.clone(),
                kind: classify(&error),
                detail: describe(&error),
            })?;
        let attributes = out.attributes().cloned().unwrap_or_default();
        let count = |name: QueueAttributeName| {
            attributes
                .get(&name)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(Depth {
            visible: count(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: count(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: count(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }
}
