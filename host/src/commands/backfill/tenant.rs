//! One tenant's backfill: its windows in order, each paged from the API,
//! routed and stored, then checkpointed.

use super::*;

/// How one window ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WindowEnd {
    /// Every record archived (or already there, or quarantined).
    Complete,
    /// Some record not archived, or the command is stopping.
    Incomplete,
}

/// One tenant's backfill.
pub(super) struct TenantRun {
    pub(super) shared: Arc<Shared>,
    pub(super) source: TenantSource,
    pub(super) client: PrismaClient,
    pub(super) shutdown: watch::Receiver<bool>,
}

impl TenantRun {
    /// Archives every window of the range, then follows if asked. Returns
    /// whether the API could be read throughout the range.
    pub(super) async fn run(
        mut self,
        windows: Vec<Window>,
        to_ms: i64,
        follow: Option<FollowSettings>,
    ) -> bool {
        let tenant = self.source.tenant.clone();
        let shared = self.shared.clone();
        let progress = &shared.progress;
        let mut router = match self.shared.component.instance() {
            Ok(router) => router,
            Err(error) => {
                tracing::error!(%tenant, %error, "cannot instantiate the routing component");
                return false;
            }
        };
        let prefix = checkpoint_prefix(&self.shared.state_prefix, &tenant);
        let done = match self.shared.archive.list_keys(&prefix).await {
            Ok(keys) => parse_checkpoints(&prefix, &keys),
            Err(error) => {
                tracing::error!(%tenant, error = %error.detail, "cannot read the checkpoints");
                progress
                    .windows_incomplete
                    .fetch_add(windows.len() as u64, Ordering::Relaxed);
                return false;
            }
        };
        let mut api_ok = true;
        for (index, window) in windows.iter().enumerate() {
            if *self.shutdown.borrow() {
                progress
                    .windows_incomplete
                    .fetch_add((windows.len() - index) as u64, Ordering::Relaxed);
                return api_ok;
            }
            if covered(&done, *window) {
                progress.windows_skipped.fetch_add(1, Ordering::Relaxed);
                progress.windows_done.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            match self.window(&mut router, *window).await {
                Ok((WindowEnd::Complete, records)) => {
                    let recorded = self.checkpoint(*window, records).await;
                    if !recorded {
                        progress.windows_incomplete.fetch_add(1, Ordering::Relaxed);
                    }
                    self.log_window(*window, records, recorded);
                }
                Ok((WindowEnd::Incomplete, records)) => {
                    progress.windows_incomplete.fetch_add(1, Ordering::Relaxed);
                    self.log_window(*window, records, false);
                }
                Err(error) => {
                    // The API is down or refusing: the later windows cannot
                    // be read either. Their checkpoints stay as they are.
                    tracing::error!(%tenant, %error, window_start_ms = window.start_ms, "cannot read the window from the API; stopping this tenant");
                    progress
                        .windows_incomplete
                        .fetch_add((windows.len() - index) as u64, Ordering::Relaxed);
                    api_ok = false;
                    break;
                }
            }
            progress.windows_done.fetch_add(1, Ordering::Relaxed);
        }
        if let (Some(follow), true) = (follow, api_ok) {
            self.follow(&mut router, to_ms, follow).await;
        }
        api_ok
    }

    /// Polls `[last end - overlap, now)` every interval until shutdown. A
    /// failed poll is retried by the next one, which starts at the same place.
    async fn follow(
        &mut self,
        router: &mut RouterInstance,
        mut since_ms: i64,
        follow: FollowSettings,
    ) {
        let overlap = follow.overlap.as_millis() as i64;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(follow.every) => {}
                _ = stopped(&mut self.shutdown) => return,
            }
            let now = chrono::Utc::now().timestamp_millis();
            let window = Window {
                start_ms: since_ms - overlap,
                end_ms: now,
            };
            self.shared
                .progress
                .windows_total
                .fetch_add(1, Ordering::Relaxed);
            match self.window(router, window).await {
                Ok((WindowEnd::Complete, records)) => {
                    since_ms = now;
                    tracing::info!(tenant = %self.source.tenant, records, "follow: polled the latest records");
                }
                Ok((WindowEnd::Incomplete, records)) => {
                    tracing::warn!(tenant = %self.source.tenant, records, "follow: some records not archived; the next poll tries again");
                }
                Err(error) => {
                    tracing::warn!(tenant = %self.source.tenant, %error, "follow: cannot read the API; the next poll tries again");
                }
            }
            self.shared
                .progress
                .windows_done
                .fetch_add(1, Ordering::Relaxed);
        }
    }

    fn log_window(&self, window: Window, records: u64, checkpointed: bool) {
        if self.shared.log_windows {
            let progress = &self.shared.progress;
            tracing::info!(
                tenant = %self.source.tenant,
                window_start_ms = window.start_ms,
                window_end_ms = window.end_ms,
                records,
                checkpointed,
                done = progress.windows_done.load(Ordering::Relaxed) + 1,
                total = progress.windows_total.load(Ordering::Relaxed),
                "window archived"
            );
        }
    }

    /// Writes the checkpoint of a completed window; whether it is recorded.
    async fn checkpoint(&self, window: Window, records: u64) -> bool {
        let key = checkpoint_key(&self.shared.state_prefix, &self.source.tenant, window);
        let body = serde_json::json!({
            "tenant": self.source.tenant,
            "api_url": self.client.url(),
            "start_ms": window.start_ms,
            "end_ms": window.end_ms,
            "records": records,
            "completed_at_ms": chrono::Utc::now().timestamp_millis(),
        })
        .to_string();
        match self.shared.archive.put_state_if_absent(&key, &body).await {
            Ok(_) => true,
            Err(error) => {
                tracing::error!(tenant = %self.source.tenant, error = %error.detail, "cannot write the checkpoint; the window is read again next time");
                false
            }
        }
    }

    /// Reads every page of `window` and archives its records; the next page
    /// is fetched while the current one is stored.
    async fn window(
        &self,
        router: &mut RouterInstance,
        window: Window,
    ) -> Result<(WindowEnd, u64), ApiError> {
        let (start, end) = (window.start_ms, window.end_ms - 1);
        let mut shutdown = self.shutdown.clone();
        let mut page = tokio::select! {
            page = self.client.audit_page(start, end, None) => page?,
            _ = stopped(&mut shutdown) => return Ok((WindowEnd::Incomplete, 0)),
        };
        let mut end_state = WindowEnd::Complete;
        let mut records = 0;
        loop {
            let fetched_at = chrono::Utc::now().timestamp_millis();
            records += page.records.len() as u64;
            self.shared
                .progress
                .records
                .fetch_add(page.records.len() as u64, Ordering::Relaxed);
            let next = page.next_page_token.clone();
            let store = self.store(router, &page.records, fetched_at);
            let (complete, next_page) = match &next {
                Some(token) => {
                    let fetch = self.client.audit_page(start, end, Some(token));
                    let (complete, next_page) = tokio::join!(store, fetch);
                    (complete, Some(next_page))
                }
                None => (store.await, None),
            };
            if !complete {
                end_state = WindowEnd::Incomplete;
            }
            match next_page {
                None => return Ok((end_state, records)),
                Some(next_page) => page = next_page?,
            }
            if *shutdown.borrow() {
                return Ok((WindowEnd::Incomplete, records));
            }
        }
    }

    /// Routes and stores records, `concurrency` at a time; whether every one
    /// was archived (or quarantined).
    async fn store(
        &self,
        router: &mut RouterInstance,
        records: &[String],
        fetched_at_ms: i64,
    ) -> bool {
        let queue_name = self.source.queue_name();
        let url: String = self
            .client
            .url()
            .chars()
            .filter(|c| (' '..='~').contains(c))
            .take(512)
            .collect();
        let extra = [
            (crate::store::metadata::SOURCE, SOURCE.to_string()),
            (crate::store::metadata::PRISMA_API_URL, url),
            (
                crate::store::metadata::FETCHED_AT_MS,
                fetched_at_ms.to_string(),
            ),
        ];
        // No queue: the records come from the API, named after the tenant's
        // queue; the checkpoint moves once every one is stored.
        let origin = Origin {
            queue: &queue_name,
            fifo: false,
            metadata: &extra,
        };
        let stage = StoreStage {
            store: &self.shared.archive,
            settings: &self.shared.store,
            counters: &self.shared.counters,
            shutdown: self.shutdown.clone(),
        };
        let mut complete = true;
        for chunk in records.chunks(self.shared.concurrency) {
            let messages: Vec<ReceivedMessage> = chunk
                .iter()
                .map(|record| ReceivedMessage {
                    // The API validated it as JSON already (RawValue).
                    message_id: api_message_id(record)
                        .unwrap_or_else(|_| format!("api-{:x}", Sha256::digest(record.as_bytes()))),
                    body: record.clone(),
                    first_receive_ms: None,
                    sent_ms: None,
                    group_id: None,
                })
                .collect();
            let routes = {
                // Records have no SQS times: the body goes in whatever the
                // time source (as `event` would have it).
                let inputs: Vec<Message<'_>> = messages
                    .iter()
                    .map(|m| component_input(m, &queue_name, TimeSource::Event))
                    .collect();
                router.route_batch(&inputs)
            };
            let stored = stage.store(&origin, Routed::pair(messages, routes)).await;
            complete &= stored.iter().all(|s| s.settlement.deletable());
        }
        complete
    }
}
