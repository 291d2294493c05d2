//! Polling with a deadline: a test waits for what it can observe, never for
//! a fixed time.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::Moto;

/// Polls `check` every 200 ms until it holds; panics after `limit`.
pub async fn wait_for<F, Fut>(what: &str, limit: Duration, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for_every(what, limit, Duration::from_millis(200), check).await;
}

/// Polls `check` every `poll` until it holds; panics after `limit`.
pub async fn wait_for_every<F, Fut>(what: &str, limit: Duration, poll: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    while !check().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(poll).await;
    }
}

/// Waits (polling closely, so a signal can follow at once) until the bucket
/// holds at least `target` objects.
pub async fn wait_for_objects(moto: &Moto, bucket: &str, target: usize) {
    wait_for_every(
        &format!("{target} objects"),
        Duration::from_secs(120),
        Duration::from_millis(25),
        || async { moto.object_count(bucket).await >= target },
    )
    .await;
}

/// Waits until every queue is empty and the bucket holds `expected` objects.
pub async fn wait_settled(
    moto: &Moto,
    bucket: &str,
    queues: &[String],
    expected: usize,
    limit: Duration,
) {
    wait_for(
        "every message archived and the queues empty",
        limit,
        || async {
            moto.total_depth(queues).await == 0 && moto.object_count(bucket).await >= expected
        },
    )
    .await;
}
