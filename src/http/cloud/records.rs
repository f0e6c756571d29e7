//! Record streams in the formats of the Items API: JSON lines (the
//! default), a JSON array, msgpack (one record after another: what the
//! official client asks for), XML with XML-RPC value types, CSV and plain
//! text. One [`Encoder`] writes a stream: its head, each record as it
//! comes, its tail; nothing is held but the record at hand.

use hyper::HeaderMap;
use hyper::header;
use serde_json::{Map, Value};

use super::{CloudError, CloudRequest, CloudResult};
use crate::record;

/// A result format.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    JsonLines,
    Json,
    Msgpack,
    Xml,
    Csv(CsvOptions),
    Text,
}

/// How CSV is written: the `fields` to write (required), a header row or
/// not, and the separator, quote, escape and line end characters.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    pub fields: Vec<String>,
    pub include_headers: bool,
    pub separator: u8,
    pub quote: u8,
    pub escape: Option<u8>,
    pub line_end: String,
}

/// The format parameters of a request, read before the endpoint's own.
#[derive(Debug, Default, Clone)]
pub struct FormatParams {
    pub format: Option<String>,
    pub fields: Option<String>,
    pub include_headers: Option<String>,
    pub sep: Option<String>,
    pub quote: Option<String>,
    pub escape: Option<String>,
    pub lineend: Option<String>,
}

impl FormatParams {
    /// The format parameters of a request, taken before the endpoint's own.
    pub fn take(request: &mut CloudRequest) -> CloudResult<FormatParams> {
        Ok(FormatParams {
            format: request.optional("format")?,
            fields: request.optional("fields")?,
            include_headers: request.optional("include_headers")?,
            sep: request.optional("sep")?,
            quote: request.optional("quote")?,
            escape: request.optional("escape")?,
            lineend: request.optional("lineend")?,
        })
    }
}

impl Format {
    /// The format a request asks for: `format=…` first, then `Accept`
    /// (msgpack only when asked for by name, as the client does), else
    /// JSON lines.
    pub fn of_request(headers: &HeaderMap, params: &FormatParams) -> CloudResult<Format> {
        let by_name = match params.format.as_deref() {
            Some("json") => Some(Format::Json),
            Some("jl" | "jsonlines") => Some(Format::JsonLines),
            Some("xml") => Some(Format::Xml),
            Some("text") => Some(Format::Text),
            Some("msgpack") => Some(Format::Msgpack),
            Some("csv") => Some(Format::Csv(CsvOptions::from_params(params)?)),
            Some(other) => {
                return Err(CloudError::BadRequest(format!("unknown format {other}")));
            }
            None => None,
        };
        if let Some(format) = by_name {
            return Ok(format);
        }
        let accept = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .collect::<Vec<_>>()
            .join(",");
        let accepts = |media: &str| {
            accept
                .split(',')
                .any(|item| item.split(';').next().unwrap_or("").trim() == media)
        };
        Ok(if accepts("application/x-msgpack") {
            Format::Msgpack
        } else if accepts("application/x-jsonlines") {
            Format::JsonLines
        } else if accepts("application/json") {
            Format::Json
        } else if accepts("application/xml") || accepts("text/xml") {
            Format::Xml
        } else if accepts("text/csv") {
            Format::Csv(CsvOptions::from_params(params)?)
        } else if accepts("text/plain") {
            Format::Text
        } else {
            Format::JsonLines
        })
    }

    pub fn content_type(&self) -> &'static str {
        match self {
            Format::JsonLines => "application/x-jsonlines; charset=utf-8",
            Format::Json => "application/json; charset=utf-8",
            Format::Msgpack => "application/x-msgpack",
            Format::Xml => "application/xml; charset=utf-8",
            Format::Csv(_) => "text/csv; charset=utf-8",
            Format::Text => "text/plain; charset=utf-8",
        }
    }
}

/// A single character parameter (`sep`, `quote`, `escape`), `\t` allowed.
fn character(name: &str, text: Option<&str>, default: Option<u8>) -> CloudResult<Option<u8>> {
    match text {
        None => Ok(default),
        Some("\\t") => Ok(Some(b'\t')),
        Some(text) if text.len() == 1 => Ok(Some(text.as_bytes()[0])),
        Some(_) => Err(CloudError::BadRequest(format!(
            "{name} must be one character"
        ))),
    }
}

impl CsvOptions {
    fn from_params(params: &FormatParams) -> CloudResult<CsvOptions> {
        let fields: Vec<String> = params
            .fields
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|field| !field.is_empty())
            .map(str::to_string)
            .collect();
        if fields.is_empty() {
            return Err(CloudError::BadRequest(
                "format=csv needs the fields parameter".into(),
            ));
        }
        let flag = |text: Option<&str>| {
            matches!(
                text.map(str::to_ascii_lowercase).as_deref(),
                Some("1" | "true" | "yes" | "on")
            )
        };
        Ok(CsvOptions {
            fields,
            include_headers: flag(params.include_headers.as_deref()),
            separator: character("sep", params.sep.as_deref(), Some(b','))?.unwrap_or(b','),
            quote: character("quote", params.quote.as_deref(), Some(b'"'))?.unwrap_or(b'"'),
            escape: character("escape", params.escape.as_deref(), None)?,
            line_end: match params.lineend.as_deref() {
                None => "\n".into(),
                Some(text) => text.replace("\\r", "\r").replace("\\n", "\n"),
            },
        })
    }
}

