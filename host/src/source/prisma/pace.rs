//! How fast the client may ask, and how long it waits before asking again.
//!
//! The API allows a number of requests per second per user and answers 429
//! beyond. The pacer keeps to exactly that rule, "at most N requests in any
//! second" (with a small margin for the network's jitter), rather than
//! spacing requests evenly: time spent waiting on S3, a token renewal or a
//! retry is then caught up within the second instead of being lost.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// First and longest delay between two attempts after a server error, a
/// timeout or a connection failure.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(20);

/// Longest `Retry-After` honoured.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// Margin added to the pacer's window, as a share of it: requests leave
/// evenly but arrive with the network's jitter, and one that arrives early
/// would be the N+1th of the server's second.
const JITTER_MARGIN: f64 = 1.0 / 100.0;

/// At most `burst` requests start in any `window` (the API's rate, in whole
/// requests: 10/s is 10 per second, 2.5/s is 2 per 0.8 s, 0.5/s is 1 per 2 s).
#[derive(Debug)]
pub(super) struct Pacer {
    burst: usize,
    window: Duration,
    /// The start times given out, the latest `burst` of them, oldest first.
    starts: Mutex<VecDeque<Instant>>,
}

impl Pacer {
    pub(super) fn new(requests_per_sec: f64) -> Self {
        let rate = requests_per_sec.max(0.001);
        let burst = (rate.floor() as usize).max(1);
        let window = Duration::from_secs_f64(burst as f64 / rate * (1.0 + JITTER_MARGIN));
        Self {
            burst,
            window,
            starts: Mutex::new(VecDeque::with_capacity(burst)),
        }
    }

    /// The average time between two requests at the full rate.
    pub(super) fn interval(&self) -> Duration {
        self.window / self.burst as u32
    }

    /// When a request asking now could start (without taking the slot).
    pub(super) fn next_start(&self) -> Instant {
        let starts = self
            .starts
            .lock()
            .expect("the pacer's lock is never poisoned");
        self.start_after(&starts, Instant::now())
    }

    fn start_after(&self, starts: &VecDeque<Instant>, now: Instant) -> Instant {
        match starts.front() {
            Some(oldest) if starts.len() >= self.burst => now.max(*oldest + self.window),
            _ => now,
        }
    }

    /// Takes the next start time at or after `now`.
    fn reserve(&self, now: Instant) -> Instant {
        let mut starts = self
            .starts
            .lock()
            .expect("the pacer's lock is never poisoned");
        let start = self.start_after(&starts, now);
        if starts.len() >= self.burst {
            starts.pop_front();
        }
        starts.push_back(start);
        start
    }

    /// Waits for the next start time; every attempt takes one, refused or not
    /// (the API counts them all).
    pub(super) async fn acquire(&self) {
        let start = self.reserve(Instant::now());
        tokio::time::sleep_until(start.into()).await;
    }
}

/// Why an attempt is to be repeated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    /// 429: the API's rate limit.
    Throttled,
    /// 5xx, a timeout, a connection error.
    Unavailable,
}

