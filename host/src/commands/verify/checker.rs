//! `verify`'s check of the objects: each prefix's versions listed, each
//! current object read and checked against its metadata and the layout.

use super::*;

impl Checker {
    /// Lists one prefix's versions page by page and checks each key.
    pub(super) async fn check_prefix(&self, job: &PrefixJob) -> Result<Tally, ReadError> {
        let mut tally = Tally::default();
        let mut pages = self.reader.versions(&job.prefix);
        while let Some(page) = pages.next_page().await? {
            let checked: Vec<Checked> = stream::iter(page)
                .map(|key| self.check_key(&job.tenant, key))
                .buffer_unordered(self.concurrency)
                .collect()
                .await;
            for outcome in checked {
                self.objects_done.fetch_add(1, Ordering::Relaxed);
                tally.versioned |= outcome.versioned;
                if outcome.counted {
                    tally.objects += 1;
                    match outcome.day {
                        Some(day) => tally
                            .days
                            .entry((outcome.tenant.clone(), day))
                            .or_default()
                            .add(outcome.archive_ms),
                        None => *tally.undated.entry(outcome.tenant.clone()).or_default() += 1,
                    }
                }
                tally.findings.extend(outcome.finding);
                if let Some(read) = outcome.read {
                    tally.read.insert(outcome.key, read);
                }
            }
        }
        Ok(tally)
    }

    fn in_range(&self, ms: i64) -> bool {
        self.from_ms.is_none_or(|from| ms >= from) && self.to_ms.is_none_or(|to| ms <= to)
    }

    async fn check_key(&self, tenant: &str, listed: KeyVersions) -> Checked {
        let key = listed.key.clone();
        let mut problems: Vec<(FindingKind, String)> = Vec::new();
        let versioned = listed.versions.iter().any(|v| v.version_id != "null");
        let shape = self.layout.shape(&key, tenant);
        let mut checked = Checked {
            key: key.clone(),
            tenant: tenant.to_string(),
            day: shape.and_then(|s| s.day),
            archive_ms: None,
            counted: false,
            finding: None,
            versioned,
            read: None,
        };
        let finish = |mut checked: Checked, mut problems: Vec<(FindingKind, String)>| {
            if !problems.is_empty() {
                problems.sort_by_key(|(kind, _)| *kind);
                checked.finding = Some(Finding {
                    key: key.clone(),
                    kinds: problems.iter().map(|(kind, _)| *kind).collect(),
                    detail: problems
                        .iter()
                        .map(|(_, detail)| detail.as_str())
                        .collect::<Vec<_>>()
                        .join("; "),
                });
            }
            checked
        };

        if listed.deleted() {
            let kept = listed.versions.iter().filter(|v| !v.delete_marker).count();
            problems.push((
                FindingKind::Deleted,
                format!("the current version is a delete marker ({kept} earlier version(s) kept)"),
            ));
            return finish(checked, problems);
        }
        if listed.versions.len() > 1 {
            let markers = listed.versions.iter().filter(|v| v.delete_marker).count();
            problems.push((
                FindingKind::Overwritten,
                format!(
                    "{} versions{}: written more than once",
                    listed.versions.len() - markers,
                    if markers > 0 {
                        format!(" and {markers} delete marker(s)")
                    } else {
                        String::new()
                    }
                ),
            ));
        }
        if shape.is_none() {
            problems.push((
                FindingKind::Stray,
                "the key does not have the layout of --key-template".into(),
            ));
            return finish(checked, problems);
        }

        let fetched = {
            let _permit = self.permits.acquire().await.expect("never closed");
            self.reader.get(&key).await
        };
        let object = match fetched {
            Ok(object) => object,
            Err(error) => {
                problems.push((FindingKind::Unreadable, error.to_string()));
                return finish(checked, problems);
            }
        };
        checked.counted = true;

        let field = |name: &str| object.metadata.get(name).map(String::as_str);
        let missing: Vec<&str> = meta::REQUIRED
            .iter()
            .copied()
            .filter(|name| field(name).is_none_or(str::is_empty))
            .collect();
        if !missing.is_empty() {
            problems.push((
                FindingKind::MissingMetadata,
                format!("metadata {} missing", missing.join(", ")),
            ));
        }
        let archive_ms = match field(meta::ARCHIVE_TIME_MS).map(str::parse::<u64>) {
            Some(Ok(ms)) if i64::try_from(ms).is_ok() => Some(ms),
            Some(_) => {
                problems.push((
                    FindingKind::MissingMetadata,
                    format!(
                        "metadata {} is not epoch milliseconds",
                        meta::ARCHIVE_TIME_MS
                    ),
                ));
                None
            }
            None => None,
        };
        if let Some(ms) = archive_ms {
            checked.archive_ms = Some(ms as i64);
            checked.day = Some(Day::of_ms(ms as i64, self.layout.utc_offset_minutes()));
        }
        match field(meta::TENANT) {
            Some(owner) if owner != tenant => problems.push((
                FindingKind::Misplaced,
                format!("its metadata names tenant {owner:?}, but it is under {tenant}/"),
            )),
            _ => {
                if let (Some(ms), Some(id)) = (archive_ms, field(meta::MESSAGE_ID)) {
                    let queue = field(meta::QUEUE).unwrap_or("");
                    if let Err(misplaced) = self.layout.check_placement(&key, tenant, queue, id, ms)
                    {
                        problems.push((
                            FindingKind::Misplaced,
                            format!("its metadata places it at {}", misplaced.expected),
                        ));
                    }
                }
            }
        }
        if let Ok(body) = &object.body {
            checked.read = Some((
                crate::seal::digest::sha256_hex(body),
                object.version_id.clone(),
            ));
        }
        match (&object.checksum_sha256, &object.body) {
            (_, Err(error)) if error.to_ascii_lowercase().contains("checksum") => problems.push((
                FindingKind::ChecksumMismatch,
                format!("the body does not match its stored SHA-256 checksum ({error})"),
            )),
            (_, Err(error)) => problems.push((
                FindingKind::Unreadable,
                format!("the body could not be read: {error}"),
            )),
            (None, Ok(_)) => {
                problems.push((FindingKind::NoChecksum, "no stored SHA-256 checksum".into()))
            }
            (Some(stored), Ok(body)) => {
                // A composite (multipart) checksum ends in `-N`; the archiver
                // never writes one, and the SDK validated what it could.
                let actual = aws_smithy_types::base64::encode(Sha256::digest(body));
                if !stored.contains('-') && *stored != actual {
                    problems.push((
                        FindingKind::ChecksumMismatch,
                        format!("the body's SHA-256 is {actual}, the stored checksum {stored}"),
                    ));
                }
            }
        }
        if self.object_lock == Some(true) {
            match &object.retention {
                None => problems.push((
                    FindingKind::NoRetention,
                    "Object Lock is enabled on the bucket but the object has no retention".into(),
                )),
                Some((mode, until_ms)) if *until_ms < chrono::Utc::now().timestamp_millis() => {
                    problems.push((
                        FindingKind::NoRetention,
                        format!("its {mode} retention expired at {until_ms} ms"),
                    ))
                }
                Some(_) => {}
            }
        }
        if problems.is_empty() && !checked.archive_ms.is_none_or(|ms| self.in_range(ms)) {
            // A partial day at an RFC 3339 bound: outside the range asked for.
            checked.counted = false;
        }
        finish(checked, problems)
    }
}

