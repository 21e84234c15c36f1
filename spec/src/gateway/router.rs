//! The routing table built from kong.yml: routes match by path prefix (longest wins), each with
//! its filter chain in Kong's order (the service's chain first, then the route's; filters in
//! order; disabled chains and filters left out), and the upstream path Kong would send.

use super::kong_yml::{ChainYml, KongYml, PluginYml, Upstream};
use super::schema::Filters;
use crate::host::instance::RootSpec;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::sync::Arc;

/// One filter of a chain: which filter, and which of its root contexts.
#[derive(Debug, Clone)]
pub struct ChainEntry {
    pub filter: Arc<str>,
    pub root_id: u32,
}

/// A service.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: Option<String>,
    pub upstream: Upstream,
}

/// A route.
#[derive(Debug, Clone)]
pub struct Route {
    pub name: Option<String>,
    pub id: String,
    pub service: usize,
    pub paths: Vec<String>,
    pub strip_path: bool,
    pub chain: Vec<ChainEntry>,
}

/// Routes, services and the root contexts each filter needs.
#[derive(Debug, Default)]
pub struct Table {
    pub services: Vec<Service>,
    pub routes: Vec<Route>,
    /// Filter name → its root contexts (one per chain entry).
    pub roots: BTreeMap<String, Vec<RootSpec>>,
}

fn pseudo_uuid(seed: &str) -> String {
    let h = crc32fast::hash(seed.as_bytes());
    format!(
        "{h:08x}-0000-4000-8000-{:012x}",
        u64::from(h) * 2654435761 % 0xffff_ffff_ffff
    )
}

impl Table {
    /// Builds the table; errors carry Kong-like locations (`...filters.1.config: ...`).
    pub fn build(yml: &KongYml, filters: &mut Filters) -> Result<Table> {
        let mut table = Table::default();
        if let Some(p) = yml.plugins.first() {
            bail!("plugins.1: plugin '{}' cannot be global: a filter declared as a plugin needs a service or a route", p.name);
        }
        for (si, svc) in yml.services.iter().enumerate() {
            let at = format!("services.{}", si + 1);
            let upstream = svc.upstream().map_err(|e| anyhow::anyhow!("{at}: {e:#}"))?;
            table.services.push(Service {
                name: svc.name.clone(),
                upstream,
            });
            if svc.filter_chains.len() > 1 {
                bail!("{at}.filter_chains: only one filter chain per service");
            }
            let svc_chain =
                table.chain(&svc.filter_chains, filters, &format!("{at}.filter_chains"))?;
            check_plugins(&svc.plugins, &at, filters)?;
            for (ri, route) in svc.routes.iter().enumerate() {
                let rat = format!("{at}.routes.{}", ri + 1);
                if route.filter_chains.len() > 1 {
                    bail!("{rat}.filter_chains: only one filter chain per route");
                }
                for p in &route.paths {
                    if !p.starts_with('/') {
                        bail!("{rat}.paths: invalid path {p:?}: must begin with '/' (regex paths are not supported by the stand-in)");
                    }
                }
                check_plugins(&route.plugins, &rat, filters)?;
                let mut chain = svc_chain.clone();
                chain.extend(table.chain(
                    &route.filter_chains,
                    filters,
                    &format!("{rat}.filter_chains"),
                )?);
                chain.extend(table.plugin_filters(
                    (&svc.plugins, &at),
                    (&route.plugins, &rat),
                    filters,
                )?);
                let id = route
                    .id
                    .clone()
                    .unwrap_or_else(|| pseudo_uuid(&format!("{rat}{:?}", route.name)));
                table.routes.push(Route {
                    name: route.name.clone(),
                    id,
                    service: si,
                    paths: if route.paths.is_empty() {
                        vec!["/".to_string()]
                    } else {
                        route.paths.clone()
                    },
                    strip_path: route.strip_path.unwrap_or(true),
                    chain,
                });
            }
        }
        Ok(table)
    }

    fn chain(
        &mut self,
        chains: &[ChainYml],
        filters: &mut Filters,
        at: &str,
    ) -> Result<Vec<ChainEntry>> {
        let mut out = Vec::new();
        for (ci, chain) in chains.iter().enumerate() {
            let cat = format!("{at}.{}", ci + 1);
            for (fi, f) in chain.filters.iter().enumerate() {
                let fat = format!("filters.{}", fi + 1);
                let config = filters
                    .config_bytes(&f.name, f.config.as_ref(), &fat)
                    .map_err(|e| anyhow::anyhow!("{cat}: {e:#}"))?;
                if chain.enabled == Some(false) || f.enabled == Some(false) {
                    continue;
                }
                let roots = self.roots.entry(f.name.clone()).or_default();
                let root_id = roots.len() as u32 + 1;
                roots.push(RootSpec { root_id, config });
                out.push(ChainEntry {
                    filter: Arc::from(f.name.as_str()),
                    root_id,
                });
            }
        }
        Ok(out)
    }

