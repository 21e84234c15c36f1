//! One filter module on one worker: its wasm instance (recreated after a trap), its root
//! contexts (one per chain entry, each with its own configuration) and the calls into the guest.
//!
//! Lifecycle as in ngx_wasm_module: instantiate, `_initialize`/`_start`, then per root
//! `proxy_on_context_create(root, 0)`, `proxy_on_vm_start` (first instance only) and
//! `proxy_on_configure`. A trap destroys the instance; the next use creates a new one and runs
//! `proxy_on_configure` again, not `proxy_on_vm_start`.

use super::context::{Exec, HostState, NewCall, Step};
use super::{log_line, World};
use anyhow::{anyhow, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use wasmtime::{Engine, Instance, Linker, Module, Store, Val};

/// Builds the linker with every import group (per worker; imports are stateless closures).
/// WASI imports of `modules` the host does not implement are defined as functions that trap when
/// called (like ngx_wasi's "NYI" stubs), so that such a module still loads.
pub fn linker<'a>(
    engine: &Engine,
    modules: impl IntoIterator<Item = &'a Module>,
) -> Result<Linker<HostState>> {
    let mut linker = Linker::new(engine);
    super::abi::add_to_linker(&mut linker)?;
    super::wasi::add_to_linker(&mut linker)?;
    for module in modules {
        super::wasi::add_unimplemented(&mut linker, module);
    }
    Ok(linker)
}

/// A trap: the instance is gone.
#[derive(Debug, Clone)]
pub struct Trap(pub String);

/// The result of one guest callback.
#[derive(Debug)]
pub struct Called {
    /// The callback's return value (`None` for void callbacks or missing exports).
    pub ret: Option<i32>,
    /// Callouts it made.
    pub new_calls: Vec<NewCall>,
}

/// A live wasm instance of a filter.
pub struct FilterInstance {
    store: Store<HostState>,
    instance: Instance,
}

impl FilterInstance {
    fn new(
        linker: &Linker<HostState>,
        module: &Module,
        state: HostState,
    ) -> Result<FilterInstance, Trap> {
        let mut store = Store::new(module.engine(), state);
        let instance = linker
            .instantiate(&mut store, module)
            .map_err(|e| Trap(format!("instantiation failed: {e:#}")))?;
        let mut this = FilterInstance { store, instance };
        for start in ["_initialize", "_start"] {
            if this.instance.get_func(&mut this.store, start).is_some() {
                this.raw_call(start, &[])?;
                break;
            }
        }
        Ok(this)
    }

    fn raw_call(&mut self, name: &str, args: &[Val]) -> Result<Option<i32>, Trap> {
        let Some(func) = self.instance.get_func(&mut self.store, name) else {
            return Ok(None);
        };
        let mut results = vec![Val::I32(0); func.ty(&self.store).results().len()];
        self.store.data_mut().trap_reason = None;
        match func.call(&mut self.store, args, &mut results) {
            Ok(()) => Ok(results.first().and_then(Val::i32)),
            Err(e) => {
                let reason = self.store.data_mut().trap_reason.take();
                let msg = match reason {
                    Some(r) => r,
                    None => format!("{:#}", e.root_cause())
                        .lines()
                        .next()
                        .unwrap_or("trap")
                        .to_string(),
                };
                Err(Trap(msg))
            }
        }
    }

    /// Runs `name(args)` with `exec` as the current context; `exec` gets back what the guest
    /// changed (exchange, resumed flag).
    pub fn call(
        &mut self,
        exec: &mut Exec,
        step: Step,
        name: &str,
        args: &[i32],
    ) -> Result<Called, Trap> {
        exec.step = Some(step);
        exec.resumed = false;
        std::mem::swap(&mut self.store.data_mut().exec, exec);
        let vals: Vec<Val> = args.iter().map(|a| Val::I32(*a)).collect();
        let res = self.raw_call(name, &vals);
        std::mem::swap(&mut self.store.data_mut().exec, exec);
        if res.is_ok() {
            self.record_memory();
        }
        let new_calls = std::mem::take(&mut self.store.data_mut().new_calls);
        res.map(|ret| Called { ret, new_calls })
    }

    /// Reports the instance's linear-memory size to the world (`/__status`).
    fn record_memory(&mut self) {
        if let Some(memory) = self.instance.get_memory(&mut self.store, "memory") {
            let bytes = memory.data_size(&self.store) as u64;
            let state = self.store.data();
            state
                .world
                .record_memory(state.worker, &state.filter, bytes);
        }
    }

    /// The `set_tick_period` calls (root id, ms) since the last time this was asked.
    pub fn take_tick_arms(&mut self) -> Vec<(u32, u32)> {
        std::mem::take(&mut self.store.data_mut().tick_arms)
    }

    /// Tick periods set so far (root id → ms).
    pub fn tick_periods(&self) -> BTreeMap<u32, u32> {
        self.store
            .data()
            .tick_periods
            .iter()
            .map(|(k, v)| (*k, *v))
            .collect()
    }
}

/// A root context: one chain entry using this filter on this worker.
#[derive(Debug, Clone)]
pub struct RootSpec {
    pub root_id: u32,
    pub config: Vec<u8>,
}

