//! The sealer and the validator against an in-memory bucket whose clock the
//! test sets: chains, empty periods, races, crashes, late objects, and each
//! tampering named once. The same guarantees are tested end to end against
//! moto in `host/tests/readback/digests.rs`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use aws_lc_rs::encoding::{AsDer, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{Ed25519KeyPair, KeyPair as _};

use super::digest::{digest_key, gunzip, DigestFile};
use super::sealer::{DigestStore, Fetched, Listed, SealError, SealSettings, Sealer};
use super::signer::{LocalKey, PublicKey, Signer};
use super::validate::{validate, ChainReport, ValidateSettings};
use crate::store::PutOutcome;

const MIN: i64 = 60_000;
/// 2026-12-04T00:00:00Z
const T0: i64 = 1_796_342_400_000;

#[derive(Debug, Clone)]
struct Object {
    body: Vec<u8>,
    last_modified_ms: i64,
    metadata: std::collections::HashMap<String, String>,
}

/// A bucket in memory; `now` stamps what is written, as S3's clock would.
#[derive(Debug, Clone, Default)]
struct Memory {
    objects: Arc<Mutex<BTreeMap<String, Object>>>,
    now: Arc<Mutex<i64>>,
    /// PUTs of digests allowed before every further one fails (a crash).
    puts_left: Arc<AtomicUsize>,
    /// Archived objects read (digests and the state prefix aside).
    object_reads: Arc<AtomicUsize>,
}

impl Memory {
    fn new() -> Self {
        let memory = Memory::default();
        memory.puts_left.store(usize::MAX, Ordering::SeqCst);
        *memory.now.lock().unwrap() = T0;
        memory
    }

    fn at(&self, ms: i64) -> &Self {
        *self.now.lock().unwrap() = ms;
        self
    }

    fn put(&self, key: &str, body: &str) {
        let now = *self.now.lock().unwrap();
        self.objects.lock().unwrap().insert(
            key.into(),
            Object {
                body: body.as_bytes().to_vec(),
                last_modified_ms: now,
                metadata: Default::default(),
            },
        );
    }

    fn remove(&self, key: &str) -> Object {
        self.objects.lock().unwrap().remove(key).expect("present")
    }

    fn insert(&self, key: &str, object: Object) {
        self.objects.lock().unwrap().insert(key.into(), object);
    }

    fn digest(&self, key: &str) -> DigestFile {
        let body = self.objects.lock().unwrap()[key].body.clone();
        serde_json::from_slice(&gunzip(&body, 1 << 20).unwrap()).unwrap()
    }
}

impl DigestStore for Memory {
    fn bucket(&self) -> &str {
        "archive"
    }

    async fn folders(&self) -> Result<Vec<String>, SealError> {
        let mut folders: Vec<String> = self
            .objects
            .lock()
            .unwrap()
            .keys()
            .filter_map(|k| Some(format!("{}/", k.split_once('/')?.0)))
            .collect();
        folders.dedup();
        Ok(folders)
    }

    async fn list(&self, prefix: &str) -> Result<Vec<Listed>, SealError> {
        Ok(self
            .objects
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, o)| Listed {
                key: k.clone(),
                last_modified_ms: o.last_modified_ms,
            })
            .collect())
    }

    async fn list_after(&self, prefix: &str, start_after: &str) -> Result<Vec<Listed>, SealError> {
        let all = self.list(prefix).await?;
        Ok(all
            .into_iter()
            .filter(|o| o.key.as_str() > start_after)
            .collect())
    }

    async fn read(&self, key: &str) -> Result<Option<Fetched>, SealError> {
        if !key.starts_with('_') {
            self.object_reads.fetch_add(1, Ordering::SeqCst);
        }
        Ok(self.objects.lock().unwrap().get(key).map(|o| Fetched {
            body: o.body.clone(),
            version_id: None,
            metadata: o.metadata.clone(),
        }))
    }

    async fn put_state_if_absent(&self, key: &str, json: &str) -> Result<PutOutcome, SealError> {
        self.put_if_absent(key, json.as_bytes().to_vec(), Vec::new())
            .await
    }

    async fn put_if_absent(
        &self,
        key: &str,
        body: Vec<u8>,
        metadata: Vec<(&'static str, String)>,
    ) -> Result<PutOutcome, SealError> {
        if self
            .puts_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(SealError::Store("killed".into()));
        }
        let now = *self.now.lock().unwrap();
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(key) {
            return Ok(PutOutcome::AlreadyExists);
        }
        objects.insert(
            key.into(),
            Object {
                body,
                last_modified_ms: now,
                metadata: metadata
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v))
                    .collect(),
            },
        );
        Ok(PutOutcome::Created)
    }
}