/// The quarantined objects of the tenants asked for, received in range (by
/// the message's first receive or sent time, else when it was stored).
pub(super) async fn quarantined(
    reader: &ArchiveReader,
    layout: &Layout,
    config: &VerifyConfig,
) -> Result<Vec<Quarantined>, CommandError> {
    let offset = layout.utc_offset_minutes();
    let mut pages = reader.keys(layout.quarantine_prefix());
    let mut listed = Vec::new();
    while let Some(page) = pages.next_page().await.map_err(|e| unreadable(&e))? {
        // Stored before the range starts: received before it too.
        listed.extend(page.into_iter().filter(|object| {
            object
                .last_modified_ms
                .is_none_or(|ms| config.from_ms.is_none_or(|from| ms >= from))
        }));
    }
    let heads: Vec<_> = stream::iter(listed)
        .map(|object| async move {
            let metadata = reader.metadata(&object.key).await;
            (object, metadata)
        })
        .buffered(config.read.concurrency)
        .collect()
        .await;
    let mut out = Vec::new();
    for (object, metadata) in heads {
        let metadata = metadata.unwrap_or_default();
        let queue = metadata.get(meta::QUEUE).cloned();
        if !config.tenants.is_empty() {
            let tenant = queue
                .as_deref()
                .map(audit_archiver_transform::queue::tenant_from_name);
            if !tenant.is_some_and(|t| config.tenants.iter().any(|c| c == t)) {
                continue;
            }
        }
        let received_ms = [meta::FIRST_RECEIVE_MS, meta::SENT_MS]
            .iter()
            .find_map(|name| metadata.get(*name).and_then(|v| v.parse::<i64>().ok()))
            .or(object.last_modified_ms);
        let in_range = received_ms.is_none_or(|ms| {
            config.from_ms.is_none_or(|from| ms >= from) && config.to_ms.is_none_or(|to| ms <= to)
        });
        if !in_range {
            continue;
        }
        out.push(Quarantined {
            key: object.key,
            queue,
            message_id: metadata.get(meta::MESSAGE_ID).cloned(),
            reason: metadata.get(meta::QUARANTINE_REASON).cloned(),
            received_at: received_ms.map(|ms| rfc3339(ms, offset)),
        });
    }
    Ok(out)
}
