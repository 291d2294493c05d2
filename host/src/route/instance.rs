//! One sandboxed instance of the component and its calls: `validate`,
//! `route`, `route-batch` and (contract 1.1) `route-queue`, each under the
//! sandbox's time and memory bounds.

use std::sync::Arc;
use std::time::Duration;

use audit_archiver_transform::{self as transform, Message, Placement};
use wasmtime::component::{Component, ComponentExportIndex, Func, TypedFunc};
use wasmtime::{Store, StoreLimitsBuilder};

use super::contract::{
    from_wit_route_error, to_wit_message, to_wit_settings, wit, wit_overrides, RouteBatchCall,
    RouteCall, RouteQueueCall,
};
use super::{
    Loaded, RouteFailure, Sandbox, SandboxLimits, EPOCH_TICK, ROUTER_INTERFACE,
    ROUTER_INTERFACE_1_0,
};

/// Where the router's functions are in a component, found once at load. A
/// 1.0 component has no `route-queue`.
#[derive(Clone, Copy)]
pub(super) struct RouterExports {
    validate_settings: ComponentExportIndex,
    route: ComponentExportIndex,
    route_batch: ComponentExportIndex,
    pub(super) route_queue: Option<ComponentExportIndex>,
}

impl RouterExports {
    /// The functions of the component's router export, or why it has none.
    pub(super) fn find(component: &Component) -> Result<Self, String> {
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
pub(super) struct RouterFuncs {
    pub(super) validate_settings: Func,
    route: Func,
    route_batch: Func,
    route_queue: Option<Func>,
}

/// Why an instance could not be made.
pub(super) enum InstanceError {
    /// A function of the contract has another type: the component is wrong.
    WrongType(String),
    /// Instantiation trapped or broke a limit.
    Failed(String),
}

impl RouterFuncs {
    pub(super) fn new(
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
    pub(super) fn new(component: Arc<Loaded>) -> Result<Self, InstanceError> {
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
    pub(super) fn call<T>(
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
