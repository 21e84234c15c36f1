//! In-process driver: one filter instance in the spec host (wasmtime, the same `Engine` defaults
//! as the gateway), driven through the proxy-wasm ABI without any network. Callouts the filter
//! makes are answered synchronously by a [`Responder`] closure (a JWKS body, a Google ID token),
//! so the request path can be warmed up exactly like Kong would after its first round trips.
//!
//! Only the host's public types are used (`Slot`, `FilterInstance::call`, `Exec`, `Exchange`,
//! `World`); the linker is assembled here from `abi`/`wasi` so nothing in `spec/src/host` changes.

use anyhow::{anyhow, bail, Context, Result};
use cloudrun_spec::host::context::{
    CallResult, Exchange, Exec, HostState, RequestHeaders, RequestInfo, Step,
};
use cloudrun_spec::host::dispatch::{CallSpec, Resolver};
use cloudrun_spec::host::instance::{RootSpec, Slot};
use cloudrun_spec::host::shared_data::Zones;
use cloudrun_spec::host::{abi, wasi, World};
use std::sync::Arc;
use std::time::{Duration, Instant};
use wasmtime::{Linker, Module};

/// Answers a callout in-process.
pub type Responder = Box<dyn FnMut(&CallSpec) -> CallResult>;

/// A 200 answer with `body`.
pub fn ok_response(content_type: &str, body: Vec<u8>) -> CallResult {
    CallResult {
        headers: vec![
            (":status".into(), b"200".to_vec()),
            ("content-type".into(), content_type.as_bytes().to_vec()),
            ("content-length".into(), body.len().to_string().into_bytes()),
            (":dispatch_status".into(), b"ok".to_vec()),
        ],
        body,
        failure: None,
        body_sent_unanswered: false,
    }
}

/// What one request did.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Time inside `proxy_on_request_headers`.
    pub headers: Duration,
    /// Time inside `proxy_on_http_call_response` (all callouts of the request).
    pub callouts: Duration,
    /// Callouts answered.
    pub calls: usize,
    /// Time inside every guest callback of the request, as the gateway runs them: context
    /// create, request headers, callout answers, response headers and body, log, done, delete.
    pub lifecycle: Duration,
    /// 200 when the request would go upstream, else the local response status.
    pub status: u16,
    /// Request headers after the filter (what would go upstream).
    pub upstream_headers: Vec<(String, Vec<u8>)>,
}

/// One filter module on one worker with its root contexts (one per route).
pub struct Driver {
    slot: Slot,
    linker: Linker<HostState>,
    roots: Vec<u32>,
    responder: Responder,
    connection: u64,
}

impl Driver {
    /// A worker running `module` with one root context per entry of `configs` (JSON texts).
    pub fn new(module: &Module, configs: &[String], responder: Responder) -> Result<Driver> {
        let zones = Zones::new(&[("cloudrun_oidc".to_string(), 12 * 1024 * 1024)])?;
        let world = Arc::new(World::new(1, zones, Resolver::default()));
        let mut linker = Linker::new(module.engine());
        abi::add_to_linker(&mut linker)?;
        wasi::add_to_linker(&mut linker)?;
        linker.define_unknown_imports_as_traps(module)?;
        let roots: Vec<u32> = (1..=configs.len() as u32).collect();
        let specs = roots
            .iter()
            .zip(configs)
            .map(|(id, c)| RootSpec {
                root_id: *id,
                config: c.as_bytes().to_vec(),
            })
            .collect();
        let mut slot = Slot::new(Arc::from("cloudrun_oidc"), 0, module.clone(), world, specs);
        slot.ensure(&linker).context("starting the filter")?;
        if !slot.disabled.is_empty() {
            bail!("on_configure refused roots {:?}", slot.disabled);
        }
        Ok(Driver {
            slot,
            linker,
            roots,
            responder,
            connection: 0,
        })
    }

