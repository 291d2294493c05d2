//! Invalid settings stop start-up with exit code 2 and a message naming the
//! setting; nothing is received, so nothing can be lost.

use audit_archiver_test_kit::{assert_refused, refusals, stderr, unique, Moto};

#[tokio::test(flavor = "multi_thread")]
async fn invalid_settings_exit_2_naming_the_setting() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto.queue(&format!("acme-{}", unique("q"))).await;
    moto.send(&queue, "{\"timestamp\":1}", None).await;
    for (args, flag) in refusals(&["run"], &bucket, &queue) {
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, flag, &moto.run(&argv));
    }

    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        "no-such-bucket-here",
        "--queue",
        &queue,
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no-such-bucket-here")
            && stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );

    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--queue",
        "no-such-queue",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("no-such-queue") && stderr(&output).contains("does not exist"),
        "{}",
        stderr(&output)
    );

    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--queue-prefix",
        "nothing-starts-like-this",
    ]);
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("--queue-prefix"),
        "{}",
        stderr(&output)
    );

    // Nothing was consumed by any of those runs.
    assert_eq!(moto.depth(&queue).await, 1);
    assert!(moto.objects(&bucket).await.is_empty());
}

/// A new user's first run: no credentials in the environment, no profile
/// files, no role. One line says so and how to fix it; nothing is received.
#[tokio::test(flavor = "multi_thread")]
async fn no_credentials_anywhere_is_one_line_and_exit_2() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto.queue(&format!("acme-{}", unique("q"))).await;
    moto.send(&queue, "{\"timestamp\":1}", None).await;
    let home = audit_archiver_test_kit::temp_dir("no-credentials");
    for command in [
        vec!["run", "--drain", "--bucket", &bucket, "--queue", &queue],
        vec!["verify", "--bucket", &bucket],
    ] {
        let mut process = moto.command(&command);
        process
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env("HOME", &home);
        let output =
            audit_archiver_test_kit::run_with_limit(process, std::time::Duration::from_secs(60));
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{command:?}: {text}");
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{command:?}: one line, got: {text}");
        for hint in [
            "no AWS credentials found",
            "AWS_ACCESS_KEY_ID",
            "AWS_PROFILE",
            "IAM role",
        ] {
            assert!(
                lines[0].contains(hint),
                "{command:?} should say {hint:?}: {text}"
            );
        }
    }
    assert_eq!(moto.depth(&queue).await, 1, "nothing was received");
}

#[tokio::test(flavor = "multi_thread")]
async fn settings_come_from_flags_then_environment_then_file() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue_name = format!("acme-{}", unique("q"));
    let queue = moto.queue(&queue_name).await;
    let id = moto
        .send(&queue, "{\"timestamp\":1750991540913}", None)
        .await;
    let dir = std::env::temp_dir().join(unique("config"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("archiver.toml");
    std::fs::write(
        &file,
        format!("bucket = \"{bucket}\"\nqueues = [\"{queue_name}\"]\ndrain = true\ntime_source = \"event\"\nkey_template = \"{{tenant}}/file/{{message_id}}.json\"\n"),
    )
    .unwrap();
    // The environment overrides the file's template; the file supplies the rest.
    let output = audit_archiver_test_kit::run_with_limit(
        {
            let mut command = moto.command(&["run", "--config", file.to_str().unwrap()]);
            command.env(
                "AUDIT_ARCHIVER_KEY_TEMPLATE",
                "{tenant}/env/%Y/{message_id}.json",
            );
            command
        },
        std::time::Duration::from_secs(120),
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = moto.objects(&bucket).await;
    assert!(
        objects.contains_key(&format!("acme/env/2025/{id}.json")),
        "{:#?}",
        objects.keys()
    );
}

/// `verify` and `query` take `--concurrency` from `run`'s variable, and
/// still from their former one when that is not set.
#[tokio::test(flavor = "multi_thread")]
async fn the_readers_take_concurrency_from_runs_variable_and_their_former_one() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let verify = |env: &[(&str, &str)]| {
        let mut command = moto.command(&["verify", "--bucket", &bucket]);
        for (name, value) in env {
            command.env(name, value);
        }
        audit_archiver_test_kit::run_with_limit(command, std::time::Duration::from_secs(60))
    };
    for (env, named) in [
        (vec![("AUDIT_ARCHIVER_CONCURRENCY", "0")], "--concurrency"),
        (
            vec![("AUDIT_ARCHIVER_READ_CONCURRENCY", "0")],
            "AUDIT_ARCHIVER_READ_CONCURRENCY",
        ),
    ] {
        let output = verify(&env);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{env:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(named),
            "{env:?} should name {named}: {}",
            stderr(&output)
        );
    }
    // The current name wins over the former one.
    let output = verify(&[
        ("AUDIT_ARCHIVER_CONCURRENCY", "8"),
        ("AUDIT_ARCHIVER_READ_CONCURRENCY", "0"),
    ]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
