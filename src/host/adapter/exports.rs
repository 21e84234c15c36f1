//! The functions Kong calls (proxy-wasm ABI 0.2.1 exports), each total: no host input panics.
//!
//! The proxy-wasm crate's dispatcher panics on anything it did not expect (`invalid token_id`,
//! `duplicate token_id`, `invalid context_id`, `invalid root_context_id`, ...), and a panic is a
//! trap: in `on_http_call_response` Kong then proxies the paused request unverified. This module
//! replaces it, as `ffi.rs` replaces the crate's host calls. What it does with odd input:
//!
//! - an unknown root (configure, vm start) is created on the spot; ticks, done, log and delete
//!   for unknown ids are logged and ignored; a second create keeps the root (its tick is armed);
//! - an HTTP context of an unknown root, or one the host never created, refuses every request
//!   (an unconfigured [`Root`] makes it); a second create for a live id replaces the context;
//! - a callout answer goes to the context that made the call (the token map), else to the HTTP
//!   context the host names or has just re-created for it (Kong's engine, after the instance
//!   was replaced), whose own logic refuses an answer it cannot attribute (500, never a
//!   resume); else it is logged and ignored. A root is never asked to answer a request: Kong's
//!   engine has no request there, and a local response from a root context crashes the worker.
//!
//! Callouts in flight are counted per instance ([`MAX_CALLOUTS_IN_FLIGHT`]; beyond it nothing
//! is dispatched, which the callers turn into their usual refusal) and forgotten when their
//! context is done or deleted (a local response or a client disconnect cancels them in the
//! host, and their answer never comes).
//!
//! Contexts are `Rc<RefCell<_>>` so that the registry is borrowed only to look one up: a
//! callback may dispatch (which registers a token) or be re-entered without a double borrow.

use super::{logger, Root};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::ptr::{null_mut, NonNull};
use std::rc::Rc;

/// Callouts one instance may have in flight; the filter needs a few per paused request.
pub const MAX_CALLOUTS_IN_FLIGHT: usize = 4096;

/// What a header callback tells the host (ABI values).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Continue = 0,
    Pause = 1,
}

/// Callbacks every context has.
pub trait Context {
    fn on_http_call_response(
        &mut self,
        token: u32,
        num_headers: usize,
        body_size: usize,
        num_trailers: usize,
    );
}

/// A route's root context (one per filter chain entry per worker).
pub trait RootContext: Context {
    fn on_vm_start(&mut self, vm_configuration_size: usize) -> bool;
    fn on_configure(&mut self, plugin_configuration_size: usize) -> bool;
    fn on_tick(&mut self);
    /// Infallible by type: a request always gets a context (one that may refuse it).
    fn create_http_context(&self, id: u32) -> Box<dyn HttpContext>;
}

/// One request's context.
pub trait HttpContext: Context {
    fn on_http_request_headers(&mut self, num_headers: usize, end_of_stream: bool) -> Action;
    /// The upstream's answer (or a local response) is on its way to the client.
    fn on_http_response_headers(&mut self);
}

type Shared<T> = Rc<RefCell<T>>;

#[derive(Default)]
struct Registry {
    roots: HashMap<u32, Shared<Root>>,
    https: HashMap<u32, Shared<Box<dyn HttpContext>>>,
    /// Callout token → the context that made it.
    owner_of: HashMap<u32, u32>,
    /// (context, token) for every entry of `owner_of`: a context's tokens in one range.
    owned: BTreeSet<(u32, u32)>,
}

impl Registry {
    fn forget_callouts_of(&mut self, context_id: u32) {
        let tokens: Vec<(u32, u32)> = self
            .owned
            .range((context_id, 0)..=(context_id, u32::MAX))
            .copied()
            .collect();
        for key in tokens {
            self.owned.remove(&key);
            self.owner_of.remove(&key.1);
        }
    }

    fn take_owner(&mut self, token: u32) -> Option<u32> {
        let owner = self.owner_of.remove(&token)?;
        self.owned.remove(&(owner, token));
        Some(owner)
    }
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
    /// The context whose callback is running: callouts it dispatches are registered to it.
    static ACTIVE: Cell<Option<u32>> = const { Cell::new(None) };
    /// The HTTP context the host created in the callback just before this one, if any.
    static JUST_CREATED: Cell<Option<u32>> = const { Cell::new(None) };
}