    /// `GET /orders` on route `route` (0-based) with these request headers.
    pub fn request(&mut self, route: usize, headers: &[(String, Vec<u8>)]) -> Result<Outcome> {
        let root_id = *self
            .roots
            .get(route)
            .ok_or_else(|| anyhow!("no route {route}"))?;
        let generation_before = self.slot.generation;
        let id = self.slot.new_context_id();
        self.connection += 1;
        let mut ex = Exchange {
            method: "GET".into(),
            path: "/orders".into(),
            scheme: "http".into(),
            authority: "gateway.bench:8000".into(),
            req_headers: RequestHeaders::from_pairs(headers.to_vec()),
            info: RequestInfo {
                source_address: "127.0.0.1".into(),
                source_port: 40_000,
                route_name: Some("orders".into()),
                route_id: Some("orders-route-id".into()),
                service_name: Some("orders".into()),
                connection_id: self.connection,
            },
            ..Exchange::default()
        };
        let inst = self.slot.ensure(&self.linker)?;
        let mut exec = Exec {
            context_id: id,
            root_id,
            ..Exec::default()
        };
        let start = Instant::now();
        inst.call(
            &mut exec,
            Step::Init,
            "proxy_on_context_create",
            &[id as i32, root_id as i32],
        )
        .map_err(|t| anyhow!("trap in context create: {}", t.0))?;
        let mut lifecycle = start.elapsed();

        let n = headers.len() as i32;
        let mut exec = Exec {
            context_id: id,
            root_id,
            exchange: Some(std::mem::take(&mut ex)),
            ..Exec::default()
        };
        let start = Instant::now();
        let called = inst.call(
            &mut exec,
            Step::RequestHeaders,
            "proxy_on_request_headers",
            &[id as i32, n, 1],
        );
        let headers_time = start.elapsed();
        let called = called.map_err(|t| anyhow!("trap in on_request_headers: {}", t.0))?;
        ex = exec.exchange.take().unwrap_or_default();
        let mut action = called.ret.unwrap_or(0);
        let mut resumed = exec.resumed;
        let mut pending = called.new_calls;
        let mut callouts = Duration::ZERO;
        let mut calls = 0;
        // Answer callouts one at a time, as they come (bounded: a filter never needs more).
        while let Some(call) = pending.pop() {
            if ex.local.is_some() || calls >= 16 {
                break;
            }
            calls += 1;
            let result = (self.responder)(&call.spec);
            let (nh, bs) = if result.failure.is_some() {
                (0, 0)
            } else {
                (result.headers.len() as i32, result.body.len() as i32)
            };
            let mut exec = Exec {
                context_id: id,
                root_id,
                exchange: Some(std::mem::take(&mut ex)),
                call: Some(result),
                ..Exec::default()
            };
            let start = Instant::now();
            let called = inst.call(
                &mut exec,
                Step::CallResponse,
                "proxy_on_http_call_response",
                &[id as i32, call.token as i32, nh, bs, 0],
            );
            callouts += start.elapsed();
            let called = called.map_err(|t| anyhow!("trap in on_http_call_response: {}", t.0))?;
            ex = exec.exchange.take().unwrap_or_default();
            resumed |= exec.resumed;
            pending.extend(called.new_calls);
            if exec.resumed {
                action = 0;
            }
        }
        let status = match &ex.local {
            Some(local) => local.status,
            None if action == 0 || resumed => 200,
            None => bail!("request left paused with no callout pending"),
        };
        lifecycle += headers_time + callouts;
        // The rest of the lifecycle, as the gateway runs it after the upstream answered.
        let upstream_headers = ex.req_headers.forwarded();
        if ex.local.is_none() {
            ex.resp_status = 200;
            ex.resp_headers = vec![
                ("content-type".into(), b"application/json".to_vec()),
                ("content-length".into(), b"64".to_vec()),
            ];
            ex.resp_body = vec![b' '; 64];
        }
        ex.response_started = true;
        let nresp = ex.resp_headers.len() as i32;
        let nbody = ex.resp_body.len() as i32;
        for (step, name, args) in [
            (
                Step::ResponseHeaders,
                "proxy_on_response_headers",
                vec![id as i32, nresp, 0],
            ),
            (
                Step::ResponseBody,
                "proxy_on_response_body",
                vec![id as i32, nbody, 1],
            ),
            (Step::Log, "proxy_on_log", vec![id as i32]),
            (Step::Done, "proxy_on_done", vec![id as i32]),
            (Step::Done, "proxy_on_delete", vec![id as i32]),
        ] {
            let mut exec = Exec {
                context_id: id,
                root_id,
                exchange: Some(std::mem::take(&mut ex)),
                ..Exec::default()
            };
            let start = Instant::now();
            let called = inst.call(&mut exec, step, name, &args);
            lifecycle += start.elapsed();
            called.map_err(|t| anyhow!("trap in {name}: {}", t.0))?;
            ex = exec.exchange.take().unwrap_or_default();
        }
        if self.slot.generation != generation_before {
            bail!("the filter instance was recreated (trap)");
        }
        Ok(Outcome {
            headers: headers_time,
            callouts,
            calls,
            lifecycle,
            status,
            upstream_headers,
        })
    }
}

/// Request headers a client sends, with `Authorization: Bearer <token>`.
pub fn client_headers(token: &str) -> Vec<(String, Vec<u8>)> {
    vec![
        ("host".into(), b"gateway.bench:8000".to_vec()),
        ("user-agent".into(), b"bench/1".to_vec()),
        ("accept".into(), b"application/json".to_vec()),
        ("x-request-id".into(), b"5f0c6a1e-bench".to_vec()),
        (
            "authorization".into(),
            format!("Bearer {token}").into_bytes(),
        ),
    ]
}
