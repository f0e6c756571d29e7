//! Request parameters the way Scrapyd reads them: the query string, then
//! the body (form-urlencoded or multipart), a body value replacing a query
//! value of the same name. Each endpoint takes its parameters one by one in
//! its declared order, so the first problem found is the one Scrapyd would
//! report; what is left over becomes spider arguments.

use bytes::Bytes;

/// The most parameters one request may carry. Far above what any client
/// sends; it keeps a hostile request from costing quadratic time, and is
/// checked while splitting, so `a&a&a…` costs no more than its bytes.
pub const MAX_PARAMS: usize = 1000;

/// Bodies up to this size are decoded on the async worker that read them.
const INLINE_BODY_BYTES: usize = 64 * 1024;

/// A parameter problem, worded as Scrapyd words it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ParamError {
    #[error("'{0}' parameter is required")]
    Missing(String),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
    #[error("malformed request body: {0}")]
    MalformedBody(String),
    /// A multipart body with no boundary to split it by (Scrapyd's Twisted
    /// answers such a request with a bare 400).
    #[error("malformed request body: {0}")]
    BadMultipart(String),
    /// A spider argument's name or value that is not UTF-8, in Python's
    /// words (Scrapyd decodes them when it queues the job).
    #[error("UnicodeDecodeError: {0}")]
    Undecodable(String),
}

/// The parameters of one request, in order of first appearance, each with
/// all its values.
#[derive(Debug, Default, Clone)]
pub struct Params {
    entries: Vec<(String, Vec<Bytes>)>,
    /// Names that were not UTF-8 (kept in `entries` with their bytes
    /// replaced), with why, for [`Params::remaining`] to refuse.
    undecodable_names: Vec<(String, String)>,
}