/// One filter on one worker: the instance (if alive) and its roots.
pub struct Slot {
    pub filter: Arc<str>,
    worker: usize,
    module: Module,
    world: Arc<World>,
    roots: Vec<RootSpec>,
    instance: Option<FilterInstance>,
    /// Bumped each time an instance is created: contexts of older instances are gone.
    pub generation: u64,
    vm_started: bool,
    /// Roots whose `on_configure` failed: requests skip them (Kong proxies without the filter).
    pub disabled: BTreeSet<u32>,
    next_context_id: u32,
}

impl Slot {
    /// A slot for `filter` with its root contexts (ids must be distinct and non-zero).
    pub fn new(
        filter: Arc<str>,
        worker: usize,
        module: Module,
        world: Arc<World>,
        roots: Vec<RootSpec>,
    ) -> Slot {
        let next_context_id = roots.iter().map(|r| r.root_id).max().unwrap_or(0) + 1;
        Slot {
            filter,
            worker,
            module,
            world,
            roots,
            instance: None,
            generation: 0,
            vm_started: false,
            disabled: BTreeSet::new(),
            next_context_id,
        }
    }

    fn log(&self, level: &str, ctx: u32, msg: &str) {
        log_line(&self.filter, self.worker, level, ctx, msg);
    }

    /// The live instance, creating (and configuring) one if needed.
    pub fn ensure(&mut self, linker: &Linker<HostState>) -> Result<&mut FilterInstance> {
        if self.instance.is_none() {
            self.create(linker)?;
        }
        self.instance.as_mut().ok_or_else(|| anyhow!("no instance"))
    }

    /// Whether an instance is alive and still of `generation`.
    pub fn is_current(&self, generation: u64) -> bool {
        self.instance.is_some() && self.generation == generation
    }

    /// The live instance, only if it is still of `generation`.
    pub fn current(&mut self, generation: u64) -> Option<&mut FilterInstance> {
        if self.generation == generation {
            self.instance.as_mut()
        } else {
            None
        }
    }

    /// Destroys the instance after a trap in `step`, logging it like Kong does.
    pub fn trapped(&mut self, ctx: u32, step: Step, trap: &Trap) {
        self.log(
            "error",
            ctx,
            &format!("panicked at {}: {} (instance trapped)", step.name(), trap.0),
        );
        self.instance = None;
    }

    /// The root context ids of this filter on this worker.
    pub fn root_ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.roots.iter().map(|r| r.root_id)
    }

    /// A fresh context id for an HTTP context.
    pub fn new_context_id(&mut self) -> u32 {
        let id = self.next_context_id;
        self.next_context_id = self.next_context_id.wrapping_add(1).max(1);
        id
    }

    fn create(&mut self, linker: &Linker<HostState>) -> Result<()> {
        let mut state = HostState::new(self.filter.clone(), self.worker, self.world.clone());
        state.root_configs = self
            .roots
            .iter()
            .map(|r| (r.root_id, r.config.clone()))
            .collect();
        self.world.count_instance(self.worker, &self.filter);
        self.generation += 1;
        let mut inst = match FilterInstance::new(linker, &self.module, state) {
            Ok(inst) => inst,
            Err(trap) => {
                self.log(
                    "emerg",
                    0,
                    &format!("failed initializing filter: {}", trap.0),
                );
                return Err(anyhow!(
                    "filter {} failed to start: {}",
                    self.filter,
                    trap.0
                ));
            }
        };
        let first = !self.vm_started;
        self.vm_started = true;
        let roots: Vec<RootSpec> = self
            .roots
            .iter()
            .filter(|r| !self.disabled.contains(&r.root_id))
            .cloned()
            .collect();
        for root in &roots {
            let mut exec = Exec {
                context_id: root.root_id,
                root_id: root.root_id,
                is_root: true,
                ..Exec::default()
            };
            let id = root.root_id as i32;
            let mut steps: Vec<(Step, &str, Vec<i32>)> =
                vec![(Step::Init, "proxy_on_context_create", vec![id, 0])];
            if first {
                steps.push((Step::VmStart, "proxy_on_vm_start", vec![id, 0]));
            }
            steps.push((
                Step::Configure,
                "proxy_on_configure",
                vec![id, root.config.len() as i32],
            ));
            for (step, name, args) in steps {
                match inst.call(&mut exec, step, name, &args) {
                    Ok(called) => {
                        if step == Step::Configure && called.ret == Some(0) {
                            self.log("error", root.root_id, "filter failed to configure (on_configure returned false): proxying without it");
                            self.disabled.insert(root.root_id);
                            break;
                        }
                        if step == Step::VmStart && called.ret == Some(0) {
                            self.log("error", root.root_id, "on_vm_start returned false");
                        }
                    }
                    Err(trap) => {
                        self.log(
                            "error",
                            root.root_id,
                            &format!("panicked at {}: {} (instance trapped)", step.name(), trap.0),
                        );
                        if step == Step::Configure {
                            self.log(
                                "error",
                                root.root_id,
                                "filter failed to configure: proxying without it",
                            );
                        }
                        self.disabled.insert(root.root_id);
                        // The instance is gone: start over with the remaining roots.
                        self.instance = None;
                        return self.create(linker);
                    }
                }
            }
        }
        self.instance = Some(inst);
        Ok(())
    }
}
