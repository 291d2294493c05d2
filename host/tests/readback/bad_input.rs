//! Bad input to the read commands: exit 2, naming the flag.

use crate::common::{archive, bucket};
use audit_archiver_test_kit::{audit_log, exit_code, stderr, Moto};

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_exits_2_naming_the_flag() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, false, false).await;
    archive(
        &moto,
        &bucket,
        &[("acme", audit_log("alice@example.com", crate::common::T, 1))],
        &["--time-source", "event"],
    )
    .await;
    let b = bucket.as_str();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["verify", "--bucket", b, "--from", "2025-13-01"],
            "--from",
        ),
        (vec!["verify", "--bucket", b, "--to", "June 27"], "--to"),
        (
            vec![
                "verify",
                "--bucket",
                b,
                "--from",
                "2025-06-28",
                "--to",
                "2025-06-27",
            ],
            "--from",
        ),
        (
            vec!["verify", "--bucket", b, "--tenant", "globex"],
            "--tenant",
        ),
        (
            vec!["verify", "--bucket", "no-such-archive-bucket"],
            "--bucket",
        ),
        (vec!["verify"], "--bucket"),
        (
            vec![
                "query",
                "--bucket",
                b,
                "--tenant",
                "acme",
                "--from",
                "2025-02-30",
                "--to",
                "2025-06-27",
            ],
            "--from",
        ),
        (
            vec![
                "query",
                "--bucket",
                b,
                "--tenant",
                "acme",
                "--from",
                "2025-06-28",
                "--to",
                "2025-06-27T23:59:59+09:00",
            ],
            "--from",
        ),
        (
            vec![
                "query",
                "--bucket",
                b,
                "--tenant",
                "globex",
                "--from",
                "2025-06-27",
                "--to",
                "2025-06-27",
            ],
            "--tenant",
        ),
        (
            vec![
                "query",
                "--bucket",
                "no-such-archive-bucket",
                "--tenant",
                "acme",
                "--from",
                "2025-06-27",
                "--to",
                "2025-06-27",
            ],
            "--bucket",
        ),
    ];
    for (args, flag) in cases {
        let output = moto.run(&args);
        let err = stderr(&output);
        assert_eq!(exit_code(&output), 2, "{args:?}: {err}");
        assert!(err.contains(flag), "{args:?} should name {flag}: {err}");
        assert!(output.stdout.is_empty(), "{args:?}");
    }
}