/// Called first by every context callback: which HTTP context the previous callback created.
///
/// Kong's engine, resuming a request whose instance was replaced (after a trap, or a
/// configuration change), creates the request's context in the new instance and delivers the
/// callout answer right after, naming the root as context: that answer belongs to the context
/// just created. A new request's create is followed at once by its request headers, so
/// nothing else is ever delivered between a create and the next callback of that context.
fn just_created() -> Option<u32> {
    JUST_CREATED.try_with(|c| c.take()).ok().flatten()
}

/// Runs `f` on the registry; `None` when it is busy (never expected: it is only borrowed for
/// lookups) or the thread is ending.
fn registry<R>(f: impl FnOnce(&mut Registry) -> R) -> Option<R> {
    REGISTRY
        .try_with(|cell| cell.try_borrow_mut().ok().map(|mut r| f(&mut r)))
        .ok()
        .flatten()
}

/// Marks `id` as the running context until dropped (restoring the previous one, for a
/// callback the host runs inside another).
struct Active {
    previous: Option<u32>,
}

fn activate(id: u32) -> Active {
    let previous = ACTIVE.try_with(|a| a.replace(Some(id))).ok().flatten();
    Active { previous }
}

impl Drop for Active {
    fn drop(&mut self) {
        let _ = ACTIVE.try_with(|a| a.set(self.previous));
    }
}

/// Whether one more callout may be dispatched now (checked before the host is asked, so a
/// call the filter could not track is never made).
pub fn may_dispatch() -> bool {
    registry(|r| r.owner_of.len() < MAX_CALLOUTS_IN_FLIGHT).unwrap_or(false)
}

/// Records that the running context dispatched `token`.
pub fn register_callout(token: u32) {
    let Some(owner) = ACTIVE.try_with(Cell::get).ok().flatten() else {
        log::error!("callout {token} dispatched outside any callback; its answer will be refused");
        return;
    };
    let replaced = registry(|r| {
        let previous = r.owner_of.insert(token, owner);
        if let Some(previous) = previous {
            r.owned.remove(&(previous, token));
        }
        r.owned.insert((owner, token));
        previous
    });
    match replaced {
        Some(Some(previous)) => log::error!(
            "the host reused callout token {token} (still in flight for context {previous})"
        ),
        Some(None) => {}
        None => log::error!("callout {token} could not be recorded; its answer will be refused"),
    }
}

fn root(id: u32) -> Option<Shared<Root>> {
    registry(|r| r.roots.get(&id).cloned()).flatten()
}

fn http(id: u32) -> Option<Shared<Box<dyn HttpContext>>> {
    registry(|r| r.https.get(&id).cloned()).flatten()
}

/// The root `id`, created (unconfigured) if the host never did.
fn root_or_create(id: u32, callback: &str) -> Option<Shared<Root>> {
    if let Some(found) = root(id) {
        return Some(found);
    }
    let _ctx = logger::enter(id);
    log::warn!("{callback} for a root context the host never created; creating it");
    let created = Rc::new(RefCell::new(Root::new(id)));
    registry(|r| r.roots.insert(id, created.clone()));
    Some(created)
}

/// The HTTP context `id`; one that refuses every request if the host never created it.
fn http_or_adopt(id: u32, callback: &str) -> Option<Shared<Box<dyn HttpContext>>> {
    if let Some(found) = http(id) {
        return Some(found);
    }
    let _ctx = logger::enter(id);
    log::warn!("{callback} for an HTTP context the host never created; it refuses the request");
    let adopted = Rc::new(RefCell::new(Root::new(0).create_http_context(id)));
    registry(|r| r.https.insert(id, adopted.clone()));
    Some(adopted)
}

fn busy(id: u32, callback: &str) {
    let _ctx = logger::enter(id);
    log::error!("{callback} re-entered a context whose callback is running; ignored");
}

fn unknown(id: u32, callback: &str) {
    let _ctx = logger::enter(id);
    log::warn!("{callback} for unknown context {id}; ignored");
}

#[cfg(target_os = "wasi")]
extern "C" {
    fn __wasm_call_ctors();
}

