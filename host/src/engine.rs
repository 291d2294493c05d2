//! The routing component: loading it, checking it against the contract, and
//! calling it inside a sandbox.
//!
//! The component is untrusted. It gets no imports at all, a memory cap and a
//! time bound per call (epoch interruption), and every placement it returns is
//! validated again here with the native key rules before the host uses it. A
//! trap or a broken limit fails the messages of that call, never the process.
//! The thread that advances the epoch runs only while calls are in flight
//! ([`epoch`]): an idle host is never woken by it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use audit_archiver_transform::{self as transform, Message, Placement, RouteError, SettingsError};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

/// The one place that runs `bindgen!` against `wit/`.
mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "routing",
        // Messages cross into the guest by reference: no host-side copy of
        // bodies, ids or queue names before the canonical ABI copies them in.
        ownership: Borrowing { duplicate_if_necessary: false },
    });
}

use bindings::exports::audit_archiver::routing::router as wit;

/// The component built from `transform/`, embedded at build time.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("AUDIT_ARCHIVER_EMBEDDED_COMPONENT"));

/// The interface a routing component must export (`wit/router.wit`).
pub const ROUTER_INTERFACE: &str = "audit-archiver:routing/router@1.0.0";

/// How often the epoch ticks; call deadlines are counted in these ticks.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Resource bounds for each instance of the component.
#[derive(Debug, Clone, Copy)]
pub struct SandboxLimits {
    /// Largest linear memory the component may grow to.
    pub memory_bytes: usize,
    /// Wall-clock bound of one call into the component.
    pub call_timeout: Duration,
}

impl Default for SandboxLimits {
    /// `--component-memory-mib` and `--component-timeout-ms` unset.
    fn default() -> Self {
        crate::config::defaults::sandbox_limits()
    }
}

/// Why a component cannot be used. Found at start-up, before any message.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The file could not be read.
    #[error("cannot read component {origin}: {source}")]
    Read {
        /// Where the component came from.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The bytes are not a valid component for this engine.
    #[error("{origin} is not a valid WebAssembly component: {detail}")]
    Compile {
        /// Where the component came from.
        origin: String,
        /// Wasmtime's reason.
        detail: String,
    },
    /// The component imports something; routing components may import nothing.
    #[error(
        "{origin} imports {imports:?}; a routing component must import nothing \
         (no WASI, no host functions). Build it as a pure component (see docs/embedding.md)"
    )]
    HasImports {
        /// Where the component came from.
        origin: String,
        /// The imports it asks for.
        imports: Vec<String>,
    },
    /// The component does not implement the routing world of this version.
    #[error(
        "{origin} does not implement the routing contract: expected an export \
         `{ROUTER_INTERFACE}` with route, route-batch and validate-settings, found exports \
         {exports:?} ({detail})"
    )]
    WrongWorld {
        /// Where the component came from.
        origin: String,
        /// The exports it has.
        exports: Vec<String>,
        /// Wasmtime's reason.
        detail: String,
    },
    /// The component rejected the settings.
    #[error("{0}")]
    Settings(SettingsError),
    /// A precompiled artifact is not this binary's (another build, wasmtime
    /// version or engine configuration) or is damaged.
    #[error(
        "{origin} cannot be used: {detail}. Rebuild it with this very binary: \
         `audit-archiver lambda --precompile-to PATH` (scripts/package-lambda.sh does)"
    )]
    Precompiled {
        /// Where the artifact came from.
        origin: String,
        /// What does not match.
        detail: String,
    },
    /// The component trapped while checking the settings.
    #[error("{origin} failed while validating settings: {detail}")]
    Trapped {
        /// Where the component came from.
        origin: String,
        /// The trap.
        detail: String,
    },
}

/// Why one message was not routed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RouteFailure {
    /// The component refused the message (a WIT `route-error`): the message
    /// itself is at fault, so it is quarantined.
    Rejected(RouteError),
    /// The component returned a placement the host will not use (unsafe key,
    /// key outside the tenant, invalid tenant): quarantined, reason logged.
    UnsafePlacement(String),
    /// The component failed, not the message: it trapped, broke a limit,
    /// could not be instantiated or answered a batch with the wrong number
    /// of results. The message stays in SQS.
    ComponentFailed(String),
}

