//! How SQS settles a delivery: `DeleteMessageBatch` once it is archived,
//! `ChangeMessageVisibilityBatch` to keep it hidden while it is stored or to
//! release it at shutdown, ten entries a call.

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, ChangeMessageVisibilityBatchRequestEntry, DeleteMessageBatchRequestEntry,
};

use super::{MessageQueue, QueueFailure};
use crate::aws::{classify, describe, is_denied, FailureKind};
use crate::source::sqs::{SqsSource, MAX_BATCH};
use crate::source::QueueRef;

impl MessageQueue for SqsSource {
    async fn delete(&self, queue: &QueueRef, receipts: &[String]) -> Vec<QueueFailure> {
        in_batches(receipts, |chunk| {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            self.client()
                .delete_message_batch()
                .queue_url(&queue.url)
                .set_entries(Some(entries))
                .send()
        })
        .await
    }

    async fn set_visibility(
        &self,
        queue: &QueueRef,
        receipts: &[String],
        seconds: i32,
    ) -> Vec<QueueFailure> {
        in_batches(receipts, |chunk| {
            let entries = chunk
                .iter()
                .enumerate()
                .map(|(i, receipt)| {
                    ChangeMessageVisibilityBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(receipt)
                        .visibility_timeout(seconds)
                        .build()
                        .expect("id and receipt handle are set")
                })
                .collect();
            self.client()
                .change_message_visibility_batch()
                .queue_url(&queue.url)
                .set_entries(Some(entries))
                .send()
        })
        .await
    }
}

/// Runs a batch call (delete or visibility) over `receipts`, [`MAX_BATCH`]
/// at a time (`call` gets each chunk; an entry's id is its index in the
/// chunk), and gives the entries it could not do.
async fn in_batches<O, E, Call>(
    receipts: &[String],
    mut call: impl FnMut(&[String]) -> Call,
) -> Vec<QueueFailure>
where
    O: BatchFailures,
    E: ProvideErrorMetadata + std::error::Error + 'static,
    Call: std::future::Future<
        Output = Result<O, SdkError<E, aws_sdk_sqs::config::http::HttpResponse>>,
    >,
{
    let mut failures = Vec::new();
    for chunk in receipts.chunks(MAX_BATCH) {
        collect_failures(chunk, call(chunk).await, &mut failures);
    }
    failures
}

/// The entries a batch call (delete or visibility) could not do: all of
/// them when the call failed, else those it lists as failed.
fn collect_failures<O: BatchFailures, E: ProvideErrorMetadata + std::error::Error + 'static>(
    chunk: &[String],
    result: Result<O, SdkError<E, aws_sdk_sqs::config::http::HttpResponse>>,
    failures: &mut Vec<QueueFailure>,
) {
    match result {
        Ok(out) => failures.extend(out.failed_entries().iter().filter_map(|entry| {
            let receipt = chunk.get(entry.id().parse::<usize>().ok()?)?;
            let code = entry.code();
            Some(QueueFailure {
                receipt: receipt.clone(),
                kind: entry_failure_kind(code, entry.sender_fault()),
                detail: format!("{code}: {}", entry.message().unwrap_or("")),
            })
        })),
        Err(error) => {
            let (kind, detail) = (classify(&error), describe(&error));
            failures.extend(chunk.iter().map(|receipt| QueueFailure {
                receipt: receipt.clone(),
                kind,
                detail: detail.clone(),
            }));
        }
    }
}

/// A failed entry of a batch call: the sender's fault (an invalid or expired
/// receipt handle, a denied key) is permanent; SQS's own is transient.
fn entry_failure_kind(code: &str, sender_fault: bool) -> FailureKind {
    if is_denied(None, Some(code)) {
        FailureKind::Denied
    } else if sender_fault {
        FailureKind::Permanent
    } else {
        FailureKind::Transient
    }
}

/// The failed entries of an SQS batch response (delete or visibility),
/// which both calls report the same way.
trait BatchFailures {
    /// Each failed entry.
    fn failed_entries(&self) -> &[BatchResultErrorEntry];
}

impl BatchFailures for aws_sdk_sqs::operation::delete_message_batch::DeleteMessageBatchOutput {
    fn failed_entries(&self) -> &[BatchResultErrorEntry] {
        self.failed()
    }
}

impl BatchFailures
    for aws_sdk_sqs::operation::change_message_visibility_batch::ChangeMessageVisibilityBatchOutput
{
    fn failed_entries(&self) -> &[BatchResultErrorEntry] {
        self.failed()
    }
}
