//! One worker, like an nginx worker process: an OS thread with a single-threaded event loop that
//! owns its filter instances. Client connections handed to it are served here; callouts run as
//! tasks on the same loop and their responses are fed back into the instance on this thread.

use super::router::{upstream_uri, ChainEntry, Route, Table};
use super::{log, proxy};
use crate::host::context::HostState;
use crate::host::context::{
    CallResult, Exchange, Exec, NewCall, RequestHeaders, RequestInfo, Step,
};
use crate::host::instance::{self, Slot, Trap};
use crate::host::{dispatch, World};
use anyhow::{anyhow, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::task::{spawn_local, AbortHandle};
use wasmtime::{Engine, Linker, Module};

/// Most request headers a client may send (nginx has no count limit, only a size limit).
const MAX_CLIENT_HEADERS: usize = 1000;

/// What every worker shares (read-only).
pub struct Shared {
    pub table: Table,
    pub world: Arc<World>,
    pub engine: Engine,
    pub modules: BTreeMap<String, Module>,
    pub listen_port: u16,
}

/// A client connection handed to a worker.
pub struct Conn {
    pub stream: std::net::TcpStream,
    pub peer: SocketAddr,
    pub id: u64,
}

/// A root-context callout finished.
struct RootReply {
    filter: Arc<str>,
    generation: u64,
    root_id: u32,
    token: u32,
    result: CallResult,
}

struct Worker {
    id: usize,
    shared: Arc<Shared>,
    linker: Linker<HostState>,
    slots: RefCell<BTreeMap<String, Slot>>,
    timers: RefCell<Timers>,
    /// Tick timers started on this worker so far (each logged).
    timers_armed: std::cell::Cell<u64>,
    root_tx: UnboundedSender<RootReply>,
}

/// Starts worker `id` on its own thread; `ready` gets the outcome of starting its filters.
pub fn spawn(
    id: usize,
    shared: Arc<Shared>,
    conns: UnboundedReceiver<Conn>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) -> Result<()> {
    std::thread::Builder::new()
        .name(format!("worker-{id}"))
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready.send(Err(e.into()));
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(id, shared, conns, ready));
        })?;
    Ok(())
}

