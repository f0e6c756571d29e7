//! One record of job data as JSON text, handled without building a
//! `serde_json::Value`: checked and made compact on the way in (with its
//! fields and the size it counts for in its stream's stats), transcoded
//! straight to msgpack on the way out. Capture and reads handle a million
//! records a second through here; a `Value` per record (a map, a string per
//! field) costs several times the parse itself.
//!
//! Sizes and encodings are those of `rmp_serde` writing the same record as
//! a `Value` (the smallest integer and length markers, floats as 64-bit),
//! so both ways give the same bytes.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;

/// A record read from a line of JSON, ready to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked<'a> {
    /// The record as compact JSON (the text, its whitespace outside strings
    /// removed).
    pub json: String,
    /// Its top-level field names, each once, in order (none if it is not an
    /// object); borrowed from the text unless escaped there.
    pub fields: Vec<Cow<'a, str>>,
    /// The bytes of its msgpack encoding.
    pub msgpack_size: u64,
}

/// Checks a line of JSON: answers the record as compact text, with its
/// fields and msgpack size, or why it is not JSON. Lone surrogates are
/// taken as [`without_lone_surrogates`] says.
pub fn check(text: &str) -> Result<Checked<'_>, serde_json::Error> {
    check_as_is(text).or_else(|error| match without_lone_surrogates(text) {
        Some(fixed) => {
            let checked = check_as_is(&fixed)?;
            Ok(Checked {
                json: checked.json,
                fields: checked
                    .fields
                    .into_iter()
                    .map(|name| Cow::Owned(name.into_owned()))
                    .collect(),
                msgpack_size: checked.msgpack_size,
            })
        }
        None => Err(error),
    })
}

/// A JSON value sent by a client or written by a crawl; lone surrogates
/// are taken as [`without_lone_surrogates`] says.
pub fn parse_value(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str(text).or_else(|error| match without_lone_surrogates(text) {
        Some(fixed) => serde_json::from_str(&fixed),
        None => Err(error),
    })
}

/// [`parse_value`] of bytes (not UTF-8: refused, serde_json saying where).
pub fn parse_value_bytes(bytes: &[u8]) -> Result<Value, serde_json::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => parse_value(text),
        Err(_) => serde_json::from_slice(bytes),
    }
}

/// The JSON text with each escaped UTF-16 surrogate that has no partner
/// (`"\ud800"`) replaced by `\ufffd`, the replacement character; `None`
/// if it has none. Python's `json.dumps` writes such escapes for a string
/// holding a lone surrogate (text decoded with `surrogateescape`, say), and
/// JSON's grammar allows them, but no UTF-8 text can hold one: refused, a
/// crawl's item would be lost and a client's batch retried for hours.
pub fn without_lone_surrogates(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    // The UTF-16 unit of a `\uXXXX` escape at `at`.
    let unit = |at: usize| -> Option<u16> {
        if bytes.get(at..at + 2)? != b"\\u" {
            return None;
        }
        let hex = bytes.get(at + 2..at + 6)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
    };
    let mut fixed: Option<String> = None;
    // What of `text` is in `fixed` already.
    let mut copied = 0;
    let mut index = 0;
    while let Some(found) = memchr::memchr(b'\\', bytes.get(index..).unwrap_or_default()) {
        let at = index + found;
        index = match unit(at) {
            Some(0xD800..=0xDBFF) if matches!(unit(at + 6), Some(0xDC00..=0xDFFF)) => at + 12,
            Some(0xD800..=0xDFFF) => {
                let fixed = fixed.get_or_insert_with(|| String::with_capacity(text.len()));
                fixed.push_str(&text[copied..at]);
                fixed.push_str("\\ufffd");
                copied = at + 6;
                at + 6
            }
            Some(_) => at + 6,
            // Another escape: a backslash and the byte after it.
            None => at + 2,
        };
    }
    fixed.map(|mut fixed| {
        fixed.push_str(&text[copied..]);
        fixed
    })
}

fn check_as_is(text: &str) -> Result<Checked<'_>, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let (msgpack_size, fields) = Top.deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(Checked {
        json: compact(text),
        fields,
        msgpack_size,
    })
}

/// The bytes of a value's msgpack encoding, without encoding it.
pub fn msgpack_size(value: &Value) -> u64 {
    match value {
        Value::Null | Value::Bool(_) => 1,
        Value::Number(number) => {
            if let Some(n) = number.as_u64() {
                uint_size(n)
            } else if let Some(n) = number.as_i64() {
                sint_size(n)
            } else {
                9
            }
        }
        Value::String(text) => str_size(text.len()),
        Value::Array(items) => {
            header_size(items.len()) + items.iter().map(msgpack_size).sum::<u64>()
        }
        Value::Object(fields) => {
            header_size(fields.len())
                + fields
                    .iter()
                    .map(|(name, value)| str_size(name.len()) + msgpack_size(value))
                    .sum::<u64>()
        }
    }
}