impl std::fmt::Display for RouteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rejected(e) => write!(f, "{}: {}", e.case(), e.detail()),
            Self::UnsafePlacement(detail) => write!(f, "unsafe-placement: {detail}"),
            Self::ComponentFailed(detail) => write!(f, "component-trap: {detail}"),
        }
    }
}

/// State of one sandboxed store.
struct Sandbox {
    limits: StoreLimits,
}

/// A loaded, checked and linked routing component, with validated settings.
/// Cheap to clone and to instantiate many times: one instance per worker.
#[derive(Clone)]
pub struct RouterComponent {
    inner: Arc<Loaded>,
}

/// What every instance shares. The epoch ticker lives as long as it does.
struct Loaded {
    engine: Engine,
    pre: bindings::RoutingPre<Sandbox>,
    settings: transform::Settings,
    limits: SandboxLimits,
    origin: String,
    ticker: epoch::Ticker,
}

impl RouterComponent {
    /// Loads the embedded component, or the one at `path`, compiling it.
    pub fn load(
        path: Option<&Path>,
        settings: &transform::Settings,
        limits: SandboxLimits,
    ) -> Result<Self, ComponentError> {
        Self::load_cached(path, settings, limits, None)
    }

    /// Like [`RouterComponent::load`], with a compile cache in `cache_dir`
    /// (`None`: always compile). See [`cache`].
    pub fn load_cached(
        path: Option<&Path>,
        settings: &transform::Settings,
        limits: SandboxLimits,
        cache_dir: Option<&Path>,
    ) -> Result<Self, ComponentError> {
        match path {
            None => Self::from_bytes_cached(
                "the embedded component",
                EMBEDDED_COMPONENT,
                settings,
                limits,
                cache_dir,
            ),
            Some(path) => {
                let origin = format!("component {}", path.display());
                let bytes = std::fs::read(path).map_err(|source| ComponentError::Read {
                    origin: origin.clone(),
                    source,
                })?;
                Self::from_bytes_cached(&origin, &bytes, settings, limits, cache_dir)
            }
        }
    }

    /// Compiles, checks and links a component, then validates `settings` with it.
    pub fn from_bytes(
        origin: &str,
        bytes: &[u8],
        settings: &transform::Settings,
        limits: SandboxLimits,
    ) -> Result<Self, ComponentError> {
        Self::from_bytes_cached(origin, bytes, settings, limits, None)
    }

    /// Like [`RouterComponent::from_bytes`], reusing (or filling) the compile
    /// cache in `cache_dir` when given.
    pub fn from_bytes_cached(
        origin: &str,
        bytes: &[u8],
        settings: &transform::Settings,
        limits: SandboxLimits,
        cache_dir: Option<&Path>,
    ) -> Result<Self, ComponentError> {
        let origin = origin.to_string();
        let engine = new_engine();
        let compiled = match cache_dir {
            Some(dir) => cache::load_or_compile(&engine, bytes, dir).map(|(c, _)| c),
            None => Component::from_binary(&engine, bytes),
        };
        let component = compiled.map_err(|e| ComponentError::Compile {
            origin: origin.clone(),
            detail: format!("{e:#}"),
        })?;
        Self::from_component(origin, engine, component, settings, limits)
    }

    /// The embedded component from an artifact written by [`precompiled::write`]:
    /// no compilation at start-up (an AWS Lambda cold start).
    pub fn load_precompiled(
        path: &Path,
        settings: &transform::Settings,
        limits: SandboxLimits,
    ) -> Result<Self, ComponentError> {
        let origin = format!("precompiled component {}", path.display());
        let engine = new_engine();
        let bytes = std::fs::read(path).map_err(|source| ComponentError::Read {
            origin: origin.clone(),
            source,
        })?;
        let component =
            precompiled::load(&engine, &bytes).map_err(|detail| ComponentError::Precompiled {
                origin: origin.clone(),
                detail,
            })?;
        Self::from_component(origin, engine, component, settings, limits)
    }