async fn run(
    id: usize,
    shared: Arc<Shared>,
    mut conns: UnboundedReceiver<Conn>,
    ready: std::sync::mpsc::Sender<Result<()>>,
) {
    let (root_tx, root_rx) = unbounded_channel();
    let w = match start(id, shared, root_tx) {
        Ok(w) => Rc::new(w),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    for filter in w.shared.table.roots.keys() {
        sync_timers(&w, filter, None);
    }
    spawn_local(root_replies(w.clone(), root_rx));
    let _ = ready.send(Ok(()));
    while let Some(conn) = conns.recv().await {
        spawn_local(serve(w.clone(), conn));
    }
}

fn start(id: usize, shared: Arc<Shared>, root_tx: UnboundedSender<RootReply>) -> Result<Worker> {
    let linker = instance::linker(&shared.engine, shared.modules.values())?;
    let mut slots = BTreeMap::new();
    for (name, roots) in &shared.table.roots {
        let module = shared
            .modules
            .get(name)
            .ok_or_else(|| anyhow!("filter {name} not loaded"))?
            .clone();
        let mut slot = Slot::new(
            Arc::from(name.as_str()),
            id,
            module,
            shared.world.clone(),
            roots.clone(),
        );
        slot.ensure(&linker)?;
        slots.insert(name.clone(), slot);
    }
    Ok(Worker {
        id,
        shared,
        linker,
        slots: RefCell::new(slots),
        timers: RefCell::new(Timers::default()),
        timers_armed: std::cell::Cell::new(0),
        root_tx,
    })
}

/// A root context's tick state as ngx_wasm_module keeps it (`ngx_proxy_wasm_exec_t`): its
/// `tick_period`, read by each of its timers when it re-arms. It outlives the instance: after a
/// trap, a request that re-creates the instance gets a new root exec while the old one's timers
/// keep firing into the new instance (ngx_proxy_wasm.c, `ngx_proxy_wasm_create_context`); a tick
/// that re-creates it reuses its own exec with `tick_period` reset to 0 ("replace pwexec
/// instance"), so that timer stops after this tick unless the new instance sets a period again.
#[derive(Debug, Default)]
struct Rexec {
    period_ms: std::cell::Cell<u32>,
}

/// Which root execs are current: for the instance generation seen last, by (filter, root).
#[derive(Default)]
struct Timers {
    generation: HashMap<String, u64>,
    current: HashMap<(String, u32), Rc<Rexec>>,
}

/// After any call into `filter`'s instance: if the instance was re-created, its roots get new
/// execs (or `ticking`'s exec, reset, when a tick of it re-created the instance); then every
/// `set_tick_period` the calls made sets its exec's period and starts a timer, as
/// ngx_proxy_wasm_host.c (`set_tick_period`) does for each non-zero period.
fn sync_timers(w: &Rc<Worker>, filter: &str, ticking: Option<(u32, &Rc<Rexec>)>) {
    let mut started = Vec::new();
    {
        let mut slots = w.slots.borrow_mut();
        let Some(slot) = slots.get_mut(filter) else {
            return;
        };
        let generation = slot.generation;
        let mut timers = w.timers.borrow_mut();
        if timers.generation.get(filter) != Some(&generation) {
            timers.generation.insert(filter.to_string(), generation);
            let roots: Vec<u32> = slot.root_ids().collect();
            for root in roots {
                let exec = match ticking {
                    Some((r, exec)) if r == root => {
                        exec.period_ms.set(0);
                        exec.clone()
                    }
                    _ => Rc::new(Rexec::default()),
                };
                timers.current.insert((filter.to_string(), root), exec);
            }
        }
        let Some(inst) = slot.current(generation) else {
            return;
        };
        for (root, period) in inst.take_tick_arms() {
            let exec = timers
                .current
                .entry((filter.to_string(), root))
                .or_default()
                .clone();
            exec.period_ms.set(period);
            if period > 0 {
                started.push((root, period, exec));
            }
        }
    }
    for (root, period, exec) in started {
        let armed = w.timers_armed.get() + 1;
        w.timers_armed.set(armed);
        log::emit(
            "notice",
            w.id,
            None,
            &format!("tick timer armed: filter {filter}, root {root}, every {period} ms (timers armed on this worker: {armed})"),
        );
        spawn_local(tick_timer(w.clone(), filter.to_string(), root, exec));
    }
}

/// One timer (ngx_util.c `ngx_proxy_wasm_filter_tick_handler`): ticks, then re-arms with its
/// exec's current period, or stops when that period is 0.
async fn tick_timer(w: Rc<Worker>, filter: String, root_id: u32, exec: Rc<Rexec>) {
    loop {
        let period = exec.period_ms.get();
        if period == 0 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(u64::from(period))).await;
        tick_once(&w, &filter, root_id, &exec);
        if exec.period_ms.get() == 0 {
            return;
        }
    }
}

fn tick_once(w: &Rc<Worker>, filter: &str, root_id: u32, exec: &Rc<Rexec>) {
    let before = {
        let mut slots = w.slots.borrow_mut();
        let Some(slot) = slots.get_mut(filter) else {
            return;
        };
        let before = slot.generation;
        if let Err(e) = slot.ensure(&w.linker) {
            log::emit(
                "error",
                w.id,
                None,
                &format!("tick_handler: no instance: {e:#}"),
            );
            return;
        }
        before
    };
    let recreated = w
        .slots
        .borrow()
        .get(filter)
        .is_some_and(|slot| slot.generation != before);
    sync_timers(w, filter, recreated.then_some((root_id, exec)));
    {
        let mut slots = w.slots.borrow_mut();
        let Some(slot) = slots.get_mut(filter) else {
            return;
        };
        if slot.disabled.contains(&root_id) {
            return;
        }
        let generation = slot.generation;
        let Some(inst) = slot.current(generation) else {
            return;
        };
        let mut root_exec = Exec {
            context_id: root_id,
            root_id,
            is_root: true,
            ..Exec::default()
        };
        match inst.call(
            &mut root_exec,
            Step::Tick,
            "proxy_on_tick",
            &[root_id as i32],
        ) {
            Ok(called) => spawn_root_calls(w, &slot.filter, generation, root_id, called.new_calls),
            Err(trap) => slot.trapped(root_id, Step::Tick, &trap),
        }
    }
    sync_timers(w, filter, None);
}

