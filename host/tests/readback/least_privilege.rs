//! The README's auditor policy is enough for `verify` and `query`, allows
//! no write, and a missing permission is named: moto enforces IAM (its `/moto-api/reset-auth` switch)
//! and the commands run with the keys of a user holding exactly that policy.
//!
//! moto 5.2.5 authorises a bucket HEAD as `s3:HeadBucket` (AWS: `s3:ListBucket`);
//! the test policy adds that alias and nothing else.

use audit_archiver_test_kit::{
    self as kit, audit_log, exit_code, repo_root, stderr, stdout_json, Moto,
};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};

use crate::common::{archive, bucket, put_raw, DAY, T};

/// The JSON block after `<!-- auditor-iam-policy -->`, for `bucket`.
fn readme_auditor_policy(bucket: &str) -> Value {
    let readme = std::fs::read_to_string(repo_root().join("README.md")).unwrap();
    let block = readme
        .split("<!-- auditor-iam-policy -->")
        .nth(1)
        .and_then(|after| after.split("```json").nth(1))
        .and_then(|rest| rest.split("```").next())
        .expect("the README's auditor policy block");
    let text = block
        .replace("REGION", "us-east-1")
        .replace("ACCOUNT_ID", "123456789012")
        .replace("BUCKET", bucket)
        .replace("KEY_ID", "*");
    let mut policy: Value = serde_json::from_str(&text).expect("the policy is JSON");
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "MotoHeadBucket", "Effect": "Allow", "Action": "s3:HeadBucket",
        "Resource": format!("arn:aws:s3:::{bucket}"),
    }));
    policy
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readme_auditor_policy_reads_everything_and_writes_nothing() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, true, false).await;
    let objects = archive(
        &moto,
        &bucket,
        &[
            ("acme", audit_log("alice@example.com", T, 1)),
            ("acme", audit_log("bob@example.com", T + DAY, 2)),
            ("acme", "not JSON".to_string()),
        ],
        &["--time-source", "event"],
    )
    .await;
    let (overwritten, object) = objects
        .iter()
        .find(|(key, _)| key.starts_with("acme/2025/06/27/"))
        .unwrap();
    put_raw(
        &moto,
        &bucket,
        overwritten,
        &object.body,
        &object.metadata,
        Some(&object.body),
    )
    .await;
    let keys = moto.iam_user("auditor", &readme_auditor_policy(&bucket));
    let mut without_versions = readme_auditor_policy(&bucket);
    for statement in without_versions["Statement"].as_array_mut().unwrap() {
        if let Some(actions) = statement["Action"].as_array_mut() {
            actions.retain(|a| a != "s3:ListBucketVersions");
        }
    }
    let lesser_keys = moto.iam_user("lesser-auditor", &without_versions);
    let as_auditor = |args: &[&str]| {
        let mut command = moto.command(args);
        command
            .env("AWS_ACCESS_KEY_ID", &keys.0)
            .env("AWS_SECRET_ACCESS_KEY", &keys.1);
        kit::run_with_limit(command, std::time::Duration::from_secs(120))
    };

    moto.enforce_iam(true).await;
    let verify = as_auditor(&["verify", "--bucket", &bucket, "--format", "json"]);
    let refused = {
        let mut command = moto.command(&["verify", "--bucket", &bucket]);
        command
            .env("AWS_ACCESS_KEY_ID", &lesser_keys.0)
            .env("AWS_SECRET_ACCESS_KEY", &lesser_keys.1);
        kit::run_with_limit(command, std::time::Duration::from_secs(120))
    };
    let query = as_auditor(&[
        "query",
        "--bucket",
        &bucket,
        "--tenant",
        "acme",
        "--from",
        "2025-06-27",
        "--to",
        "2025-06-28",
    ]);
    let auditor = aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(
            &aws_config::defaults(aws_config::BehaviorVersion::latest())
                .region(aws_config::Region::new("us-east-1"))
                .endpoint_url(&moto.endpoint)
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    &keys.0, &keys.1, None, None, "auditor",
                ))
                .load()
                .await,
        )
        .force_path_style(true)
        .build(),
    );
    let put = auditor
        .put_object()
        .bucket(&bucket)
        .key("acme/2025/06/27/forged.json")
        .body(ByteStream::from_static(b"{}"))
        .send()
        .await;
    let delete = auditor
        .delete_object()
        .bucket(&bucket)
        .key(overwritten)
        .send()
        .await;
    moto.enforce_iam(false).await;

    assert_eq!(exit_code(&verify), 1, "{}", stderr(&verify));
    let report = stdout_json(&verify);
    assert_eq!(report["objects"], 2, "{report:#}");
    assert_eq!(
        report["object_lock"], false,
        "the Object Lock configuration was readable"
    );
    assert_eq!(
        report["quarantined"].as_array().unwrap().len(),
        1,
        "{report:#}"
    );
    assert_eq!(
        report["findings"],
        json!([{"key": overwritten, "kinds": ["overwritten"], "detail": "2 versions: written more than once"}])
    );
    assert_eq!(exit_code(&refused), 2, "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("it needs s3:ListBucketVersions"),
        "names the missing permission: {}",
        stderr(&refused)
    );
    assert_eq!(exit_code(&query), 0, "{}", stderr(&query));
    assert_eq!(String::from_utf8_lossy(&query.stdout).lines().count(), 2);
    for (what, refused) in [
        (
            "PutObject",
            put.err()
                .map(|e| e.raw_response().map(|r| r.status().as_u16())),
        ),
        (
            "DeleteObject",
            delete
                .err()
                .map(|e| e.raw_response().map(|r| r.status().as_u16())),
        ),
    ] {
        assert_eq!(
            refused,
            Some(Some(403)),
            "{what} must be refused to the auditor"
        );
    }
}