    /// Checks and links a compiled component, then validates `settings` with it.
    fn from_component(
        origin: String,
        engine: Engine,
        component: Component,
        settings: &transform::Settings,
        limits: SandboxLimits,
    ) -> Result<Self, ComponentError> {
        let ty = component.component_type();
        let imports: Vec<String> = ty
            .imports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        if !imports.is_empty() {
            return Err(ComponentError::HasImports { origin, imports });
        }
        // No imports are granted: the linker is empty on purpose.
        let linker = Linker::<Sandbox>::new(&engine);
        let pre = linker
            .instantiate_pre(&component)
            .and_then(bindings::RoutingPre::new)
            .map_err(|e| ComponentError::WrongWorld {
                origin: origin.clone(),
                exports: ty
                    .exports(&engine)
                    .map(|(name, _)| name.to_string())
                    .collect(),
                detail: format!("{e:#}"),
            })?;

        let ticker = epoch::Ticker::start(engine.clone(), EPOCH_TICK);
        let router = Self {
            inner: Arc::new(Loaded {
                engine,
                pre,
                settings: settings.clone(),
                limits,
                origin,
                ticker,
            }),
        };
        router.check_settings()?;
        Ok(router)
    }

    /// Where the component came from, for messages.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// A new sandboxed instance, for one worker.
    pub fn instance(&self) -> Result<RouterInstance, RouteFailure> {
        RouterInstance::new(self.inner.clone())
    }

    fn check_settings(&self) -> Result<(), ComponentError> {
        let trapped = |detail: String| ComponentError::Trapped {
            origin: self.inner.origin.clone(),
            detail,
        };
        let mut instance = self.instance().map_err(|e| trapped(e.to_string()))?;
        let result = instance.call(|routing, store, settings| {
            routing
                .audit_archiver_routing_router()
                .call_validate_settings(store, settings)
        });
        match result {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(ComponentError::Settings(from_wit_settings_error(e))),
            Err(detail) => Err(trapped(detail)),
        }
    }
}

fn new_engine() -> Engine {
    let mut config = Config::new();
    config.wasm_component_model(true);
    config.epoch_interruption(true);
    // Reserve the whole 4 GiB a 32-bit memory can address, plus a guard: every
    // address the component can form then lands in the reservation or the
    // guard, so Cranelift drops the bounds check of each load and store (the
    // hardware traps instead). With a 128 MiB reservation the checks cost
    // ~15 % of a route-batch call. This is address space, not memory: the
    // pages stay unmapped (`PROT_NONE`) until the component grows into them,
    // and `SandboxLimits::memory_bytes` still caps that growth. One instance
    // per queue worker: 4 GiB of address space each, of 128 TiB.
    config.memory_reservation(4 << 30);
    config.memory_guard_size(32 << 20);
    Engine::new(&config).expect("the engine configuration is static and valid")
}

/// Epoch interruption without idle wake-ups.
///
/// Wasmtime interrupts a call once the engine's epoch passes the store's
/// deadline; something must advance the epoch. A thread that ticks forever
/// wakes the process 100 times a second even when it has nothing to do (a
/// poller spends most of its life in a 20 s long poll). This ticker ticks
/// only while a call is in flight, and for one more tick after a call
/// started (so a steady flow of short calls never has to wake it); otherwise
/// it is parked. A call's deadline is counted in ticks from its start, so a
/// call that runs forever is still stopped after its time limit.
mod epoch {
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
}

/// One sandboxed instance of the component. Not shared between threads; after
/// a trap it replaces itself with a fresh instance.
pub struct RouterInstance {
    component: Arc<Loaded>,
    store: Store<Sandbox>,
    routing: bindings::Routing,
}

