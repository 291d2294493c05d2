//! Scenario 9: credentials and secrets never appear in logs. Runs the host
//! with known fake credentials (and a session token) through the recording
//! proxy, at the default level, at `debug` in JSON and at `trace`, with
//! throttling, a quarantined message and a start-up error on the way, then
//! greps everything it printed.

use std::time::Duration;

use audit_archiver_test_kit::proxy::{Plan, Proxy};
use audit_archiver_test_kit::{self as kit, daemon_args, run_with_limit, stderr, Moto, Sent};

const ACCESS_KEY_ID: &str = "AKIARELIABILITY7TEST";
const SECRET_ACCESS_KEY: &str = "rEl1ab1l1ty/Secret+Key/DoNotLog0123456789";
const SESSION_TOKEN: &str = "FwoGZXIvYXdzEReliabilitySessionToken//DoNotLog==";

#[tokio::test(flavor = "multi_thread")]
async fn credentials_never_appear_in_logs() {
    let _serial = kit::serial().await;
    let name = "secrets";
    let moto = Moto::start().await;
    let proxy = Proxy::start(&moto.endpoint, 7, true).await;
    proxy.set(Plan {
        s3_503_permille: 200,
        ..Plan::default()
    });
    let bucket = moto.versioned_bucket().await;
    let queue = moto.tenant_queue("acme", false).await;
    let queues = vec![queue.clone()];
    let levels: [(&str, &[&str]); 3] = [
        ("default", &[]),
        ("debug", &["--log-format", "json"]),
        ("trace", &[]),
    ];
    let mut scanned = 0usize;
    let mut leaks = Vec::new();
    for (level, extra) in levels {
        let mut sent = Sent::new();
        moto.send_logs(&queue, 20, &mut sent).await;
        // Not JSON under the event time source: quarantined, logged at warn.
        moto.send_bodies(&queue, &["not json".to_string()], false, &mut sent)
            .await;
        let mut args = daemon_args(
            &bucket,
            &queues,
            &proxy.url,
            &["--drain", "--time-source", "event"],
        );
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut command = moto.command(&args.iter().map(String::as_str).collect::<Vec<_>>());
        command
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_SESSION_TOKEN", SESSION_TOKEN);
        if level != "default" {
            command.env("RUST_LOG", level);
        }
        let output = run_with_limit(command, Duration::from_secs(120));
        assert!(output.status.success(), "{level}: {}", stderr(&output));
        // A start-up failure prints too.
        let mut failing = moto.command(&[
            "run",
            "--drain",
            "--bucket",
            "no-such-bucket",
            "--queue",
            &queue,
        ]);
        failing
            .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
            .env("AWS_SESSION_TOKEN", SESSION_TOKEN)
            .env("AWS_ENDPOINT_URL", &proxy.url);
        if level != "default" {
            failing.env("RUST_LOG", level);
        }
        let failed = run_with_limit(failing, Duration::from_secs(60));
        assert_eq!(failed.status.code(), Some(2), "{}", stderr(&failed));
        for out in [&output, &failed] {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            scanned += text.len();
            for (what, secret) in [
                ("access key id", ACCESS_KEY_ID),
                ("secret access key", SECRET_ACCESS_KEY),
                ("session token", SESSION_TOKEN),
            ] {
                let lines: Vec<&str> = text.lines().filter(|l| l.contains(secret)).collect();
                if let Some(first) = lines.first() {
                    let at = first.find(secret).unwrap();
                    let from = first[..at.saturating_sub(240)].len();
                    let from = (from..=at)
                        .find(|i| first.is_char_boundary(*i))
                        .unwrap_or(at);
                    leaks.push(format!(
                        "RUST_LOG={level}: the {what} appears in {} log lines, e.g. ...{}",
                        lines.len(),
                        &first[from..(at + secret.len()).min(first.len())]
                    ));
                }
            }
        }
    }
    // The credentials really were used: they are on the wire.
    let heads = proxy.heads();
    let signed = heads.iter().filter(|h| h.contains(ACCESS_KEY_ID)).count();
    let with_token = heads.iter().filter(|h| h.contains(SESSION_TOKEN)).count();
    println!(
        "[{name}] runs=6 (levels default/debug-json/trace, each a drain + a start-up failure) \
         log bytes scanned={scanned} requests signed with the key={signed} carrying the token={with_token} \
         leaks={}",
        leaks.len()
    );
    assert!(
        signed > 0 && with_token > 0,
        "the fake credentials must have been used"
    );
    assert!(
        leaks.is_empty(),
        "secrets in the logs:\n{}",
        leaks.join("\n")
    );
}
