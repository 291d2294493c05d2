//! The routing component: loading it, checking it against the contract, and
//! calling it inside a sandbox.
//!
//! The component is untrusted. It gets no imports at all, a memory cap and a
//! time bound per call (epoch interruption), and every placement it returns is
//! validated again here with the native key rules before the host uses it. A
//! trap or a broken limit fails the messages of that call, never the process.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
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
    fn default() -> Self {
        Self {
            memory_bytes: 64 << 20,
            call_timeout: Duration::from_secs(1),
        }
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
    /// The component trapped or broke a limit: the message stays in SQS.
    Trapped(String),
}

impl std::fmt::Display for RouteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Rejected(e) => write!(f, "{}: {}", e.case(), e.detail()),
            Self::UnsafePlacement(detail) => write!(f, "unsafe-placement: {detail}"),
            Self::Trapped(detail) => write!(f, "component-trap: {detail}"),
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

/// What every instance shares. The epoch ticker runs while any of them lives.
struct Loaded {
    engine: Engine,
    pre: bindings::RoutingPre<Sandbox>,
    settings: wit::Settings,
    limits: SandboxLimits,
    origin: String,
    stop_ticker: Arc<AtomicBool>,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
    }
}

impl RouterComponent {
    /// Loads the embedded component, or the one at `path`.
    pub fn load(
        path: Option<&Path>,
        settings: &transform::Settings,
        limits: SandboxLimits,
    ) -> Result<Self, ComponentError> {
        match path {
            None => Self::from_bytes(
                "the embedded component",
                EMBEDDED_COMPONENT,
                settings,
                limits,
            ),
            Some(path) => {
                let origin = format!("component {}", path.display());
                let bytes = std::fs::read(path).map_err(|source| ComponentError::Read {
                    origin: origin.clone(),
                    source,
                })?;
                Self::from_bytes(&origin, &bytes, settings, limits)
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
        let origin = origin.to_string();
        let engine = new_engine();
        let component =
            Component::from_binary(&engine, bytes).map_err(|e| ComponentError::Compile {
                origin: origin.clone(),
                detail: format!("{e:#}"),
            })?;
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

        let stop_ticker = Arc::new(AtomicBool::new(false));
        spawn_epoch_ticker(engine.clone(), stop_ticker.clone());
        let router = Self {
            inner: Arc::new(Loaded {
                engine,
                pre,
                settings: to_wit_settings(settings),
                limits,
                origin,
                stop_ticker,
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
    // A routing call needs little memory: keep virtual reservations small too.
    config.memory_reservation(128 << 20);
    config.memory_guard_size(64 << 10);
    Engine::new(&config).expect("the engine configuration is static and valid")
}

/// Drives epoch interruption: one thread per loaded component, stopped on drop.
fn spawn_epoch_ticker(engine: Engine, stop: Arc<AtomicBool>) {
    std::thread::Builder::new()
        .name("component-epoch".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                engine.increment_epoch();
            }
        })
        .expect("spawning the epoch thread");
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
        let routing = component
            .pre
            .instantiate(&mut store)
            .map_err(|e| RouteFailure::Trapped(format!("instantiating the component: {e:#}")))?;
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
        let wit_messages: Vec<wit::Message> = messages.iter().map(to_wit_message).collect();
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
                vec![Err(RouteFailure::Trapped(detail)); messages.len()]
            }
            Err(_) if messages.len() > 1 => wit_messages
                .iter()
                .map(|message| self.route_one(message))
                .collect(),
            Err(detail) => vec![Err(RouteFailure::Trapped(detail))],
        }
    }

    /// Routes one message with the single-message entry point.
    pub fn route(&mut self, message: &Message<'_>) -> Result<Placement, RouteFailure> {
        self.route_one(&to_wit_message(message))
    }

    fn route_one(&mut self, message: &wit::Message) -> Result<Placement, RouteFailure> {
        let result = self.call(|routing, store, settings| {
            routing
                .audit_archiver_routing_router()
                .call_route(store, settings, message)
        });
        match result {
            Ok(result) => self.checked(result),
            Err(detail) => Err(RouteFailure::Trapped(detail)),
        }
    }

    /// Runs one call under a fresh deadline; on a trap, replaces the instance
    /// (a trapped instance must not be entered again) and returns the reason.
    fn call<T>(
        &mut self,
        f: impl FnOnce(&bindings::Routing, &mut Store<Sandbox>, &wit::Settings) -> wasmtime::Result<T>,
    ) -> Result<T, String> {
        self.store
            .set_epoch_deadline(deadline_ticks(self.component.limits.call_timeout));
        match f(&self.routing, &mut self.store, &self.component.settings) {
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

fn describe_trap(error: &wasmtime::Error, limits: SandboxLimits) -> String {
    match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "the component ran longer than its {} ms limit per call",
            limits.call_timeout.as_millis()
        ),
        Some(wasmtime::Trap::AllocationTooLarge) => format!(
            "the component exceeded its memory limit of {} bytes",
            limits.memory_bytes
        ),
        _ => format!("{error:#}"),
    }
}

fn to_wit_settings(settings: &transform::Settings) -> wit::Settings {
    wit::Settings {
        key_template: settings.key_template.clone(),
        time_source: match settings.time_source {
            transform::TimeSource::FirstReceive => wit::TimeSource::FirstReceive,
            transform::TimeSource::Sent => wit::TimeSource::Sent,
            transform::TimeSource::Event => wit::TimeSource::Event,
        },
        utc_offset_minutes: settings.utc_offset_minutes,
        tenant_overrides: settings
            .tenant_overrides
            .iter()
            .map(|o| wit::TenantOverride {
                queue: o.queue.clone(),
                tenant: o.tenant.clone(),
            })
            .collect(),
    }
}

fn to_wit_message(message: &Message<'_>) -> wit::Message {
    wit::Message {
        message_id: message.message_id.to_string(),
        queue: message.queue.to_string(),
        body: message.body.to_string(),
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
