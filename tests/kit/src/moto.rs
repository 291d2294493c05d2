//! A moto server on a free loopback port, real AWS SDK clients for it, and
//! the set-up and read-back calls the suites make through them.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::{QueueAttributeName, SendMessageBatchRequestEntry};

use crate::workload::{audit_log, unique, Sent};
use crate::{binary, repo_root, run_with_limit};

/// A moto server process, killed on drop.
pub struct Moto {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    /// S3 client.
    pub s3: aws_sdk_s3::Client,
    /// SQS client.
    pub sqs: aws_sdk_sqs::Client,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server command: `$MOTO_SERVER`, else the project venv's Python
/// running `tests/kit/moto/server.py` (moto with S3's atomic conditional
/// PUT; see that file).
fn moto_command() -> Command {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return Command::new(path);
    }
    let python = repo_root().join(".venv/bin/python");
    if !python.exists() {
        panic!(
            "{} not found: run `scripts/setup.sh` first (it installs moto). \
             End-to-end tests need a real S3/SQS endpoint and never skip.",
            python.display()
        );
    }
    let mut command = Command::new(python);
    command.arg(repo_root().join("tests/kit/moto/server.py"));
    command
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An object as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject {
    /// The body.
    pub body: String,
    /// User metadata.
    pub metadata: BTreeMap<String, String>,
    /// Content-Type.
    pub content_type: String,
}

impl StoredObject {
    /// The `sqs-message-id` metadata.
    pub fn message_id(&self) -> &str {
        self.metadata
            .get("sqs-message-id")
            .map_or("", String::as_str)
    }
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> Moto {
        let port = free_port();
        let child = moto_command()
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting moto_server");
        let endpoint = format!("http://127.0.0.1:{port}");
        let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "e2e",
            ))
            .load()
            .await;
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(true)
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::new(&shared);
        let moto = Moto {
            child,
            endpoint,
            s3,
            sqs,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.sqs.list_queues().send().await.is_err() {
            assert!(
                Instant::now() < deadline,
                "moto did not start on port {port} within 30 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        moto
    }

    /// Creates a bucket with a random name.
    pub async fn bucket(&self) -> String {
        let name = unique("archive");
        self.s3
            .create_bucket()
            .bucket(&name)
            .send()
            .await
            .expect("create bucket");
        name
    }

    /// Creates a bucket with versioning on, so an overwrite would leave a
    /// second version behind and be seen.
    pub async fn versioned_bucket(&self) -> String {
        let bucket = self.bucket().await;
        self.s3
            .put_bucket_versioning()
            .bucket(&bucket)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .expect("enable versioning");
        bucket
    }

    /// Creates a bucket with Object Lock enabled (and so versioned).
    pub async fn locked_bucket(&self) -> String {
        let name = unique("locked");
        self.s3
            .create_bucket()
            .bucket(&name)
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("create an Object Lock bucket");
        name
    }

    /// Creates a queue by name; `.fifo` makes it FIFO (content-based
    /// deduplication on). Returns its URL.
    pub async fn queue(&self, name: &str) -> String {
        let mut request = self.sqs.create_queue().queue_name(name);
        if name.ends_with(".fifo") {
            request = request
                .attributes(QueueAttributeName::FifoQueue, "true")
                .attributes(QueueAttributeName::ContentBasedDeduplication, "true");
        }
        request
            .send()
            .await
            .expect("create queue")
            .queue_url()
            .unwrap()
            .to_string()
    }

    /// Creates a queue of `tenant` (`{tenant}-{unique}`), FIFO when `fifo`.
    pub async fn tenant_queue(&self, tenant: &str, fifo: bool) -> String {
        let suffix = if fifo { ".fifo" } else { "" };
        self.queue(&format!("{tenant}-{}{suffix}", unique("q")))
            .await
    }

    /// Sends a message; returns its id. FIFO queues use `group`.
    pub async fn send(&self, queue_url: &str, body: &str, group: Option<&str>) -> String {
        let mut request = self
            .sqs
            .send_message()
            .queue_url(queue_url)
            .message_body(body);
        if let Some(group) = group {
            request = request
                .message_group_id(group)
                .message_deduplication_id(unique("dedup"));
        }
        request
            .send()
            .await
            .expect("send message")
            .message_id()
            .unwrap()
            .to_string()
    }

    /// Sends `count` distinct audit logs to `queue_url` in batches of ten,
    /// recording them in `sent`. FIFO queues spread them over five groups.
    pub async fn send_logs(&self, queue_url: &str, count: usize, sent: &mut Sent) {
        let fifo = queue_url.ends_with(".fifo");
        let base = sent.len();
        let bodies: Vec<String> = (0..count)
            .map(|n| {
                audit_log(
                    &format!("user{}@example.com", (base + n) % 7),
                    1_750_991_540_913 + (base + n) as u64 * 997,
                    base + n,
                )
            })
            .collect();
        self.send_bodies(queue_url, &bodies, fifo, sent).await;
    }

    /// Sends the given bodies (batches of ten; FIFO: five groups), recording
    /// them in `sent`.
    pub async fn send_bodies(
        &self,
        queue_url: &str,
        bodies: &[String],
        fifo: bool,
        sent: &mut Sent,
    ) {
        for (batch_no, chunk) in bodies.chunks(10).enumerate() {
            let entries: Vec<SendMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let mut entry = SendMessageBatchRequestEntry::builder()
                        .id(format!("e{i}"))
                        .message_body(body);
                    if fifo {
                        entry = entry
                            .message_group_id(format!("g{}", (batch_no * 10 + i) % 5))
                            .message_deduplication_id(unique("d"));
                    }
                    entry.build().unwrap()
                })
                .collect();
            let out = self
                .sqs
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries))
                .send()
                .await
                .expect("send batch");
            assert!(out.failed().is_empty(), "send failures: {:?}", out.failed());
            for ok in out.successful() {
                let index: usize = ok.id()[1..].parse().unwrap();
                sent.insert(
                    ok.message_id().to_string(),
                    (queue_url.to_string(), chunk[index].clone()),
                );
            }
        }
    }

    /// Visible and in-flight messages of a queue, one figure each.
    pub async fn depth_parts(&self, queue_url: &str) -> (u64, u64) {
        let out = self
            .sqs
            .get_queue_attributes()
            .queue_url(queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .expect("queue attributes");
        let attributes = out.attributes().unwrap();
        let get = |name| {
            attributes
                .get(&name)
                .map_or(0, |v: &String| v.parse::<u64>().unwrap())
        };
        (
            get(QueueAttributeName::ApproximateNumberOfMessages),
            get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
        )
    }

    /// Messages still in the queue, visible or in flight.
    pub async fn depth(&self, queue_url: &str) -> u64 {
        let (visible, in_flight) = self.depth_parts(queue_url).await;
        visible + in_flight
    }

    /// Messages still in any of `queues`.
    pub async fn total_depth(&self, queues: &[String]) -> u64 {
        let mut total = 0;
        for queue in queues {
            total += self.depth(queue).await;
        }
        total
    }

    /// Messages received from any of `queues` and not yet deleted or
    /// released (SQS's not-visible count).
    pub async fn total_in_flight(&self, queues: &[String]) -> u64 {
        let mut total = 0;
        for queue in queues {
            total += self.depth_parts(queue).await.1;
        }
        total
    }

    /// The keys of the bucket's current objects, in order.
    pub async fn keys(&self, bucket: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .s3
                .list_objects_v2()
                .bucket(bucket)
                .set_continuation_token(token)
                .send()
                .await
                .expect("list objects");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_string)),
            );
            token = page.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return keys;
            }
        }
    }

    /// Number of current objects in the bucket: a cheap progress figure.
    pub async fn object_count(&self, bucket: &str) -> usize {
        self.keys(bucket).await.len()
    }

    /// Every object of the bucket: key → body, metadata, content type.
    pub async fn objects(&self, bucket: &str) -> BTreeMap<String, StoredObject> {
        let mut objects = BTreeMap::new();
        for key in self.keys(bucket).await {
            let object = self
                .s3
                .get_object()
                .bucket(bucket)
                .key(&key)
                .send()
                .await
                .expect("get object");
            let metadata = object.metadata().cloned().unwrap_or_default();
            let content_type = object.content_type().unwrap_or_default().to_string();
            let body = object.body.collect().await.unwrap().into_bytes().to_vec();
            objects.insert(
                key,
                StoredObject {
                    body: String::from_utf8(body).expect("utf-8 body"),
                    metadata: metadata.into_iter().collect(),
                    content_type,
                },
            );
        }
        objects
    }

    /// Every version of every key: key → number of versions (delete markers
    /// count).
    pub async fn versions(&self, bucket: &str) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        let (mut key_marker, mut version_marker) = (None, None);
        loop {
            let page = self
                .s3
                .list_object_versions()
                .bucket(bucket)
                .set_key_marker(key_marker)
                .set_version_id_marker(version_marker)
                .send()
                .await
                .expect("list versions");
            for v in page.versions() {
                *counts.entry(v.key().unwrap_or("").to_string()).or_insert(0) += 1;
            }
            for m in page.delete_markers() {
                *counts.entry(m.key().unwrap_or("").to_string()).or_insert(0) += 1;
            }
            if page.is_truncated() != Some(true) {
                return counts;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
    }

    /// Puts an object directly (to stage collisions and redeliveries).
    pub async fn put(&self, bucket: &str, key: &str, body: &str, message_id: &str) {
        self.s3
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(ByteStream::from(body.as_bytes().to_vec()))
            .metadata("sqs-message-id", message_id)
            .send()
            .await
            .expect("put object");
    }

    /// Creates an IAM user whose only permissions are `policy` (an IAM
    /// policy document) and returns its access key id and secret. moto checks
    /// them once [`Moto::enforce_iam`] is on. Uses boto3 from the project's
    /// venv: the host crate has no IAM client, and the call is setup only.
    pub fn iam_user(&self, name: &str, policy: &serde_json::Value) -> (String, String) {
        let script = r#"
import json, sys, boto3
endpoint, name, policy = sys.argv[1:4]
iam = boto3.client("iam", endpoint_url=endpoint, region_name="us-east-1",
                   aws_access_key_id="testing", aws_secret_access_key="testing")
iam.create_user(UserName=name)
iam.put_user_policy(UserName=name, PolicyName="under-test", PolicyDocument=policy)
key = iam.create_access_key(UserName=name)["AccessKey"]
print(json.dumps([key["AccessKeyId"], key["SecretAccessKey"]]))
"#;
        let output = Command::new(repo_root().join(".venv/bin/python"))
            .args(["-c", script, &self.endpoint, name, &policy.to_string()])
            .output()
            .expect("run the venv's python (scripts/setup.sh installs it)");
        assert!(
            output.status.success(),
            "creating IAM user {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice(&output.stdout).expect("access key JSON")
    }

    /// Turns moto's IAM enforcement on (every request is checked against the
    /// caller's policies) or off, through its `/moto-api/reset-auth` call.
    pub async fn enforce_iam(&self, on: bool) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let body = if on { "0" } else { "inf" };
        let address = self.endpoint.trim_start_matches("http://");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect to moto");
        let request = format!(
            "POST /moto-api/reset-auth HTTP/1.1\r\nHost: {address}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(
            response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
            "reset-auth: {response}"
        );
    }

    /// `audit-archiver` with this endpoint and dummy credentials.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(binary());
        command
            .args(args)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ENDPOINT_URL", &self.endpoint)
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .stdin(Stdio::null());
        command
    }

    /// Runs `audit-archiver` to completion (at most 3 minutes).
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_limit(self.command(args), Duration::from_secs(180))
    }
}

/// The page that documents the IAM policies, from the repository root.
pub const IAM_PAGE: &str = "docs/iam.md";

/// The IAM policy of `docs/iam.md` after `<!-- {marker} -->` (`host-iam-policy`,
/// `auditor-iam-policy`) for `bucket` in account 123456789012, us-east-1:
/// the SSE key any (`KEY_ID` = `*`), the digest key `digest_key_id`.
pub fn documented_policy(marker: &str, bucket: &str, digest_key_id: &str) -> serde_json::Value {
    let page = std::fs::read_to_string(crate::repo_root().join(IAM_PAGE)).unwrap();
    let block = page
        .split(&format!("<!-- {marker} -->"))
        .nth(1)
        .and_then(|after| after.split("```json").nth(1))
        .and_then(|rest| rest.split("```").next())
        .unwrap_or_else(|| panic!("{IAM_PAGE}: the {marker} block"));
    let text = block
        .replace("REGION", "us-east-1")
        .replace("ACCOUNT_ID", "123456789012")
        .replace("BUCKET", bucket)
        .replace("DIGEST_KEY_ID", digest_key_id)
        .replace("KEY_ID", "*");
    serde_json::from_str(&text).expect("the documented policy is JSON")
}
