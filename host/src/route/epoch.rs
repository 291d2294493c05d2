//! Epoch interruption without idle wake-ups.
//!
//! Wasmtime interrupts a call once the engine's epoch passes the store's
//! deadline; something must advance the epoch. A thread that ticks forever
//! wakes the process 100 times a second even when it has nothing to do (a
//! poller spends most of its life in a 20 s long poll). This ticker ticks
//! only while a call is in flight, and for one more tick after a call
//! started (so a steady flow of short calls never has to wake it); otherwise
//! it is parked. A call's deadline is counted in ticks from its start, so a
//! call that runs forever is still stopped after its time limit.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, Thread};
use std::time::Duration;

use wasmtime::Engine;

/// The ticking thread of one engine; stopped when dropped.
pub(super) struct Ticker {
    shared: Arc<Shared>,
    thread: Thread,
}

struct Shared {
    /// Calls in flight.
    calls: AtomicUsize,
    /// A call started since the ticker last looked.
    recent: AtomicBool,
    /// The ticker is parked, or about to park: a starting call unparks it.
    parked: AtomicBool,
    stop: AtomicBool,
    /// Epoch increments so far (tests read it).
    ticks: AtomicU64,
}

/// Marks a call in flight until dropped.
pub(super) struct InCall<'a>(&'a Shared);

impl Drop for InCall<'_> {
    fn drop(&mut self) {
        self.0.calls.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Ticker {
    /// Starts the (parked) ticking thread of `engine`.
    pub(super) fn start(engine: Engine, tick: Duration) -> Ticker {
        let shared = Arc::new(Shared {
            calls: AtomicUsize::new(0),
            recent: AtomicBool::new(false),
            parked: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            ticks: AtomicU64::new(0),
        });
        let state = shared.clone();
        let handle = thread::Builder::new()
            .name("component-epoch".into())
            .spawn(move || run(&engine, &state, tick))
            .expect("spawning the epoch thread");
        Ticker {
            shared,
            thread: handle.thread().clone(),
        }
    }

    /// Declares a call into the component (or an instantiation, which
    /// runs its code too) until the returned guard is dropped.
    pub(super) fn enter(&self) -> InCall<'_> {
        let shared = &*self.shared;
        shared.calls.fetch_add(1, Ordering::SeqCst);
        shared.recent.store(true, Ordering::Relaxed);
        // Either the ticker sees `calls > 0` before it parks, or this sees
        // `parked` (both sequentially consistent); an unpark before the
        // park makes the park return at once.
        if shared.parked.load(Ordering::SeqCst) {
            self.thread.unpark();
        }
        InCall(shared)
    }

    #[cfg(test)]
    pub(super) fn ticks(&self) -> u64 {
        self.shared.ticks.load(Ordering::SeqCst)
    }

    #[cfg(test)]
    pub(super) fn is_parked(&self) -> bool {
        self.shared.parked.load(Ordering::SeqCst)
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

fn run(engine: &Engine, shared: &Shared, tick: Duration) {
    while !shared.stop.load(Ordering::SeqCst) {
        let busy = shared.calls.load(Ordering::SeqCst) > 0;
        let recent = shared.recent.swap(false, Ordering::Relaxed);
        if !busy && !recent {
            shared.parked.store(true, Ordering::SeqCst);
            if shared.calls.load(Ordering::SeqCst) == 0 && !shared.stop.load(Ordering::SeqCst) {
                thread::park(); // may also return spuriously: the loop re-checks
            }
            shared.parked.store(false, Ordering::SeqCst);
            continue;
        }
        thread::sleep(tick);
        engine.increment_epoch();
        shared.ticks.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// `(module (func (export "spin") (loop (br 0))))`, encoded by hand
    /// (the `wat` feature is not built).
    const SPIN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type: () -> ()
        0x03, 0x02, 0x01, 0x00, // one function of type 0
        0x07, 0x08, 0x01, 0x04, b's', b'p', b'i', b'n', 0x00, 0x00, // export "spin"
        0x0a, 0x09, 0x01, 0x07, 0x00, 0x03, 0x40, 0x0c, 0x00, 0x0b, 0x0b, // loop br 0
    ];

    fn wait_until(what: &str, condition: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !condition() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn parks_when_idle_and_still_interrupts_a_runaway_call() {
        let mut config = wasmtime::Config::new();
        config.epoch_interruption(true);
        let engine = Engine::new(&config).unwrap();
        let ticker = Ticker::start(engine.clone(), Duration::from_millis(2));

        // Idle from the start: parked, and the epoch does not move.
        wait_until("the idle ticker parks", || ticker.is_parked());
        let idle = ticker.ticks();
        thread::sleep(Duration::from_millis(50));
        assert_eq!(ticker.ticks(), idle, "an idle ticker ticked");

        // A call that never returns is interrupted at its deadline.
        let module = wasmtime::Module::new(&engine, SPIN).unwrap();
        let mut store = wasmtime::Store::new(&engine, ());
        store.epoch_deadline_trap();
        let instance = wasmtime::Instance::new(&mut store, &module, &[]).unwrap();
        let spin = instance
            .get_typed_func::<(), ()>(&mut store, "spin")
            .unwrap();
        store.set_epoch_deadline(5);
        let error = {
            let _in_call = ticker.enter();
            spin.call(&mut store, ()).unwrap_err()
        };
        assert_eq!(
            error.downcast_ref::<wasmtime::Trap>(),
            Some(&wasmtime::Trap::Interrupt)
        );
        assert!(ticker.ticks() >= idle + 5);

        // After the call, the ticker parks again.
        wait_until("the ticker parks after the call", || ticker.is_parked());
        let after = ticker.ticks();
        thread::sleep(Duration::from_millis(50));
        assert_eq!(
            ticker.ticks(),
            after,
            "the ticker kept ticking after the call"
        );
    }
}
