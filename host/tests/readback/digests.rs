//! Signed digests end to end: the real binary archives real SQS messages
//! into moto's S3 and seals them (`run` with a key, then `seal`); `verify`
//! proves the chains, and so does an independent checker
//! (`tests/python/check_digests.py`: boto3 + `cryptography`, no code of
//! ours) from the documented string to sign. Each tampering is really done
//! to the bucket, and must be named once. Keys are made with `openssl`, as
//! `docs/proving.md` tells users to.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use audit_archiver_test_kit::{
    audit_log, daemon_args, exit_code, openssl_keys, repo_root, stderr, stdout_json, temp_dir,
    Host, Moto,
};

use crate::common::put_raw;

/// One-second periods, sealed at once: 48 periods in under a minute.
fn fast_sealing(key: &Path) -> Vec<String> {
    vec![
        "--digest-key-file".into(),
        key.display().to_string(),
        "--digest-period-mins".into(),
        (1.0f64 / 60.0).to_string(),
        "--digest-delay-mins".into(),
        "0".into(),
    ]
}

/// The independent checker's verdict: (exit code, its JSON).
fn independent_check(moto: &Moto, bucket: &str, key_args: &[&str]) -> (i32, serde_json::Value) {
    let output = Command::new(repo_root().join(".venv/bin/python"))
        .arg(repo_root().join("tests/python/check_digests.py"))
        .args(["--bucket", bucket, "--endpoint-url", &moto.endpoint])
        .args(key_args)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .output()
        .expect("run tests/python/check_digests.py (scripts/setup.sh installs .venv)");
    let json = serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|_| panic!("check_digests.py printed no JSON: {}", stderr(&output)));
    (exit_code(&output), json)
}

/// Every digest key of `chain`, oldest first.
async fn digests(moto: &Moto, bucket: &str, chain: &str) -> Vec<String> {
    moto.keys(bucket)
        .await
        .into_iter()
        .filter(|k| k.starts_with(&format!("_digest/{chain}/")))
        .collect()
}

/// Deletes every version of `key` (and its delete markers).
async fn destroy(moto: &Moto, bucket: &str, key: &str) {
    let versions = moto
        .s3
        .list_object_versions()
        .bucket(bucket)
        .prefix(key)
        .send()
        .await
        .unwrap();
    let ids: Vec<String> = versions
        .versions()
        .iter()
        .filter(|v| v.key() == Some(key))
        .filter_map(|v| v.version_id().map(str::to_string))
        .chain(
            versions
                .delete_markers()
                .iter()
                .filter(|m| m.key() == Some(key))
                .filter_map(|m| m.version_id().map(str::to_string)),
        )
        .collect();
    assert!(!ids.is_empty(), "{key} has no version");
    for id in ids {
        moto.s3
            .delete_object()
            .bucket(bucket)
            .key(key)
            .version_id(id)
            .send()
            .await
            .unwrap();
    }
}

/// The object's body and user metadata.
async fn fetch(
    moto: &Moto,
    bucket: &str,
    key: &str,
) -> (Vec<u8>, std::collections::HashMap<String, String>) {
    let object = moto
        .s3
        .get_object()
        .bucket(bucket)
        .key(key)
        .send()
        .await
        .unwrap();
    let metadata = object.metadata().cloned().unwrap_or_default();
    (
        object.body.collect().await.unwrap().into_bytes().to_vec(),
        metadata,
    )
}

/// Writes `body` under `key` unconditionally, with `metadata`.
async fn overwrite(
    moto: &Moto,
    bucket: &str,
    key: &str,
    body: Vec<u8>,
    metadata: &std::collections::HashMap<String, String>,
) {
    let mut request = moto
        .s3
        .put_object()
        .bucket(bucket)
        .key(key)
        .body(aws_sdk_s3::primitives::ByteStream::from(body));
    for (name, value) in metadata {
        request = request.metadata(name, value);
    }
    request.send().await.unwrap();
}

