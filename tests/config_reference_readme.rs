//! The README's configuration reference states the defaults and ranges of the parser's table
//! (`config::SETTINGS`): every entry has its row, with the same default and, for integers, the
//! type cell `integer <min>–<max>`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use cloudrun_oidc::config::{Setting, SETTINGS};
use std::fs;
use std::path::Path;

/// One table row of the reference: the `###` heading above it and its cells, trimmed.
struct Row {
    heading: String,
    cells: Vec<String>,
}

impl Row {
    fn name(&self) -> &str {
        self.cells.first().map_or("", String::as_str)
    }

    fn cell(&self, i: usize) -> &str {
        self.cells.get(i).map_or("", String::as_str)
    }
}

/// The rows of every table between `## Configuration reference` and the next `## ` heading.
fn reference_rows() -> Vec<Row> {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("\n## Configuration reference")
        .expect("README has the reference");
    let section = &readme[start + 1..];
    let end = section[1..].find("\n## ").map_or(section.len(), |e| e + 1);
    let mut heading = String::new();
    let mut rows = Vec::new();
    for line in section[..end].lines() {
        if let Some(h) = line.strip_prefix("### ") {
            heading = h.to_string();
        } else if line.starts_with("| `") {
            let cells = line
                .replace("\\|", "¦")
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().to_string())
                .collect();
            rows.push(Row {
                heading: heading.clone(),
                cells,
            });
        }
    }
    rows
}

/// The row documenting `path`: named by the whole path (`jwks_cache.ttl_seconds`), or by its
/// last part under the section heading naming the object (`google_id_token`); `None` when the
/// setting is documented inside its object's row (`token`).
fn row_for<'a>(rows: &'a [Row], path: &str) -> Option<&'a Row> {
    let whole = format!("`{path}`");
    let (object, leaf) = path.rsplit_once('.').unwrap_or(("", path));
    let leaf = format!("`{leaf}`");
    let object = format!("`{object}`");
    rows.iter().find(|r| r.name() == whole).or_else(|| {
        rows.iter()
            .find(|r| r.name() == leaf && r.heading.contains(&object))
    })
}

#[test]
fn readme_reference_states_every_default_and_range() {
    let rows = reference_rows();
    assert!(rows.len() > 20, "{} rows read", rows.len());
    for setting in SETTINGS {
        let path = setting.path();
        match (setting, row_for(&rows, path)) {
            (Setting::Integer(s), Some(row)) => {
                assert_eq!(
                    row.cell(1),
                    format!("integer {}–{}", s.min, s.max),
                    "{path}"
                );
                assert_eq!(row.cell(2), format!("`{}`", s.default), "{path}");
            }
            (Setting::Text(s), Some(row)) => {
                assert_eq!(row.cell(2), format!("`{}`", s.default), "{path}")
            }
            (Setting::Text(s), None) => {
                // `token.header`: the `token` row's default is `{header: authorization, ...}`.
                let (object, leaf) = path.rsplit_once('.').expect("a nested setting");
                let row = rows
                    .iter()
                    .find(|r| r.name() == format!("`{object}`"))
                    .unwrap_or_else(|| panic!("{path}: no row for `{object}` in the README"));
                let stated = format!("{leaf}: {}", s.default);
                assert!(row.cell(2).contains(&stated), "{path}: {}", row.cell(2));
            }
            (Setting::Integer(_), None) => panic!("{path}: no row in the README"),
        }
    }
}
