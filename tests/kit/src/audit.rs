//! The final audit of a scenario: the bucket against what was sent.

use std::collections::BTreeMap;

use crate::{Moto, Sent, StoredObject};

/// The result of the final audit.
#[derive(Debug, Default)]
pub struct Audit {
    /// Messages sent.
    pub messages: usize,
    /// Objects in the bucket.
    pub objects: usize,
    /// Sent messages with no object.
    pub lost: usize,
    /// Sent messages with more than one object.
    pub duplicates: usize,
    /// Keys with more than one version.
    pub overwritten: usize,
    /// Objects whose body differs from what was sent.
    pub corrupted: usize,
    /// Messages left in the queues.
    pub left_in_queues: u64,
    /// Objects of quarantined messages (under the quarantine prefix).
    pub quarantined: usize,
}

impl Audit {
    /// `lost=0 duplicates=0 …`.
    pub fn line(&self) -> String {
        format!(
            "messages={} objects={} quarantined={} lost={} duplicates={} overwritten={} corrupted={} left_in_queues={}",
            self.messages,
            self.objects,
            self.quarantined,
            self.lost,
            self.duplicates,
            self.overwritten,
            self.corrupted,
            self.left_in_queues
        )
    }

    /// Panics unless nothing was lost, duplicated, overwritten or left behind.
    pub fn assert_perfect(&self, name: &str) {
        println!("[{name}] audit: {}", self.line());
        assert_eq!(self.lost, 0, "[{name}] lost messages: {}", self.line());
        assert_eq!(self.duplicates, 0, "[{name}] duplicates: {}", self.line());
        assert_eq!(self.overwritten, 0, "[{name}] overwrites: {}", self.line());
        assert_eq!(self.corrupted, 0, "[{name}] corrupted: {}", self.line());
        assert_eq!(
            self.left_in_queues,
            0,
            "[{name}] queues not empty: {}",
            self.line()
        );
        assert_eq!(
            self.objects,
            self.messages,
            "[{name}] stray objects: {}",
            self.line()
        );
    }
}

/// Reads the whole bucket and checks it against what was sent: every body in
/// exactly one object (matched by `sqs-message-id`), byte for byte, every key
/// with a single version, and the queues empty.
pub async fn audit(moto: &Moto, bucket: &str, sent: &Sent, queues: &[String]) -> Audit {
    let objects = moto.objects(bucket).await;
    let mut by_id: BTreeMap<&str, Vec<(&String, &StoredObject)>> = BTreeMap::new();
    for (key, object) in &objects {
        by_id
            .entry(object.message_id())
            .or_default()
            .push((key, object));
    }
    let mut audit = Audit {
        messages: sent.len(),
        objects: objects.len(),
        ..Audit::default()
    };
    for (id, (_, body)) in sent {
        match by_id.get(id.as_str()).map(Vec::as_slice) {
            None | Some([]) => audit.lost += 1,
            Some([(key, object)]) => {
                if &object.body != body {
                    audit.corrupted += 1;
                }
                if key.starts_with("_quarantine/") {
                    audit.quarantined += 1;
                }
            }
            Some(_) => audit.duplicates += 1,
        }
    }
    audit.overwritten = moto
        .versions(bucket)
        .await
        .values()
        .filter(|n| **n > 1)
        .count();
    audit.left_in_queues = moto.total_depth(queues).await;
    audit
}
