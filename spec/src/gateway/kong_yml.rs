//! A DB-less Kong 3.x `kong.yml`: services with `url`, nested routes, and `filter_chains` on
//! services and routes. Parsed into plain structs; validation against filters happens in
//! [`super::schema`] and [`super::router`].

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use serde_json::Value;

/// The whole declarative file.
#[derive(Debug, Deserialize)]
pub struct KongYml {
    #[serde(rename = "_format_version")]
    pub format_version: String,
    #[serde(default)]
    pub services: Vec<ServiceYml>,
    /// Global plugins: a filter cannot be one (Kong 3.9 requires a service or a route).
    #[serde(default)]
    pub plugins: Vec<PluginYml>,
}

/// `services[]`.
#[derive(Debug, Deserialize)]
pub struct ServiceYml {
    pub name: Option<String>,
    pub id: Option<String>,
    pub url: Option<String>,
    pub protocol: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    pub path: Option<String>,
    #[serde(default)]
    pub routes: Vec<RouteYml>,
    #[serde(default)]
    pub filter_chains: Vec<ChainYml>,
    #[serde(default)]
    pub plugins: Vec<PluginYml>,
}

/// `plugins[]` on a service or a route. From Kong 3.9 a Wasm filter may be declared this way
/// (`name` is the filter's): it joins the end of the route's filter chain.
#[derive(Debug, Deserialize)]
pub struct PluginYml {
    pub name: String,
    pub config: Option<Value>,
    pub enabled: Option<bool>,
    /// Filter plugins cannot be scoped to a consumer.
    pub consumer: Option<Value>,
}
#[derive(Debug, Deserialize)]
pub struct RouteYml {
    pub name: Option<String>,
    pub id: Option<String>,
    #[serde(default)]
    pub paths: Vec<String>,
    /// Kong's default is `true`.
    pub strip_path: Option<bool>,
    #[serde(default)]
    pub filter_chains: Vec<ChainYml>,
    #[serde(default)]
    pub plugins: Vec<PluginYml>,
}

/// `filter_chains[]`.
#[derive(Debug, Deserialize)]
pub struct ChainYml {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    #[serde(default)]
    pub filters: Vec<FilterYml>,
}

/// `filter_chains[].filters[]`.
#[derive(Debug, Deserialize)]
pub struct FilterYml {
    pub name: String,
    pub config: Option<Value>,
    pub enabled: Option<bool>,
}

/// A service's upstream: `http(s)://host[:port][/path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upstream {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: Option<String>,
}

impl KongYml {
    /// Parses YAML text.
    pub fn parse(text: &str) -> Result<KongYml> {
        let yml: KongYml =
            serde_yaml::from_str(text).context("failed parsing declarative configuration")?;
        if !yml.format_version.starts_with('3') {
            bail!("failed parsing declarative configuration: unsupported _format_version {:?} (3.0 expected)", yml.format_version);
        }
        Ok(yml)
    }
}

impl ServiceYml {
    /// The upstream from `url`, or from `protocol`/`host`/`port`/`path`.
    pub fn upstream(&self) -> Result<Upstream> {
        if let Some(url) = &self.url {
            return parse_url(url);
        }
        let host = self
            .host
            .clone()
            .context("service has neither url nor host")?;
        let tls = self.protocol.as_deref() == Some("https");
        let port = self.port.unwrap_or(if tls { 443 } else { 80 });
        Ok(Upstream {
            tls,
            host,
            port,
            path: self.path.clone(),
        })
    }
}

/// Parses a service URL.
pub fn parse_url(url: &str) -> Result<Upstream> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else {
        bail!("url {url:?}: scheme must be http or https");
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], Some(rest[i..].to_string())),
        None => (rest, None),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').context("bad IPv6 host")?;
        let port = after.strip_prefix(':').map(str::parse).transpose()?;
        (h.to_string(), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (
                h.to_string(),
                Some(
                    p.parse::<u16>()
                        .with_context(|| format!("url {url:?}: bad port"))?,
                ),
            ),
            None => (authority.to_string(), None),
        }
    };
    if host.is_empty() {
        bail!("url {url:?}: no host");
    }
    Ok(Upstream {
        tls,
        host,
        port: port.unwrap_or(if tls { 443 } else { 80 }),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nested_services_routes_and_chains() {
        let y = KongYml::parse(
            r#"
_format_version: "3.0"
services:
  - name: s
    url: http://127.0.0.1:9000/base
    filter_chains:
      - filters: [{name: probe, config: "x"}]
    routes:
      - name: r
        paths: [/a]
        strip_path: false
        filter_chains:
          - filters:
              - name: probe
                config: {on: 1}
"#,
        )
        .unwrap();
        let s = &y.services[0];
        assert_eq!(
            s.upstream().unwrap(),
            Upstream {
                tls: false,
                host: "127.0.0.1".into(),
                port: 9000,
                path: Some("/base".into())
            }
        );
        assert_eq!(s.routes[0].strip_path, Some(false));
        assert!(s.routes[0].filter_chains[0].filters[0]
            .config
            .as_ref()
            .unwrap()
            .is_object());
        assert!(parse_url("ftp://x").is_err());
    }
}