/// Writes one stream of records in a format.
pub struct Encoder {
    format: Format,
    written: u64,
}

impl Encoder {
    pub fn new(format: Format) -> Encoder {
        Encoder { format, written: 0 }
    }

    pub fn format(&self) -> &Format {
        &self.format
    }

    /// What comes before the first record.
    pub fn head(&mut self, out: &mut Vec<u8>) {
        match &self.format {
            Format::Json => out.push(b'['),
            Format::Xml => {
                out.extend_from_slice(b"<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<items>")
            }
            Format::Csv(options) if options.include_headers => {
                let headers: Vec<Value> = options
                    .fields
                    .iter()
                    .map(|f| Value::from(f.as_str()))
                    .collect();
                write_csv_row(options, headers.iter().map(Some), out);
            }
            _ => {}
        }
    }

    /// One record.
    pub fn record(&mut self, record: &Value, out: &mut Vec<u8>) {
        let first = self.written == 0;
        self.written += 1;
        match &self.format {
            Format::JsonLines => {
                let _ = serde_json::to_writer(&mut *out, record);
                out.push(b'\n');
            }
            Format::Json => {
                if !first {
                    out.push(b',');
                }
                let _ = serde_json::to_writer(&mut *out, record);
            }
            Format::Msgpack => {
                let _ = rmp_serde::encode::write_named(out, record);
            }
            Format::Xml => {
                out.extend_from_slice(b"<value>");
                write_xml_value(record, out);
                out.extend_from_slice(b"</value>");
            }
            Format::Csv(options) => {
                let object = record.as_object();
                let cells = options
                    .fields
                    .iter()
                    .map(|field| object.and_then(|object| object.get(field)));
                write_csv_row(options, cells, out);
            }
            Format::Text => {
                match record {
                    Value::String(text) => out.extend_from_slice(text.as_bytes()),
                    Value::Object(fields) if fields.contains_key("message") => {
                        out.extend_from_slice(text_of(&fields["message"]).as_bytes())
                    }
                    other => {
                        let _ = serde_json::to_writer(&mut *out, other);
                    }
                }
                out.push(b'\n');
            }
        }
    }

    /// Writes a record given as its stored JSON text without building a
    /// value, where the format allows it (msgpack; CSV without meta
    /// fields), with `_key` and `_ts` as [`with_meta`] adds them; answers
    /// false where it does not (the caller parses the record and calls
    /// [`Encoder::record`]).
    pub fn record_text(
        &mut self,
        json: &str,
        key: Option<&str>,
        ts: Option<i64>,
        nodata: bool,
        out: &mut Vec<u8>,
    ) -> Result<bool, serde_json::Error> {
        match &self.format {
            // A record with fields of its own named like the meta fields
            // keeps its values, as with_meta does: read the slow way.
            Format::Msgpack
                if !(key.is_some() && json.contains("\"_key\"")
                    || ts.is_some() && json.contains("\"_ts\"")) =>
            {
                record::write_msgpack(json, key, ts, nodata, out)?;
            }
            Format::Csv(options) if key.is_none() && ts.is_none() && !nodata => {
                let cells = record::pick_fields(json, &options.fields)?;
                write_csv_row(options, cells.iter().map(Option::as_ref), out);
            }
            _ => return Ok(false),
        }
        self.written += 1;
        Ok(true)
    }

    /// What comes after the last record.
    pub fn tail(&mut self, out: &mut Vec<u8>) {
        match &self.format {
            Format::Json => out.extend_from_slice(b"]\n"),
            Format::Xml => out.extend_from_slice(b"</items>\n"),
            _ => {}
        }
    }
}

/// A cell's text: strings as they are, other values as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn write_csv_row<'a>(
    options: &CsvOptions,
    cells: impl Iterator<Item = Option<&'a Value>>,
    out: &mut Vec<u8>,
) {
    for (index, cell) in cells.enumerate() {
        if index > 0 {
            out.push(options.separator);
        }
        let text = cell.map(text_of).unwrap_or_default();
        let needs_quotes = text.bytes().any(|byte| {
            byte == options.separator || byte == options.quote || byte == b'\n' || byte == b'\r'
        });
        if !needs_quotes {
            out.extend_from_slice(text.as_bytes());
            continue;
        }
        out.push(options.quote);
        for byte in text.bytes() {
            if byte == options.quote {
                // Doubled, or escaped when an escape character is given.
                out.push(options.escape.unwrap_or(options.quote));
            }
            out.push(byte);
        }
        out.push(options.quote);
    }
    out.extend_from_slice(options.line_end.as_bytes());
}

