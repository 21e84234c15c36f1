//! Which engine runs a test world's gateway: our stand-in (the `gateway` binary: wasmtime host +
//! kong.yml reader) or Kong's real engine (nginx + Kong's ngx_wasm_module, named by `WASMX_NGINX`).
//!
//! The real engine is the reference. The stand-in stays for what only it can do (fault injection
//! inside the host, traps on demand, instance and memory counters) and must agree with the engine
//! everywhere else; end-to-end tests run on both through [`engine_tests!`](crate::engine_tests).

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

/// Why the engine tier is skipped when `WASMX_NGINX` is not set.
pub const ENGINE_TIER_SKIPPED: &str = "engine tier skipped: WASMX_NGINX is not set (an nginx \
     built with Kong's ngx_wasm_module 9136e463 on wasmtime 26, Kong's property namespace; see the \
     README's \"Kong's engine\")";

/// The real engine's nginx: `WASMX_NGINX`. The project ships no engine and builds none; without
/// one the engine tests are compiled as ignored (`spec/build.rs`), and this error says why.
pub fn wasmx_nginx() -> Result<PathBuf> {
    let Some(path) = std::env::var_os("WASMX_NGINX").filter(|p| !p.is_empty()) else {
        bail!("{ENGINE_TIER_SKIPPED}");
    };
    let path = PathBuf::from(path);
    if !path.is_file() {
        bail!("WASMX_NGINX={} is not a file", path.display());
    }
    Ok(path)
}

/// Generates one `#[test]` per engine for a test function taking an [`Engine`]:
/// `engine_tests!(rejects_expired_token);` makes `rejects_expired_token::standin` and
/// `rejects_expired_token::wasmx`, each calling `rejects_expired_token(Engine::…)`. The `wasmx`
/// one is ignored (reported as skipped) unless `WASMX_NGINX` was set at build time.
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
                #[cfg_attr(
                    not(wasmx_engine),
                    ignore = "engine tier skipped: WASMX_NGINX is not set"
                )]
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
