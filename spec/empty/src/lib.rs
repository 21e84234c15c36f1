//! The empty filter: a proxy-wasm filter whose `on_http_request_headers` returns `Continue` and
//! does nothing else. `make bench` runs it on Kong's engine as the baseline of what any filter
//! costs there (instance, context create/delete, the host's callbacks), so that cloudrun_oidc's
//! own cost is the difference (BENCHMARKS.md, "On Kong's engine").

use proxy_wasm::traits::{Context, HttpContext};
use proxy_wasm::types::Action;

proxy_wasm::main! {{
    proxy_wasm::set_http_context(|_context_id, _root_id| -> Box<dyn HttpContext> {
        Box::new(Empty)
    });
}}

/// One request's context: nothing to keep.
struct Empty;

impl Context for Empty {}

impl HttpContext for Empty {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        Action::Continue
    }
}