/// A fresh Ed25519 key: the signer and the auditor's public key.
fn keys() -> (Signer, PublicKey) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        aws_smithy_types::base64::encode(pkcs8.as_ref())
    );
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "audit-archiver-seal-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, pem).unwrap();
    let signer = Signer::Local(LocalKey::from_pem_file(&path).unwrap());
    std::fs::remove_file(&path).unwrap();
    let spki: PublicKeyX509Der = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
        .unwrap()
        .public_key()
        .as_der()
        .unwrap();
    (signer, PublicKey::from_der(spki.as_ref().to_vec()).unwrap())
}

fn settings() -> SealSettings {
    SealSettings {
        digest_prefix: "_digest/".into(),
        period_ms: 10 * MIN,
        delay_ms: MIN,
        not_chains: vec!["_state/".into()],
        manifest_prefix: Some("_state/manifest/".into()),
    }
}

fn log(n: u32) -> String {
    format!(
        r#"{{"timestamp": {}, "user": "u{n}@example.com"}}"#,
        T0 + i64::from(n)
    )
}

/// Three periods: two objects, then none, then one; a checkpoint aside.
fn archive() -> Memory {
    let memory = Memory::new();
    memory.at(T0 + MIN).put("acme/2026/12/04/a.json", &log(1));
    memory
        .at(T0 + 2 * MIN)
        .put("acme/2026/12/04/b.json", &log(2));
    memory.at(T0 + 3 * MIN).put("_state/backfill/acme/x", "{}");
    memory
        .at(T0 + 25 * MIN)
        .put("acme/2026/12/04/c.json", &log(3));
    memory
}

async fn prove(memory: &Memory, key: &PublicKey, expect_until_ms: Option<i64>) -> ChainReport {
    let settings = ValidateSettings {
        digest_prefix: "_digest/".into(),
        chains: vec!["acme".into()],
        from_ms: None,
        expect_until_ms,
        concurrency: 4,
    };
    validate(memory, key, &settings, &|_| None, &Default::default())
        .await
        .unwrap()
}

