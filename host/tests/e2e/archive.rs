//! `run --drain`: every message archived exactly once, nothing overwritten.

use std::collections::BTreeSet;

use audit_archiver_test_kit::{audit_log, stderr, summary, unique, Moto};

/// 2025-06-27T02:32:20.913Z = 2025-06-27 11:32:20 JST.
const T: u64 = 1_750_991_540_913;

#[tokio::test(flavor = "multi_thread")]
async fn drain_archives_fifo_and_standard_queues_byte_for_byte() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let acme = moto
        .queue(&format!("acme-{}.fifo", unique("auditlog")))
        .await;
    let globex = moto.queue(&format!("globex-{}", unique("auditlog"))).await;
    let mut sent = Vec::new();
    for n in 0..6 {
        let body = audit_log("alice@example.com", T + n, n as usize);
        sent.push((moto.send(&acme, &body, Some("prisma")).await, body, "acme"));
        let body = audit_log("bob@example.com", T + n, n as usize);
        sent.push((moto.send(&globex, &body, None).await, body, "globex"));
    }
    // A body that is not JSON is still archived as-is under the default
    // time source: audit evidence is never re-encoded or judged.
    let odd = "  not json, but still evidence \u{3042}  ".to_string();
    sent.push((moto.send(&globex, &odd, None).await, odd, "globex"));

    let output = moto.run(&[
        "run", "--drain", "--bucket", &bucket, "--queue", &acme, "--queue", &globex,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));

    let objects = moto.objects(&bucket).await;
    assert_eq!(objects.len(), sent.len(), "{:#?}", objects.keys());
    for (id, body, tenant) in &sent {
        let (key, object) = objects
            .iter()
            .find(|(_, o)| o.message_id() == id)
            .unwrap_or_else(|| panic!("message {id} not archived"));
        assert_eq!(&object.body, body, "body of {key}");
        assert!(key.starts_with(&format!("{tenant}/")), "{key}");
        assert!(
            key.ends_with(&format!("-{id}.json")),
            "default template ends with the id: {key}"
        );
        assert_eq!(object.content_type, "application/json");
        assert_eq!(
            object.metadata.get("tenant").map(String::as_str),
            Some(*tenant)
        );
        assert!(
            object.metadata.contains_key("sqs-first-receive-ms"),
            "{:?}",
            object.metadata
        );
        assert!(
            object.metadata.contains_key("sqs-sent-ms"),
            "{:?}",
            object.metadata
        );
        assert!(
            object.metadata.contains_key("sqs-queue"),
            "{:?}",
            object.metadata
        );
    }
    assert_eq!(moto.depth(&acme).await, 0);
    assert_eq!(moto.depth(&globex).await, 0);
    let summary = summary(&output);
    assert_eq!(summary["stored"], sent.len() as u64);
    assert_eq!(summary["deleted"], sent.len() as u64);
    assert_eq!(summary["failed"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn same_second_messages_never_overwrite_each_other() {
    let moto = Moto::start().await;
    for template in ["seed", "default"] {
        let bucket = moto.bucket().await;
        let queue = moto.queue(&format!("acme-{}", unique("q"))).await;
        // Event time: every record in the same second, as a burst would be.
        let mut ids = BTreeSet::new();
        for n in 0..5 {
            ids.insert(
                moto.send(
                    &queue,
                    &audit_log("alice@example.com", T + n, n as usize),
                    None,
                )
                .await,
            );
        }
        let output = moto.run(&[
            "run",
            "--drain",
            "--bucket",
            &bucket,
            "--queue",
            &queue,
            "--key-template",
            template,
            "--time-source",
            "event",
        ]);
        assert!(output.status.success(), "{template}: {}", stderr(&output));
        let objects = moto.objects(&bucket).await;
        let stored: BTreeSet<String> = objects
            .values()
            .map(|o| o.message_id().to_string())
            .collect();
        assert_eq!(
            stored,
            ids,
            "{template}: one object per message: {:#?}",
            objects.keys()
        );
        assert_eq!(objects.len(), ids.len(), "{template}");
        let base = "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220";
        if template == "seed" {
            assert!(
                objects.contains_key(&format!("{base}.json")),
                "{:#?}",
                objects.keys()
            );
            assert_eq!(summary(&output)["collisions"], 4, "{template}");
            for id in &ids {
                let alternate = format!("{base}-{id}.json");
                let seed_key = format!("{base}.json");
                assert!(
                    objects.contains_key(&alternate) || objects[&seed_key].message_id() == id,
                    "{id} neither at the seed key nor its alternate"
                );
            }
        } else {
            for id in &ids {
                assert!(
                    objects.contains_key(&format!("{base}-{id}.json")),
                    "{:#?}",
                    objects.keys()
                );
            }
            assert_eq!(summary(&output)["collisions"], 0);
        }
        assert_eq!(moto.depth(&queue).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redelivery_of_an_archived_message_stores_nothing_new() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto.queue(&format!("acme-{}", unique("q"))).await;
    let body = audit_log("alice@example.com", T, 0);
    let id = moto.send(&queue, &body, None).await;
    // The object is already there, as after a crash between PUT and delete.
    let key = format!("acme/{id}.json");
    moto.put(&bucket, &key, &body, &id).await;
    let before = moto.objects(&bucket).await;

    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--queue",
        &queue,
        "--key-template",
        "{tenant}/{message_id}.json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        moto.objects(&bucket).await,
        before,
        "nothing new, nothing changed"
    );
    assert_eq!(
        moto.depth(&queue).await,
        0,
        "the redelivered message is deleted"
    );
    let summary = summary(&output);
    assert_eq!(summary["already_present"], 1);
    assert_eq!(summary["stored"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_key_held_by_another_message_is_kept_and_the_new_one_stored_beside_it() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue = moto.queue(&format!("acme-{}", unique("q"))).await;
    moto.put(
        &bucket,
        "acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json",
        "{\"earlier\":true}",
        "another-message",
    )
    .await;
    let body = audit_log("alice@example.com", T, 0);
    let id = moto.send(&queue, &body, None).await;

    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--queue",
        &queue,
        "--key-template",
        "seed",
        "--time-source",
        "event",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = moto.objects(&bucket).await;
    assert_eq!(
        objects["acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220.json"].body,
        "{\"earlier\":true}"
    );
    let alternate =
        &objects[&format!("acme/2025/06/27/prismacloud-auditlog-acme-20250627-113220-{id}.json")];
    assert_eq!(alternate.body, body);
    assert_eq!(alternate.message_id(), id);
    assert_eq!(moto.depth(&queue).await, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn unroutable_messages_are_quarantined_with_their_reason() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let queue_name = format!("acme-{}", unique("q"));
    let queue = moto.queue(&queue_name).await;
    let good = audit_log("alice@example.com", T, 0);
    let good_id = moto.send(&queue, &good, None).await;
    let poison = [
        ("not json at all", "invalid-body"),
        ("{\"user\":\"no timestamp\"}", "missing-time"),
        ("{\"timestamp\":\"yesterday\"}", "invalid-time"),
        ("[]", "missing-time"),
    ];
    let mut poison_ids = Vec::new();
    for (body, reason) in poison {
        poison_ids.push((moto.send(&queue, body, None).await, body, reason));
    }
    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--queue",
        &queue,
        "--time-source",
        "event",
        "--log-format",
        "json",
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    // Structured logs: every line is JSON, and each quarantine warning names
    // the message and the queue in fields of its own.
    let events: Vec<serde_json::Value> = stderr(&output)
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line:?}: {e}")))
        .collect();
    for (id, _, _) in &poison_ids {
        assert!(
            events.iter().any(|e| e["level"] == "WARN"
                && e["message_id"] == id.as_str()
                && e["queue"] == queue_name.as_str()),
            "no warning with message_id {id} and queue {queue_name}: {events:#?}"
        );
    }
    let objects = moto.objects(&bucket).await;
    assert_eq!(objects.len(), 1 + poison_ids.len(), "{:#?}", objects.keys());
    assert!(objects
        .values()
        .any(|o| o.message_id() == good_id && o.body == good));
    let log = stderr(&output);
    for (id, body, reason) in poison_ids {
        let key = format!("_quarantine/{queue_name}/{id}.json");
        let object = objects
            .get(&key)
            .unwrap_or_else(|| panic!("{key} missing: {:#?}", objects.keys()));
        assert_eq!(object.body, body);
        let stored_reason = &object.metadata["quarantine-reason"];
        assert!(stored_reason.starts_with(reason), "{stored_reason}");
        assert!(log.contains(&id), "the log names message {id}");
    }
    assert_eq!(moto.depth(&queue).await, 0);
    assert_eq!(summary(&output)["quarantined"], 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_burst_across_tenants_ends_with_one_object_per_message() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let prefix = unique("burst").replace('-', "_");
    let mut queues = Vec::new();
    for tenant in ["acme", "globex", "initech"] {
        let name = format!("{tenant}{prefix}-prismacloud-auditlog.fifo");
        queues.push((tenant, moto.queue(&name).await));
    }
    let mut ids = BTreeSet::new();
    for n in 0..100u64 {
        for (tenant, url) in &queues {
            let id = moto
                .send(
                    url,
                    &audit_log(&format!("{tenant}@example.com"), T + n % 3, n as usize),
                    Some(&format!("g{}", n % 4)),
                )
                .await;
            ids.insert(id);
        }
    }
    let mut args = vec![
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--key-template",
        "seed",
        "--time-source",
        "event",
    ];
    for (_, url) in &queues {
        args.extend(["--queue", url.as_str()]);
    }
    let output = moto.run(&args);
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = moto.objects(&bucket).await;
    let stored: Vec<String> = objects
        .values()
        .map(|o| o.message_id().to_string())
        .collect();
    let unique_stored: BTreeSet<String> = stored.iter().cloned().collect();
    assert_eq!(stored.len(), unique_stored.len(), "no message stored twice");
    assert_eq!(unique_stored, ids, "every message stored");
    for (_, url) in &queues {
        assert_eq!(moto.depth(url).await, 0);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn queue_prefix_finds_every_tenant_queue() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let prefix = unique("tenant").replace('-', "");
    let first = moto
        .queue(&format!("{prefix}a-prismacloud-auditlog.fifo"))
        .await;
    let second = moto.queue(&format!("{prefix}b-prismacloud-auditlog")).await;
    let unrelated = moto.queue(&format!("other-{}", unique("q"))).await;
    let a = moto
        .send(&first, &audit_log("alice@example.com", T, 0), Some("g"))
        .await;
    let b = moto
        .send(&second, &audit_log("bob@example.com", T, 1), None)
        .await;
    moto.send(&unrelated, &audit_log("eve@example.com", T, 2), None)
        .await;

    let output = moto.run(&[
        "run",
        "--drain",
        "--bucket",
        &bucket,
        "--queue-prefix",
        &prefix,
    ]);
    assert!(output.status.success(), "{}", stderr(&output));
    let objects = moto.objects(&bucket).await;
    let stored: BTreeSet<&str> = objects.values().map(|o| o.message_id()).collect();
    assert_eq!(stored, BTreeSet::from([a.as_str(), b.as_str()]));
    assert!(
        objects
            .keys()
            .any(|k| k.starts_with(&format!("{prefix}a/"))),
        "{:#?}",
        objects.keys()
    );
    assert_eq!(
        moto.depth(&unrelated).await,
        1,
        "a queue outside the prefix is not touched"
    );
}
