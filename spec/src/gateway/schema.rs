//! Filter lookup and configuration checks as Kong does them at load time: `DIR/<name>.wasm` must
//! exist; with `DIR/<name>.meta.json`, an object `config` is validated against its draft-4
//! `config_schema` ([`KongSchema`]: the two ways Kong's validator differs from a plain draft-4
//! one) and JSON-encoded for the filter; without it, `config` must be a string.

use anyhow::{anyhow, bail, Context, Result};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A filter found in the filters directory.
pub struct FilterMeta {
    pub wasm: PathBuf,
    pub schema: Option<KongSchema>,
}

/// Empty containers beyond this many in one config are taken as written (the search below is
/// exponential in them; real configs have a handful).
const MAX_EMPTY_TABLES: usize = 10;

/// A `config_schema` validated the way Kong 3.9 validates a filter's configuration
/// (lua-resty-ljsonschema 1.2.0, draft 4 forced, `array_mt = false`):
/// - the schema must itself be a valid draft-4 schema (else Kong refuses to start: "file contains
///   invalid metadata");
/// - `pattern` is a PCRE, matched unanchored on the bytes (Kong: `ngx.re.find(value, pattern,
///   "jo")`), so `$` also matches before a final newline, unlike an ECMA-262 validator;
/// - an empty table is valid as an array *or* an object: YAML's `[]` and `{}` both reach the
///   validator as the same empty Lua table. A config passes when some reading of its empty
///   containers as `[]` or `{}` passes.
pub struct KongSchema {
    validator: jsonschema::Validator,
}

impl KongSchema {
    /// Compiles `schema` (a `config_schema` object).
    pub fn new(schema: &Value) -> Result<KongSchema> {
        jsonschema::draft4::meta::validate(schema)
            .map_err(|e| anyhow!("config_schema is not a valid draft-4 schema: {e}"))?;
        let validator = jsonschema::draft4::options()
            .with_keyword("pattern", pcre_pattern)
            .build(schema)
            .map_err(|e| anyhow!("config_schema does not compile: {e}"))?;
        Ok(KongSchema { validator })
    }

    /// What Kong says about `config`: nothing when it is valid, else one `path: message` per
    /// error (of the config as written).
    pub fn errors(&self, config: &Value) -> Vec<String> {
        let as_written: Vec<String> = self
            .validator
            .iter_errors(config)
            .map(|e| describe(&e))
            .collect();
        if as_written.is_empty() {
            return as_written;
        }
        let mut empties = Vec::new();
        empty_containers(config, &mut String::new(), &mut empties);
        empties.truncate(MAX_EMPTY_TABLES);
        let mut reading = config.clone();
        for flips in 1u32..(1 << empties.len()) {
            for (i, pointer) in empties.iter().enumerate() {
                if let Some(slot) = reading.pointer_mut(pointer) {
                    let original_is_array = config.pointer(pointer).is_some_and(Value::is_array);
                    let flip = flips & (1 << i) != 0;
                    *slot = if original_is_array != flip {
                        Value::Array(Vec::new())
                    } else {
                        Value::Object(serde_json::Map::new())
                    };
                }
            }
            if self.validator.is_valid(&reading) {
                return Vec::new();
            }
        }
        as_written
    }
}

/// JSON pointers of every empty array or object in `value`.
fn empty_containers(value: &Value, at: &mut String, out: &mut Vec<String>) {
    let len = at.len();
    match value {
        Value::Array(items) if items.is_empty() => out.push(at.clone()),
        Value::Object(members) if members.is_empty() => out.push(at.clone()),
        Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                at.push_str(&format!("/{i}"));
                empty_containers(item, at, out);
                at.truncate(len);
            }
        }
        Value::Object(members) => {
            for (key, member) in members {
                at.push('/');
                at.push_str(&key.replace('~', "~0").replace('/', "~1"));
                empty_containers(member, at, out);
                at.truncate(len);
            }
        }
        _ => {}
    }
}

/// `pattern` as Kong matches it: PCRE2, unanchored, on the string's bytes.
struct PcrePattern {
    source: String,
    regex: pcre2::bytes::Regex,
}

fn pcre_pattern<'a>(
    _parent: &'a serde_json::Map<String, Value>,
    value: &'a Value,
    _location: jsonschema::paths::Location,
) -> Result<Box<dyn for<'i> jsonschema::Keyword<'i>>, jsonschema::ValidationError<'a>> {
    let source = value
        .as_str()
        .ok_or_else(|| jsonschema::ValidationError::custom("pattern is not a string"))?;
    let regex = pcre2::bytes::RegexBuilder::new()
        .jit_if_available(true)
        .build(source)
        .map_err(|e| jsonschema::ValidationError::custom(format!("pattern {source:?}: {e}")))?;
    Ok(Box::new(PcrePattern {
        source: source.to_string(),
        regex,
    }))
}

impl PcrePattern {
    fn matches(&self, instance: &Value) -> bool {
        match instance {
            // A match error (PCRE's match limits) refuses, as Kong's validator does.
            Value::String(text) => self.regex.is_match(text.as_bytes()).unwrap_or(false),
            _ => true,
        }
    }
}

impl<'i> jsonschema::Keyword<'i> for PcrePattern {
    fn validate(&self, instance: &'i Value) -> Result<(), jsonschema::ValidationError<'i>> {
        if self.matches(instance) {
            Ok(())
        } else {
            Err(jsonschema::ValidationError::custom(format!(
                "{instance} does not match {:?}",
                self.source
            )))
        }
    }

    fn is_valid(&self, instance: &'i Value) -> bool {
        self.matches(instance)
    }
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
                let validator = KongSchema::new(schema)
                    .with_context(|| format!("{}: invalid config_schema", meta.display()))?;
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
                let errors = schema.errors(value);
                if !errors.is_empty() {
                    bail!("{at}.config: {}", errors.join("; "));
                }
                // Kong hands the filter cjson's text, not the author's.
                Ok(super::cjson::encode(value).into_bytes())
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn object_configs_reach_the_filter_as_kongs_cjson_text() {
        let dir = std::env::temp_dir().join(format!("spec-schema-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f.wasm"), b"").unwrap();
        std::fs::write(
            dir.join("f.meta.json"),
            r#"{"config_schema": {"type": "object"}}"#,
        )
        .unwrap();
        let mut filters = Filters::new(&dir);
        let config = json!({"url": "http://a/b", "list": [], "n": 0.1234567890123456});
        let bytes = filters
            .config_bytes("f", Some(&config), "filters.1")
            .unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            r#"{"url":"http:\/\/a\/b","n":0.12345678901235,"list":{}}"#
        );
        // A string config is handed over as it is.
        let text = json!(r#"{"url": "http://a/b"}"#);
        let bytes = filters.config_bytes("f", Some(&text), "filters.1").unwrap();
        assert_eq!(bytes, br#"{"url": "http://a/b"}"#);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
