//! Per-object settings reach S3: Object Lock retention, storage class and
//! server-side encryption, on every stored object, with its SHA-256 checksum.

use audit_archiver_test_kit::{audit_log, stderr, unique, Moto};

#[tokio::test(flavor = "multi_thread")]
async fn object_lock_storage_class_and_encryption_apply_to_every_object() {
    let moto = Moto::start().await;
    let bucket = moto.locked_bucket().await;
    let queue = moto.queue(&format!("acme-{}", unique("q"))).await;
    for n in 0..3 {
        moto.send(
            &queue,
            &audit_log("alice@example.com", 1_750_991_540_913, n),
            None,
        )
        .await;
    }
    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--queue",
        &queue,
        "--object-lock-mode",
        "GOVERNANCE",
        "--object-lock-retain-days",
        "30",
        "--storage-class",
        "STANDARD_IA",
        "--sse",
        "AES256",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = moto.objects(&bucket).await;
    assert_eq!(objects.len(), 3);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    for (key, object) in &objects {
        let head = moto
            .s3
            .head_object()
            .bucket(&bucket)
            .key(key)
            .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
            .send()
            .await
            .unwrap();
        let sha256 = aws_smithy_types::base64::encode(<sha2::Sha256 as sha2::Digest>::digest(
            object.body.as_bytes(),
        ));
        assert_eq!(
            head.checksum_sha256(),
            Some(sha256.as_str()),
            "{key}: SHA-256 checksum stored"
        );
        assert_eq!(
            head.object_lock_mode().map(|m| m.as_str()),
            Some("GOVERNANCE"),
            "{key}"
        );
        let until = head
            .object_lock_retain_until_date()
            .expect("retain-until date")
            .secs();
        assert!(
            (now + 29 * 86_400..=now + 31 * 86_400).contains(&until),
            "{key}: {until}"
        );
        assert_eq!(
            head.storage_class().map(|c| c.as_str()),
            Some("STANDARD_IA"),
            "{key}"
        );
        assert_eq!(
            head.server_side_encryption().map(|s| s.as_str()),
            Some("AES256"),
            "{key}"
        );
    }
    assert_eq!(moto.depth(&queue).await, 0);
}