/// Runs once per instance (also for the instance Kong makes after a trap, which gets no
/// `on_vm_start`).
#[no_mangle]
pub extern "C" fn _initialize() {
    // SAFETY: the linker's constructor list, run once before anything else of the module.
    #[cfg(target_os = "wasi")]
    unsafe {
        __wasm_call_ctors();
    }
    logger::install();
    std::panic::set_hook(Box::new(|info| {
        logger::write(logger::CRITICAL, format_args!("panic: {info}"));
    }));
}

#[no_mangle]
pub extern "C" fn proxy_abi_version_0_2_1() {}

/// The host's allocator for buffers it hands the filter (`ffi::take_buffer` frees them as a
/// `Vec<u8>` of exactly `size`). Null when memory is short: the host call then fails with a
/// status, where `Vec::with_capacity` would abort (trap).
#[no_mangle]
pub extern "C" fn proxy_on_memory_allocate(size: usize) -> *mut u8 {
    if size == 0 {
        return NonNull::<u8>::dangling().as_ptr();
    }
    match std::alloc::Layout::array::<u8>(size) {
        // SAFETY: a non-zero size with u8's alignment, as `Vec<u8>` would allocate it.
        Ok(layout) => unsafe { std::alloc::alloc(layout) },
        Err(_) => null_mut(),
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_context_create(context_id: u32, root_context_id: u32) {
    just_created();
    if root_context_id == 0 {
        create_root(context_id);
    } else {
        create_http(context_id, root_context_id);
    }
}

fn create_root(id: u32) {
    if root(id).is_some() {
        let _ctx = logger::enter(id);
        log::warn!("root context {id} created twice; keeping the first");
        return;
    }
    registry(|r| r.roots.insert(id, Rc::new(RefCell::new(Root::new(id)))));
}

fn create_http(id: u32, root_id: u32) {
    let context = match root(root_id) {
        Some(root) => match root.try_borrow() {
            Ok(root) => root.create_http_context(id),
            // The root is running a callback (never expected): an unconfigured context.
            Err(_) => Root::new(0).create_http_context(id),
        },
        None => {
            let _ctx = logger::enter(id);
            log::warn!("HTTP context {id} of unknown root {root_id}; it refuses every request");
            Root::new(0).create_http_context(id)
        }
    };
    let replaced = registry(|r| {
        r.forget_callouts_of(id);
        r.https.insert(id, Rc::new(RefCell::new(context))).is_some()
    });
    if replaced == Some(true) {
        let _ctx = logger::enter(id);
        log::warn!("HTTP context {id} created twice; the new one replaces the old");
    }
    let _ = JUST_CREATED.try_with(|c| c.set(Some(id)));
}

#[no_mangle]
pub extern "C" fn proxy_on_vm_start(context_id: u32, vm_configuration_size: usize) -> u32 {
    just_created();
    let Some(root) = root_or_create(context_id, "on_vm_start") else {
        return 1;
    };
    let _active = activate(context_id);
    match root.try_borrow_mut() {
        Ok(mut root) => {
            root.on_vm_start(vm_configuration_size);
        }
        Err(_) => busy(context_id, "on_vm_start"),
    }
    // Never false: Kong would then run every route without the filter (fail-open).
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_configure(context_id: u32, plugin_configuration_size: usize) -> u32 {
    just_created();
    let Some(root) = root_or_create(context_id, "on_configure") else {
        return 1;
    };
    let _active = activate(context_id);
    match root.try_borrow_mut() {
        Ok(mut root) => {
            root.on_configure(plugin_configuration_size);
        }
        Err(_) => busy(context_id, "on_configure"),
    }
    // Never false (as above).
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_tick(context_id: u32) {
    just_created();
    let Some(root) = root(context_id) else {
        return unknown(context_id, "on_tick");
    };
    let _active = activate(context_id);
    match root.try_borrow_mut() {
        Ok(mut root) => root.on_tick(),
        Err(_) => busy(context_id, "on_tick"),
    };
}

#[no_mangle]
pub extern "C" fn proxy_on_request_headers(
    context_id: u32,
    num_headers: usize,
    end_of_stream: u32,
) -> u32 {
    just_created();
    let Some(http) = http_or_adopt(context_id, "on_request_headers") else {
        return Action::Pause as u32;
    };
    let _active = activate(context_id);
    let action = match http.try_borrow_mut() {
        Ok(mut http) => http.on_http_request_headers(num_headers, end_of_stream != 0),
        Err(_) => {
            // Never expected; pausing holds the request instead of passing it unverified.
            busy(context_id, "on_request_headers");
            Action::Pause
        }
    };
    action as u32
}

/// Body, trailers and the response's body steps: nothing to do (the decision is taken on the headers);
/// exported because Kong's engine calls them without checking that they exist.
#[no_mangle]
pub extern "C" fn proxy_on_request_body(_: u32, _: usize, _: u32) -> u32 {
    just_created();
    Action::Continue as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_request_trailers(_: u32, _: usize) -> u32 {
    just_created();
    Action::Continue as u32
}

/// The answer's headers: the rate-limit fields of an allowed request are added here. A context
/// the host never created, or one busy, is left alone (the request was decided already).
#[no_mangle]
pub extern "C" fn proxy_on_response_headers(context_id: u32, _: usize, _: u32) -> u32 {
    just_created();
    if let Some(http) = http(context_id) {
        let _active = activate(context_id);
        match http.try_borrow_mut() {
            Ok(mut http) => http.on_http_response_headers(),
            Err(_) => busy(context_id, "on_response_headers"),
        }
    }
    Action::Continue as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_body(_: u32, _: usize, _: u32) -> u32 {
    just_created();
    Action::Continue as u32
}

#[no_mangle]
pub extern "C" fn proxy_on_response_trailers(_: u32, _: usize) -> u32 {
    just_created();
    Action::Continue as u32
}

/// Kong's engine passes the root's id as `context_id` even for a request's callout (the
/// stand-in passes the request's): the token map decides, the id is only a fallback.
#[no_mangle]
pub extern "C" fn proxy_on_http_call_response(
    context_id: u32,
    token: u32,
    num_headers: usize,
    body_size: usize,
    num_trailers: usize,
) {
    let created = just_created();
    let owner = registry(|r| r.take_owner(token)).flatten();
    // The token decides; else the request context the host names (the stand-in names it), or
    // the one the engine just re-created for this answer (see `just_created`).
    let target = match (owner, created) {
        (Some(owner), _) => owner,
        (None, Some(created)) if http(context_id).is_none() => created,
        (None, _) => context_id,
    };
    if let Some(http) = http(target) {
        if owner.is_none() {
            let _ctx = logger::enter(target);
            log::warn!("answer to callout {token}, which this context did not make");
        }
        // An answer it cannot attribute is refused by the context itself (500, never resumed).
        let _active = activate(target);
        match http.try_borrow_mut() {
            Ok(mut http) => http.on_http_call_response(token, num_headers, body_size, num_trailers),
            Err(_) => busy(target, "on_http_call_response"),
        }
        return;
    }
    match (owner, root(target)) {
        (Some(_), Some(root)) => {
            let _active = activate(target);
            match root.try_borrow_mut() {
                Ok(mut root) => {
                    root.on_http_call_response(token, num_headers, body_size, num_trailers)
                }
                Err(_) => busy(target, "on_http_call_response"),
            }
        }
        _ => {
            let _ctx = logger::enter(context_id);
            log::warn!(
                "answer to callout {token}, which no live context of this instance made \
                 (context gone or instance re-created); ignored"
            );
        }
    }
}

#[no_mangle]
pub extern "C" fn proxy_on_done(context_id: u32) -> u32 {
    just_created();
    // Its pending callouts were cancelled by the host: their answers never come.
    let known = registry(|r| {
        r.forget_callouts_of(context_id);
        r.https.contains_key(&context_id) || r.roots.contains_key(&context_id)
    });
    if known != Some(true) {
        unknown(context_id, "on_done");
    }
    1
}

#[no_mangle]
pub extern "C" fn proxy_on_log(_: u32) {
    just_created();
}

#[no_mangle]
pub extern "C" fn proxy_on_delete(context_id: u32) {
    just_created();
    let known = registry(|r| {
        r.forget_callouts_of(context_id);
        r.https.remove(&context_id).is_some() || r.roots.remove(&context_id).is_some()
    });
    if known != Some(true) {
        unknown(context_id, "on_delete");
    }
}

/// Never used by this filter (no queues, no foreign functions); present so that a host that
/// calls them finds a function that does nothing.
#[no_mangle]
pub extern "C" fn proxy_on_queue_ready(_: u32, _: u32) {
    just_created();
}

#[no_mangle]
pub extern "C" fn proxy_on_foreign_function(_: u32, _: u32, _: usize) {
    just_created();
}