fn spawn_root_calls(
    w: &Rc<Worker>,
    filter: &Arc<str>,
    generation: u64,
    root_id: u32,
    calls: Vec<NewCall>,
) {
    for call in calls {
        let tx = w.root_tx.clone();
        let world = w.shared.world.clone();
        let filter = filter.clone();
        spawn_local(async move {
            let result = dispatch::perform(call.spec, &world.resolver, true).await;
            let _ = tx.send(RootReply {
                filter,
                generation,
                root_id,
                token: call.token,
                result,
            });
        });
    }
}

async fn root_replies(w: Rc<Worker>, mut rx: UnboundedReceiver<RootReply>) {
    while let Some(reply) = rx.recv().await {
        let filter = reply.filter.clone();
        root_reply(&w, reply);
        sync_timers(&w, &filter, None);
    }
}

fn root_reply(w: &Rc<Worker>, reply: RootReply) {
    let mut slots = w.slots.borrow_mut();
    let Some(slot) = slots.get_mut(reply.filter.as_ref()) else {
        return;
    };
    let Some(inst) = slot.current(reply.generation) else {
        return;
    };
    let (nh, bs) = counts(&reply.result);
    let mut exec = Exec {
        context_id: reply.root_id,
        root_id: reply.root_id,
        is_root: true,
        call: Some(reply.result),
        ..Exec::default()
    };
    let args = [reply.root_id as i32, reply.token as i32, nh, bs, 0];
    match inst.call(
        &mut exec,
        Step::CallResponse,
        "proxy_on_http_call_response",
        &args,
    ) {
        Ok(called) => spawn_root_calls(
            w,
            &slot.filter,
            reply.generation,
            reply.root_id,
            called.new_calls,
        ),
        Err(trap) => slot.trapped(reply.root_id, Step::CallResponse, &trap),
    }
}

/// `on_http_call_response` arguments: a failed call has no headers and no body; pseudo-headers
/// (`:status`, `:dispatch_status`) are not counted, as ngx_wasm_module counts.
fn counts(result: &CallResult) -> (i32, i32) {
    if result.failure.is_some() {
        (0, 0)
    } else {
        let headers = result.headers.iter().filter(|(k, _)| !k.starts_with(':'));
        (headers.count() as i32, result.body.len() as i32)
    }
}

async fn serve(w: Rc<Worker>, conn: Conn) {
    let Ok(stream) = tokio::net::TcpStream::from_std(conn.stream) else {
        return;
    };
    let service = hyper::service::service_fn(move |req| {
        let w = w.clone();
        async move { Ok::<_, Infallible>(handle(w, req, conn.peer, conn.id).await) }
    });
    // nginx limits header bytes, not the number of headers (hyper's default is 100).
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .max_headers(MAX_CLIENT_HEADERS)
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

/// nginx's `large_client_header_buffers 4 8k` (its default, kept by Kong): one header line
/// must fit in 8 KB, and all of them in four such buffers.
const MAX_HEADER_LINE: usize = 8 * 1024;
const MAX_HEADER_BYTES: usize = 4 * MAX_HEADER_LINE;
/// Headers nginx accepts only once per request (`ngx_http_process_unique_header_line`).
const UNIQUE_HEADERS: [&str; 3] = ["host", "content-length", "authorization"];

/// The request headers as nginx reads them, before any filter runs: a header line over 8 KB,
/// more than 32 KB of headers, or a second `Host`, `Content-Length` or `Authorization` is a
/// 400; names with `_` pass (Kong sets `underscores_in_headers on`).
fn client_headers(headers: &hyper::HeaderMap) -> Result<RequestHeaders, &'static str> {
    let mut pairs = Vec::with_capacity(headers.len());
    let mut total = 0usize;
    for (name, value) in headers {
        let line = name.as_str().len() + 2 + value.len() + 2;
        total += line;
        if line > MAX_HEADER_LINE || total > MAX_HEADER_BYTES {
            return Err("Request Header Or Cookie Too Large");
        }
        if UNIQUE_HEADERS.contains(&name.as_str()) && headers.get_all(name).iter().count() > 1 {
            return Err("Bad Request");
        }
        pairs.push((name.as_str().to_string(), value.as_bytes().to_vec()));
    }
    Ok(RequestHeaders::from_pairs(pairs))
}