/// Writes a record's JSON text as msgpack. With `key` or `ts`, an object
/// gets `_key` and `_ts` first (only those with `nodata`), as
/// [`crate::http::cloud`] shows them; a record that is not an object gets
/// none. A field of the record's own named `_key` or `_ts` comes after
/// them (a reader keeps the last).
pub fn write_msgpack(
    json: &str,
    key: Option<&str>,
    ts: Option<i64>,
    nodata: bool,
    out: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(json);
    let is_object = json.trim_start().starts_with('{');
    if is_object && (key.is_some() || ts.is_some() || nodata) {
        let header = out.len();
        out.push(0);
        let mut count = 0;
        if let Some(key) = key {
            write_str(out, "_key");
            write_str(out, key);
            count += 1;
        }
        if let Some(ts) = ts {
            write_str(out, "_ts");
            write_sint(out, ts);
            count += 1;
        }
        if nodata {
            fix_header(out, header, count, MAP_MARKERS);
            // Only the meta fields: the rest need not be read.
            return Ok(());
        }
        count += deserializer.deserialize_map(Fields { out })?;
        fix_header(out, header, count, MAP_MARKERS);
    } else {
        Transcode { out }.deserialize(&mut deserializer)?;
    }
    deserializer.end()
}

/// The top-level fields named in `names`, in that order (`None` for those
/// the record lacks, all `None` if it is not an object); the other fields
/// are only skipped over.
pub fn pick_fields(json: &str, names: &[String]) -> Result<Vec<Option<Value>>, serde_json::Error> {
    let mut picked = vec![None; names.len()];
    if json.trim_start().starts_with('{') {
        let mut deserializer = serde_json::Deserializer::from_str(json);
        deserializer.deserialize_map(Pick {
            names,
            picked: &mut picked,
        })?;
        deserializer.end()?;
    }
    Ok(picked)
}

/// `text` without the whitespace between its tokens. `text` is valid
/// JSON: outside strings, only whitespace can be dropped.
fn compact(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        // Between strings: what is not whitespace.
        let quote = memchr::memchr(b'"', &bytes[index..]).map_or(bytes.len(), |at| index + at);
        out.extend(
            bytes[index..quote]
                .iter()
                .filter(|byte| !matches!(byte, b' ' | b'\t' | b'\n' | b'\r')),
        );
        if quote == bytes.len() {
            break;
        }
        // A string, copied whole: up to its closing quote, escapes (a
        // backslash and the byte after it) included. Strings are most of
        // a record's bytes: searched for, not stepped through.
        index = quote + 1;
        loop {
            match memchr::memchr2(b'"', b'\\', bytes.get(index..).unwrap_or_default()) {
                Some(at) if bytes[index + at] == b'"' => {
                    index += at + 1;
                    break;
                }
                Some(at) => index += at + 2,
                None => {
                    index = bytes.len();
                    break;
                }
            }
        }
        index = index.min(bytes.len());
        out.extend_from_slice(&bytes[quote..index]);
    }
    // Only ASCII whitespace was dropped, between whole UTF-8 sequences.
    String::from_utf8(out).unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into())
}

fn uint_size(n: u64) -> u64 {
    match n {
        0..=127 => 1,
        128..=255 => 2,
        256..=65535 => 3,
        65536..=4294967295 => 5,
        _ => 9,
    }
}

fn sint_size(n: i64) -> u64 {
    match n {
        0.. => uint_size(n as u64),
        -32..=-1 => 1,
        -128..=-33 => 2,
        -32768..=-129 => 3,
        -2147483648..=-32769 => 5,
        _ => 9,
    }
}

fn str_size(length: usize) -> u64 {
    let header = match length {
        0..=31 => 1,
        32..=255 => 2,
        256..=65535 => 3,
        _ => 5,
    };
    header + length as u64
}

fn header_size(count: usize) -> u64 {
    match count {
        0..=15 => 1,
        16..=65535 => 3,
        _ => 5,
    }
}