/// How long to wait, on top of the pacer, before attempt `failed + 1`.
///
/// `Retry-After` is honoured. A 429 without it costs the retry's own slot
/// and nothing more the first time: the pacer already keeps to the rate, so
/// the refusal was the API's momentary judgement (its window or another
/// client of the same user), not a sign to stop for seconds. A second 429
/// in a row waits one interval, then twice that, and so on (the documented
/// exponential backoff). Other failures back off from 250 ms, doubling.
pub(super) fn retry_wait(
    failure: Failure,
    retry_after: Option<Duration>,
    failed: u32,
    interval: Duration,
) -> Duration {
    if let Some(after) = retry_after {
        return after.min(MAX_RETRY_AFTER);
    }
    let doublings = failed.saturating_sub(1).min(16);
    match failure {
        Failure::Throttled if failed <= 1 => Duration::ZERO,
        Failure::Throttled => (interval * (1 << (doublings - 1))).min(MAX_BACKOFF),
        Failure::Unavailable => (FIRST_BACKOFF * (1 << doublings)).min(MAX_BACKOFF),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_the_rate_in_any_window_and_no_more_waiting() {
        let pacer = Pacer::new(10.0);
        let t0 = Instant::now();
        let starts: Vec<Instant> = (0..25).map(|_| pacer.reserve(t0)).collect();
        // The first ten at once, then each one a window after the one ten back.
        assert!(starts[..10].iter().all(|s| *s == t0));
        for i in 10..25 {
            assert_eq!(starts[i], starts[i - 10] + pacer.window, "{i}");
        }
        assert!(pacer.window > Duration::from_secs(1));
        assert!(pacer.window <= Duration::from_millis(1010));
        // Any window of the API's length holds at most ten starts.
        for (i, s) in starts.iter().enumerate() {
            let within = starts[i..]
                .iter()
                .filter(|t| **t < *s + Duration::from_secs(1))
                .count();
            assert!(within <= 10, "{within} starts within 1 s of start {i}");
        }
    }

    #[test]
    fn idle_time_is_caught_up_within_the_window_only() {
        let pacer = Pacer::new(10.0);
        let t0 = Instant::now();
        for _ in 0..10 {
            pacer.reserve(t0);
        }
        // Half a second after the window ends, ten may go at once again...
        let later = t0 + pacer.window + Duration::from_millis(500);
        assert!((0..10).all(|_| pacer.reserve(later) == later));
        // ...but not an eleventh.
        assert_eq!(pacer.reserve(later), later + pacer.window);
    }

    #[test]
    fn fractional_and_slow_rates() {
        let pacer = Pacer::new(2.5);
        assert_eq!(pacer.burst, 2);
        assert!((pacer.window.as_secs_f64() - 0.8 * (1.0 + JITTER_MARGIN)).abs() < 1e-9);
        let pacer = Pacer::new(0.5);
        let t0 = Instant::now();
        assert_eq!(pacer.reserve(t0), t0);
        assert_eq!(pacer.reserve(t0), t0 + pacer.window);
        assert!(pacer.window >= Duration::from_secs(2));
    }

    #[test]
    fn next_start_does_not_take_the_slot() {
        let pacer = Pacer::new(1.0);
        let t0 = Instant::now();
        pacer.reserve(t0);
        let next = pacer.next_start();
        assert!(next >= t0 + pacer.window);
        assert_eq!(pacer.next_start(), next);
    }

    #[test]
    fn a_429_costs_a_slot_then_backs_off() {
        let interval = Duration::from_millis(100);
        let wait = |failed| retry_wait(Failure::Throttled, None, failed, interval);
        assert_eq!(wait(1), Duration::ZERO);
        assert_eq!(wait(2), interval);
        assert_eq!(wait(3), interval * 2);
        assert_eq!(wait(5), interval * 8);
        assert_eq!(wait(30), MAX_BACKOFF);
        // Retry-After wins, within reason.
        let after = Some(Duration::from_secs(3));
        assert_eq!(
            retry_wait(Failure::Throttled, after, 1, interval),
            Duration::from_secs(3)
        );
        assert_eq!(
            retry_wait(
                Failure::Throttled,
                Some(Duration::from_secs(900)),
                1,
                interval
            ),
            MAX_RETRY_AFTER
        );
    }

    #[test]
    fn server_errors_back_off_from_a_quarter_second() {
        let wait = |failed| retry_wait(Failure::Unavailable, None, failed, Duration::ZERO);
        assert_eq!(wait(1), FIRST_BACKOFF);
        assert_eq!(wait(2), FIRST_BACKOFF * 2);
        assert_eq!(wait(4), FIRST_BACKOFF * 8);
        assert_eq!(wait(20), MAX_BACKOFF);
    }

    #[tokio::test]
    async fn acquire_waits_for_the_window() {
        let pacer = Pacer::new(50.0);
        let started = Instant::now();
        for _ in 0..51 {
            pacer.acquire().await;
        }
        // Fifty at once, the fifty-first a window (1 s + margin) later.
        assert!(started.elapsed() >= Duration::from_secs(1));
    }
}
