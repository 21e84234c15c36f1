//! Sample statistics and the printed table.

use std::time::Duration;

/// Durations of one measured operation.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    ns: Vec<u64>,
}

impl Samples {
    pub fn push(&mut self, d: Duration) {
        self.ns
            .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Adds every sample of `other`.
    pub fn extend(&mut self, other: &Samples) {
        self.ns.extend_from_slice(&other.ns);
    }

    pub fn len(&self) -> usize {
        self.ns.len()
    }

    fn sorted(&self) -> Vec<u64> {
        let mut v = self.ns.clone();
        v.sort_unstable();
        v
    }

    /// The `q` quantile (0..=1) in microseconds, nearest rank.
    pub fn quantile_us(&self, q: f64) -> f64 {
        let v = self.sorted();
        if v.is_empty() {
            return f64::NAN;
        }
        let rank = ((v.len() - 1) as f64 * q).round() as usize;
        v.get(rank.min(v.len() - 1)).copied().unwrap_or(0) as f64 / 1000.0
    }

    pub fn median_us(&self) -> f64 {
        self.quantile_us(0.5)
    }

    pub fn p90_us(&self) -> f64 {
        self.quantile_us(0.9)
    }

    pub fn mean_us(&self) -> f64 {
        if self.ns.is_empty() {
            return f64::NAN;
        }
        self.ns.iter().map(|n| *n as f64).sum::<f64>() / self.ns.len() as f64 / 1000.0
    }
}

/// Rounds for display and JSON: 3 significant-ish digits.
pub fn round(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let a = x.abs();
    let scale = if a >= 1000.0 {
        1.0
    } else if a >= 100.0 {
        10.0
    } else if a >= 10.0 {
        100.0
    } else {
        1000.0
    };
    (x * scale).round() / scale
}

/// A plain-text table: a title, a header row, rows; columns padded to fit.
pub struct Table {
    title: String,
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(title: &str, header: &[&str]) -> Table {
        Table {
            title: title.to_string(),
            header: header.iter().map(|s| s.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// As a Markdown table (readable as plain text too).
    pub fn render(&self) -> String {
        let cols = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(cols) {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let line = |cells: &[String]| -> String {
            let mut s = String::from("|");
            for (i, w) in widths.iter().enumerate() {
                let cell = cells.get(i).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(cell.chars().count());
                if i == 0 {
                    s.push_str(&format!(" {cell}{} |", " ".repeat(pad)));
                } else {
                    s.push_str(&format!(" {}{cell} |", " ".repeat(pad)));
                }
            }
            s
        };
        let mut out = format!("### {}\n\n", self.title);
        out.push_str(&line(&self.header));
        out.push('\n');
        let mut sep = String::from("|");
        for (i, w) in widths.iter().enumerate() {
            if i == 0 {
                sep.push_str(&format!("{}|", "-".repeat(w + 2)));
            } else {
                sep.push_str(&format!("{}:|", "-".repeat(w + 1)));
            }
        }
        out.push_str(&sep);
        out.push('\n');
        for row in &self.rows {
            out.push_str(&line(row));
            out.push('\n');
        }
        out
    }
}

/// A figure for a table cell.
pub fn us(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    let r = round(x);
    if r >= 100.0 {
        format!("{r:.0}")
    } else if r >= 10.0 {
        format!("{r:.1}")
    } else {
        format!("{r:.2}")
    }
}

/// A ratio for a table cell.
pub fn ratio(x: f64) -> String {
    if !x.is_finite() {
        return "—".into();
    }
    if x >= 10.0 {
        format!("{x:.0}×")
    } else {
        format!("{x:.1}×")
    }
}
