//! Filter lookup and configuration checks as Kong does them at load time: `DIR/<name>.wasm` must
//! exist; with `DIR/<name>.meta.json`, an object `config` is validated against its draft-4
//! `config_schema` and JSON-encoded for the filter; without it, `config` must be a string.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A filter found in the filters directory.
pub struct FilterMeta {
    pub wasm: PathBuf,
    pub schema: Option<jsonschema::Validator>,
}

/// Filters referenced by the configuration, loaded once.
#[derive(Default)]
pub struct Filters {
    dir: PathBuf,
    found: BTreeMap<String, FilterMeta>,
}

/// Kong's filter naming rule: letters, digits and `_`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Bundled Kong plugins whose names are also valid filter names: a filter with one of these
/// names stops Kong from starting.
pub const PLUGIN_NAMES: [&str; 14] = [
    "acl",
    "acme",
    "cors",
    "datadog",
    "jwt",
    "loggly",
    "oauth2",
    "opentelemetry",
    "prometheus",
    "redirect",
    "session",
    "statsd",
    "syslog",
    "zipkin",
];

/// Checks every `*.wasm` of the filters directory the way Kong does when it starts: each file is a
/// filter named after it; the name must be letters, digits and `_`, and no plugin's name.
pub fn check_dir(dir: &Path) -> Result<Vec<String>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("[wasm] reading filters directory {}", dir.display()))?;
    let mut names = Vec::new();
    for entry in entries {
        let path = entry?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("wasm") {
            continue;
        }
        let name = path
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        if !valid_name(&name) {
            bail!("[wasm] invalid filter name \"{name}\" ({}): only letters, digits and '_' are allowed", path.display());
        }
        if PLUGIN_NAMES.contains(&name.as_str()) {
            bail!(
                "[wasm] filter name \"{name}\" ({}) conflicts with the plugin of the same name",
                path.display()
            );
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

impl Filters {
    /// Filters from `dir`.
    pub fn new(dir: &Path) -> Filters {
        Filters {
            dir: dir.to_path_buf(),
            found: BTreeMap::new(),
        }
    }

    /// Looks a filter up (and loads its schema). `Err` is Kong-like text for `at` (e.g. `filters.1`).
    pub fn lookup(&mut self, name: &str, at: &str) -> Result<&FilterMeta> {
        if !self.found.contains_key(name) {
            let wasm = self.dir.join(format!("{name}.wasm"));
            if !valid_name(name) || !wasm.is_file() {
                bail!("{at}.name: no such filter: {name}");
            }
            let meta = self.dir.join(format!("{name}.meta.json"));
            let schema = if meta.is_file() {
                let text = std::fs::read_to_string(&meta)
                    .with_context(|| format!("reading {}", meta.display()))?;
                let doc: Value = serde_json::from_str(&text)
                    .with_context(|| format!("{}: invalid JSON", meta.display()))?;
                let schema = doc
                    .get("config_schema")
                    .with_context(|| format!("{}: no config_schema", meta.display()))?;
                let validator = jsonschema::draft4::new(schema).map_err(|e| {
                    anyhow::anyhow!("{}: invalid config_schema: {e}", meta.display())
                })?;
                Some(validator)
            } else {
                None
            };
            self.found
                .insert(name.to_string(), FilterMeta { wasm, schema });
        }
        self.found.get(name).context("filter vanished")
    }

    /// The bytes handed to the filter as its configuration, after Kong's checks.
    pub fn config_bytes(
        &mut self,
        name: &str,
        config: Option<&Value>,
        at: &str,
    ) -> Result<Vec<u8>> {
        let meta = self.lookup(name, at)?;
        match config {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::String(s)) => Ok(s.clone().into_bytes()),
            Some(value) => {
                let Some(schema) = &meta.schema else {
                    bail!("{at}.config: wrong type: expected a string (filter '{name}' has no config_schema in {name}.meta.json)");
                };
                let errors: Vec<String> = schema.iter_errors(value).map(|e| describe(&e)).collect();
                if !errors.is_empty() {
                    bail!("{at}.config: {}", errors.join("; "));
                }
                Ok(serde_json::to_vec(value)?)
            }
        }
    }

    /// Every filter looked up so far.
    pub fn all(&self) -> impl Iterator<Item = (&String, &FilterMeta)> {
        self.found.iter()
    }
}

/// One validation error as `path: message`. For `anyOf`/`oneOf`, like Kong's validator, the
/// rectifications each branch needs follow (`1) …; 2) …`), so the message names the field.
fn describe(e: &jsonschema::ValidationError<'_>) -> String {
    let path = e.instance_path().to_string();
    let mut text = if path.is_empty() {
        e.to_string()
    } else {
        format!("{}: {e}", path.trim_start_matches('/').replace('/', "."))
    };
    if let jsonschema::error::ValidationErrorKind::AnyOf { context }
    | jsonschema::error::ValidationErrorKind::OneOfNotValid { context } = e.kind()
    {
        let branches: Vec<String> = context
            .iter()
            .enumerate()
            .map(|(i, errors)| {
                let inner: Vec<String> = errors.iter().map(describe).collect();
                format!("{}) {}", i + 1, inner.join(", "))
            })
            .collect();
        text.push_str(&format!(" ({})", branches.join("; ")));
    }
    text
}
