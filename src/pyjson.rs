//! JSON written byte for byte as Python's `json.dumps` with its defaults:
//! `", "` and `": "` separators, non-ASCII escaped as `\uXXXX`, floats in
//! Python's `repr`. Scrapyd's clients see exactly these bytes, and some
//! scripts compare them.

use std::fmt::Write;

use serde_json::Value;

/// Encodes `value` as Python's `json.dumps(value)` would.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = String::with_capacity(128);
    write_value(&mut out, value);
    out.into_bytes()
}

/// Encodes one object from its entries in order, as [`to_vec`] would the
/// same object, without building it first (every API answer is one).
pub fn object_to_vec<'a>(entries: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Vec<u8> {
    let mut out = String::with_capacity(128);
    out.push('{');
    for (index, (key, item)) in entries.into_iter().enumerate() {
        if index > 0 {
            out.push_str(", ");
        }
        write_string(&mut out, key);
        out.push_str(": ");
        write_value(&mut out, item);
    }
    out.push('}');
    out.into_bytes()
}

fn write_value(out: &mut String, value: &Value) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(number) => match (number.as_i64(), number.as_u64(), number.as_f64()) {
            (Some(int), _, _) => {
                let _ = write!(out, "{int}");
            }
            (None, Some(uint), _) => {
                let _ = write!(out, "{uint}");
            }
            (None, None, Some(float)) => out.push_str(&float_repr(float)),
            _ => out.push_str("null"),
        },
        Value::String(text) => write_string(out, text),
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_value(out, item);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (index, (key, item)) in map.iter().enumerate() {
                if index > 0 {
                    out.push_str(", ");
                }
                write_string(out, key);
                out.push_str(": ");
                write_value(out, item);
            }
            out.push('}');
        }
    }
}

