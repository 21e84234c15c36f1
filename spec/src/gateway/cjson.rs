//! A filter's object `config` as Kong 3.9 hands it over: Kong decodes kong.yml into Lua tables
//! and encodes them with lua-cjson (`kong/runloop/wasm.lua`, `serialize_configuration`), so the
//! filter never sees the author's text. What cjson does, and this copies:
//! - `/` is escaped as `\/`; control characters as `\b \t \n \f \r` or `\u00XX`, DEL as
//!   `\u007f`; other bytes (UTF-8 included) pass as they are;
//! - every number is a Lua double printed with `%.14g` (14 significant digits: `0.1`, `300`,
//!   `1e+15`, `3.1415926535898`);
//! - an empty array is an empty Lua table, which cjson writes as `{}`;
//! - object keys come in Lua hash order, which is neither the author's nor sorted order. Here:
//!   the reverse of serde_json's (sorted) order, so nothing can depend on the order written.
//!
//! The engine's nginx.conf ([`crate::testkit::nginx`]) and the stand-in's filter configs
//! ([`super::schema::Filters::config_bytes`]) both come from [`encode`].

use serde_json::Value;
use std::fmt::Write as _;

/// `value` encoded as Kong's cjson encodes it.
pub fn encode(value: &Value) -> String {
    let mut out = String::new();
    write_value(&mut out, value);
    out
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&number(n.as_f64().unwrap_or(f64::NAN))),
        Value::String(s) => write_string(out, s),
        Value::Array(items) if items.is_empty() => out.push_str("{}"),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (key, item)) in map.iter().rev().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, key);
                out.push(':');
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// C's `%.14g`: 14 significant digits, trailing zeros dropped, exponent form below 1e-4 and
/// from 1e14 up (`e+15`, `e-05`: at least two exponent digits).
pub fn number(x: f64) -> String {
    const PRECISION: i32 = 14;
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    if !x.is_finite() {
        // cjson refuses these by default; JSON text cannot hold them anyway.
        return if x.is_nan() {
            "nan"
        } else if x > 0.0 {
            "inf"
        } else {
            "-inf"
        }
        .into();
    }
    // Rounded to 14 significant digits first: the exponent is the rounded number's.
    let scientific = format!("{:.*e}", (PRECISION - 1) as usize, x);
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..PRECISION).contains(&exponent) {
        let mantissa = trim_fraction(mantissa);
        let sign = if exponent < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exponent.abs())
    } else {
        let decimals = (PRECISION - 1 - exponent).max(0) as usize;
        trim_fraction(&format!("{x:.decimals$}")).to_string()
    }
}

/// `1.2300` → `1.23`, `5.000` → `5`.
fn trim_fraction(text: &str) -> &str {
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.')
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_have_fourteen_significant_digits() {
        for (x, text) in [
            (300.0, "300"),
            (-42.0, "-42"),
            (0.1, "0.1"),
            (1.5, "1.5"),
            (1.0 / 3.0, "0.33333333333333"),
            (std::f64::consts::PI, "3.1415926535898"),
            (1e15, "1e+15"),
            (123456789012345.0, "1.2345678901234e+14"),
            (99999999999999.0, "99999999999999"),
            (999999999999999.0, "1e+15"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (1700000000.0, "1700000000"),
            (0.0, "0"),
        ] {
            assert_eq!(number(x), text, "{x}");
        }
    }

    #[test]
    fn encodes_as_kong_cjson_does() {
        let config = json!({
            "jwks_url": "https://idp.test/realms/a/keys",
            "audiences": [],
            "skew": 0.123_456_789_012_345_68,
            "nested": {"a": 1, "b": [true, null, "x\ny\u{7f}\"\\"]},
        });
        assert_eq!(
            encode(&config),
            r#"{"skew":0.12345678901235,"nested":{"b":[true,null,"x\ny\u007f\"\\"],"a":1},"jwks_url":"https:\/\/idp.test\/realms\/a\/keys","audiences":{}}"#
        );
        // Still JSON, with the same content apart from the empty list and the rounding.
        let back: Value = serde_json::from_str(&encode(&config)).unwrap();
        assert_eq!(back["jwks_url"], config["jwks_url"]);
        assert_eq!(back["audiences"], json!({}));
    }
}