fn verify(moto: &Moto, bucket: &str, extra: &[&str]) -> Output {
    let mut args = vec!["verify", "--bucket", bucket, "--format", "json"];
    args.extend_from_slice(extra);
    moto.run(&args)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sealed_archive_proves_valid_and_every_tampering_is_named_once() {
    let moto = Moto::start().await;
    let bucket = moto.versioned_bucket().await;
    let dir = temp_dir("digests");
    let (key, public) = openssl_keys(&dir, "digest");
    let acme = moto.tenant_queue("acme", true).await;
    let beta = moto.tenant_queue("beta", false).await;

    // The daemon, sealing as it goes, while logs arrive in bursts with
    // quiet seconds between them (empty periods), one of them poison.
    let sealing = fast_sealing(&key);
    let mut extra: Vec<&str> = sealing.iter().map(String::as_str).collect();
    // `event` dating quarantines a body that is not JSON.
    extra.extend(["--wait-time-secs", "1", "--time-source", "event"]);
    let host = Host::spawn(
        moto.command(
            &daemon_args(
                &bucket,
                &[acme.clone(), beta.clone()],
                &moto.endpoint,
                &extra,
            )
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ),
    );
    let started = Instant::now();
    let mut sent = 0;
    while started.elapsed() < Duration::from_secs(50) {
        let now = chrono::Utc::now().timestamp_millis() as u64;
        moto.send(&acme, &audit_log("alice@example.com", now, sent), Some("g"))
            .await;
        if sent % 3 == 0 {
            moto.send(&beta, &audit_log("bob@example.com", now, sent), None)
                .await;
        }
        if sent == 5 {
            moto.send(&beta, "not JSON, so it is quarantined", None)
                .await;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(if sent % 4 == 0 {
            3_000
        } else {
            400
        }))
        .await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    host.term();
    let output = host
        .wait(Duration::from_secs(60))
        .expect("run stops on SIGTERM");
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    // Whatever closed since: the operator's `seal` (idempotent: run twice).
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    for _ in 0..2 {
        let mut args = vec!["seal", "--bucket", bucket.as_str()];
        args.extend(sealing.iter().map(String::as_str));
        let output = moto.run(&args);
        assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    }

    let acme_digests = digests(&moto, &bucket, "acme").await;
    let beta_digests = digests(&moto, &bucket, "beta").await;
    assert!(
        acme_digests.len() >= 48,
        "{} acme digests",
        acme_digests.len()
    );
    assert!(!digests(&moto, &bucket, "_quarantine").await.is_empty());
    let archived = moto
        .keys(&bucket)
        .await
        .into_iter()
        // The digests and the writers' manifest for the sealer are no logs.
        .filter(|k| !k.starts_with("_digest/") && !k.starts_with("_state/"))
        .count() as u64;
    assert!(
        moto.keys(&bucket)
            .await
            .iter()
            .any(|k| k.starts_with("_state/manifest/acme/")),
        "run recorded what it stored for the sealer"
    );

    let public_arg = public.to_str().unwrap();
    let output = verify(&moto, &bucket, &["--public-key", public_arg]);
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let proof = &stdout_json(&output)["digests"];
    assert_eq!(proof["problems"], serde_json::json!([]), "{proof:#}");
    assert_eq!(proof["log_files"], archived, "{proof:#}");
    assert_eq!(proof["valid_log_files"], archived);
    assert_eq!(proof["digest_files"], proof["valid_digest_files"]);
    assert_eq!(proof["unsealed"], 0);

    let (code, independent) = independent_check(&moto, &bucket, &["--public-key", public_arg]);
    assert_eq!(code, 0, "{independent:#}");
    assert_eq!(independent["valid_log_files"], archived, "{independent:#}");
    assert_eq!(independent["valid_digests"], proof["digest_files"]);

    // Now each tampering, on distinct objects and digests.
    let listed = |digest: &serde_json::Value| -> Vec<String> {
        digest["logFiles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["s3Object"].as_str().unwrap().to_string())
            .collect()
    };
    let read_digest = |bytes: &[u8]| -> serde_json::Value {
        use std::io::Read;
        let mut json = String::new();
        flate2::read::GzDecoder::new(bytes)
            .read_to_string(&mut json)
            .unwrap();
        serde_json::from_str(&json).unwrap()
    };
    // acme digests that list objects, oldest first.
    let mut with_objects = Vec::new();
    for digest in &acme_digests {
        let (body, _) = fetch(&moto, &bucket, digest).await;
        let files = listed(&read_digest(&body));
        if !files.is_empty() {
            with_objects.push((digest.clone(), files));
        }
    }
    assert!(with_objects.len() >= 6);
    let replaced = with_objects[0].1[0].clone();
    let deleted = with_objects[1].1[0].clone();
    // 1. A body replaced together with its metadata.
    let (_, metadata) = fetch(&moto, &bucket, &replaced).await;
    let forged = audit_log("mallory@example.com", 1, 0);
    let metadata: BTreeMap<String, String> = metadata.into_iter().collect();
    put_raw(&moto, &bucket, &replaced, &forged, &metadata, Some(&forged)).await;
    // 2. An object deleted with all its versions.
    destroy(&moto, &bucket, &deleted).await;
    // 3. An object added, dated inside the sealed past.
    let added = "acme/2026/01/01/prismacloud-auditlog-acme-20260101-000000-forged.json";
    put_raw(&moto, &bucket, added, &forged, &BTreeMap::new(), None).await;
    // 4. Two digests swapped (body and metadata).
    let (first, second) = (&with_objects[2].0, &with_objects[4].0);
    let a = fetch(&moto, &bucket, first).await;
    let b = fetch(&moto, &bucket, second).await;
    overwrite(&moto, &bucket, first, b.0, &b.1).await;
    overwrite(&moto, &bucket, second, a.0, &a.1).await;
    // 5. A digest rewritten (one object dropped from it) and re-signed
    // with another key over the documented string to sign.
    let rewritten = &with_objects[5].0;
    let (body, metadata) = fetch(&moto, &bucket, rewritten).await;
    let mut digest = read_digest(&body);
    digest["logFiles"].as_array_mut().unwrap().pop();
    let json = serde_json::to_vec(&digest).unwrap();
    let to_sign = format!(
        "{}\n{bucket}/{rewritten}\n{}\n{}",
        digest["digestEndTime"].as_str().unwrap(),
        hex_sha256(&json),
        digest["previousDigestSignature"].as_str().unwrap_or("null")
    );
    let (other, _) = openssl_keys(&dir, "forger");
    let message = dir.join("to-sign.txt");
    std::fs::write(&message, to_sign).unwrap();
    let signed = Command::new("openssl")
        .args([
            "pkeyutl",
            "-sign",
            "-rawin",
            "-inkey",
            other.to_str().unwrap(),
            "-in",
            message.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(signed.status.success(), "{}", stderr(&signed));
    let mut metadata = metadata;
    metadata.insert("signature".into(), hex(&signed.stdout));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut gz, &json).unwrap();
    overwrite(&moto, &bucket, rewritten, gz.finish().unwrap(), &metadata).await;
    // 6. A digest in the middle of beta's chain deleted.
    let middle = &beta_digests[beta_digests.len() / 2];
    destroy(&moto, &bucket, middle).await;
    // 7. beta's two newest digests deleted: caught by an auditor who
    // expects the chain to reach where it reached.
    let stamp = beta_digests
        .last()
        .unwrap()
        .rsplit("-digest-")
        .next()
        .unwrap();
    let until = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%SZ.json.gz")
        .unwrap()
        .and_utc()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for digest in &beta_digests[beta_digests.len() - 2..] {
        destroy(&moto, &bucket, digest).await;
    }

    let output = verify(
        &moto,
        &bucket,
        &["--public-key", public_arg, "--expect-until", &until],
    );
    assert_eq!(exit_code(&output), 1);
    let lines: Vec<String> = stderr(&output)
        .lines()
        .filter(|l| l.contains(" INVALID: "))
        .map(str::to_string)
        .collect();
    let s3 = |key: &str| format!("s3://{bucket}/{key}");
    let expected = [
        format!(
            "Log file {} INVALID: hash value doesn't match",
            s3(&replaced)
        ),
        format!("Log file {} INVALID: not found", s3(&deleted)),
        format!("Log file {} INVALID: not in any digest", s3(added)),
        format!(
            "Digest file {} INVALID: has been moved from its original location",
            s3(first)
        ),
        format!(
            "Digest file {} INVALID: has been moved from its original location",
            s3(second)
        ),
        format!(
            "Digest file {} INVALID: signature verification failed",
            s3(rewritten)
        ),
        format!("Digest file {} INVALID: not found", s3(middle)),
        "Chain beta INVALID: no digest for".to_string(),
    ];
    for line in &expected {
        let matching = lines
            .iter()
            .filter(|l| l.starts_with(line.as_str()))
            .count();
        assert_eq!(matching, 1, "{line:?} once in:\n{}", lines.join("\n"));
    }
    assert_eq!(lines.len(), expected.len(), "{}", lines.join("\n"));

    let (code, independent) = independent_check(&moto, &bucket, &["--public-key", public_arg]);
    assert_eq!(code, 1, "{independent:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn killed_and_racing_sealers_leave_one_chain_signed_by_kms() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let kms = kms_client(&moto).await;
    let key_arn = kms
        .create_key()
        .key_spec(aws_sdk_kms::types::KeySpec::Rsa2048)
        .key_usage(aws_sdk_kms::types::KeyUsageType::SignVerify)
        .send()
        .await
        .unwrap()
        .key_metadata()
        .unwrap()
        .arn()
        .unwrap()
        .to_string();
    let queue = moto.tenant_queue("acme", true).await;
    // Objects delivered over a few seconds, archived without sealing.
    for n in 0..4 {
        for i in 0..5 {
            let now = chrono::Utc::now().timestamp_millis() as u64;
            moto.send(
                &queue,
                &audit_log("alice@example.com", now, n * 10 + i),
                Some("g"),
            )
            .await;
        }
        let output = moto.run(&["run", "--drain", "--bucket", &bucket, "--queue", &queue]);
        assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
        tokio::time::sleep(Duration::from_millis(1_500)).await;
    }
    tokio::time::sleep(Duration::from_secs(4)).await;
    let mut args = vec![
        "seal".to_string(),
        "--bucket".into(),
        bucket.clone(),
        "--digest-kms-key-id".into(),
        key_arn.clone(),
    ];
    args.extend(["--digest-period-mins".into(), (1.0f64 / 60.0).to_string()]);
    args.extend(["--digest-delay-mins".into(), "0".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    // Five sealers killed with SIGKILL at different points...
    for kill_after_ms in [40, 120, 250, 400, 700] {
        let host = Host::spawn(moto.command(&args));
        std::thread::sleep(Duration::from_millis(kill_after_ms));
        host.kill9();
    }
    // ...then two racing to the end.
    let racers = [
        Host::spawn(moto.command(&args)),
        Host::spawn(moto.command(&args)),
    ];
    for racer in racers {
        let output = racer.wait(Duration::from_secs(120)).expect("seal finishes");
        assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    }

    let output = verify(
        &moto,
        &bucket,
        &["--digest-kms-key-id", &key_arn, "--digests"],
    );
    assert_eq!(exit_code(&output), 0, "{}", stderr(&output));
    let proof = &stdout_json(&output)["digests"];
    assert_eq!(proof["valid_log_files"], 20, "{proof:#}");
    assert_eq!(proof["log_files"], 20);
    let (code, independent) = independent_check(&moto, &bucket, &["--kms-key-id", &key_arn]);
    assert_eq!(code, 0, "{independent:#}");
    assert_eq!(independent["valid_log_files"], 20);
    assert_eq!(independent["digests"], proof["digest_files"]);
}

async fn kms_client(moto: &Moto) -> aws_sdk_kms::Client {
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .endpoint_url(&moto.endpoint)
        .credentials_provider(aws_sdk_s3::config::Credentials::new(
            "testing", "testing", None, None, "e2e",
        ))
        .load()
        .await;
    aws_sdk_kms::Client::new(&shared)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hex_sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(bytes))
}