/// Appends `text` as a JSON string, non-ASCII escaped as Python does.
pub fn write_string(out: &mut String, text: &str) {
    // Most names and ids need no escape at all: copied whole.
    if text
        .bytes()
        .all(|byte| (b' '..=b'~').contains(&byte) && byte != b'"' && byte != b'\\')
    {
        out.push('"');
        out.push_str(text);
        out.push('"');
        return;
    }
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(character),
            _ => {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
}

/// A float as Python's `repr`: the shortest text that reads back the same,
/// always with a `.0` or an exponent, exponents as `e+16` / `e-05`.
pub fn float_repr(value: f64) -> String {
    let mut out = String::new();
    write_float(&mut out, value);
    out
}

/// Appends [`float_repr`] of `value`, allocating nothing: a listing writes
/// one per job.
pub fn write_float(out: &mut String, value: f64) {
    if value.is_nan() {
        out.push_str("NaN");
        return;
    }
    if value.is_infinite() {
        out.push_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    let magnitude = value.abs();
    // Whole numbers (every priority anyone sets) print as integers do.
    if value.fract() == 0.0 && magnitude < 1e16 {
        if value.is_sign_negative() {
            out.push('-');
        }
        // Digits by hand: `write!` costs more than the rest of a row.
        let mut digits = [0u8; 20];
        let mut at = digits.len();
        let mut rest = magnitude as u64;
        loop {
            at -= 1;
            digits[at] = b'0' + (rest % 10) as u8;
            rest /= 10;
            if rest == 0 {
                break;
            }
        }
        out.push_str(std::str::from_utf8(&digits[at..]).unwrap_or("0"));
        out.push_str(".0");
        return;
    }
    if (1e-4..1e16).contains(&magnitude) {
        // Not whole, so Rust's shortest text has its `.` already.
        let _ = write!(out, "{value}");
        return;
    }
    // Rust writes `1e16` / `1.5e-5`; Python writes `1e+16` / `1.5e-05`.
    let text = format!("{value:e}");
    let (mantissa, exponent) = text.split_once('e').unwrap_or((&text, "0"));
    let (sign, digits) = match exponent.strip_prefix('-') {
        Some(digits) => ('-', digits),
        None => ('+', exponent),
    };
    let _ = write!(out, "{mantissa}e{sign}{digits:0>2}");
}

/// Appends stored `[[name, value], …]` (string pairs, as serde_json wrote
/// them) as the object Python's `dict` of those pairs dumps to: a later
/// name overrides an earlier one in its place.
pub fn write_pairs_object(out: &mut String, stored: &str) {
    if stored == "[]" {
        out.push_str("{}");
        return;
    }
    // Borrowed from the text where no escape stands in the way.
    let owned: Vec<(String, String)>;
    let pairs: Vec<(&str, &str)> = match serde_json::from_str(stored) {
        Ok(borrowed) => borrowed,
        Err(_) => {
            owned = serde_json::from_str(stored).unwrap_or_default();
            owned
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect()
        }
    };
    out.push('{');
    let mut written: Vec<&str> = Vec::with_capacity(pairs.len());
    for (index, &(name, _)) in pairs.iter().enumerate() {
        if written.contains(&name) {
            continue;
        }
        let value = pairs[index..]
            .iter()
            .rev()
            .find(|(other, _)| *other == name)
            .map_or("", |(_, value)| value);
        if !written.is_empty() {
            out.push_str(", ");
        }
        write_string(out, name);
        out.push_str(": ");
        write_string(out, value);
        written.push(name);
    }
    out.push('}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dumps(value: Value) -> String {
        String::from_utf8(to_vec(&value)).unwrap()
    }

    #[test]
    fn separators_and_order_as_python() {
        assert_eq!(
            dumps(json!({"b": [1, 2], "a": null, "status": "ok"})),
            r#"{"b": [1, 2], "a": null, "status": "ok"}"#
        );
        assert_eq!(dumps(json!({})), "{}");
        assert_eq!(dumps(json!([])), "[]");
    }

    #[test]
    fn objects_from_entries_match_whole_objects() {
        let (a, b) = (json!(1), json!(["x"]));
        assert_eq!(
            object_to_vec([("a", &a), ("b", &b)]),
            to_vec(&json!({"a": 1, "b": ["x"]}))
        );
        assert_eq!(object_to_vec([]), b"{}");
    }

    #[test]
    fn strings_escape_like_ensure_ascii() {
        assert_eq!(
            dumps(json!("é\u{1F600}\"\\\n\u{1}")),
            r#""\u00e9\ud83d\ude00\"\\\n\u0001""#
        );
    }

    #[test]
    fn pairs_as_a_python_dict() {
        let mut out = String::new();
        write_pairs_object(&mut out, r#"[["a","1"],["b","é"],["a","2"]]"#);
        write_pairs_object(&mut out, "[]");
        write_pairs_object(&mut out, r#"[["q","\"x\""]]"#);
        assert_eq!(out, r#"{"a": "2", "b": "\u00e9"}{}{"q": "\"x\""}"#);
    }

    #[test]
    fn floats_as_python_repr() {
        assert_eq!(float_repr(1.0), "1.0");
        assert_eq!(float_repr(-0.5), "-0.5");
        assert_eq!(float_repr(0.0), "0.0");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e-5), "1.5e-05");
        assert_eq!(float_repr(123456.789), "123456.789");
        assert_eq!(float_repr(f64::INFINITY), "Infinity");
        assert_eq!(float_repr(-0.0), "-0.0");
        assert_eq!(float_repr(-7.0), "-7.0");
        assert_eq!(float_repr(10.0), "10.0");
        assert_eq!(float_repr(1234567890123.0), "1234567890123.0");
        assert_eq!(float_repr(9007199254740993.0), "9007199254740992.0");
        assert_eq!(float_repr(1e-5), "1e-05");
        assert_eq!(float_repr(-2.5e20), "-2.5e+20");
    }
}
