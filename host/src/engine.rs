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
use wasmtime::component::{Component, ComponentExportIndex, Func, InstancePre, Linker, TypedFunc};
use wasmtime::{Config, Engine, Store, StoreLimits, StoreLimitsBuilder};

pub mod cache;

/// The one place that runs `bindgen!` against `wit/`. Its types are what
/// crosses the boundary; its `Routing` world wrapper is not used, because it
/// insists on every function of 1.1 and the host also runs 1.0 components
/// ([`RouterExports`]).
#[allow(dead_code)]
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

/// The interface a routing component exports (`wit/router.wit`).
pub const ROUTER_INTERFACE: &str = "audit-archiver:routing/router@1.1.0";

/// The same interface as contract 1.0 has it (no `route-queue`): accepted too.
pub const ROUTER_INTERFACE_1_0: &str = "audit-archiver:routing/router@1.0.0";

/// The functions' types, as `bindgen!` maps them (parameters borrowed).
type ValidateCall<'a> = TypedFunc<(wit::Settings<'a>,), (Result<(), wit::SettingsError>,)>;
type RouteCall<'a> =
    TypedFunc<(wit::Settings<'a>, wit::Message<'a>), (Result<wit::Placement, wit::RouteError>,)>;
type RouteBatchCall<'a> = TypedFunc<
    (wit::Settings<'a>, &'a [wit::Message<'a>]),
    (Vec<Result<wit::Placement, wit::RouteError>>,),
>;
type RouteQueueCall<'a> = TypedFunc<
    (
        wit::Settings<'a>,
        &'a str,
        &'a str,
        &'a [wit::PackedMessage],
    ),
    (wit::PackedPlacements,),
>;

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
         `{ROUTER_INTERFACE}` (or `{ROUTER_INTERFACE_1_0}`) with route, route-batch and \
         validate-settings (and, from 1.1.0, route-queue), found exports {exports:?} ({detail})"
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

/// Where the bytes of a routing component come from.
#[derive(Debug, Clone, Copy)]
pub enum ComponentSource<'a> {
    /// The component built from `transform/` and embedded in the binary.
    Embedded,
    /// A component file (`--component PATH`).
    File(&'a Path),
    /// Component bytes the caller holds; `origin` names them in messages.
    Bytes {
        /// Where the bytes came from, for messages.
        origin: &'a str,
        /// The component.
        bytes: &'a [u8],
    },
    /// The embedded component precompiled by [`precompiled::write`] (the
    /// Lambda package's `router.cwasm`): no compilation at start-up.
    Precompiled(&'a Path),
}

impl<'a> ComponentSource<'a> {
    /// The component at `path` (`--component`), else the embedded one.
    pub fn file_or_embedded(path: Option<&'a Path>) -> Self {
        path.map_or(Self::Embedded, Self::File)
    }

    /// How messages name it.
    fn origin(&self) -> String {
        match self {
            Self::Embedded => "the embedded component".to_string(),
            Self::File(path) => format!("component {}", path.display()),
            Self::Bytes { origin, .. } => origin.to_string(),
            Self::Precompiled(path) => format!("precompiled component {}", path.display()),
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
    pre: InstancePre<Sandbox>,
    exports: RouterExports,
    settings: transform::Settings,
    limits: SandboxLimits,
    origin: String,
    ticker: epoch::Ticker,
}

impl RouterComponent {
    /// Loads a component from `source`, checks it against the contract, links
    /// it, and validates `settings` with it. `cache_dir` is the compile cache
    /// ([`cache`]; `None`: always compile); a [`ComponentSource::Precompiled`]
    /// artifact needs no compilation and does not use it.
    pub fn load(
        source: ComponentSource<'_>,
        settings: &transform::Settings,
        limits: SandboxLimits,
        cache_dir: Option<&Path>,
    ) -> Result<Self, ComponentError> {
        let engine = new_engine();
        let origin = source.origin();
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| ComponentError::Read {
                origin: origin.clone(),
                source,
            })
        };
        let file;
        let bytes = match source {
            ComponentSource::Embedded => EMBEDDED_COMPONENT,
            ComponentSource::Bytes { bytes, .. } => bytes,
            ComponentSource::File(path) => {
                file = read(path)?;
                &file
            }
            ComponentSource::Precompiled(path) => {
                let component = precompiled::load(&engine, &read(path)?).map_err(|detail| {
                    ComponentError::Precompiled {
                        origin: origin.clone(),
                        detail,
                    }
                })?;
                return Self::from_component(origin, engine, component, settings, limits);
            }
        };
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
        let export_names: Vec<String> = ty
            .exports(&engine)
            .map(|(name, _)| name.to_string())
            .collect();
        let wrong_world = |detail: String| ComponentError::WrongWorld {
            origin: origin.clone(),
            exports: export_names.clone(),
            detail,
        };
        let exports = RouterExports::find(&component).map_err(wrong_world)?;
        let pre = linker
            .instantiate_pre(&component)
            .map_err(|e| wrong_world(format!("{e:#}")))?;

        let ticker = epoch::Ticker::start(engine.clone(), EPOCH_TICK);
        let router = Self {
            inner: Arc::new(Loaded {
                engine,
                pre,
                exports,
                settings: settings.clone(),
                limits,
                origin,
                ticker,
            }),
        };
        router.check_settings(&export_names)?;
        Ok(router)
    }

    /// Where the component came from, for messages.
    pub fn origin(&self) -> &str {
        &self.inner.origin
    }

    /// A new sandboxed instance, for one worker.
    pub fn instance(&self) -> Result<RouterInstance, RouteFailure> {
        RouterInstance::new(self.inner.clone()).map_err(|e| match e {
            InstanceError::WrongType(detail) | InstanceError::Failed(detail) => {
                RouteFailure::ComponentFailed(detail)
            }
        })
    }

    /// Whether the component exports `route-queue` (contract 1.1), which
    /// [`RouterInstance::route_batch`] then uses for a batch from one queue.
    pub fn has_route_queue(&self) -> bool {
        self.inner.exports.route_queue.is_some()
    }

    fn check_settings(&self, export_names: &[String]) -> Result<(), ComponentError> {
        let origin = &self.inner.origin;
        let trapped = |detail: String| ComponentError::Trapped {
            origin: origin.clone(),
            detail,
        };
        let mut instance = RouterInstance::new(self.inner.clone()).map_err(|e| match e {
            InstanceError::WrongType(detail) => ComponentError::WrongWorld {
                origin: origin.clone(),
                exports: export_names.to_vec(),
                detail,
            },
            InstanceError::Failed(detail) => trapped(detail),
        })?;
        let result = instance.call(|funcs, store, settings| {
            // SAFETY: the type was checked when the instance was made.
            let func: ValidateCall<'_> =
                unsafe { TypedFunc::new_unchecked(funcs.validate_settings) };
            func.call(store, (settings,)).map(|(result,)| result)
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

/// Where the router's functions are in a component, found once at load. A
/// 1.0 component has no `route-queue`.
#[derive(Clone, Copy)]
struct RouterExports {
    validate_settings: ComponentExportIndex,
    route: ComponentExportIndex,
    route_batch: ComponentExportIndex,
    route_queue: Option<ComponentExportIndex>,
}

impl RouterExports {
    /// The functions of the component's router export, or why it has none.
    fn find(component: &Component) -> Result<Self, String> {
        // Wasmtime matches names semver-compatibly; ask for both anyway.
        let router = component
            .get_export_index(None, ROUTER_INTERFACE)
            .or_else(|| component.get_export_index(None, ROUTER_INTERFACE_1_0))
            .ok_or_else(|| format!("no exported instance named `{ROUTER_INTERFACE}`"))?;
        let func = |name: &str| {
            component
                .get_export_index(Some(&router), name)
                .ok_or_else(|| format!("the router export has no function `{name}`"))
        };
        Ok(Self {
            validate_settings: func("validate-settings")?,
            route: func("route")?,
            route_batch: func("route-batch")?,
            route_queue: func("route-queue").ok(),
        })
    }
}

/// The router's functions in one instance, their types checked.
struct RouterFuncs {
    validate_settings: Func,
    route: Func,
    route_batch: Func,
    route_queue: Option<Func>,
}

/// Why an instance could not be made.
enum InstanceError {
    /// A function of the contract has another type: the component is wrong.
    WrongType(String),
    /// Instantiation trapped or broke a limit.
    Failed(String),
}

impl RouterFuncs {
    fn new(
        exports: &RouterExports,
        instance: &wasmtime::component::Instance,
        store: &mut Store<Sandbox>,
    ) -> Result<Self, InstanceError> {
        fn get(
            instance: &wasmtime::component::Instance,
            store: &mut Store<Sandbox>,
            index: &ComponentExportIndex,
            name: &str,
            check: impl FnOnce(&Func, &Store<Sandbox>) -> wasmtime::Result<()>,
        ) -> Result<Func, InstanceError> {
            let func = instance
                .get_func(&mut *store, index)
                .ok_or_else(|| InstanceError::WrongType(format!("`{name}` is not a function")))?;
            check(&func, store).map_err(|e| {
                InstanceError::WrongType(format!(
                    "`{name}` does not have the contract's type: {e:#}"
                ))
            })?;
            Ok(func)
        }
        Ok(Self {
            validate_settings: get(
                instance,
                store,
                &exports.validate_settings,
                "validate-settings",
                |f, s| {
                    f.typed::<(wit::Settings<'_>,), (Result<(), wit::SettingsError>,)>(s)
                        .map(drop)
                },
            )?,
            route: get(instance, store, &exports.route, "route", |f, s| {
                f.typed::<(wit::Settings<'_>, wit::Message<'_>), (Result<wit::Placement, wit::RouteError>,)>(s)
                    .map(drop)
            })?,
            route_batch: get(
                instance,
                store,
                &exports.route_batch,
                "route-batch",
                |f, s| {
                    f.typed::<
                    (wit::Settings<'_>, &[wit::Message<'_>]),
                    (Vec<Result<wit::Placement, wit::RouteError>>,),
                >(s)
                .map(drop)
                },
            )?,
            route_queue: match &exports.route_queue {
                None => None,
                Some(index) => Some(get(instance, store, index, "route-queue", |f, s| {
                    f.typed::<
                        (wit::Settings<'_>, &str, &str, &[wit::PackedMessage]),
                        (wit::PackedPlacements,),
                    >(s)
                    .map(drop)
                })?),
            },
        })
    }
}

/// One sandboxed instance of the component. Not shared between threads; after
/// a trap it replaces itself with a fresh instance.
pub struct RouterInstance {
    component: Arc<Loaded>,
    store: Store<Sandbox>,
    funcs: RouterFuncs,
}

impl RouterInstance {
    fn new(component: Arc<Loaded>) -> Result<Self, InstanceError> {
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
        let instance = instantiated
            .map_err(|e| InstanceError::Failed(format!("instantiating the component: {e:#}")))?;
        let funcs = RouterFuncs::new(&component.exports, &instance, &mut store)?;
        Ok(Self {
            component,
            store,
            funcs,
        })
    }

    /// Whether the component exports `route-queue` (contract 1.1).
    pub fn has_route_queue(&self) -> bool {
        self.funcs.route_queue.is_some()
    }

    /// Routes a batch of messages; one result per message, in order.
    ///
    /// A batch whose messages all come from one queue goes through the
    /// component's `route-queue` when it has one (contract 1.1: a few
    /// strings cross the boundary per batch instead of several per message);
    /// any other batch, or a 1.0 component, through `route-batch`. The
    /// results are the same either way.
    pub fn route_batch(
        &mut self,
        messages: &[Message<'_>],
    ) -> Vec<Result<Placement, RouteFailure>> {
        let queue = messages.first().map(|m| m.queue);
        match queue {
            Some(queue)
                if self.funcs.route_queue.is_some()
                    && messages
                        .iter()
                        .all(|m| std::ptr::eq(m.queue, queue) || m.queue == queue) =>
            {
                self.route_queue(queue, messages)
            }
            _ => self.route_batch_1_0(messages),
        }
    }

    /// Routes a batch with the 1.0 entry point `route-batch`, whatever the
    /// component exports (benchmarks and equivalence tests compare the two).
    ///
    /// If the batch call traps, each message is retried alone in a fresh
    /// instance, so one poisonous message fails alone.
    pub fn route_batch_1_0(
        &mut self,
        messages: &[Message<'_>],
    ) -> Vec<Result<Placement, RouteFailure>> {
        let wit_messages: Vec<wit::Message<'_>> = messages.iter().map(to_wit_message).collect();
        let batch = self.call(|funcs, store, settings| {
            // SAFETY: the type was checked when the instance was made.
            let func: RouteBatchCall<'_> = unsafe { TypedFunc::new_unchecked(funcs.route_batch) };
            func.call(store, (settings, &wit_messages))
                .map(|(results,)| results)
        });
        match batch {
            Ok(results) if results.len() == messages.len() => results
                .into_iter()
                .map(|result| {
                    let placement =
                        result.map_err(|e| RouteFailure::Rejected(from_wit_route_error(e)))?;
                    self.checked(&placement.tenant, &placement.key)?;
                    Ok(Placement {
                        tenant: placement.tenant,
                        key: placement.key,
                        time_ms: placement.time_ms,
                    })
                })
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

    /// Routes a batch from one queue with `route-queue` (contract 1.1): the
    /// ids and bodies go in as one string, the tenants and keys come back as
    /// one. Traps are handled as in [`RouterInstance::route_batch_1_0`].
    fn route_queue(
        &mut self,
        queue: &str,
        messages: &[Message<'_>],
    ) -> Vec<Result<Placement, RouteFailure>> {
        let text_len = messages
            .iter()
            .map(|m| m.message_id.len() + m.body.len())
            .sum();
        let mut text = String::with_capacity(text_len);
        let packed: Vec<wit::PackedMessage> = messages
            .iter()
            .map(|m| {
                text.push_str(m.message_id);
                text.push_str(m.body);
                wit::PackedMessage {
                    // SQS caps a message at 1 MiB: lengths fit in u32.
                    message_id_len: m.message_id.len() as u32,
                    body_len: m.body.len() as u32,
                    first_receive_ms: m.first_receive_ms,
                    sent_ms: m.sent_ms,
                }
            })
            .collect();
        let batch = self.call(|funcs, store, settings| {
            let Some(route_queue) = funcs.route_queue else {
                unreachable!("route_batch calls this only when the component has route-queue")
            };
            // SAFETY: the type was checked when the instance was made.
            let func: RouteQueueCall<'_> = unsafe { TypedFunc::new_unchecked(route_queue) };
            func.call(store, (settings, queue, &text, &packed))
                .map(|(placements,)| placements)
        });
        match batch {
            Ok(placements) => self.unpack(placements, messages.len()),
            Err(_) if messages.len() > 1 => messages
                .iter()
                .map(|message| self.route_one(to_wit_message(message)))
                .collect(),
            Err(detail) => vec![Err(RouteFailure::ComponentFailed(detail))],
        }
    }

    /// The placements of a `route-queue` result, checked like any other; a
    /// result that does not add up (count, lengths) fails the whole batch.
    fn unpack(
        &self,
        placements: wit::PackedPlacements,
        count: usize,
    ) -> Vec<Result<Placement, RouteFailure>> {
        let malformed = |detail: String| vec![Err(RouteFailure::ComponentFailed(detail)); count];
        if placements.results.len() != count {
            return malformed(format!(
                "route-queue returned {} results for {count} messages",
                placements.results.len()
            ));
        }
        let mut rest = placements.text.as_str();
        let mut take = |len: u32| {
            let len = len as usize;
            let taken = rest.get(..len)?;
            rest = &rest[len..];
            Some(taken)
        };
        let mut routed = Vec::with_capacity(count);
        for result in placements.results {
            routed.push(match result {
                Ok(packed) => {
                    let (Some(tenant), Some(key)) = (take(packed.tenant_len), take(packed.key_len))
                    else {
                        return malformed(format!(
                            "route-queue returned lengths past its {} bytes of text, or \
                             inside a character",
                            placements.text.len()
                        ));
                    };
                    self.checked(tenant, key).map(|()| Placement {
                        tenant: tenant.to_string(),
                        key: key.to_string(),
                        time_ms: packed.time_ms,
                    })
                }
                Err(e) => Err(RouteFailure::Rejected(from_wit_route_error(e))),
            });
        }
        if !rest.is_empty() {
            return malformed(format!(
                "route-queue returned {} bytes of text its results do not account for",
                rest.len()
            ));
        }
        routed
    }

    /// Routes one message with the single-message entry point.
    pub fn route(&mut self, message: &Message<'_>) -> Result<Placement, RouteFailure> {
        self.route_one(to_wit_message(message))
    }

    fn route_one(&mut self, message: wit::Message<'_>) -> Result<Placement, RouteFailure> {
        let result = self.call(|funcs, store, settings| {
            // SAFETY: the type was checked when the instance was made.
            let func: RouteCall<'_> = unsafe { TypedFunc::new_unchecked(funcs.route) };
            func.call(store, (settings, message))
                .map(|(result,)| result)
        });
        match result {
            Ok(result) => {
                let placement =
                    result.map_err(|e| RouteFailure::Rejected(from_wit_route_error(e)))?;
                self.checked(&placement.tenant, &placement.key)?;
                Ok(Placement {
                    tenant: placement.tenant,
                    key: placement.key,
                    time_ms: placement.time_ms,
                })
            }
            Err(detail) => Err(RouteFailure::ComponentFailed(detail)),
        }
    }

    /// Runs one call under a fresh deadline; on a trap, replaces the instance
    /// (a trapped instance must not be entered again) and returns the reason.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&RouterFuncs, &mut Store<Sandbox>, wit::Settings<'_>) -> wasmtime::Result<T>,
    ) -> Result<T, String> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.component.limits.call_timeout));
        let component = self.component.clone();
        let overrides = wit_overrides(&component.settings);
        let settings = to_wit_settings(&component.settings, &overrides);
        let called = {
            let _in_call = component.ticker.enter();
            f(&self.funcs, &mut self.store, settings)
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

    /// The host's own check of a placement the untrusted component returned.
    fn checked(&self, tenant: &str, key: &str) -> Result<(), RouteFailure> {
        transform::queue::check_tenant(tenant)
            .map_err(str::to_string)
            .and_then(|()| transform::check_key(key, tenant).map_err(|e| e.to_string()))
            .map_err(|e| {
                RouteFailure::UnsafePlacement(format!(
                    "{} returned tenant {tenant:?} and key {key:?}: {e}",
                    self.component.origin
                ))
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