impl RouterInstance {
    fn new(component: Arc<Loaded>) -> Result<Self, RouteFailure> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(component.limits.memory_bytes)
            .instances(16)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&component.engine, Sandbox { limits });
        store.limiter(|sandbox| &mut sandbox.limits);
        store.epoch_deadline_trap();
        store.set_epoch_deadline(deadline_ticks(component.limits.call_timeout));
        let instantiated = {
            // Instantiation runs the component's start code: bound it too.
            let _in_call = component.ticker.enter();
            component.pre.instantiate(&mut store)
        };
        let routing = instantiated.map_err(|e| {
            RouteFailure::ComponentFailed(format!("instantiating the component: {e:#}"))
        })?;
        Ok(Self {
            component,
            store,
            routing,
        })
    }

    /// Routes a batch of messages with one call; one result per message, in order.
    ///
    /// If the batch call traps, each message is retried alone in a fresh
    /// instance, so one poisonous message fails alone.
    pub fn route_batch(
        &mut self,
        messages: &[Message<'_>],
    ) -> Vec<Result<Placement, RouteFailure>> {
        let wit_messages: Vec<wit::Message<'_>> = messages.iter().map(to_wit_message).collect();
        let batch = self.call(|routing, store, settings| {
            routing
                .audit_archiver_routing_router()
                .call_route_batch(store, settings, &wit_messages)
        });
        match batch {
            Ok(results) if results.len() == messages.len() => results
                .into_iter()
                .map(|result| self.checked(result))
                .collect(),
            Ok(results) => {
                let detail = format!(
                    "route-batch returned {} results for {} messages",
                    results.len(),
                    messages.len()
                );
                vec![Err(RouteFailure::ComponentFailed(detail)); messages.len()]
            }
            Err(_) if messages.len() > 1 => wit_messages
                .into_iter()
                .map(|message| self.route_one(message))
                .collect(),
            Err(detail) => vec![Err(RouteFailure::ComponentFailed(detail))],
        }
    }

    /// Routes one message with the single-message entry point.
    pub fn route(&mut self, message: &Message<'_>) -> Result<Placement, RouteFailure> {
        self.route_one(to_wit_message(message))
    }

    fn route_one(&mut self, message: wit::Message<'_>) -> Result<Placement, RouteFailure> {
        let result = self.call(|routing, store, settings| {
            routing
                .audit_archiver_routing_router()
                .call_route(store, settings, message)
        });
        match result {
            Ok(result) => self.checked(result),
            Err(detail) => Err(RouteFailure::ComponentFailed(detail)),
        }
    }

    /// Runs one call under a fresh deadline; on a trap, replaces the instance
    /// (a trapped instance must not be entered again) and returns the reason.
    fn call<T>(
        &mut self,
        f: impl FnOnce(
            &bindings::Routing,
            &mut Store<Sandbox>,
            wit::Settings<'_>,
        ) -> wasmtime::Result<T>,
    ) -> Result<T, String> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.component.limits.call_timeout));
        let component = self.component.clone();
        let overrides = wit_overrides(&component.settings);
        let settings = to_wit_settings(&component.settings, &overrides);
        let called = {
            let _in_call = component.ticker.enter();
            f(&self.routing, &mut self.store, settings)
        };
        match called {
            Ok(value) => Ok(value),
            Err(error) => {
                let detail = describe_trap(&error, self.component.limits);
                if let Ok(fresh) = RouterInstance::new(self.component.clone()) {
                    *self = fresh;
                }
                Err(detail)
            }
        }
    }

    /// The host's own check of what the untrusted component returned.
    fn checked(
        &self,
        result: Result<wit::Placement, wit::RouteError>,
    ) -> Result<Placement, RouteFailure> {
        let placement = result.map_err(|e| RouteFailure::Rejected(from_wit_route_error(e)))?;
        transform::queue::check_tenant(&placement.tenant)
            .map_err(str::to_string)
            .and_then(|()| {
                transform::check_key(&placement.key, &placement.tenant).map_err(|e| e.to_string())
            })
            .map_err(|e| {
                RouteFailure::UnsafePlacement(format!(
                    "{} returned tenant {:?} and key {:?}: {e}",
                    self.component.origin, placement.tenant, placement.key
                ))
            })?;
        Ok(Placement {
            tenant: placement.tenant,
            key: placement.key,
            time_ms: placement.time_ms,
        })
    }
}

