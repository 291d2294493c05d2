//! The Prometheus endpoint reports what the host did, while it runs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use audit_archiver_test_kit::{audit_log, free_port, stderr, unique, Host, Moto};

fn scrape(port: u16, path: &str) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    // Sent in pieces, each its own packet, on purpose: the endpoint must read
    // the whole head before answering (it once answered the first packet).
    stream.set_nodelay(true).ok()?;
    for piece in ["GET ", path, " HTTP/1.1\r\nHost: 127.0.0.1\r\n", "\r\n"] {
        stream.write_all(piece.as_bytes()).ok()?;
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    Some(response)
}

fn counter(response: &str, name: &str) -> Option<u64> {
    response
        .lines()
        .find_map(|line| line.strip_prefix(&format!("audit_archiver_{name}_total ")))
        .and_then(|value| value.trim().parse().ok())
}

#[tokio::test(flavor = "multi_thread")]
async fn metrics_count_what_was_archived() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto.queue(&format!("acme-{}", unique("q"))).await;
    for n in 0..7 {
        moto.send(
            &queue,
            &audit_log("alice@example.com", 1_750_991_540_913, n),
            None,
        )
        .await;
    }
    moto.send(&queue, "not json", None).await;
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let host = Host::spawn(moto.command(&[
        "run",
        "--bucket",
        &bucket,
        "--queue",
        &queue,
        "--time-source",
        "event",
        "--metrics-addr",
        &addr,
    ]));
    let deadline = Instant::now() + Duration::from_secs(60);
    let response = loop {
        if let Some(response) = scrape(port, "/metrics") {
            if counter(&response, "deleted") == Some(8) {
                break response;
            }
        }
        assert!(Instant::now() < deadline, "metrics never showed 8 deleted");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(response.starts_with("HTTP/1.1 200 OK"), "{response}");
    assert!(
        response.contains("# TYPE audit_archiver_stored_total counter"),
        "{response}"
    );
    assert_eq!(counter(&response, "received"), Some(8));
    assert_eq!(counter(&response, "stored"), Some(7));
    assert_eq!(counter(&response, "quarantined"), Some(1));
    assert_eq!(counter(&response, "failed"), Some(0));
    assert!(scrape(port, "/other").unwrap().starts_with("HTTP/1.1 404"));

    host.term();
    let output = host
        .wait(Duration::from_secs(30))
        .unwrap_or_else(|output| panic!("no exit after SIGTERM:\n{}", stderr(&output)));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(moto.depth(&queue).await, 0);
}
