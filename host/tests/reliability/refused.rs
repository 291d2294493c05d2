//! Scenario 9: the truth of `--drain` and refused calls. moto enforces IAM
//! (its `/moto-api/reset-auth` switch; requests are checked against the
//! caller's policies) and the host runs with the keys of a user holding the
//! host policy of `docs/iam.md`:
//! - as written, it archives and deletes everything (least privilege proven);
//! - without `sqs:DeleteMessage`, `--drain` exits 1 naming the permission,
//!   logs the refusal once (not once per message), says what is left and why,
//!   and loses nothing; in daemon mode the queue is reported down on
//!   `/metrics` and receiving pauses instead of churning;
//! - transient delete failures (500s from the fault proxy) are retried: all
//!   deleted, exit 0.
//!
//! moto 5.2.5 authorises three calls under names of its own where AWS uses
//! others; the test policy adds exactly those aliases and nothing else.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{json, Value};

use audit_archiver_test_kit::proxy::{Plan, Proxy};
use audit_archiver_test_kit::{
    self as kit, audit, counter, stderr, summary_of, Host, Moto, Rng, Sent,
};

const ACCOUNT: &str = "123456789012";
const REGION: &str = "us-east-1";

/// The host policy of `docs/iam.md` (the JSON block after `<!-- host-iam-policy -->`),
/// for `bucket`, with `drop` removed from every statement.
fn host_policy(bucket: &str, drop: &[&str]) -> Value {
    let mut policy = kit::documented_policy("host-iam-policy", bucket, "*");
    for statement in policy["Statement"].as_array_mut().unwrap() {
        if let Some(actions) = statement["Action"].as_array_mut() {
            actions.retain(|a| !drop.contains(&a.as_str().unwrap()));
        }
    }
    policy
}

/// moto's own names for three calls, as `policy` allows them: each alias is
/// granted only where the AWS action it stands for is granted.
fn with_moto_aliases(mut policy: Value, bucket: &str) -> Value {
    let granted: BTreeSet<String> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| match &s["Action"] {
            Value::String(a) => vec![a.clone()],
            Value::Array(list) => list
                .iter()
                .map(|a| a.as_str().unwrap().to_string())
                .collect(),
            _ => vec![],
        })
        .collect();
    let queues = format!("arn:aws:sqs:{REGION}:{ACCOUNT}:*-prismacloud-auditlog.fifo");
    let mut aliases = Vec::new();
    // moto checks a bucket HEAD as s3:HeadBucket; AWS as s3:ListBucket.
    if granted.contains("s3:ListBucket") {
        aliases.push(json!({"Sid": "MotoHeadBucket", "Effect": "Allow",
            "Action": "s3:HeadBucket", "Resource": format!("arn:aws:s3:::{bucket}")}));
    }
    // moto checks DeleteMessageBatch as sqs:DeleteMessageBatch; AWS as sqs:DeleteMessage.
    if granted.contains("sqs:DeleteMessage") {
        aliases.push(json!({"Sid": "MotoDeleteMessageBatch", "Effect": "Allow",
            "Action": "sqs:DeleteMessageBatch", "Resource": queues}));
    }
    // moto checks ChangeMessageVisibilityBatch as its own action; AWS as
    // sqs:ChangeMessageVisibility.
    if granted.contains("sqs:ChangeMessageVisibility") {
        aliases.push(
            json!({"Sid": "MotoChangeMessageVisibilityBatch", "Effect": "Allow",
            "Action": "sqs:ChangeMessageVisibilityBatch", "Resource": queues}),
        );
    }
    policy["Statement"].as_array_mut().unwrap().extend(aliases);
    policy
}

/// A tenant queue named as the documented policy's resource expects.
async fn tenant_queue(moto: &Moto, tenant: &str) -> String {
    moto.queue(&format!("{tenant}-prismacloud-auditlog.fifo"))
        .await
}

/// `run` with the keys of an IAM user instead of moto's default ones.
fn as_user(moto: &Moto, keys: &(String, String), args: &[&str]) -> std::process::Command {
    let mut command = moto.command(args);
    command
        .env("AWS_ACCESS_KEY_ID", &keys.0)
        .env("AWS_SECRET_ACCESS_KEY", &keys.1);
    command
}

