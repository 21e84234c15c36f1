//! Which engine runs a test world's gateway: our stand-in (the `gateway` binary: wasmtime host +
//! kong.yml reader) or Kong's real engine (nginx + Kong's ngx_wasm_module, `../shared/wasmx`).
//!
//! The real engine is the reference. The stand-in stays for what only it can do (fault injection
//! inside the host, traps on demand, instance and memory counters) and must agree with the engine
//! everywhere else; end-to-end tests run on both through [`engine_tests!`](crate::engine_tests).

use super::process::repo_root;
use anyhow::{bail, Result};
use std::path::PathBuf;

/// A gateway engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Engine {
    /// The `gateway` binary of this crate.
    #[default]
    StandIn,
    /// nginx + ngx_wasm_module (Kong 3.9's build), found by [`wasmx_nginx`].
    Wasmx,
}

impl Engine {
    /// Both engines, the stand-in first.
    pub const ALL: [Engine; 2] = [Engine::StandIn, Engine::Wasmx];

    /// `standin` or `wasmx` (also what `ENGINE=` takes).
    pub fn name(self) -> &'static str {
        match self {
            Engine::StandIn => "standin",
            Engine::Wasmx => "wasmx",
        }
    }

    /// Parses `standin`/`stand-in` or `wasmx`/`nginx`.
    pub fn parse(text: &str) -> Result<Engine> {
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "standin" | "stand-in" => Ok(Engine::StandIn),
            "wasmx" | "nginx" | "engine" => Ok(Engine::Wasmx),
            other => bail!("unknown engine {other:?}: use standin or wasmx"),
        }
    }

    /// `ENGINE` from the environment (default: the stand-in).
    pub fn from_env() -> Result<Engine> {
        Engine::parse(&std::env::var("ENGINE").unwrap_or_default())
    }
}

impl std::fmt::Display for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where the real engine's nginx is: `WASMX_NGINX`, else `../shared/wasmx/bin/nginx` beside the
/// repository, else `target/wasmx/bin/nginx` (what `make engine` builds). An error says how to
/// get one: the real-engine tests never skip silently.
pub fn wasmx_nginx() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("WASMX_NGINX").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("WASMX_NGINX={} is not a file", path.display());
        }
        return Ok(path);
    }
    let root = repo_root();
    let candidates = [
        root.join("../shared/wasmx/bin/nginx"),
        root.join("target/wasmx/bin/nginx"),
    ];
    for path in &candidates {
        if path.is_file() {
            return Ok(path.clone());
        }
    }
    bail!(
        "Kong's engine (nginx + ngx_wasm_module) not found: set WASMX_NGINX, or run `make engine` \
         (builds it into target/wasmx from ../shared/wasmx/sources or the public sources); looked at {}",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Generates one `#[test]` per engine for a test function taking an [`Engine`]:
/// `engine_tests!(rejects_expired_token);` makes `rejects_expired_token::standin` and
/// `rejects_expired_token::wasmx`, each calling `rejects_expired_token(Engine::…)`.
#[macro_export]
macro_rules! engine_tests {
    ($($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn standin() -> anyhow::Result<()> {
                    super::$name($crate::testkit::engine::Engine::StandIn)
                }
                #[test]
                fn wasmx() -> anyhow::Result<()> {
                    super::$name($crate::testkit::engine::Engine::Wasmx)
                }
            }
        )+
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_names() {
        assert_eq!(Engine::parse("wasmx").unwrap(), Engine::Wasmx);
        assert_eq!(Engine::parse("NGINX").unwrap(), Engine::Wasmx);
        assert_eq!(Engine::parse("").unwrap(), Engine::StandIn);
        assert_eq!(Engine::parse("standin").unwrap(), Engine::StandIn);
        assert!(Engine::parse("envoy").is_err());
    }
}
