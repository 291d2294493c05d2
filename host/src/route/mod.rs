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

use audit_archiver_transform::{self as transform, RouteError, SettingsError};
use wasmtime::component::{Component, InstancePre, Linker, TypedFunc};
use wasmtime::{Config, Engine, StoreLimits};

use contract::{from_wit_settings_error, ValidateCall};
use instance::{InstanceError, RouterExports};

mod batch;
pub mod cache;
mod contract;
mod epoch;
mod instance;
pub mod precompiled;

pub use batch::{component_input, BatchRouter, ComponentRouter, Routed};
pub use instance::RouterInstance;

/// The component built from `transform/`, embedded at build time.
pub static EMBEDDED_COMPONENT: &[u8] = include_bytes!(env!("AUDIT_ARCHIVER_EMBEDDED_COMPONENT"));

/// The interface a routing component exports (`wit/router.wit`).
pub const ROUTER_INTERFACE: &str = "audit-archiver:routing/router@1.1.0";

/// The same interface as contract 1.0 has it (no `route-queue`): accepted too.
pub const ROUTER_INTERFACE_1_0: &str = "audit-archiver:routing/router@1.0.0";

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

impl SandboxLimits {
    /// The bounds when `--component-memory-mib` and `--component-timeout-ms`
    /// are unset (`config/defaults.rs` quotes them): ample for a batch of ten
    /// audit logs, small enough that a runaway call ends quickly.
    pub const DEFAULT: Self = Self {
        memory_bytes: 64 << 20,
        call_timeout: Duration::from_millis(1000),
    };
}

impl Default for SandboxLimits {
    fn default() -> Self {
        Self::DEFAULT
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