    /// Filters declared as plugins (Kong 3.9+), appended after the route's filter chains: one
    /// per filter name, the route's declaration winning over its service's (Kong's plugin
    /// precedence); never scoped to a consumer; disabled ones left out.
    fn plugin_filters(
        &mut self,
        (service_plugins, service_at): (&[PluginYml], &str),
        (route_plugins, route_at): (&[PluginYml], &str),
        filters: &mut Filters,
    ) -> Result<Vec<ChainEntry>> {
        let mut chosen: Vec<(&PluginYml, String)> = Vec::new();
        for (plugins, at) in [(route_plugins, route_at), (service_plugins, service_at)] {
            for (i, plugin) in plugins.iter().enumerate() {
                if !chosen.iter().any(|(p, _)| p.name == plugin.name) {
                    chosen.push((plugin, format!("{at}.plugins.{}", i + 1)));
                }
            }
        }
        let mut out = Vec::new();
        for (plugin, pat) in chosen {
            let config = filters.config_bytes(&plugin.name, plugin.config.as_ref(), &pat)?;
            if plugin.enabled == Some(false) {
                continue;
            }
            let roots = self.roots.entry(plugin.name.clone()).or_default();
            let root_id = roots.len() as u32 + 1;
            roots.push(RootSpec { root_id, config });
            out.push(ChainEntry {
                filter: Arc::from(plugin.name.as_str()),
                root_id,
            });
        }
        Ok(out)
    }

    /// The route whose path prefix is the longest match for `path`, and that prefix.
    pub fn find(&self, path: &str) -> Option<(&Route, &str)> {
        let path = path.split('?').next().unwrap_or(path);
        self.routes
            .iter()
            .flat_map(|r| r.paths.iter().map(move |p| (r, p.as_str())))
            .filter(|(_, p)| path.starts_with(p))
            .max_by_key(|(_, p)| p.len())
    }
}

/// Kong's load-time rules for the plugins of one service or route (`at`): each names a filter
/// (the stand-in runs no Lua plugin), none is scoped to a consumer, none is declared twice.
fn check_plugins(plugins: &[PluginYml], at: &str, filters: &mut Filters) -> Result<()> {
    for (i, plugin) in plugins.iter().enumerate() {
        let pat = format!("{at}.plugins.{}", i + 1);
        if plugin.consumer.is_some() {
            bail!(
                "{pat}: plugin '{}': a filter plugin cannot be scoped to a consumer",
                plugin.name
            );
        }
        if filters.lookup(&plugin.name, &pat).is_err() {
            bail!(
                "{pat}.name: plugin '{}' not enabled; the stand-in runs Wasm filters only",
                plugin.name
            );
        }
        if plugins.iter().take(i).any(|p| p.name == plugin.name) {
            bail!("{pat}: plugin '{}' is already declared here", plugin.name);
        }
    }
    Ok(())
}

/// The upstream request target Kong builds (path handling `v0`).
pub fn upstream_uri(
    service_path: Option<&str>,
    request_target: &str,
    prefix: &str,
    strip: bool,
) -> String {
    let (path, query) = match request_target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (request_target, None),
    };
    let rest = if strip {
        path.get(prefix.len()..).unwrap_or_default()
    } else {
        path
    };
    let base = service_path.unwrap_or("/");
    let joined = if rest.is_empty() {
        base.to_string()
    } else if base == "/" {
        if rest.starts_with('/') {
            rest.to_string()
        } else {
            format!("/{rest}")
        }
    } else {
        format!(
            "{}/{}",
            base.trim_end_matches('/'),
            rest.trim_start_matches('/')
        )
    };
    match query {
        Some(q) => format!("{joined}?{q}"),
        None => joined,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strip_path_like_kong() {
        assert_eq!(upstream_uri(None, "/api/x?y=1", "/api", true), "/x?y=1");
        assert_eq!(upstream_uri(None, "/api", "/api", true), "/");
        assert_eq!(
            upstream_uri(Some("/base"), "/api/x", "/api", true),
            "/base/x"
        );
        assert_eq!(
            upstream_uri(Some("/base"), "/api/x", "/api", false),
            "/base/api/x"
        );
        assert_eq!(upstream_uri(None, "/api/x", "/api", false), "/api/x");
    }
}
