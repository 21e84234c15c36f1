//! The filter's exports called in hostile orders: the release `.wasm` in the stand-in's host,
//! driven directly (`Slot`, `FilterInstance::call`), with what a confused or racing host may
//! send — an answer for a token nobody made (root and request), an answer after the context
//! was deleted, a second create for the same id, a context of an unknown root, a tick or a
//! request for a context never created, done/delete for unknown ids, an allocation the memory
//! cannot hold. None may trap (a trap in a callout answer makes Kong proxy the request), and a
//! paused request that gets an answer it cannot attribute is refused, never resumed.
//!
//! `CLOUDRUN_OIDC_WASM=/path/to/other.wasm` runs the same tests against another build (main's
//! filter, on the proxy-wasm crate's dispatcher, traps on most of them).

use anyhow::{anyhow, Result};
use cloudrun_spec::host::context::{
    CallResult, Exchange, Exec, HostState, RequestHeaders, RequestInfo, Step,
};
use cloudrun_spec::host::dispatch::Resolver;
use cloudrun_spec::host::instance::{Called, FilterInstance, RootSpec, Slot};
use cloudrun_spec::host::shared_data::Zones;
use cloudrun_spec::host::{abi, wasi, World};
use cloudrun_spec::jose::b64url;
use cloudrun_spec::testkit::stack::filter_wasm;
use serde_json::json;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use wasmtime::{Engine, Linker, Module};

const ROOT: u32 = 1;
const ISSUER: &str = "https://idp.example";
const AUDIENCE: &str = "orders-api";

/// One worker's instance of the release filter with one configured route (root [`ROOT`]).
struct Filter {
    slot: Slot,
    linker: Linker<HostState>,
}

impl Filter {
    fn start() -> Result<Filter> {
        let engine = Engine::default();
        let module = Module::from_file(&engine, filter_wasm()?)?;
        let zones = Zones::new(&[("cloudrun_oidc".to_string(), 12 * 1024 * 1024)])?;
        let world = Arc::new(World::new(1, zones, Resolver::default()));
        let mut linker = Linker::new(&engine);
        abi::add_to_linker(&mut linker)?;
        wasi::add_to_linker(&mut linker)?;
        linker.define_unknown_imports_as_traps(&module)?;
        let config = json!({
            "issuers": [{
                "issuer": ISSUER,
                "audiences": [AUDIENCE],
                "jwks_url": format!("{ISSUER}/jwks"),
            }],
        });
        let roots = vec![RootSpec {
            root_id: ROOT,
            config: config.to_string().into_bytes(),
        }];
        let mut slot = Slot::new(Arc::from("cloudrun_oidc"), 0, module, world, roots);
        slot.ensure(&linker)?;
        if !slot.disabled.is_empty() {
            return Err(anyhow!("on_configure refused the route"));
        }
        Ok(Filter { slot, linker })
    }

    fn instance(&mut self) -> Result<&mut FilterInstance> {
        self.slot.ensure(&self.linker)
    }

    /// Calls `name(args)` in context `exec`; a trap is an error naming the call.
    fn call(&mut self, exec: &mut Exec, step: Step, name: &str, args: &[i32]) -> Result<Called> {
        let generation = self.slot.generation;
        let called = self
            .instance()?
            .call(exec, step, name, args)
            .map_err(|trap| anyhow!("{name}{args:?} trapped: {}", trap.0))?;
        assert_eq!(
            self.slot.generation, generation,
            "the instance was re-created"
        );
        Ok(called)
    }

    fn root_call(&mut self, root: u32, step: Step, name: &str, args: &[i32]) -> Result<Called> {
        let mut exec = Exec {
            context_id: root,
            root_id: root,
            is_root: true,
            ..Exec::default()
        };
        self.call(&mut exec, step, name, args)
    }

    fn create(&mut self, id: u32, root: u32) -> Result<()> {
        let mut exec = Exec {
            context_id: id,
            root_id: root,
            is_root: root == 0,
            ..Exec::default()
        };
        self.call(
            &mut exec,
            Step::Init,
            "proxy_on_context_create",
            &[id as i32, root as i32],
        )?;
        Ok(())
    }

    /// Request `id` (created first when `create`) with `headers`: what the filter decided.
    fn request(&mut self, id: u32, create: bool, headers: &[(&str, &str)]) -> Result<Request> {
        if create {
            self.create(id, ROOT)?;
        }
        let pairs = headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
            .collect::<Vec<_>>();
        let count = pairs.len() as i32;
        let mut exec = Exec {
            context_id: id,
            root_id: ROOT,
            exchange: Some(Exchange {
                method: "GET".into(),
                path: "/orders".into(),
                scheme: "http".into(),
                authority: "gateway.test".into(),
                req_headers: RequestHeaders::from_pairs(pairs),
                info: RequestInfo {
                    source_address: "127.0.0.1".into(),
                    source_port: 40_000,
                    connection_id: u64::from(id),
                    ..RequestInfo::default()
                },
                ..Exchange::default()
            }),
            ..Exec::default()
        };
        let called = self.call(
            &mut exec,
            Step::RequestHeaders,
            "proxy_on_request_headers",
            &[id as i32, count, 1],
        )?;
        Ok(Request {
            id,
            action: called.ret,
            tokens: called.new_calls.iter().map(|c| c.token).collect(),
            exchange: exec.exchange.take().unwrap_or_default(),
        })
    }