fn deadline_ticks(timeout: Duration) -> u64 {
    (timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64
}

/// One line saying why a call failed (wasmtime's own text carries a
/// multi-line wasm backtrace).
fn describe_trap(error: &wasmtime::Error, limits: SandboxLimits) -> String {
    let text = format!("{error:#}");
    let trap = error.downcast_ref::<wasmtime::Trap>();
    if matches!(trap, Some(wasmtime::Trap::Interrupt)) {
        format!(
            "the component ran longer than its {} ms limit per call",
            limits.call_timeout.as_millis()
        )
    } else if matches!(trap, Some(wasmtime::Trap::AllocationTooLarge))
        || text.contains("growing memory")
    {
        format!(
            "the component exceeded its memory limit of {} bytes",
            limits.memory_bytes
        )
    } else if let Some(trap) = trap {
        format!("the component trapped: {trap}")
    } else {
        text.lines().next().unwrap_or("the call failed").to_string()
    }
}

/// The overrides, borrowed, for [`to_wit_settings`].
fn wit_overrides(settings: &transform::Settings) -> Vec<wit::TenantOverride<'_>> {
    settings
        .tenant_overrides
        .iter()
        .map(|o| wit::TenantOverride {
            queue: &o.queue,
            tenant: &o.tenant,
        })
        .collect()
}

/// The settings as the component takes them, borrowed: nothing is copied on
/// the host side before the canonical ABI copies the strings in.
fn to_wit_settings<'a>(
    settings: &'a transform::Settings,
    overrides: &'a [wit::TenantOverride<'a>],
) -> wit::Settings<'a> {
    wit::Settings {
        key_template: &settings.key_template,
        time_source: match settings.time_source {
            transform::TimeSource::FirstReceive => wit::TimeSource::FirstReceive,
            transform::TimeSource::Sent => wit::TimeSource::Sent,
            transform::TimeSource::Event => wit::TimeSource::Event,
        },
        utc_offset_minutes: settings.utc_offset_minutes,
        tenant_overrides: overrides,
    }
}

fn to_wit_message<'a>(message: &Message<'a>) -> wit::Message<'a> {
    wit::Message {
        message_id: message.message_id,
        queue: message.queue,
        body: message.body,
        first_receive_ms: message.first_receive_ms,
        sent_ms: message.sent_ms,
    }
}

fn from_wit_settings_error(e: wit::SettingsError) -> SettingsError {
    use wit::SettingsError as W;
    match e {
        W::EmptyTemplate(d) => SettingsError::EmptyTemplate(d),
        W::UnknownField(d) => SettingsError::UnknownField(d),
        W::UnknownSpecifier(d) => SettingsError::UnknownSpecifier(d),
        W::UnsafeTemplate(d) => SettingsError::UnsafeTemplate(d),
        W::InvalidOffset(d) => SettingsError::InvalidOffset(d),
        W::InvalidTenantOverride(d) => SettingsError::InvalidTenantOverride(d),
    }
}

fn from_wit_route_error(e: wit::RouteError) -> RouteError {
    use wit::RouteError as W;
    match e {
        W::InvalidSettings(s) => RouteError::InvalidSettings(from_wit_settings_error(s)),
        W::InvalidQueue(d) => RouteError::InvalidQueue(d),
        W::InvalidMessageId(d) => RouteError::InvalidMessageId(d),
        W::MissingTime(d) => RouteError::MissingTime(d),
        W::InvalidTime(d) => RouteError::InvalidTime(d),
        W::InvalidBody(d) => RouteError::InvalidBody(d),
        W::UnsafeKey(d) => RouteError::UnsafeKey(d),
    }
}