fn write_uint(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=127 => out.push(n as u8),
        128..=255 => out.extend_from_slice(&[0xcc, n as u8]),
        256..=65535 => {
            out.push(0xcd);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        65536..=4294967295 => {
            out.push(0xce);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0xcf);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn write_sint(out: &mut Vec<u8>, n: i64) {
    match n {
        0.. => write_uint(out, n as u64),
        -32..=-1 => out.push(n as i8 as u8),
        -128..=-33 => out.extend_from_slice(&[0xd0, n as i8 as u8]),
        -32768..=-129 => {
            out.push(0xd1);
            out.extend_from_slice(&(n as i16).to_be_bytes());
        }
        -2147483648..=-32769 => {
            out.push(0xd2);
            out.extend_from_slice(&(n as i32).to_be_bytes());
        }
        _ => {
            out.push(0xd3);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    let length = text.len();
    match length {
        0..=31 => out.push(0xa0 | length as u8),
        32..=255 => out.extend_from_slice(&[0xd9, length as u8]),
        256..=65535 => {
            out.push(0xda);
            out.extend_from_slice(&(length as u16).to_be_bytes());
        }
        _ => {
            out.push(0xdb);
            out.extend_from_slice(&(length as u32).to_be_bytes());
        }
    }
    out.extend_from_slice(text.as_bytes());
}

/// The markers of a container of up to 15, up to 65,535, or more entries.
type Markers = (u8, u8, u8);
const MAP_MARKERS: Markers = (0x80, 0xde, 0xdf);
const ARRAY_MARKERS: Markers = (0x90, 0xdc, 0xdd);

/// A container's entries are written after one byte kept for its header;
/// now that their count is known, the header goes there (made room for
/// when it takes more than that byte).
fn fix_header(out: &mut Vec<u8>, at: usize, count: usize, (fix, short, long): Markers) {
    match count {
        0..=15 => out[at] = fix | count as u8,
        16..=65535 => {
            out[at] = short;
            out.splice(at + 1..at + 1, (count as u16).to_be_bytes());
        }
        _ => {
            out[at] = long;
            out.splice(at + 1..at + 1, (count as u32).to_be_bytes());
        }
    }
}

/// Writes one JSON value as msgpack.
struct Transcode<'a> {
    out: &'a mut Vec<u8>,
}

impl<'de> DeserializeSeed<'de> for Transcode<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Transcode<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, value: bool) -> Result<(), E> {
        self.out.push(if value { 0xc3 } else { 0xc2 });
        Ok(())
    }

    fn visit_i64<E>(self, value: i64) -> Result<(), E> {
        write_sint(self.out, value);
        Ok(())
    }

    fn visit_u64<E>(self, value: u64) -> Result<(), E> {
        write_uint(self.out, value);
        Ok(())
    }

    fn visit_f64<E>(self, value: f64) -> Result<(), E> {
        self.out.push(0xcb);
        self.out.extend_from_slice(&value.to_be_bytes());
        Ok(())
    }

    fn visit_str<E>(self, value: &str) -> Result<(), E> {
        write_str(self.out, value);
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        self.out.push(0xc0);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<(), A::Error> {
        let header = self.out.len();
        self.out.push(0);
        let mut count = 0;
        while items
            .next_element_seed(Transcode {
                out: &mut *self.out,
            })?
            .is_some()
        {
            count += 1;
        }
        fix_header(self.out, header, count, ARRAY_MARKERS);
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, fields: A) -> Result<(), A::Error> {
        let header = self.out.len();
        self.out.push(0);
        let count = Fields {
            out: &mut *self.out,
        }
        .visit_map(fields)?;
        fix_header(self.out, header, count, MAP_MARKERS);
        Ok(())
    }
}

/// Writes the fields of a JSON object as msgpack keys and values, without
/// the map's header; answers how many.
struct Fields<'a> {
    out: &'a mut Vec<u8>,
}

impl<'de> Visitor<'de> for Fields<'_> {
    type Value = usize;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<usize, A::Error> {
        let mut count = 0;
        while fields
            .next_key_seed(Transcode {
                out: &mut *self.out,
            })?
            .is_some()
        {
            fields.next_value_seed(Transcode {
                out: &mut *self.out,
            })?;
            count += 1;
        }
        Ok(count)
    }
}

/// The msgpack size of one value.
struct Size;