/// A value as XML-RPC's `<value>` content: `<string>`, `<int>`,
/// `<double>`, `<boolean>`, `<nil/>`, `<array><data>`, `<struct><member>`.
fn write_xml_value(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Null => out.extend_from_slice(b"<nil/>"),
        Value::Bool(flag) => out.extend_from_slice(if *flag {
            b"<boolean>1</boolean>"
        } else {
            b"<boolean>0</boolean>"
        }),
        Value::Number(number) if number.is_f64() => {
            out.extend_from_slice(format!("<double>{number}</double>").as_bytes())
        }
        Value::Number(number) => out.extend_from_slice(format!("<int>{number}</int>").as_bytes()),
        Value::String(text) => {
            out.extend_from_slice(b"<string>");
            escape_xml(text, out);
            out.extend_from_slice(b"</string>");
        }
        Value::Array(items) => {
            out.extend_from_slice(b"<array><data>");
            for item in items {
                out.extend_from_slice(b"<value>");
                write_xml_value(item, out);
                out.extend_from_slice(b"</value>");
            }
            out.extend_from_slice(b"</data></array>");
        }
        Value::Object(fields) => {
            out.extend_from_slice(b"<struct>");
            for (name, item) in fields {
                out.extend_from_slice(b"<member><name>");
                escape_xml(name, out);
                out.extend_from_slice(b"</name><value>");
                write_xml_value(item, out);
                out.extend_from_slice(b"</value></member>");
            }
            out.extend_from_slice(b"</struct>");
        }
    }
}

fn escape_xml(text: &str, out: &mut Vec<u8>) {
    for character in text.chars() {
        match character {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            // Characters XML 1.0 cannot carry at all.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => {
                let mut buffer = [0; 4];
                out.extend_from_slice(c.encode_utf8(&mut buffer).as_bytes());
            }
        }
    }
}

/// Adds `_key` and `_ts` to a record as `meta` asks, or keeps only them
/// (`nodata`). A record that is not an object (a sample) gets none.
pub fn with_meta(record: Value, key: Option<String>, ts: Option<i64>, nodata: bool) -> Value {
    match record {
        Value::Object(fields) => {
            let mut with = Map::new();
            if let Some(key) = key {
                with.insert("_key".into(), Value::from(key));
            }
            if let Some(ts) = ts {
                with.insert("_ts".into(), Value::from(ts));
            }
            if !nodata {
                with.extend(fields);
            }
            Value::Object(with)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn encode_bytes(format: Format, records: &[Value]) -> Vec<u8> {
        let mut encoder = Encoder::new(format);
        let mut out = Vec::new();
        encoder.head(&mut out);
        for record in records {
            encoder.record(record, &mut out);
        }
        encoder.tail(&mut out);
        out
    }

    fn encode(format: Format, records: &[Value]) -> String {
        String::from_utf8(encode_bytes(format, records)).unwrap()
    }

    fn csv(fields: &[&str], headers: bool) -> Format {
        Format::Csv(CsvOptions {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            include_headers: headers,
            separator: b',',
            quote: b'"',
            escape: None,
            line_end: "\n".into(),
        })
    }

    #[test]
    fn each_format() {
        let records = [
            json!({"name": "a,b", "price": 2}),
            json!({"name": "say \"hi\""}),
        ];
        assert_eq!(
            encode(Format::JsonLines, &records),
            "{\"name\":\"a,b\",\"price\":2}\n{\"name\":\"say \\\"hi\\\"\"}\n"
        );
        assert_eq!(
            encode(Format::Json, &records[..1]),
            "[{\"name\":\"a,b\",\"price\":2}]\n"
        );
        assert_eq!(
            encode(csv(&["name", "price"], true), &records),
            "name,price\n\"a,b\",2\n\"say \"\"hi\"\"\",\n"
        );
        assert_eq!(
            encode(Format::Xml, &[json!({"a": [1, 1.5, true, null, "<x>"]})]),
            "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<items><value><struct><member><name>a</name><value>\
             <array><data><value><int>1</int></value><value><double>1.5</double></value>\
             <value><boolean>1</boolean></value><value><nil/></value><value><string>&lt;x&gt;</string></value>\
             </data></array></value></member></struct></value></items>\n"
        );
        assert_eq!(
            encode(Format::Text, &[json!({"message": "hello"})]),
            "hello\n"
        );
        let packed = encode_bytes(Format::Msgpack, &[json!({"a": 1})]);
        assert_eq!(packed, b"\x81\xa1a\x01");
    }

    #[test]
    fn meta_fields_come_first() {
        let record = with_meta(json!({"a": 1}), Some("1/2/3/4".into()), Some(5), false);
        assert_eq!(record.to_string(), r#"{"_key":"1/2/3/4","_ts":5,"a":1}"#);
        let bare = with_meta(json!({"a": 1}), Some("k".into()), None, true);
        assert_eq!(bare, json!({"_key": "k"}));
        assert_eq!(
            with_meta(json!([1, 2]), Some("k".into()), None, false),
            json!([1, 2])
        );
    }
}