/// nginx's own 400 page.
fn bad_request(title: &str) -> Reply {
    let body = format!(
        "<html>\r\n<head><title>400 {title}</title></head>\r\n<body>\r\n<center><h1>400 Bad Request</h1></center>\r\n<center>{title}</center>\r\n</body>\r\n</html>\r\n"
    );
    (
        400,
        vec![("content-type".into(), b"text/html".to_vec())],
        body.into_bytes(),
    )
}

fn json_response(status: u16, message: &str) -> Reply {
    let body = serde_json::json!({ "message": message })
        .to_string()
        .into_bytes();
    (
        status,
        vec![(
            "content-type".into(),
            b"application/json; charset=utf-8".to_vec(),
        )],
        body,
    )
}

async fn handle(
    w: Rc<Worker>,
    req: Request<Incoming>,
    peer: SocketAddr,
    conn_id: u64,
) -> Response<Full<Bytes>> {
    let (status, headers, body) = match handle_inner(&w, req, peer, conn_id).await {
        Ok(r) => r,
        Err(e) => {
            log::emit(
                "error",
                w.id,
                Some(conn_id),
                &format!("request failed: {e:#}"),
            );
            json_response(500, "An unexpected error occurred")
        }
    };
    let mut resp = Response::builder().status(status);
    for (k, v) in &headers {
        if proxy::is_hop_by_hop(k) {
            continue;
        }
        resp = resp.header(k.as_str(), v.as_slice());
    }
    resp = resp.header("x-spec-worker", w.id.to_string());
    resp.body(Full::new(Bytes::from(body))).unwrap_or_else(|_| {
        let mut r = Response::new(Full::new(Bytes::from_static(
            b"{\"message\":\"An unexpected error occurred\"}",
        )));
        *r.status_mut() = hyper::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}

type Reply = (u16, Vec<(String, Vec<u8>)>, Vec<u8>);

async fn handle_inner(
    w: &Rc<Worker>,
    req: Request<Incoming>,
    peer: SocketAddr,
    conn_id: u64,
) -> Result<Reply> {
    let target = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let Some((route, prefix)) = w.shared.table.find(&target) else {
        return Ok(json_response(404, "no Route matched with those values"));
    };
    let route = route.clone();
    let prefix = prefix.to_string();
    let service = w
        .shared
        .table
        .services
        .get(route.service)
        .cloned()
        .ok_or_else(|| anyhow!("route without service"))?;
    let method = req.method().as_str().to_string();
    let authority = req
        .headers()
        .get("host")
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .unwrap_or_else(|| format!("127.0.0.1:{}", w.shared.listen_port));
    let req_headers = match client_headers(req.headers()) {
        Ok(headers) => headers,
        Err(why) => return Ok(bad_request(why)),
    };
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes().to_vec())
        .unwrap_or_default();
    let mut ex = Exchange {
        method,
        path: target.clone(),
        scheme: "http".into(),
        authority,
        req_headers,
        req_body: body,
        info: RequestInfo {
            source_address: peer.ip().to_string(),
            source_port: peer.port(),
            route_name: route.name.clone(),
            route_id: Some(route.id.clone()),
            service_name: service.name.clone(),
            connection_id: conn_id,
        },
        ..Exchange::default()
    };
    // Kong's Lua reads these from the client's request before any filter runs.
    let url_path = target.split('?').next().unwrap_or("/").to_string();
    let kong_headers = {
        let live: Vec<(&str, &[u8])> = ex.req_headers.live().collect();
        let client = proxy::ClientSide {
            ip: &ex.info.source_address,
            scheme: "http",
            host: ex.authority.split(':').next().unwrap_or(""),
            port: w.shared.listen_port,
            path: &url_path,
            stripped_prefix: (route.strip_path && ex.path.starts_with(&prefix))
                .then_some(prefix.as_str()),
        };
        proxy::kong_headers(&live, &client)
    };
    let mut req = Req {
        w: w.clone(),
        ctxs: Vec::new(),
        pending: HashMap::new(),
        conn_id,
        finished: false,
    };
    let (tx, mut rx) = unbounded_channel();
    let outcome = req.request_phases(&route, &mut ex, &tx, &mut rx).await;
    let final_reply: Option<Reply> = match outcome {
        Outcome::Proceed => None,
        Outcome::Local => ex.local.take().map(|l| (l.status, l.headers, l.body)),
        Outcome::Error => Some(json_response(500, "An unexpected error occurred")),
    };
    req.cancel_all();
    let (status, headers, body) = match final_reply {
        Some(r) => r,
        None => {
            let uri = upstream_uri(
                service.upstream.path.as_deref(),
                &ex.path,
                &prefix,
                route.strip_path && ex.path.starts_with(&prefix),
            );
            let sent = proxy::forward(
                &service.upstream,
                &w.shared.world.resolver,
                &ex.method,
                &uri,
                &ex.req_headers.forwarded(),
                ex.req_body.clone(),
                &kong_headers,
            )
            .await;
            match sent {
                Ok(r) => r,
                Err(e) => {
                    log::emit(
                        "error",
                        w.id,
                        Some(conn_id),
                        &format!(
                            "connect() to upstream {}:{} failed: {e:#}",
                            service.upstream.host, service.upstream.port
                        ),
                    );
                    json_response(
                        502,
                        "An invalid response was received from the upstream server",
                    )
                }
            }
        }
    };
    ex.resp_status = status;
    ex.resp_headers = headers;
    ex.resp_body = body;
    ex.response_started = true;
    req.response_phases(&mut ex);
    req.final_phases(&mut ex);
    req.finished = true;
    Ok((
        ex.resp_status,
        std::mem::take(&mut ex.resp_headers),
        std::mem::take(&mut ex.resp_body),
    ))
}

/// A filter's HTTP context for one request.
struct Ctx {
    filter: Arc<str>,
    root_id: u32,
    id: u32,
    generation: u64,
    alive: bool,
}

enum Outcome {
    Proceed,
    Local,
    Error,
}

enum Ran {
    Ok { ret: Option<i32>, resumed: bool },
    Trapped,
    Gone,
}

struct Req {
    w: Rc<Worker>,
    ctxs: Vec<Ctx>,
    /// Pending callouts: token → (context index, task).
    pending: HashMap<u32, (usize, AbortHandle)>,
    conn_id: u64,
    /// The request ran to its end (`on_log`/`on_done` ran).
    finished: bool,
}

impl Drop for Req {
    /// The client went away mid-request (hyper dropped the handler): pending callouts are
    /// cancelled and the filter contexts still get `on_done` / `on_delete`, as in nginx.
    fn drop(&mut self) {
        self.cancel_all();
        if self.finished || self.w.slots.try_borrow_mut().is_err() {
            return;
        }
        let mut ex = Exchange::default();
        for i in 0..self.ctxs.len() {
            let id = self.ctxs.get(i).map(|c| c.id as i32).unwrap_or(0);
            let _ = self.run(i, &mut ex, Step::Done, "proxy_on_done", &[id], None, None);
            let _ = self.run(i, &mut ex, Step::Done, "proxy_on_delete", &[id], None, None);
        }
    }
}

type CallTx = UnboundedSender<(u32, CallResult)>;

impl Req {
    fn create_contexts(&mut self, chain: &[ChainEntry]) -> Result<(), ()> {
        for entry in chain {
            let created = {
                let mut slots = self.w.slots.borrow_mut();
                let Some(slot) = slots.get_mut(entry.filter.as_ref()) else {
                    continue;
                };
                if slot.disabled.contains(&entry.root_id) {
                    continue;
                }
                if slot.ensure(&self.w.linker).is_err() {
                    return Err(());
                }
                if slot.disabled.contains(&entry.root_id) {
                    continue;
                }
                let id = slot.new_context_id();
                let generation = slot.generation;
                let ctx = Ctx {
                    filter: entry.filter.clone(),
                    root_id: entry.root_id,
                    id,
                    generation,
                    alive: true,
                };
                let Some(inst) = slot.current(generation) else {
                    return Err(());
                };
                let mut exec = Exec {
                    context_id: id,
                    root_id: entry.root_id,
                    ..Exec::default()
                };
                match inst.call(
                    &mut exec,
                    Step::Init,
                    "proxy_on_context_create",
                    &[id as i32, entry.root_id as i32],
                ) {
                    Ok(_) => Some(ctx),
                    Err(trap) => {
                        slot.trapped(id, Step::Init, &trap);
                        None
                    }
                }
            };
            sync_timers(&self.w, &entry.filter, None);
            match created {
                Some(ctx) => self.ctxs.push(ctx),
                None => return Err(()),
            }
        }
        Ok(())
    }

    /// Runs one callback of context `i` with the exchange moved in and back out.
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        i: usize,
        ex: &mut Exchange,
        step: Step,
        name: &str,
        args: &[i32],
        call: Option<CallResult>,
        tx: Option<&CallTx>,
    ) -> Ran {
        let Some(ctx) = self.ctxs.get_mut(i) else {
            return Ran::Gone;
        };
        if !ctx.alive {
            return Ran::Gone;
        }
        let mut slots = self.w.slots.borrow_mut();
        let Some(slot) = slots.get_mut(ctx.filter.as_ref()) else {
            return Ran::Gone;
        };
        let Some(inst) = slot.current(ctx.generation) else {
            ctx.alive = false;
            log::emit(
                "error",
                self.w.id,
                Some(self.conn_id),
                &format!(
                    "[proxy-wasm][\"{}\" #{}] filter instance was recreated: context lost",
                    ctx.filter, ctx.id
                ),
            );
            return Ran::Gone;
        };
        let mut exec = Exec {
            context_id: ctx.id,
            root_id: ctx.root_id,
            exchange: Some(std::mem::take(ex)),
            call,
            ..Exec::default()
        };
        let res: Result<_, Trap> = inst.call(&mut exec, step, name, args);
        *ex = exec.exchange.take().unwrap_or_default();
        match res {
            Ok(called) => {
                if let Some(tx) = tx {
                    for nc in called.new_calls {
                        let tx = tx.clone();
                        let world = self.w.shared.world.clone();
                        let token = nc.token;
                        let task = spawn_local(async move {
                            let result = dispatch::perform(nc.spec, &world.resolver, false).await;
                            let _ = tx.send((token, result));
                        });
                        self.pending.insert(token, (i, task.abort_handle()));
                    }
                }
                Ran::Ok {
                    ret: called.ret,
                    resumed: exec.resumed,
                }
            }
            Err(trap) => {
                slot.trapped(ctx.id, step, &trap);
                ctx.alive = false;
                Ran::Trapped
            }
        }
    }

    fn cancel_ctx(&mut self, i: usize) {
        self.pending.retain(|_, (idx, task)| {
            if *idx == i {
                task.abort();
            }
            *idx != i
        });
    }

    fn cancel_all(&mut self) {
        for (_, (_, task)) in self.pending.drain() {
            task.abort();
        }
    }

    async fn request_phases(
        &mut self,
        route: &Route,
        ex: &mut Exchange,
        tx: &CallTx,
        rx: &mut UnboundedReceiver<(u32, CallResult)>,
    ) -> Outcome {
        if self.create_contexts(&route.chain).is_err() {
            return Outcome::Error;
        }
        let has_body = !ex.req_body.is_empty();
        let mut steps = vec![Step::RequestHeaders];
        if has_body {
            steps.push(Step::RequestBody);
        }
        for step in steps {
            for i in 0..self.ctxs.len() {
                let args = match step {
                    Step::RequestHeaders => {
                        // The whole count, as ngx_wasm_module passes it (pairs are capped).
                        let n = ex.req_headers.live_count() as i32;
                        [
                            self.ctxs.get(i).map(|c| c.id as i32).unwrap_or(0),
                            n,
                            i32::from(!has_body),
                        ]
                    }
                    _ => [
                        self.ctxs.get(i).map(|c| c.id as i32).unwrap_or(0),
                        ex.req_body.len() as i32,
                        1,
                    ],
                };
                let name = if step == Step::RequestHeaders {
                    "proxy_on_request_headers"
                } else {
                    "proxy_on_request_body"
                };
                let (action, mut resumed) = match self.run(i, ex, step, name, &args, None, Some(tx))
                {
                    Ran::Ok { ret, resumed } => (ret.unwrap_or(0), resumed),
                    Ran::Trapped => return Outcome::Error,
                    Ran::Gone => continue,
                };
                let mut had_calls = false;
                loop {
                    if ex.local.is_some() {
                        if !self.pending.is_empty() {
                            log::emit("notice", self.w.id, Some(self.conn_id), "[proxy-wasm] local response produced, cancelling pending dispatch calls");
                        }
                        self.cancel_all();
                        return Outcome::Local;
                    }
                    let mine = self.pending.values().filter(|(idx, _)| *idx == i).count();
                    if mine == 0 {
                        if action == 0 || resumed || had_calls {
                            break;
                        }
                        // Paused with nothing pending: Kong waits until the client gives up.
                        std::future::pending::<()>().await;
                    }
                    let Some((token, result)) = rx.recv().await else {
                        break;
                    };
                    let Some((idx, _)) = self.pending.remove(&token) else {
                        continue;
                    };
                    had_calls = true;
                    ex.body_call_unanswered |= result.body_sent_unanswered;
                    let (nh, bs) = counts(&result);
                    let ctx_id = self.ctxs.get(idx).map(|c| c.id as i32).unwrap_or(0);
                    let args = [ctx_id, token as i32, nh, bs, 0];
                    match self.run(
                        idx,
                        ex,
                        Step::CallResponse,
                        "proxy_on_http_call_response",
                        &args,
                        Some(result),
                        Some(tx),
                    ) {
                        Ran::Ok { resumed: r, .. } => resumed |= r,
                        Ran::Trapped | Ran::Gone => {
                            log::emit(
                                "error",
                                self.w.id,
                                Some(self.conn_id),
                                &format!("[proxy-wasm][\"{}\" #{ctx_id}] filter failed resuming after dispatch (instance trapped): request goes on WITHOUT it (fail-open, as in Kong)", self.ctxs.get(idx).map(|c| c.filter.as_ref()).unwrap_or("?")),
                            );
                            self.cancel_ctx(idx);
                            if idx == i {
                                break;
                            }
                        }
                    }
                }
            }
        }
        Outcome::Proceed
    }

    fn response_phases(&mut self, ex: &mut Exchange) {
        for i in 0..self.ctxs.len() {
            let id = self.ctxs.get(i).map(|c| c.id as i32).unwrap_or(0);
            let eos = i32::from(ex.resp_body.is_empty());
            let args = [id, ex.resp_headers.len() as i32, eos];
            if let Ran::Trapped = self.run(
                i,
                ex,
                Step::ResponseHeaders,
                "proxy_on_response_headers",
                &args,
                None,
                None,
            ) {
                self.internal_error(ex);
                return;
            }
        }
        for i in 0..self.ctxs.len() {
            let id = self.ctxs.get(i).map(|c| c.id as i32).unwrap_or(0);
            let args = [id, ex.resp_body.len() as i32, 1];
            if let Ran::Trapped = self.run(
                i,
                ex,
                Step::ResponseBody,
                "proxy_on_response_body",
                &args,
                None,
                None,
            ) {
                self.internal_error(ex);
                return;
            }
        }
    }

    fn internal_error(&self, ex: &mut Exchange) {
        let (status, headers, body) = json_response(500, "An unexpected error occurred");
        ex.resp_status = status;
        ex.resp_headers = headers;
        ex.resp_body = body;
    }

    fn final_phases(&mut self, ex: &mut Exchange) {
        for i in 0..self.ctxs.len() {
            let id = self.ctxs.get(i).map(|c| c.id as i32).unwrap_or(0);
            let _ = self.run(i, ex, Step::Log, "proxy_on_log", &[id], None, None);
            let _ = self.run(i, ex, Step::Done, "proxy_on_done", &[id], None, None);
            let _ = self.run(i, ex, Step::Done, "proxy_on_delete", &[id], None, None);
        }
    }
}