impl<'de> DeserializeSeed<'de> for Size {
    type Value = u64;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<u64, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Size {
    type Value = u64;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<u64, E> {
        Ok(1)
    }

    fn visit_i64<E>(self, value: i64) -> Result<u64, E> {
        Ok(sint_size(value))
    }

    fn visit_u64<E>(self, value: u64) -> Result<u64, E> {
        Ok(uint_size(value))
    }

    fn visit_f64<E>(self, _: f64) -> Result<u64, E> {
        Ok(9)
    }

    fn visit_str<E>(self, value: &str) -> Result<u64, E> {
        Ok(str_size(value.len()))
    }

    fn visit_unit<E>(self) -> Result<u64, E> {
        Ok(1)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<u64, A::Error> {
        let (mut count, mut size) = (0, 0);
        while let Some(item) = items.next_element_seed(Size)? {
            count += 1;
            size += item;
        }
        Ok(header_size(count) + size)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<u64, A::Error> {
        let (mut count, mut size) = (0, 0);
        while let Some(key) = fields.next_key_seed(Size)? {
            size += key + fields.next_value_seed(Size)?;
            count += 1;
        }
        Ok(header_size(count) + size)
    }
}

/// A record's msgpack size and top-level field names.
struct Top;

impl<'de> DeserializeSeed<'de> for Top {
    type Value = (u64, Vec<Cow<'de, str>>);

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Top {
    type Value = (u64, Vec<Cow<'de, str>>);

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok((1, Vec::new()))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Self::Value, E> {
        Ok((sint_size(value), Vec::new()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Self::Value, E> {
        Ok((uint_size(value), Vec::new()))
    }

    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok((9, Vec::new()))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok((str_size(value.len()), Vec::new()))
    }

    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok((1, Vec::new()))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, items: A) -> Result<Self::Value, A::Error> {
        Ok((Size.visit_seq(items)?, Vec::new()))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<Self::Value, A::Error> {
        let mut names: Vec<Cow<'de, str>> = Vec::new();
        // Past a few names, a set finds a repeated one: a record of many
        // thousand fields must not cost their square.
        let mut seen: Option<std::collections::HashSet<Cow<'de, str>>> = None;
        let mut size = 0;
        let mut count = 0;
        while let Some(name) = fields.next_key_seed(Name)? {
            size += str_size(name.len()) + fields.next_value_seed(Size)?;
            count += 1;
            // A name given twice is one field (read back, the last value
            // is kept), though both count in the size.
            let known = match &mut seen {
                Some(seen) => !seen.insert(name.clone()),
                None => names.iter().any(|known| *known == *name),
            };
            if !known {
                names.push(name);
                if seen.is_none() && names.len() > 16 {
                    seen = Some(names.iter().cloned().collect());
                }
            }
        }
        Ok((header_size(count) + size, names))
    }
}

/// A field name, borrowed from the text when it has no escapes.
struct Name;

impl<'de> DeserializeSeed<'de> for Name {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Name {
    type Value = Cow<'de, str>;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a field name")
    }

    fn visit_borrowed_str<E>(self, value: &'de str) -> Result<Self::Value, E> {
        Ok(Cow::Borrowed(value))
    }

    fn visit_str<E>(self, value: &str) -> Result<Self::Value, E> {
        Ok(Cow::Owned(value.to_string()))
    }
}

/// Picks some top-level fields of an object as values, skipping the rest.
struct Pick<'a> {
    names: &'a [String],
    picked: &'a mut [Option<Value>],
}

impl<'de> Visitor<'de> for Pick<'_> {
    type Value = ();

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut fields: A) -> Result<(), A::Error> {
        while let Some(name) = fields.next_key_seed(Name)? {
            match self.names.iter().position(|wanted| *wanted == *name) {
                Some(index) => {
                    let value: Value = fields.next_value()?;
                    // A name may be asked for twice (`fields=a,a`).
                    for (slot, wanted) in self.picked.iter_mut().zip(self.names).skip(index) {
                        if *wanted == *name {
                            *slot = Some(value.clone());
                        }
                    }
                }
                None => {
                    fields.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn encoded(value: &Value) -> Vec<u8> {
        rmp_serde::encode::to_vec_named(value).unwrap()
    }

    fn with_meta(value: &Value, key: Option<&str>, ts: Option<i64>, nodata: bool) -> Value {
        match value {
            Value::Object(fields) => {
                let mut with = serde_json::Map::new();
                if let Some(key) = key {
                    with.insert("_key".into(), Value::from(key));
                }
                if let Some(ts) = ts {
                    with.insert("_ts".into(), Value::from(ts));
                }
                if !nodata {
                    with.extend(fields.clone());
                }
                Value::Object(with)
            }
            other => other.clone(),
        }
    }

    fn json_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            (-1e12f64..1e12).prop_map(Value::from),
            prop::sample::select(vec![
                0i64, 127, 128, 255, 256, 65535, 65536, -32, -33, -128, -129
            ])
            .prop_map(Value::from),
            "[a-z\u{e9}\"\\\\ \n]{0,40}".prop_map(Value::from),
            "[a-z]{250,300}".prop_map(Value::from),
        ];
        leaf.prop_recursive(3, 64, 20, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..20).prop_map(Value::from),
                prop::collection::btree_map("[a-z]{0,6}", inner, 0..20)
                    .prop_map(|map| Value::Object(map.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn the_same_as_through_a_value(value in json_value(), pretty in any::<bool>(),
                                       key in proptest::option::of("[0-9/]{1,12}"),
                                       ts in proptest::option::of(any::<i64>()), nodata in any::<bool>()) {
            let text = if pretty { serde_json::to_string_pretty(&value).unwrap() } else { value.to_string() };
            let checked = check(&text).unwrap();
            prop_assert_eq!(&checked.json, &value.to_string());
            // What the old way read back: the text parsed into a Value (its
            // floats parsed as serde_json parses them).
            let value: Value = serde_json::from_str(&text).unwrap();
            prop_assert_eq!(checked.msgpack_size, encoded(&value).len() as u64);
            prop_assert_eq!(msgpack_size(&value), encoded(&value).len() as u64);
            let names: Vec<String> = value.as_object().map(|m| m.keys().cloned().collect()).unwrap_or_default();
            prop_assert_eq!(&checked.fields, &names.iter().map(|n| Cow::Borrowed(n.as_str())).collect::<Vec<_>>());
            let mut out = Vec::new();
            write_msgpack(&text, None, None, false, &mut out).unwrap();
            prop_assert_eq!(&out, &encoded(&value));
            let mut out = Vec::new();
            write_msgpack(&text, key.as_deref(), ts, nodata, &mut out).unwrap();
            prop_assert_eq!(&out, &encoded(&with_meta(&value, key.as_deref(), ts, nodata)));
            let wanted: Vec<String> = names.iter().take(2).cloned().chain(["missing".to_string()]).collect();
            let picked = pick_fields(&text, &wanted).unwrap();
            let expected: Vec<Option<Value>> = wanted.iter().map(|name| value.get(name).cloned()).collect();
            prop_assert_eq!(picked, expected);
        }
    }

    #[test]
    fn lone_surrogates_become_replacement_characters() {
        let fixed = |text: &str| without_lone_surrogates(text);
        assert_eq!(fixed(r#"["a\u00e9", "\ud83d\ude00"]"#), None);
        assert_eq!(
            fixed(r#""\\ud800""#),
            None,
            "an escaped backslash, then text"
        );
        assert_eq!(fixed(r#""\ud800""#).as_deref(), Some(r#""\ufffd""#));
        assert_eq!(
            fixed(r#"{"\udc00k": "x\ud800\ud800\udc00y\udbff"}"#).as_deref(),
            Some(r#"{"\ufffdk": "x\ufffd\ud800\udc00y\ufffd"}"#)
        );
        assert_eq!(fixed(r#""é\ud800\u12"#).as_deref(), Some(r#""é\ufffd\u12"#));
        assert_eq!(fixed("\\"), None);
        // Checked and parsed through the fix; other errors stay errors.
        let checked = check(r#"{"\udc00": "\ud800"}"#).unwrap();
        assert_eq!(checked.json, r#"{"\ufffd":"\ufffd"}"#);
        assert_eq!(checked.fields, ["\u{fffd}"]);
        assert_eq!(parse_value(r#"["\ud800"]"#).unwrap(), json!(["\u{fffd}"]));
        assert_eq!(
            parse_value_bytes(br#"["\udfff"]"#).unwrap(),
            json!(["\u{fffd}"])
        );
        assert!(check(r#"["\ud800", ]"#).is_err());
        assert!(parse_value(r#"["\ud800"#).is_err());
    }

    #[test]
    fn what_is_not_json_is_refused() {
        for text in ["", "{", "{\"a\": 1} x", "[1,]", "nope", "{\"a\" 1}"] {
            assert!(check(text).is_err(), "{text}");
        }
        let checked = check(" {\"a\" : [1, 2], \"b\\\"c\": \"x y\"} ").unwrap();
        assert_eq!(checked.json, r#"{"a":[1,2],"b\"c":"x y"}"#);
        assert_eq!(checked.fields, ["a", "b\"c"]);
        assert_eq!(check("{\"a\": 1, \"a\": 2}").unwrap().fields, ["a"]);
    }

    #[test]
    fn long_containers_get_long_headers() {
        let value = json!({"list": (0..70000).collect::<Vec<u32>>()});
        let mut out = Vec::new();
        write_msgpack(&value.to_string(), None, None, false, &mut out).unwrap();
        assert_eq!(out, encoded(&value));
    }
}