fn reasons(report: &ChainReport) -> Vec<String> {
    report.problems.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn every_closed_period_gets_one_digest_even_an_empty_one() {
    let memory = archive();
    let (signer, public) = keys();
    let sealer = Sealer::new(memory.clone(), signer, settings());
    // 30 min + the 1 min delay: three periods are closed, the fourth is not.
    let sealed = sealer.seal_all(T0 + 31 * MIN).await.unwrap();
    assert_eq!((sealed.digests_written, sealed.objects_listed), (3, 3));
    let first = memory.digest(&digest_key("_digest/", "acme", T0 + 10 * MIN));
    assert_eq!(first.log_files.len(), 2);
    assert_eq!(first.previous_digest_s3_object, None);
    assert_eq!(
        first.oldest_event_time.as_deref(),
        Some("2026-12-04T00:00:00.001Z")
    );
    let empty = memory.digest(&digest_key("_digest/", "acme", T0 + 20 * MIN));
    assert!(empty.log_files.is_empty());
    assert_eq!(
        empty.previous_digest_s3_object.as_deref(),
        Some(first.digest_s3_object.as_str())
    );
    // Nothing more until the next period closes; no request made for it.
    assert_eq!(
        sealer
            .seal_all(T0 + 40 * MIN)
            .await
            .unwrap()
            .digests_written,
        0
    );

    let report = prove(&memory, &public, None).await;
    assert!(report.valid(), "{:?}", reasons(&report));
    assert_eq!((report.digest_files, report.valid_digest_files), (3, 3));
    assert_eq!((report.log_files, report.valid_log_files), (3, 3));
}

#[tokio::test]
async fn racing_sealers_and_a_crash_leave_one_chain() {
    let memory = archive();
    let (signer, public) = keys();
    // A sealer killed after its first digest...
    memory.puts_left.store(1, Ordering::SeqCst);
    let killed = Sealer::new(memory.clone(), signer, settings());
    assert!(killed.seal_all(T0 + 31 * MIN).await.is_err());
    memory.puts_left.store(usize::MAX, Ordering::SeqCst);
    // ...then two more, one with stale memory of the chain: each continues
    // from what is written, none forks it.
    let (other, _) = keys();
    let (third, _) = keys();
    let a = Sealer::new(memory.clone(), other, settings());
    let b = Sealer::new(memory.clone(), third, settings());
    let (ra, rb) = tokio::join!(a.seal_all(T0 + 31 * MIN), b.seal_all(T0 + 31 * MIN));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.digests_written + rb.digests_written, 2, "{ra:?} {rb:?}");
    let digests = memory.list("_digest/acme/").await.unwrap();
    assert_eq!(digests.len(), 3);
    // Three signers wrote this chain: only the first one's key proves the
    // first digest, and the others' digests fail under it.
    let report = prove(&memory, &public, None).await;
    assert_eq!(report.valid_digest_files, 1, "{:?}", reasons(&report));
}

#[tokio::test]
async fn an_object_delivered_into_a_sealed_period_goes_into_the_next_digest() {
    let memory = archive();
    let (signer, public) = keys();
    let sealer = Sealer::new(memory.clone(), signer, settings());
    sealer.seal_all(T0 + 11 * MIN).await.unwrap();
    // A PUT that S3 stamped inside the sealed period but that became
    // visible only after the seal.
    memory
        .at(T0 + 9 * MIN)
        .put("acme/2026/12/04/late.json", &log(9));
    memory.at(T0 + 31 * MIN);
    sealer.seal_all(T0 + 31 * MIN).await.unwrap();
    let second = memory.digest(&digest_key("_digest/", "acme", T0 + 20 * MIN));
    let listed: Vec<&str> = second
        .log_files
        .iter()
        .map(|f| f.s3_object.as_str())
        .collect();
    assert_eq!(listed, ["acme/2026/12/04/late.json"]);
    let report = prove(&memory, &public, None).await;
    assert!(report.valid(), "{:?}", reasons(&report));
    assert_eq!(report.log_files, 4);
}

/// Seals the archive, applies `tamper`, and returns the problems.
async fn tampered(tamper: impl FnOnce(&Memory), expect_until_ms: Option<i64>) -> Vec<String> {
    let memory = archive();
    let (signer, public) = keys();
    Sealer::new(memory.clone(), signer, settings())
        .seal_all(T0 + 31 * MIN)
        .await
        .unwrap();
    assert!(prove(&memory, &public, None).await.valid());
    tamper(&memory);
    reasons(&prove(&memory, &public, expect_until_ms).await)
}

fn digest_of(period: i64) -> String {
    digest_key("_digest/", "acme", T0 + period * 10 * MIN)
}

