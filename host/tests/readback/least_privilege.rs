//! The auditor policy of `docs/iam.md` is enough for `verify` and `query`, allows
//! no write, and a missing permission is named: moto enforces IAM (its `/moto-api/reset-auth` switch)
//! and the commands run with the keys of a user holding exactly that policy.
//!
//! moto 5.2.5 authorises a bucket HEAD as `s3:HeadBucket` (AWS: `s3:ListBucket`);
//! the test policy adds that alias and nothing else. It also checks every KMS
//! call against the resource `*` (it has no `_determine_resource` for KMS), so
//! the KMS statements' resource is widened to `*` for it: their actions are
//! what is tested.

use audit_archiver_test_kit::{self as kit, audit_log, exit_code, stderr, stdout_json, Moto};
use aws_sdk_s3::primitives::ByteStream;
use serde_json::{json, Value};

use crate::common::{archive, bucket, put_raw, DAY, T};

/// The JSON block after `<!-- auditor-iam-policy -->`, for `bucket`.
fn auditor_policy(bucket: &str) -> Value {
    with_head_bucket(
        kit::documented_policy("auditor-iam-policy", bucket, "*"),
        bucket,
    )
}

/// For moto: the KMS statements' resource as the `*` it checks against.
fn kms_on_any_resource(mut policy: Value) -> Value {
    for statement in policy["Statement"].as_array_mut().unwrap() {
        let actions = match &statement["Action"] {
            Value::String(one) => vec![one.clone()],
            Value::Array(all) => all
                .iter()
                .filter_map(|a| a.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        };
        if actions.iter().any(|a| a.starts_with("kms:")) {
            statement["Resource"] = json!("*");
        }
    }
    policy
}

/// moto's name for a bucket HEAD, granted as AWS's `s3:ListBucket` is.
fn with_head_bucket(mut policy: Value, bucket: &str) -> Value {
    policy["Statement"].as_array_mut().unwrap().push(json!({
        "Sid": "MotoHeadBucket", "Effect": "Allow", "Action": "s3:HeadBucket",
        "Resource": format!("arn:aws:s3:::{bucket}"),
    }));
    policy
}

#[tokio::test(flavor = "multi_thread")]
async fn the_documented_auditor_policy_reads_everything_and_writes_nothing() {
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
    let keys = moto.iam_user("auditor", &auditor_policy(&bucket));
    let mut without_versions = auditor_policy(&bucket);
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

/// The policies of `docs/iam.md` and the digest key: the host's seals with KMS
/// (`kms:Sign` on that key and nothing more), the auditor's proves the
/// chain with the key's public half and cannot sign one digest.
#[tokio::test(flavor = "multi_thread")]
async fn the_documented_policies_seal_with_kms_and_the_auditor_cannot_sign() {
    let moto = Moto::start().await;
    let bucket = bucket(&moto, false, false).await;
    let kms = aws_sdk_kms::Client::new(
        &aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .endpoint_url(&moto.endpoint)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "testing", "testing", None, None, "admin",
            ))
            .load()
            .await,
    );
    let key = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap();
    let key = key.key_metadata().unwrap();
    let (key_id, key_arn) = (key.key_id(), key.arn().unwrap());
    archive(
        &moto,
        &bucket,
        &[("acme", audit_log("alice@example.com", T, 1))],
        &[],
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(1_100)).await;
    let host = moto.iam_user(
        "host",
        &kms_on_any_resource(with_head_bucket(
            kit::documented_policy("host-iam-policy", &bucket, key_id),
            &bucket,
        )),
    );
    let auditor = moto.iam_user(
        "auditor",
        &kms_on_any_resource(with_head_bucket(
            kit::documented_policy("auditor-iam-policy", &bucket, key_id),
            &bucket,
        )),
    );
    let period = (1.0f64 / 60.0).to_string();
    let seal = [
        "seal",
        "--bucket",
        &bucket,
        "--digest-kms-key-id",
        key_arn,
        "--digest-period-mins",
        &period,
        "--digest-delay-mins",
        "0",
    ];
    let as_user = |keys: &(String, String), args: &[&str]| {
        let mut command = moto.command(args);
        command
            .env("AWS_ACCESS_KEY_ID", &keys.0)
            .env("AWS_SECRET_ACCESS_KEY", &keys.1);
        kit::run_with_limit(command, std::time::Duration::from_secs(120))
    };

    moto.enforce_iam(true).await;
    let forged = as_user(&auditor, &seal);
    let sealed = as_user(&host, &seal);
    let proved = as_user(
        &auditor,
        &[
            "verify",
            "--bucket",
            &bucket,
            "--digest-kms-key-id",
            key_arn,
            "--format",
            "json",
        ],
    );
    moto.enforce_iam(false).await;

    assert_ne!(exit_code(&forged), 0, "the auditor sealed");
    assert!(stderr(&forged).contains("kms:Sign"), "{}", stderr(&forged));
    assert_eq!(exit_code(&sealed), 0, "{}", stderr(&sealed));
    assert_eq!(exit_code(&proved), 0, "{}", stderr(&proved));
    let proof = &stdout_json(&proved)["digests"];
    assert_eq!(proof["valid_log_files"], 1, "{proof:#}");
    assert!(proof["valid_digest_files"].as_u64().unwrap() >= 1);
}