/// The precompiled embedded component shipped beside the binary (the Lambda
/// package's `router.cwasm`): wasmtime's `precompile_component` output behind a
/// header naming what it was built from — the same digest as a [`cache`] entry
/// name (the embedded component's bytes, this host's version, and the engine's
/// compatibility hash: wasmtime version, target, CPU features, configuration).
/// A header for anything else is refused with both names, before wasmtime
/// reads a byte of native code.
pub mod precompiled {
    use std::path::Path;

    use wasmtime::component::Component;
    use wasmtime::Engine;

    use super::{cache, new_engine, EMBEDDED_COMPONENT};

    const MAGIC: &[u8] = b"audit-archiver precompiled component\n";

    /// The header line this binary writes and accepts.
    fn expected(engine: &Engine) -> String {
        cache::entry_name(engine, EMBEDDED_COMPONENT)
    }

    /// Compiles the embedded component for this binary's engine and writes it
    /// to `path`.
    pub fn write(path: &Path) -> anyhow::Result<()> {
        use anyhow::Context;
        let engine = new_engine();
        let native = engine
            .precompile_component(EMBEDDED_COMPONENT)
            .map_err(anyhow::Error::from)
            .context("compiling the embedded component")?;
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(expected(&engine).as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(&native);
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// The component in `bytes`, if its header is this binary's.
    pub fn load(engine: &Engine, bytes: &[u8]) -> Result<Component, String> {
        let rest = bytes
            .strip_prefix(MAGIC)
            .ok_or("it is not an audit-archiver precompiled component")?;
        let end = rest
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("its header is truncated")?;
        let found = String::from_utf8_lossy(&rest[..end]);
        let wanted = expected(engine);
        if found != wanted {
            return Err(format!(
                "it was built by another audit-archiver build, wasmtime version or engine \
                 configuration (it is {found}, this binary needs {wanted})"
            ));
        }
        // SAFETY: `deserialize` runs the native code in these bytes as is.
        // They come from the deployment package (read-only in Lambda), written
        // by `write` above for exactly this component, host version and engine
        // (checked just now), and wasmtime checks its own version and
        // configuration header again.
        unsafe { Component::deserialize(engine, &rest[end + 1..]) }.map_err(|e| format!("{e:#}"))
    }
}

/// The compile cache: a component compiled once is kept on disk as native code
/// (wasmtime's `serialize`) and loaded back with `deserialize_file` (an mmap)
/// by later runs, so short runs (`run --drain` from cron, `route`) skip the
/// Cranelift compilation.
///
/// - Key: SHA-256 over the component's bytes, the host's version and the
///   engine's `precompile_compatibility_hash` (target, CPU features, compiler
///   flags, tunables, wasm features and wasmtime's own version). Other bytes,
///   another wasmtime or another configuration give another file: nothing is
///   ever invalidated in place, a stale entry is simply never read again.
/// - Writes are atomic (a private temporary file, then `rename`) with mode
///   0600, in a directory created 0700; concurrent hosts each write a whole
///   file and the last rename wins.
/// - Any failure to read or deserialize an entry recompiles and overwrites it;
///   any failure to write only costs the next run a compilation.
pub mod cache {
    use std::fs;
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
    use std::path::{Path, PathBuf};

    use sha2::{Digest, Sha256};
    use wasmtime::component::Component;
    use wasmtime::Engine;

    /// What the cache did for one load.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Outcome {
        /// Loaded from an entry: no compilation.
        Hit,
        /// No entry: compiled (and stored, if the directory is usable).
        Miss,
        /// An entry existed but could not be used: compiled and overwritten.
        Replaced,
        /// The directory is not private to this user: compiled, not stored.
        Untrusted,
    }

    /// The default directory: `$XDG_CACHE_HOME/audit-archiver`, else
    /// `$HOME/.cache/audit-archiver`; `None` when neither is set (absolute).
    pub fn default_dir() -> Option<PathBuf> {
        let absolute = |var: &str| {
            std::env::var_os(var)
                .map(PathBuf::from)
                .filter(|p| p.is_absolute())
        };
        absolute("XDG_CACHE_HOME")
            .or_else(|| absolute("HOME").map(|home| home.join(".cache")))
            .map(|base| base.join("audit-archiver"))
    }

    /// Feeds `Hash` output into SHA-256 (stable, unlike `DefaultHasher`).
    struct ShaHasher(Sha256);

    impl std::hash::Hasher for ShaHasher {
        fn write(&mut self, bytes: &[u8]) {
            self.0.update(bytes);
        }
        fn finish(&self) -> u64 {
            unreachable!("only the digest is used")
        }
    }

    /// The entry's file name for these bytes in this engine.
    pub fn entry_name(engine: &Engine, component: &[u8]) -> String {
        use std::hash::Hash;
        let mut hasher = ShaHasher(Sha256::new());
        hasher.0.update(b"audit-archiver component cache v1\0");
        hasher.0.update(env!("CARGO_PKG_VERSION").as_bytes());
        hasher.0.update(b"\0");
        hasher.0.update(Sha256::digest(component));
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let digest = hasher.0.finalize();
        let hex: String = digest[..20].iter().map(|b| format!("{b:02x}")).collect();
        format!("router-{hex}.cwasm")
    }

    /// The compiled component, from the cache in `dir` or compiled (then stored).
    pub fn load_or_compile(
        engine: &Engine,
        bytes: &[u8],
        dir: &Path,
    ) -> wasmtime::Result<(Component, Outcome)> {
        if !private_dir(dir) {
            tracing::warn!(
                dir = %dir.display(),
                "compile cache not used: the directory must be owned by this user and not \
                 writable by others (--cache-dir, or --no-cache)"
            );
            return Ok((Component::from_binary(engine, bytes)?, Outcome::Untrusted));
        }
        let path = dir.join(entry_name(engine, bytes));
        let outcome = match fs::symlink_metadata(&path) {
            Err(_) => Outcome::Miss,
            Ok(meta) if !private_file(&meta) => Outcome::Replaced,
            Ok(_) => {
                // SAFETY: `deserialize_file` trusts the file to be wasmtime's
                // own output: its native code is mapped and run as is. This
                // file is one this host wrote itself (atomically, mode 0600,
                // a regular file, not a symlink) in a directory owned by this
                // user and writable by no one else (checked above), named by
                // a digest of the component bytes and of this engine's
                // configuration and version. wasmtime also checks its version
                // and configuration header and fails (-> recompile) on any
                // mismatch or truncation.
                match unsafe { Component::deserialize_file(engine, &path) } {
                    Ok(component) => return Ok((component, Outcome::Hit)),
                    Err(error) => {
                        tracing::warn!(path = %path.display(), error = %format!("{error:#}"), "unusable compile cache entry; recompiling");
                        Outcome::Replaced
                    }
                }
            }
        };
        let component = Component::from_binary(engine, bytes)?;
        match component.serialize() {
            Ok(serialized) => {
                if let Err(error) = write_atomic(dir, &path, &serialized) {
                    tracing::debug!(path = %path.display(), %error, "cannot store the compiled component");
                }
            }
            Err(error) => {
                tracing::debug!(error = %format!("{error:#}"), "cannot serialize the compiled component")
            }
        }
        Ok((component, outcome))
    }

    /// Creates `dir` (0700) if needed; true if it is a directory owned by this
    /// user and writable by no one else.
    fn private_dir(dir: &Path) -> bool {
        let _ = fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir);
        match fs::metadata(dir) {
            Ok(meta) => meta.is_dir() && meta.mode() & 0o022 == 0 && owned_by_me(&meta),
            Err(_) => false,
        }
    }

