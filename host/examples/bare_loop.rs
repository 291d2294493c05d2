//! The ceiling for `audit-archiver run --drain`: the same SQS/S3 work with the
//! same AWS SDK, no component and no delivery rules beyond the bare minimum.
//!
//! Per queue: receive up to min(concurrency, 10) messages with their system
//! attributes, PUT each one concurrently, then delete the batch with one
//! DeleteMessageBatch; at most `concurrency` messages are being stored at once
//! across all queues. Stops when a receive comes back empty and nothing is in
//! flight. Used by `bench/e2e.sh` and `bench/endpoint.sh`.
//!
//! Each PUT is the request the host sends for the same message, so the two
//! are compared like with like: `If-None-Match: *`, the SHA-256 checksum and
//! its algorithm header, `Content-Type`, the same user metadata (message id,
//! queue, tenant, archive time, first-receive and sent times, FIFO group) and
//! a key of the default template's shape and length (JST date and time of the
//! first receive, computed here with chrono instead of the component), and
//! the clients are built by the host's `aws::clients` (same retries,
//! timeouts and SDK settings).
//!
//! cargo run --release -p audit-archiver --example bare_loop -- \
//!     --endpoint-url http://127.0.0.1:5000 --bucket B --concurrency 32 --queue URL [--queue URL ...]

use std::sync::Arc;
use std::time::Instant;

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ChecksumAlgorithm;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName};
use chrono::{FixedOffset, TimeZone};
use sha2::{Digest, Sha256};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

struct Shared {
    s3: aws_sdk_s3::Client,
    sqs: aws_sdk_sqs::Client,
    bucket: String,
    permits: Arc<Semaphore>,
    batch: usize,
    wait_secs: i32,
}

#[tokio::main]
async fn main() {
    let mut endpoint = None;
    let mut bucket = None;
    let mut concurrency = 32usize;
    let mut wait_secs = 0i32;
    let mut queues = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().unwrap_or_else(|| panic!("{arg} needs a value"));
        match arg.as_str() {
            "--endpoint-url" => endpoint = Some(value()),
            "--bucket" => bucket = Some(value()),
            "--concurrency" => concurrency = value().parse().expect("--concurrency N"),
            "--wait-time-secs" => wait_secs = value().parse().expect("--wait-time-secs N"),
            "--queue" => queues.push(value()),
            other => panic!("unknown argument {other}"),
        }
    }
    // The host's own client settings (retries, timeouts, path style, no
    // stalled-stream protection for SQS), so the SDK does the same work.
    let clients = audit_archiver::aws::clients(&audit_archiver::aws::AwsSettings {
        endpoint_url: endpoint,
        region: Some("us-east-1".to_string()),
        max_attempts: 5,
    })
    .await
    .expect("a region is given");
    let shared = Arc::new(Shared {
        s3: clients.s3,
        sqs: clients.sqs,
        bucket: bucket.expect("--bucket B"),
        permits: Arc::new(Semaphore::new(concurrency)),
        batch: concurrency.clamp(1, 10),
        wait_secs,
    });
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for queue in queues {
        workers.spawn(drain_queue(shared.clone(), queue));
    }
    let mut archived = 0u64;
    while let Some(done) = workers.join_next().await {
        archived += done.expect("worker");
    }
    println!(
        "{{\"archived\":{archived},\"seconds\":{:.3}}}",
        started.elapsed().as_secs_f64()
    );
}

async fn drain_queue(shared: Arc<Shared>, queue: String) -> u64 {
    let name = queue.rsplit('/').next().unwrap_or(&queue).to_string();
    let tenant = name.split('-').next().unwrap_or(&name).to_string();
    let mut batches: JoinSet<u64> = JoinSet::new();
    let mut archived = 0;
    loop {
        while let Some(done) = batches.try_join_next() {
            archived += done.expect("batch");
        }
        let permits = shared
            .permits
            .clone()
            .acquire_many_owned(shared.batch as u32)
            .await
            .unwrap();
        let out = shared
            .sqs
            .receive_message()
            .queue_url(&queue)
            .max_number_of_messages(shared.batch as i32)
            .wait_time_seconds(shared.wait_secs)
            .visibility_timeout(60)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .send()
            .await
            .expect("receive");
        let messages = out.messages().to_vec();
        if messages.is_empty() {
            drop(permits);
            if batches.is_empty() {
                break;
            }
            while let Some(done) = batches.join_next().await {
                archived += done.expect("batch");
            }
            continue;
        }
        let (shared, queue, tenant) = (shared.clone(), queue.clone(), tenant.clone());
        batches.spawn(async move {
            let _permits = permits;
            let name = queue.rsplit('/').next().unwrap_or(&queue);
            let puts = messages.iter().map(|m| {
                let id = m.message_id().unwrap_or_default();
                let body = m.body().unwrap_or_default().as_bytes().to_vec();
                let checksum = aws_smithy_types::base64::encode(Sha256::digest(&body));
                let attribute = |name: MessageSystemAttributeName| {
                    m.attributes().and_then(|a| a.get(&name)).cloned()
                };
                let first_receive =
                    attribute(MessageSystemAttributeName::ApproximateFirstReceiveTimestamp)
                        .unwrap_or_default();
                let jst = FixedOffset::east_opt(9 * 3600)
                    .expect("valid offset")
                    .timestamp_millis_opt(first_receive.parse().unwrap_or(0))
                    .single()
                    .expect("valid time");
                let key = format!(
                    "{tenant}/{}/prismacloud-auditlog-{tenant}-{}-{id}.json",
                    jst.format("%Y/%m/%d"),
                    jst.format("%Y%m%d-%H%M%S")
                );
                let mut request = shared
                    .s3
                    .put_object()
                    .bucket(&shared.bucket)
                    .key(key)
                    .if_none_match("*")
                    .content_type("application/json")
                    .checksum_algorithm(ChecksumAlgorithm::Sha256)
                    .checksum_sha256(checksum)
                    .metadata("sqs-message-id", id)
                    .metadata("sqs-queue", name)
                    .metadata("tenant", &tenant)
                    .metadata("archive-time-ms", &first_receive)
                    .metadata("sqs-first-receive-ms", &first_receive);
                if let Some(sent) = attribute(MessageSystemAttributeName::SentTimestamp) {
                    request = request.metadata("sqs-sent-ms", sent);
                }
                if let Some(group) = attribute(MessageSystemAttributeName::MessageGroupId) {
                    request = request.metadata("sqs-message-group-id", group);
                }
                request.body(ByteStream::from(body)).send()
            });
            let stored = futures::future::join_all(puts).await;
            let entries = messages
                .iter()
                .zip(&stored)
                .enumerate()
                .filter(|(_, (_, put))| put.is_ok())
                .map(|(i, (m, _))| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(m.receipt_handle().unwrap_or_default())
                        .build()
                        .unwrap()
                })
                .collect::<Vec<_>>();
            let count = entries.len() as u64;
            if !entries.is_empty() {
                shared
                    .sqs
                    .delete_message_batch()
                    .queue_url(&queue)
                    .set_entries(Some(entries))
                    .send()
                    .await
                    .expect("delete");
            }
            count
        });
    }
    archived
}