impl Params {
    /// Reads the query string and, when `content_type` says so, the body.
    /// A big body (an egg) is decoded on the blocking pool, so the async
    /// workers keep serving others meanwhile.
    pub async fn parse(
        query: Option<&str>,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Params, ParamError> {
        if body.len() <= INLINE_BODY_BYTES {
            return Params::parse_now(query, content_type, body).await;
        }
        let (query, content_type) = (query.map(str::to_string), content_type.map(str::to_string));
        let runtime = tokio::runtime::Handle::current();
        tokio::task::spawn_blocking(move || {
            runtime.block_on(Params::parse_now(
                query.as_deref(),
                content_type.as_deref(),
                body,
            ))
        })
        .await
        .map_err(|error| ParamError::MalformedBody(error.to_string()))?
    }

    async fn parse_now(
        query: Option<&str>,
        content_type: Option<&str>,
        body: Bytes,
    ) -> Result<Params, ParamError> {
        let mut params = Params::default();
        if let Some(query) = query {
            params.entries = group(parse_urlencoded(
                query.as_bytes(),
                MAX_PARAMS,
                &mut params.undecodable_names,
            )?);
        }
        // The media type is case-insensitive; the multipart boundary is not.
        let content_type = content_type.unwrap_or("");
        let media_type = content_type.to_ascii_lowercase();
        let room = MAX_PARAMS - params.entries.len();
        let from_body = if media_type.starts_with("application/x-www-form-urlencoded") {
            parse_urlencoded(&body, room, &mut params.undecodable_names)?
        } else if media_type.starts_with("multipart/form-data") {
            parse_multipart(content_type, body, room).await?
        } else {
            Vec::new()
        };
        // A body value replaces the query's values of that name in place.
        for (name, values) in group(from_body) {
            match params
                .entries
                .iter_mut()
                .find(|(existing, _)| *existing == name)
            {
                Some(entry) => entry.1 = values,
                None => params.entries.push((name, values)),
            }
        }
        Ok(params)
    }

    fn take_values(&mut self, name: &str) -> Option<Vec<Bytes>> {
        let index = self
            .entries
            .iter()
            .position(|(existing, _)| existing == name)?;
        Some(self.entries.remove(index).1)
    }

    /// The first value of a parameter as text, removing it; `None` if absent.
    pub fn optional(&mut self, name: &str) -> Result<Option<String>, ParamError> {
        match self.take_values(name) {
            Some(values) => decode(name, values.first().map_or(&[][..], |v| v)).map(Some),
            None => Ok(None),
        }
    }

    /// The first value of a required parameter as text, removing it.
    pub fn required(&mut self, name: &str) -> Result<String, ParamError> {
        self.optional(name)?
            .ok_or_else(|| ParamError::Missing(name.to_string()))
    }

    /// The first value of a required parameter as bytes, removing it.
    pub fn required_bytes(&mut self, name: &str) -> Result<Bytes, ParamError> {
        self.take_values(name)
            .map(|values| values.into_iter().next().unwrap_or_default())
            .ok_or_else(|| ParamError::Missing(name.to_string()))
    }

    /// Every value of a parameter as text, removing them.
    pub fn all(&mut self, name: &str) -> Result<Vec<String>, ParamError> {
        self.take_values(name)
            .unwrap_or_default()
            .iter()
            .map(|value| decode(name, value))
            .collect()
    }

    /// An optional float parameter, read as Python's `float(bytes)`.
    pub fn optional_float(&mut self, name: &str, default: f64) -> Result<f64, ParamError> {
        let Some(values) = self.take_values(name) else {
            return Ok(default);
        };
        let raw = values.into_iter().next().unwrap_or_default();
        python_float(&raw).ok_or_else(|| ParamError::Invalid {
            name: name.to_string(),
            reason: format!(
                "could not convert string to float: {}",
                python_bytes_repr(&raw)
            ),
        })
    }

    /// The parameters nobody took (a schedule's spider arguments), first
    /// value of each, in order.
    pub fn remaining(self) -> Result<Vec<(String, String)>, ParamError> {
        let undecodable = self.undecodable_names;
        self.entries
            .into_iter()
            .map(|(name, values)| {
                if let Some((_, reason)) = undecodable.iter().find(|(bad, _)| *bad == name) {
                    return Err(ParamError::Undecodable(reason.clone()));
                }
                let raw = values.first().map_or(&[][..], |v| v);
                let value = std::str::from_utf8(raw)
                    .map_err(|error| ParamError::Undecodable(python_utf8_error(raw, &error)))?;
                Ok((name, value.to_string()))
            })
            .collect()
    }
}

fn group(pairs: Vec<(String, Bytes)>) -> Vec<(String, Vec<Bytes>)> {
    let mut grouped: Vec<(String, Vec<Bytes>)> = Vec::new();
    for (name, value) in pairs {
        match grouped.iter_mut().find(|(existing, _)| *existing == name) {
            Some(entry) => entry.1.push(value),
            None => grouped.push((name, vec![value])),
        }
    }
    grouped
}

/// Text from UTF-8 bytes, with Python's wording when they are not.
fn decode(name: &str, value: &[u8]) -> Result<String, ParamError> {
    match std::str::from_utf8(value) {
        Ok(text) => Ok(text.to_string()),
        Err(error) => Err(ParamError::Invalid {
            name: name.to_string(),
            reason: python_utf8_error(value, &error),
        }),
    }
}

/// `'utf-8' codec can't decode byte 0xff in position 0: invalid start byte`
fn python_utf8_error(value: &[u8], error: &std::str::Utf8Error) -> String {
    let position = error.valid_up_to();
    let byte = value.get(position).copied().unwrap_or(0);
    let reason = match error.error_len() {
        None => {
            // A sequence cut short by the end: Python names all its bytes.
            let last = value.len().saturating_sub(1);
            if last > position {
                return format!(
                    "'utf-8' codec can't decode bytes in position {position}-{last}: unexpected end of data"
                );
            }
            "unexpected end of data"
        }
        Some(_) if (0x80..0xC2).contains(&byte) || byte > 0xF4 => "invalid start byte",
        Some(_) => "invalid continuation byte",
    };
    format!("'utf-8' codec can't decode byte 0x{byte:02x} in position {position}: {reason}")
}

/// Splits `a=1&b=2` into raw byte values as Twisted (so Scrapyd) does:
/// `;` separates pairs as `&` does, a pair without `=` is dropped, `+` is
/// a space and `%XX` a byte. Values stay bytes, since an egg may arrive
/// this way; a name that is not UTF-8 is kept with its bytes replaced and
/// noted in `undecodable`. More than `max` pairs is an error, found before
/// the pair past the limit is decoded.
pub fn parse_urlencoded(
    input: &[u8],
    max: usize,
    undecodable: &mut Vec<(String, String)>,
) -> Result<Vec<(String, Bytes)>, ParamError> {
    let mut pairs = Vec::new();
    for pair in input
        .split(|&byte| byte == b'&' || byte == b';')
        .filter(|pair| !pair.is_empty())
    {
        let Some(index) = pair.iter().position(|&byte| byte == b'=') else {
            continue;
        };
        if pairs.len() == max {
            return Err(too_many());
        }
        let raw_name = form_decode(&pair[..index]);
        let name = match std::str::from_utf8(&raw_name) {
            Ok(name) => name.to_string(),
            Err(error) => {
                let name = String::from_utf8_lossy(&raw_name).into_owned();
                undecodable.push((name.clone(), python_utf8_error(&raw_name, &error)));
                name
            }
        };
        pairs.push((name, Bytes::from(form_decode(&pair[index + 1..]))));
    }
    Ok(pairs)
}

fn too_many() -> ParamError {
    ParamError::MalformedBody(format!("more than {MAX_PARAMS} parameters"))
}

fn form_decode(raw: &[u8]) -> Vec<u8> {
    let spaced: Vec<u8> = raw
        .iter()
        .map(|&b| if b == b'+' { b' ' } else { b })
        .collect();
    percent_encoding::percent_decode(&spaced).collect()
}

async fn parse_multipart(
    content_type: &str,
    body: Bytes,
    max: usize,
) -> Result<Vec<(String, Bytes)>, ParamError> {
    // Twisted answers a bare 400 when the type names no boundary or the
    // body holds none; it reads what it can of other broken bodies, which
    // are refused here with the API's error.
    let boundary = multer::parse_boundary(content_type).map_err(|e| {
        if content_type.to_ascii_lowercase().contains("boundary=") {
            ParamError::MalformedBody(e.to_string())
        } else {
            ParamError::BadMultipart(e.to_string())
        }
    })?;
    // A boundary is at most 70 characters (RFC 2046); a longer one would
    // make the search below cost the body's size times its length.
    if boundary.len() > 70 {
        return Err(ParamError::MalformedBody(format!(
            "a multipart boundary of {} characters, more than 70",
            boundary.len()
        )));
    }
    let delimiter = format!("--{boundary}");
    if memchr::memmem::find(&body, delimiter.as_bytes()).is_none() {
        return Err(ParamError::BadMultipart(format!(
            "no {delimiter} in the body"
        )));
    }
    let stream =
        futures_util::stream::once(async move { Ok::<Bytes, std::convert::Infallible>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut pairs = Vec::new();
    loop {
        let field = multipart
            .next_field()
            .await
            .map_err(|e| ParamError::MalformedBody(e.to_string()))?;
        let Some(field) = field else { break };
        if pairs.len() == max {
            return Err(too_many());
        }
        // A part without a name cannot be a parameter; browsers never send one.
        let Some(name) = field.name().map(str::to_string) else {
            continue;
        };
        let value = field
            .bytes()
            .await
            .map_err(|e| ParamError::MalformedBody(e.to_string()))?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Python's `float()` of bytes: surrounding whitespace allowed, `_`
/// between digits allowed, `inf`/`nan` in any case.
pub fn python_float(raw: &[u8]) -> Option<f64> {
    let text = std::str::from_utf8(raw).ok()?.trim();
    if text.is_empty() {
        return None;
    }
    let bytes = text.as_bytes();
    for (index, &byte) in bytes.iter().enumerate() {
        if byte == b'_' {
            let digit_before = index > 0 && bytes[index - 1].is_ascii_digit();
            let digit_after = bytes.get(index + 1).is_some_and(u8::is_ascii_digit);
            if !(digit_before && digit_after) {
                return None;
            }
        }
    }
    let cleaned = text.replace('_', "");
    let lower = cleaned.to_ascii_lowercase();
    let unsigned = lower.trim_start_matches(['+', '-']);
    let special = matches!(unsigned, "inf" | "infinity" | "nan");
    let numeric = unsigned
        .bytes()
        .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'+' | b'-'));
    if !(special || numeric) {
        return None;
    }
    cleaned.parse().ok()
}

/// Python's `repr()` of a bytes value: `b'x'`, `b"it's"`, `b'\xff'`.
pub fn python_bytes_repr(raw: &[u8]) -> String {
    let quote = if raw.contains(&b'\'') && !raw.contains(&b'"') {
        '"'
    } else {
        '\''
    };
    let mut out = format!("b{quote}");
    for &byte in raw {
        match byte {
            b'\\' => out.push_str("\\\\"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\'' if quote == '\'' => out.push_str("\\'"),
            0x20..=0x7e => out.push(byte as char),
            _ => out.push_str(&format!("\\x{byte:02x}")),
        }
    }
    out.push(quote);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(query: Option<&str>, content_type: Option<&str>, body: &'static [u8]) -> Params {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(Params::parse(query, content_type, Bytes::from_static(body)))
            .unwrap()
    }

    const FORM: Option<&str> = Some("application/x-www-form-urlencoded");

    #[test]
    fn body_wins_over_query_and_first_value_is_used() {
        let mut params = parse(
            Some("project=q&spider=s&a=1&a=2"),
            FORM,
            b"project=b&x=%41+b",
        );
        assert_eq!(params.required("project").unwrap(), "b");
        assert_eq!(params.required("spider").unwrap(), "s");
        assert_eq!(
            params.remaining().unwrap(),
            vec![
                ("a".to_string(), "1".to_string()),
                ("x".to_string(), "A b".to_string())
            ]
        );
    }

    #[test]
    fn missing_empty_and_repeated() {
        let mut params = parse(None, FORM, b"project=&setting=A%3D1&setting=B=2&flag");
        assert_eq!(params.required("project").unwrap(), "");
        assert_eq!(params.all("setting").unwrap(), vec!["A=1", "B=2"]);
        // No `=`: no parameter, as Twisted parses a form.
        assert_eq!(params.optional("flag").unwrap(), None);
        assert_eq!(
            params.required("spider").unwrap_err().to_string(),
            "'spider' parameter is required"
        );
    }

    #[test]
    fn forms_split_as_twisted_splits_them() {
        let mut params = parse(Some("jobid=q6;a=1"), FORM, b"b=2;c&=e");
        assert_eq!(params.required("jobid").unwrap(), "q6");
        assert_eq!(
            params.remaining().unwrap(),
            vec![
                ("a".to_string(), "1".to_string()),
                ("b".to_string(), "2".to_string()),
                (String::new(), "e".to_string())
            ]
        );
        // A spider argument's name or value that is not UTF-8: Python's
        // error, as Scrapyd gives it when it queues the job.
        for form in [&b"project=p&%FF=1"[..], b"project=p&arg=%FF"] {
            let mut params = parse(None, FORM, form);
            assert_eq!(params.required("project").unwrap(), "p");
            assert_eq!(
                params.remaining().unwrap_err().to_string(),
                "UnicodeDecodeError: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
            );
        }
    }

    #[test]
    fn raw_bytes_survive_urlencoding() {
        let mut params = parse(None, FORM, b"egg=PK%03%04%FF%00");
        assert_eq!(
            &params.required_bytes("egg").unwrap()[..],
            b"PK\x03\x04\xff\x00"
        );
    }

    #[test]
    fn multipart_fields_and_files() {
        let body: &'static [u8] =
            b"--XX\r\nContent-Disposition: form-data; name=\"project\"\r\n\r\np1\r\n\
--XX\r\nContent-Disposition: form-data; name=\"egg\"; filename=\"a/b/c.egg\"\r\n\
Content-Type: application/octet-stream\r\n\r\nPK\x03\x04\r\n--XX--\r\n";
        let mut params = parse(None, Some("multipart/form-data; boundary=XX"), body);
        assert_eq!(params.required("project").unwrap(), "p1");
        assert_eq!(&params.required_bytes("egg").unwrap()[..], b"PK\x03\x04");
    }

    #[test]
    fn too_many_parameters_are_refused() {
        let query = "a=1&".repeat(MAX_PARAMS + 1);
        let parsed = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(Params::parse(Some(&query), None, Bytes::new()));
        assert!(matches!(parsed, Err(ParamError::MalformedBody(_))));
    }

    #[test]
    fn invalid_utf8_is_reported_like_python() {
        let mut params = parse(Some("project=%FF"), None, b"");
        assert_eq!(
            params.required("project").unwrap_err().to_string(),
            "project is invalid: 'utf-8' codec can't decode byte 0xff in position 0: invalid start byte"
        );
        let mut params = parse(Some("project=a%F0%90%80"), None, b"");
        assert_eq!(
            params.required("project").unwrap_err().to_string(),
            "project is invalid: 'utf-8' codec can't decode bytes in position 1-3: unexpected end of data"
        );
    }

    #[test]
    fn floats_like_python() {
        assert_eq!(python_float(b" 1.5 "), Some(1.5));
        assert_eq!(python_float(b"-2"), Some(-2.0));
        assert_eq!(python_float(b"1_000"), Some(1000.0));
        assert_eq!(python_float(b"1e3"), Some(1000.0));
        assert!(python_float(b"inf").unwrap().is_infinite());
        assert_eq!(python_float(b"x"), None);
        assert_eq!(python_float(b""), None);
        assert_eq!(python_float(b"_1"), None);
        assert_eq!(python_float(b"0x10"), None);
    }

    #[test]
    fn bytes_repr_like_python() {
        assert_eq!(python_bytes_repr(b"x"), "b'x'");
        assert_eq!(python_bytes_repr(b"it's"), "b\"it's\"");
        assert_eq!(python_bytes_repr(b"\xff\n"), "b'\\xff\\n'");
        let mut params = parse(Some("priority=x"), None, b"");
        assert_eq!(
            params
                .optional_float("priority", 0.0)
                .unwrap_err()
                .to_string(),
            "priority is invalid: could not convert string to float: b'x'"
        );
    }
}