#[tokio::test]
async fn each_tampering_is_named_once() {
    let replaced = tampered(
        |m| m.at(T0 + 32 * MIN).put("acme/2026/12/04/a.json", &log(7)),
        None,
    )
    .await;
    assert_eq!(
        replaced,
        ["Log file s3://archive/acme/2026/12/04/a.json INVALID: hash value doesn't match"]
    );

    let deleted = tampered(|m| drop(m.remove("acme/2026/12/04/b.json")), None).await;
    assert_eq!(
        deleted,
        ["Log file s3://archive/acme/2026/12/04/b.json INVALID: not found"]
    );

    let digest_deleted = tampered(|m| drop(m.remove(&digest_of(1))), None).await;
    assert_eq!(
        digest_deleted,
        [format!(
            "Digest file s3://archive/{} INVALID: not found",
            digest_of(1)
        )]
    );

    let resigned = tampered(
        |m| {
            let (forger, _) = keys();
            let mut object = m.remove(&digest_of(2));
            let forged = futures::executor::block_on(forger.sign(b"anything")).unwrap();
            object
                .metadata
                .insert("signature".into(), super::digest::hex(&forged));
            m.insert(&digest_of(2), object);
        },
        None,
    )
    .await;
    assert_eq!(
        resigned,
        [format!(
            "Digest file s3://archive/{} INVALID: signature verification failed",
            digest_of(2)
        )]
    );

    let swapped = tampered(
        |m| {
            let one = m.remove(&digest_of(1));
            let two = m.remove(&digest_of(2));
            m.insert(&digest_of(1), two);
            m.insert(&digest_of(2), one);
        },
        None,
    )
    .await;
    assert_eq!(swapped.len(), 2, "{swapped:?}");
    assert!(
        swapped
            .iter()
            .all(|p| p.contains("has been moved from its original location")),
        "{swapped:?}"
    );

    let newest_gone = tampered(|m| drop(m.remove(&digest_of(3))), Some(T0 + 30 * MIN)).await;
    assert_eq!(newest_gone.len(), 1, "{newest_gone:?}");
    assert!(
        newest_gone[0].starts_with("Chain acme INVALID: no digest for 2026-12-04T00:20:00Z"),
        "{newest_gone:?}"
    );
    // Without --expect-until the shorter chain is self-consistent.
    assert!(tampered(|m| drop(m.remove(&digest_of(3))), None)
        .await
        .is_empty());

    let added = tampered(
        |m| m.at(T0 + 5 * MIN).put("acme/2026/12/04/z.json", &log(5)),
        None,
    )
    .await;
    assert_eq!(
        added,
        ["Log file s3://archive/acme/2026/12/04/z.json INVALID: not in any digest"]
    );
}

#[tokio::test]
async fn the_writers_manifest_spares_the_reads_and_attests_what_was_written() {
    let memory = archive();
    let (signer, public) = keys();
    let sealer = Sealer::new(memory.clone(), signer, settings());
    let recorder = sealer.recorder().expect("a manifest prefix is set");
    for (key, n) in [("acme/2026/12/04/a.json", 1), ("acme/2026/12/04/b.json", 2)] {
        let body = log(n);
        recorder.record(
            key,
            body.as_bytes(),
            super::digest::sha256_hex(body.as_bytes()),
            T0 + MIN,
        );
    }
    // Changed after the writer stored it, before the seal.
    memory
        .at(T0 + 3 * MIN)
        .put("acme/2026/12/04/b.json", &log(8));
    memory.at(T0 + 31 * MIN);
    sealer.seal_all(T0 + 31 * MIN).await.unwrap();
    // Only the object no writer recorded (c.json) was read back.
    assert_eq!(memory.object_reads.load(Ordering::SeqCst), 1);
    assert!(memory.list("_state/manifest/acme/").await.unwrap().len() == 1);
    let report = prove(&memory, &public, None).await;
    assert_eq!(
        reasons(&report),
        ["Log file s3://archive/acme/2026/12/04/b.json INVALID: hash value doesn't match"]
    );
}