    /// A regular file (not a symlink) of this user, writable by no one else.
    fn private_file(meta: &fs::Metadata) -> bool {
        meta.file_type().is_file() && meta.mode() & 0o022 == 0 && owned_by_me(meta)
    }

    fn owned_by_me(meta: &fs::Metadata) -> bool {
        // `/proc/self` belongs to the process's effective user.
        match fs::metadata("/proc/self") {
            Ok(me) => me.uid() == meta.uid(),
            Err(_) => true,
        }
    }

    fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> std::io::Result<()> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!(".tmp-{}-{nanos}.cwasm", std::process::id()));
        let written = (|| {
            let mut file = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&temp, path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use std::os::unix::fs::PermissionsExt;

        fn engine() -> Engine {
            super::super::new_engine()
        }

        fn temp_dir(name: &str) -> PathBuf {
            let dir = std::env::temp_dir().join(format!(
                "audit-archiver-cache-test-{name}-{}",
                std::process::id()
            ));
            let _ = fs::remove_dir_all(&dir);
            dir
        }

        const BYTES: &[u8] = super::super::EMBEDDED_COMPONENT;

        #[test]
        fn miss_then_hit_with_private_permissions() {
            let dir = temp_dir("hit");
            let engine = engine();
            let (_, first) = load_or_compile(&engine, BYTES, &dir).unwrap();
            assert_eq!(first, Outcome::Miss);
            let entry = dir.join(entry_name(&engine, BYTES));
            let meta = fs::metadata(&entry).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
            assert_eq!(
                fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
                0o700
            );
            let (_, second) = load_or_compile(&engine, BYTES, &dir).unwrap();
            assert_eq!(second, Outcome::Hit);
            // A fresh engine with the same configuration hits too.
            let (_, third) = load_or_compile(&super::super::new_engine(), BYTES, &dir).unwrap();
            assert_eq!(third, Outcome::Hit);
            // No temporary files are left behind.
            assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
            fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn corrupted_entry_is_recompiled_and_overwritten() {
            let dir = temp_dir("corrupt");
            let engine = engine();
            load_or_compile(&engine, BYTES, &dir).unwrap();
            let entry = dir.join(entry_name(&engine, BYTES));
            let good_len = fs::metadata(&entry).unwrap().len();
            for garbage in [&b"not a compiled component"[..], &[][..]] {
                fs::write(&entry, garbage).unwrap();
                let (component, outcome) = load_or_compile(&engine, BYTES, &dir).unwrap();
                assert_eq!(outcome, Outcome::Replaced);
                assert!(component.component_type().exports(&engine).count() > 0);
                assert_eq!(fs::metadata(&entry).unwrap().len(), good_len);
                assert_eq!(
                    load_or_compile(&engine, BYTES, &dir).unwrap().1,
                    Outcome::Hit
                );
            }
            // Truncated native code fails wasmtime's checks too.
            let full = fs::read(&entry).unwrap();
            fs::write(&entry, &full[..full.len() / 2]).unwrap();
            assert_eq!(
                load_or_compile(&engine, BYTES, &dir).unwrap().1,
                Outcome::Replaced
            );
            fs::remove_dir_all(&dir).unwrap();
        }

        #[test]
        fn different_bytes_or_engine_give_different_keys() {
            let engine = engine();
            let mut other = BYTES.to_vec();
            // Appending a custom section changes the bytes, not the meaning.
            other.extend_from_slice(&[0, 4, 1, b'x', 0, 0]);
            assert_ne!(entry_name(&engine, BYTES), entry_name(&engine, &other));
            assert_eq!(
                entry_name(&engine, BYTES),
                entry_name(&super::super::new_engine(), BYTES)
            );
            let mut config = wasmtime::Config::new();
            config.wasm_component_model(true);
            let different = Engine::new(&config).unwrap();
            assert_ne!(entry_name(&engine, BYTES), entry_name(&different, BYTES));
        }

        #[test]
        fn shared_directory_is_not_trusted() {
            let dir = temp_dir("shared");
            fs::create_dir_all(&dir).unwrap();
            fs::set_permissions(&dir, fs::Permissions::from_mode(0o777)).unwrap();
            let (_, outcome) = load_or_compile(&engine(), BYTES, &dir).unwrap();
            assert_eq!(outcome, Outcome::Untrusted);
            assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
            fs::remove_dir_all(&dir).unwrap();
        }
    }
}