/// Sends `n` logs to one message group.
async fn one_group(moto: &Moto, queue: &str, n: usize, sent: &mut Sent) {
    let bodies: Vec<String> = (0..n)
        .map(|i| {
            kit::audit_log(
                "alice@example.com",
                1_750_991_540_913 + sent.len() as u64 + i as u64,
                sent.len() + i,
            )
        })
        .collect();
    for body in bodies {
        let id = moto.send(queue, &body, Some("prisma")).await;
        sent.insert(id, (queue.to_string(), body));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_host_policy_suffices_under_iam_enforcement() {
    let _serial = kit::serial().await;
    let name = "least-privilege";
    let moto = Moto::start().await;
    let bucket = moto.versioned_bucket().await;
    let queues = vec![
        tenant_queue(&moto, "acme").await,
        tenant_queue(&moto, "globex").await,
    ];
    let mut sent = Sent::new();
    for q in &queues {
        moto.send_logs(q, 30, &mut sent).await;
    }
    let keys = moto.iam_user(
        "host",
        &with_moto_aliases(host_policy(&bucket, &[]), &bucket),
    );
    moto.enforce_iam(true).await;
    let output = kit::run_with_limit(
        as_user(
            &moto,
            &keys,
            &[
                "run", "--drain", "--bucket", &bucket, "--queue", &queues[0], "--queue", &queues[1],
            ],
        ),
        Duration::from_secs(120),
    );
    moto.enforce_iam(false).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let audit = audit(&moto, &bucket, &sent, &queues).await;
    audit.assert_perfect(name);
    println!(
        "[{name}] {} messages over 2 FIFO queues archived and deleted under IAM enforcement \
         with the documented host policy (plus moto's 3 aliases)",
        sent.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_delete_fails_the_drain_names_the_permission_and_loses_nothing() {
    let _serial = kit::serial().await;
    let name = "delete-refused";
    let moto = Moto::start().await;
    let bucket = moto.versioned_bucket().await;
    let queue = tenant_queue(&moto, "acme").await;
    let mut sent = Sent::new();
    one_group(&moto, &queue, 20, &mut sent).await;
    let policy = with_moto_aliases(host_policy(&bucket, &["sqs:DeleteMessage"]), &bucket);
    let keys = moto.iam_user("no-delete", &policy);

    moto.enforce_iam(true).await;
    let output = kit::run_with_limit(
        as_user(
            &moto,
            &keys,
            &["run", "--drain", "--bucket", &bucket, "--queue", &queue],
        ),
        Duration::from_secs(120),
    );
    moto.enforce_iam(false).await;
    let log = stderr(&output);
    assert_eq!(output.status.code(), Some(1), "{log}");
    let permission = format!(
        "sqs:DeleteMessage on arn:aws:sqs:{REGION}:{ACCOUNT}:acme-prismacloud-auditlog.fifo"
    );
    assert!(log.contains(&permission), "names {permission}: {log}");
    let refusals = log
        .lines()
        .filter(|l| l.contains("DeleteMessage refused"))
        .count();
    assert_eq!(refusals, 1, "logged once, not per message: {log}");
    let summary = summary_of(&output).expect("a summary");
    let left = &summary["left"];
    assert_eq!(left["messages"], 20, "{summary}");
    assert_eq!(left["delete_failed"], 10, "{summary}");
    assert_eq!(left["not_received"], 10, "{summary}");
    assert!(
        log.contains(
            "20 message(s) left in 1 queue(s) (10 not received, 10 not deleted, 0 not archived)"
        ),
        "{log}"
    );
    // Nothing lost: every message is archived or still queued.
    let archived: BTreeSet<String> = moto
        .objects(&bucket)
        .await
        .values()
        .map(|o| o.message_id().to_string())
        .collect();
    assert_eq!(archived.len(), 10);
    assert_eq!(moto.depth(&queue).await, 20);

    // Daemon mode with the same keys: the queue is reported down and
    // receiving pauses rather than pulling messages it cannot delete.
    let metrics_port = kit::free_port();
    let addr = format!("127.0.0.1:{metrics_port}");
    moto.enforce_iam(true).await;
    let host = Host::spawn(as_user(
        &moto,
        &keys,
        &[
            "run",
            "--bucket",
            &bucket,
            "--queue",
            &queue,
            "--visibility-timeout-secs",
            "10",
            "--metrics-addr",
            &addr,
        ],
    ));
    let metrics = || async {
        let body = scrape(&addr).await.unwrap_or_default();
        let value = |series: &str| {
            body.lines()
                .find(|l| l.starts_with(series))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        (
            value("audit_archiver_queue_up{"),
            value("audit_archiver_queue_received_total{"),
            value("audit_archiver_queue_delete_failures_total{"),
        )
    };
    // The drain's undeleted messages stay hidden for its visibility timeout
    // (60 s) and hold their FIFO group: the daemon's first delete may come
    // only after that, so the wait must outlast it.
    kit::wait_for(
        "the queue reported down",
        Duration::from_secs(120),
        || async { metrics().await.0 == Some(0) },
    )
    .await;
    let (_, received_when_down, _) = metrics().await;
    // The pause (30 s at first) outlasts the visibility timeout (10 s): a
    // churning host would receive the same messages again meanwhile.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let (up, received_later, delete_failures) = metrics().await;
    host.term();
    let daemon = host
        .wait(Duration::from_secs(30))
        .expect("exit after SIGTERM");
    moto.enforce_iam(false).await;
    assert_eq!(up, Some(0));
    assert_eq!(
        received_later, received_when_down,
        "no receive while paused"
    );
    assert!(delete_failures.unwrap_or(0) >= 1);
    let daemon_log = stderr(&daemon);
    assert_eq!(
        daemon_log
            .lines()
            .filter(|l| l.contains("DeleteMessage refused"))
            .count(),
        1,
        "{daemon_log}"
    );

    // With the permission back, everything is archived once and deleted.
    let keys = moto.iam_user(
        "host",
        &with_moto_aliases(host_policy(&bucket, &[]), &bucket),
    );
    moto.enforce_iam(true).await;
    let output = kit::run_with_limit(
        as_user(
            &moto,
            &keys,
            &[
                "run",
                "--drain",
                "--bucket",
                &bucket,
                "--queue",
                &queue,
                "--visibility-timeout-secs",
                "10",
            ],
        ),
        Duration::from_secs(120),
    );
    moto.enforce_iam(false).await;
    assert!(output.status.success(), "{}", stderr(&output));
    let audit = audit(&moto, &bucket, &sent, &[queue]).await;
    audit.assert_perfect(name);
    println!(
        "[{name}] 20 messages, one FIFO group, no sqs:DeleteMessage: drain exit 1 with left={} \
         (not_received={} delete_failed={}), refusal logged once; daemon: queue_up=0, received stayed {} \
         over 12 s; after the fix: all archived once, queue empty",
        left["messages"],
        left["not_received"],
        left["delete_failed"],
        received_when_down.unwrap_or(0)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_delete_failures_are_retried_and_the_drain_succeeds() {
    let _serial = kit::serial().await;
    let name = "delete-faults";
    let mut rng = Rng::new(name);
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.endpoint, rng.next_u64(), false).await;
    let (bucket, queues, sent) = kit::two_tenant_backlog(&moto, 100).await;
    // The SDK's own retries are off (`--max-attempts 1`), so every injected
    // 500 reaches the host's retry loop, which must get each batch deleted
    // within its 30 s budget (at 40 %, a batch fails ~13 tries in a row
    // with odds of 1 in 150,000).
    let plan = Plan {
        sqs_delete_500_permille: 400,
        ..Plan::default()
    };
    proxy.set(plan);
    let mut args = vec![
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--endpoint-url",
        &proxy.url,
        "--max-attempts",
        "1",
    ];
    for q in &queues {
        args.extend(["--queue", q.as_str()]);
    }
    let output = kit::run_with_limit(moto.command(&args), Duration::from_secs(180));
    assert!(output.status.success(), "{}", stderr(&output));
    let summary = summary_of(&output);
    let retries = counter(&summary, "delete_retries");
    assert!(retries > 0, "deletes were retried: {summary:?}");
    assert_eq!(counter(&summary, "delete_failures"), 0, "{summary:?}");
    let audit = audit(&moto, &bucket, &sent, &queues).await;
    audit.assert_perfect(name);
    println!(
        "[{name}] {} messages (standard + FIFO), {}‰ of deletes answered 500: {} delete retries, \
         0 left; {}",
        sent.len(),
        plan.sqs_delete_500_permille,
        retries,
        proxy.stats().line()
    );
}

/// `GET /metrics` from the host.
async fn scrape(addr: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: metrics\r\n\r\n")
        .await
        .ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    Some(response)
}