    /// A failed callout answer (`timeout`) for `token`, delivered to request `request` with
    /// `context_id` as the host's first argument.
    fn answer(&mut self, request: &mut Request, context_id: u32, token: u32) -> Result<bool> {
        let mut exec = Exec {
            context_id: request.id,
            root_id: ROOT,
            exchange: Some(std::mem::take(&mut request.exchange)),
            call: Some(timeout()),
            ..Exec::default()
        };
        self.call(
            &mut exec,
            Step::CallResponse,
            "proxy_on_http_call_response",
            &[context_id as i32, token as i32, 0, 0, 0],
        )?;
        request.exchange = exec.exchange.take().unwrap_or_default();
        Ok(exec.resumed)
    }

    fn end(&mut self, id: u32) -> Result<()> {
        for name in ["proxy_on_done", "proxy_on_log", "proxy_on_delete"] {
            let mut exec = Exec {
                context_id: id,
                root_id: ROOT,
                ..Exec::default()
            };
            self.call(&mut exec, Step::Done, name, &[id as i32])?;
        }
        Ok(())
    }
}

/// What `on_request_headers` did.
struct Request {
    id: u32,
    /// 0 continue, 1 pause.
    action: Option<i32>,
    /// Callouts it dispatched.
    tokens: Vec<u32>,
    exchange: Exchange,
}

impl Request {
    fn local_status(&self) -> Option<u16> {
        self.exchange.local.as_ref().map(|l| l.status)
    }
}

fn timeout() -> CallResult {
    CallResult {
        headers: vec![(":dispatch_status".into(), b"timeout".to_vec())],
        body: Vec::new(),
        failure: Some("timeout"),
        body_sent_unanswered: false,
    }
}

/// A well-formed token of the configured issuer with a forged signature: the filter must
/// fetch the issuer's keys before it can refuse it, so the request pauses on a callout.
fn forged_token() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k1"});
    let claims = json!({
        "iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "iat": now, "exp": now + 600,
    });
    format!(
        "{}.{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes()),
        b64url(&[0x41; 256])
    )
}

/// A request paused on its keys fetch.
fn paused_request(filter: &mut Filter, id: u32) -> Result<Request> {
    let bearer = format!("Bearer {}", forged_token());
    let request = filter.request(id, true, &[("authorization", &bearer)])?;
    assert_eq!(request.action, Some(1), "the request waits for the keys");
    assert_eq!(request.local_status(), None);
    assert_eq!(request.tokens.len(), 1, "one keys fetch");
    Ok(request)
}

/// A token no context of the instance made.
fn stranger(request: &Request) -> u32 {
    request.tokens.iter().max().copied().unwrap_or(0) + 1000
}

#[test]
fn a_paused_request_that_gets_an_answer_it_cannot_attribute_is_refused_not_resumed() -> Result<()> {
    let mut filter = Filter::start()?;
    let mut request = paused_request(&mut filter, 100)?;
    let token = stranger(&request);
    let resumed = filter.answer(&mut request, 100, token)?;
    assert!(
        !resumed,
        "an unattributable answer must never resume the request"
    );
    assert_eq!(
        request.local_status(),
        Some(500),
        "refused as an internal error"
    );
    filter.end(100)
}

#[test]
fn a_paused_request_whose_instance_was_replaced_is_refused_not_resumed() -> Result<()> {
    let mut before = Filter::start()?;
    let mut request = paused_request(&mut before, 110)?;
    let token = request.tokens[0];
    // Kong's engine, after the instance is replaced (a trap, a configuration change): a new
    // instance, the request's context created in it, then the answer named after the root.
    let mut after = Filter::start()?;
    after.create(110, ROOT)?;
    let resumed = after.answer(&mut request, ROOT, token)?;
    assert!(!resumed, "the request's state is lost: never resumed");
    assert_eq!(
        request.local_status(),
        Some(500),
        "refused as an internal error"
    );
    Ok(())
}

#[test]
fn a_root_answer_nobody_made_leaves_a_paused_request_alone() -> Result<()> {
    let mut filter = Filter::start()?;
    let mut request = paused_request(&mut filter, 112)?;
    let token = request.tokens[0];
    let mut exec = Exec {
        context_id: ROOT,
        root_id: ROOT,
        is_root: true,
        call: Some(timeout()),
        ..Exec::default()
    };
    filter.call(
        &mut exec,
        Step::CallResponse,
        "proxy_on_http_call_response",
        &[ROOT as i32, stranger(&request) as i32, 0, 0, 0],
    )?;
    // The request still gets its own answer: the keys fetch timed out → 503.
    let resumed = filter.answer(&mut request, ROOT, token)?;
    assert!(!resumed);
    assert_eq!(request.local_status(), Some(503));
    Ok(())
}

