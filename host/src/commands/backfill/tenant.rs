//! One tenant's backfill: its windows in order, each paged from the API,
//! routed and stored, then checkpointed.
//!
//! Reading and storing overlap: the pages are read in order into a short
//! queue while the records of earlier ones are stored and their windows
//! checkpointed, so the API's pace, not S3's, sets the time a range takes.

use super::*;

use tokio::sync::mpsc;

/// Pages read ahead of the one being stored (at most 500 records each).
const READ_AHEAD_PAGES: usize = 10;

/// A page on its way from the API to the store.
struct Fetched {
    records: Vec<String>,
    fetched_at_ms: i64,
    /// The window's last page.
    last: bool,
}

/// What archiving a list of windows came to.
struct Archived {
    /// Windows ended, from the first on (complete or not).
    ended: usize,
    /// How the last of them ended, and its records.
    last: Option<(WindowEnd, u64)>,
    /// Why the API stopped being read before the end, if it did.
    error: Option<ApiError>,
}

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
        let mut todo = Vec::new();
        for window in &windows {
            if covered(&done, *window) {
                progress.windows_skipped.fetch_add(1, Ordering::Relaxed);
                progress.windows_done.fetch_add(1, Ordering::Relaxed);
            } else {
                todo.push(*window);
            }
        }
        let archived = self.archive(&mut router, &todo, true).await;
        // Windows not ended: the API failed, or a signal stopped the range.
        progress
            .windows_incomplete
            .fetch_add((todo.len() - archived.ended) as u64, Ordering::Relaxed);
        let api_ok = match archived.error {
            None => true,
            Some(error) => {
                // The API is down or refusing: the later windows cannot
                // be read either. Their checkpoints stay as they are.
                let window_start_ms = todo.get(archived.ended).map(|w| w.start_ms);
                tracing::error!(%tenant, %error, window_start_ms, "cannot read the window from the API; stopping this tenant");
                false
            }
        };
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
            let archived = self.archive(router, &[window], false).await;
            match (archived.error, archived.last) {
                (Some(error), _) => {
                    tracing::warn!(tenant = %self.source.tenant, %error, "follow: cannot read the API; the next poll tries again");
                }
                (None, Some((WindowEnd::Complete, records))) => {
                    since_ms = now;
                    tracing::info!(tenant = %self.source.tenant, records, "follow: polled the latest records");
                }
                (None, last) => {
                    let records = last.map_or(0, |(_, records)| records);
                    tracing::warn!(tenant = %self.source.tenant, records, "follow: some records not archived; the next poll tries again");
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

    /// Reads every page of `windows` in order and archives their records,
    /// reading ahead while storing; with `checkpoint`, records each window
    /// that ends complete (and counts and logs it) as soon as it does.
    async fn archive(
        &self,
        router: &mut RouterInstance,
        windows: &[Window],
        checkpoint: bool,
    ) -> Archived {
        let (pages, mut queue) = mpsc::channel(READ_AHEAD_PAGES);
        let read = self.read(windows, pages);
        let store = async {
            let mut archived = Archived {
                ended: 0,
                last: None,
                error: None,
            };
            let (mut end_state, mut records) = (WindowEnd::Complete, 0u64);
            // Until the reader is done: on a signal it stops asking, and the
            // pages in hand are still stored.
            while let Some(page) = queue.recv().await {
                let page: Fetched = match page {
                    Ok(page) => page,
                    Err(error) => {
                        archived.error = Some(error);
                        break;
                    }
                };
                records += page.records.len() as u64;
                self.shared
                    .progress
                    .records
                    .fetch_add(page.records.len() as u64, Ordering::Relaxed);
                if !self.store(router, &page.records, page.fetched_at_ms).await {
                    end_state = WindowEnd::Incomplete;
                }
                if !page.last {
                    continue;
                }
                let window = windows[archived.ended];
                if checkpoint {
                    self.window_ended(window, end_state, records).await;
                }
                archived.ended += 1;
                archived.last = Some((end_state, records));
                (end_state, records) = (WindowEnd::Complete, 0);
            }
            archived
        };
        let ((), archived) = tokio::join!(read, store);
        archived
    }

    /// Reads the pages of `windows` in order into `pages`, until the end, an
    /// API failure (sent on) or a signal.
    async fn read(&self, windows: &[Window], pages: mpsc::Sender<Result<Fetched, ApiError>>) {
        let mut shutdown = self.shutdown.clone();
        for window in windows {
            let (start, end) = (window.start_ms, window.end_ms - 1);
            let mut page_token: Option<String> = None;
            loop {
                if *shutdown.borrow() {
                    return;
                }
                let page = tokio::select! {
                    page = self.client.audit_page(start, end, page_token.as_deref()) => page,
                    _ = stopped(&mut shutdown) => return,
                };
                let page = match page {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = pages.send(Err(error)).await;
                        return;
                    }
                };
                page_token = page.next_page_token;
                let fetched = Fetched {
                    records: page.records,
                    fetched_at_ms: chrono::Utc::now().timestamp_millis(),
                    last: page_token.is_none(),
                };
                if pages.send(Ok(fetched)).await.is_err() {
                    return;
                }
                if page_token.is_none() {
                    break;
                }
            }
        }
    }

    /// Checkpoints a window of the range that ended complete; counts and
    /// logs it.
    async fn window_ended(&self, window: Window, end_state: WindowEnd, records: u64) {
        let progress = &self.shared.progress;
        let recorded = match end_state {
            WindowEnd::Complete => self.checkpoint(window, records).await,
            WindowEnd::Incomplete => false,
        };
        if !recorded {
            progress.windows_incomplete.fetch_add(1, Ordering::Relaxed);
        }
        self.log_window(window, records, recorded);
        progress.windows_done.fetch_add(1, Ordering::Relaxed);
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
