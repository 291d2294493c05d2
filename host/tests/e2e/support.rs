//! Shared helpers of the end-to-end tests: a real moto server on a free
//! loopback port, real AWS SDK clients with dummy credentials, random names,
//! and the built `audit-archiver` binary.
//!
//! There is no skipping: without moto (run `scripts/setup.sh`) every test fails.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_sqs::types::QueueAttributeName;

/// The binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_audit-archiver");

/// The repository root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

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

fn moto_executable() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let local = repo_root().join(".venv/bin/moto_server");
    if local.exists() {
        return local;
    }
    panic!(
        "moto_server not found (looked at $MOTO_SERVER and {}): run `scripts/setup.sh` first. \
         End-to-end tests need a real S3/SQS endpoint and never skip.",
        local.display()
    );
}

/// A free port on 127.0.0.1.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Moto {
    /// Starts moto on a free loopback port and waits until it answers.
    pub async fn start() -> Moto {
        let port = free_port();
        let child = Command::new(moto_executable())
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
    #[allow(
        dead_code,
        reason = "used by the reliability, readback and backfill suites"
    )]
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

    /// Creates a queue named `{tenant}-{suffix}`; `.fifo` makes it FIFO.
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

    /// Messages still in the queue, visible or in flight.
    pub async fn depth(&self, queue_url: &str) -> u64 {
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
        [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
        ]
        .iter()
        .map(|name| {
            attributes
                .get(name)
                .map_or(0, |v| v.parse::<u64>().unwrap())
        })
        .sum()
    }

    /// Every object of the bucket: key → (body, user metadata).
    pub async fn objects(&self, bucket: &str) -> BTreeMap<String, StoredObject> {
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
                break;
            }
        }
        let mut objects = BTreeMap::new();
        for key in keys {
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
    #[allow(dead_code, reason = "used by the reliability suite")]
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
    #[allow(dead_code, reason = "used by the reliability suite")]
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
        let mut command = Command::new(BIN);
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

    /// Runs `audit-archiver` to completion (at most `limit`).
    pub fn run(&self, args: &[&str]) -> Output {
        run_with_limit(self.command(args), Duration::from_secs(180))
    }
}

/// Runs a command, failing the test if it outlives `limit`. Output is read
/// while it runs, so a chatty process never blocks on a full pipe.
pub fn run_with_limit(mut command: Command, limit: Duration) -> Output {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn audit-archiver");
    let (stdout, stderr) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "audit-archiver did not exit within {limit:?}; stderr:\n{}",
                String::from_utf8_lossy(&stderr.join().unwrap())
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: stdout.join().unwrap(),
        stderr: stderr.join().unwrap(),
    }
}

/// Reads a child's pipe to the end on a thread of its own.
pub fn drain(
    pipe: Option<impl std::io::Read + Send + 'static>,
) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buffer = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buffer);
        }
        buffer
    })
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

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "{prefix}-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Prisma Cloud audit log body, as documented.
pub fn audit_log(user: &str, timestamp_ms: u64, n: usize) -> String {
    format!(
        r#"{{"timestamp":{timestamp_ms},"user":"{user}","ipAddress":"203.0.113.7","resourceType":"Account Group","resourceName":"TEST-{n}","actionType":"CREATE","action":"'{user}'(with role 'System Admin':'System Admin') created the account group.","result":"Successful"}}"#
    )
}

/// The stderr of a run, for assertion messages.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// The JSON summary `run` prints on stdout when it ends.
pub fn summary(output: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line = stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no summary; stderr:\n{}", stderr(output)));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("summary {line:?}: {e}"))
}