#[test]
fn an_answer_for_a_token_no_context_made_is_ignored_by_a_root() -> Result<()> {
    let mut filter = Filter::start()?;
    let mut exec = Exec {
        context_id: ROOT,
        root_id: ROOT,
        is_root: true,
        call: Some(timeout()),
        ..Exec::default()
    };
    let called = filter.call(
        &mut exec,
        Step::CallResponse,
        "proxy_on_http_call_response",
        &[ROOT as i32, 4242, 0, 0, 0],
    )?;
    assert!(called.new_calls.is_empty());
    // The route still works: a request without a token is refused as usual.
    let request = filter.request(101, true, &[])?;
    assert_eq!(request.local_status(), Some(401));
    Ok(())
}

#[test]
fn an_answer_after_its_request_was_deleted_is_ignored() -> Result<()> {
    let mut filter = Filter::start()?;
    let mut request = paused_request(&mut filter, 102)?;
    let token = request.tokens[0];
    // The client went away: Kong cancels the call and ends the context.
    filter.end(102)?;
    // A late answer, named after the request (stand-in) or after the root (Kong's engine).
    filter.answer(&mut request, 102, token)?;
    filter.answer(&mut request, ROOT, token)?;
    assert_eq!(
        request.local_status(),
        None,
        "nothing answers for a deleted context"
    );
    // The same id, used again by a new request, decides on its own.
    let again = filter.request(102, true, &[])?;
    assert_eq!(again.local_status(), Some(401));
    Ok(())
}

#[test]
fn a_second_create_for_the_same_id_neither_traps_nor_lets_a_request_through() -> Result<()> {
    let mut filter = Filter::start()?;
    filter.create(ROOT, 0)?;
    let request = paused_request(&mut filter, 103)?;
    filter.create(103, ROOT)?;
    // The re-created context decides anew: no token → 401, never an unverified pass.
    let again = filter.request(103, false, &[])?;
    assert_eq!(again.local_status(), Some(401));
    drop(request);
    // The route's root kept its configuration.
    let other = filter.request(104, true, &[])?;
    assert_eq!(other.local_status(), Some(401));
    Ok(())
}

#[test]
fn a_context_of_an_unknown_root_refuses_every_request() -> Result<()> {
    let mut filter = Filter::start()?;
    let mut exec = Exec {
        context_id: 105,
        root_id: 77,
        ..Exec::default()
    };
    filter.call(&mut exec, Step::Init, "proxy_on_context_create", &[105, 77])?;
    let request = filter.request(105, false, &[("authorization", "Bearer x.y.z")])?;
    assert_eq!(
        request.local_status(),
        Some(500),
        "no configuration: refused"
    );
    assert_eq!(request.action, Some(1));
    Ok(())
}

#[test]
fn request_headers_for_a_context_never_created_are_refused() -> Result<()> {
    let mut filter = Filter::start()?;
    let request = filter.request(106, false, &[("authorization", "Bearer x.y.z")])?;
    assert_eq!(request.local_status(), Some(500));
    assert_eq!(request.action, Some(1));
    filter.end(106)
}

#[test]
fn ticks_before_configure_and_for_unknown_roots_do_nothing() -> Result<()> {
    let mut filter = Filter::start()?;
    // A root created but not configured yet, and one never created.
    filter.create(50, 0)?;
    let called = filter.root_call(50, Step::Tick, "proxy_on_tick", &[50])?;
    assert!(called.new_calls.is_empty());
    let called = filter.root_call(51, Step::Tick, "proxy_on_tick", &[51])?;
    assert!(called.new_calls.is_empty());
    // Configure for a root never created: it is created, and configure never says false.
    let called = filter.root_call(52, Step::Configure, "proxy_on_configure", &[52, 0])?;
    assert_eq!(called.ret, Some(1));
    Ok(())
}

#[test]
fn done_log_and_delete_for_unknown_ids_do_nothing() -> Result<()> {
    let mut filter = Filter::start()?;
    filter.end(9_999)?;
    // Twice for the same request.
    filter.request(107, true, &[])?;
    filter.end(107)?;
    filter.end(107)?;
    Ok(())
}

#[test]
fn an_allocation_the_memory_cannot_hold_returns_null() -> Result<()> {
    let mut filter = Filter::start()?;
    let called = filter.root_call(ROOT, Step::Init, "proxy_on_memory_allocate", &[-1])?;
    assert_eq!(called.ret, Some(0), "null, not a trap");
    let called = filter.root_call(ROOT, Step::Init, "proxy_on_memory_allocate", &[64])?;
    assert_ne!(called.ret, Some(0));
    Ok(())
}
