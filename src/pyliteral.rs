//! Python literals as JSON: what `pprint.pformat` makes of Scrapy's stats
//! (dicts, lists, tuples, strings, numbers, `True`/`False`/`None`, and
//! `datetime.datetime(…)`, which becomes milliseconds since the epoch, as
//! Scrapy Cloud stores stats times).

use serde_json::{Map, Number, Value};

/// Parses one Python literal; `None` when the text is not one.
pub fn parse(text: &str) -> Option<Value> {
    let mut parser = Parser {
        text: text.as_bytes(),
        at: 0,
    };
    let value = parser.value()?;
    parser.space();
    (parser.at == parser.text.len()).then_some(value)
}

struct Parser<'a> {
    text: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn space(&mut self) {
        while self.at < self.text.len() && self.text[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.space();
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, token: &str) -> bool {
        self.space();
        if self.text[self.at..].starts_with(token.as_bytes()) {
            self.at += token.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Value> {
        match self.peek()? {
            b'{' => self.dict(),
            b'[' => self.sequence(b'[', b']'),
            b'(' => self.sequence(b'(', b')'),
            b'\'' | b'"' => self.string().map(Value::from),
            b'-' | b'0'..=b'9' => self.number(),
            _ if self.eat("True") => Some(Value::Bool(true)),
            _ if self.eat("False") => Some(Value::Bool(false)),
            _ if self.eat("None") => Some(Value::Null),
            _ if self.eat("datetime.datetime(") => self.datetime(),
            _ => None,
        }
    }

    fn dict(&mut self) -> Option<Value> {
        self.eat("{");
        let mut map = Map::new();
        loop {
            if self.eat("}") {
                return Some(Value::Object(map));
            }
            let key = match self.value()? {
                Value::String(key) => key,
                other => other.to_string(),
            };
            if !self.eat(":") {
                return None;
            }
            map.insert(key, self.value()?);
            if !self.eat(",") && self.peek()? != b'}' {
                return None;
            }
        }
    }

    fn sequence(&mut self, open: u8, close: u8) -> Option<Value> {
        self.at += 1;
        let _ = open;
        let mut items = Vec::new();
        loop {
            if self.peek()? == close {
                self.at += 1;
                return Some(Value::Array(items));
            }
            items.push(self.value()?);
            if !self.eat(",") && self.peek()? != close {
                return None;
            }
        }
    }

    /// A quoted string; adjacent strings join, as pprint splits long ones.
    fn string(&mut self) -> Option<String> {
        let mut joined = String::new();
        while matches!(self.peek(), Some(b'\'' | b'"')) {
            let quote = self.text[self.at];
            self.at += 1;
            let mut bytes = Vec::new();
            loop {
                let byte = *self.text.get(self.at)?;
                self.at += 1;
                match byte {
                    b'\\' => {
                        let escaped = *self.text.get(self.at)?;
                        self.at += 1;
                        match escaped {
                            b'n' => bytes.push(b'\n'),
                            b't' => bytes.push(b'\t'),
                            b'r' => bytes.push(b'\r'),
                            b'x' => {
                                let hex = std::str::from_utf8(self.text.get(self.at..self.at + 2)?)
                                    .ok()?;
                                self.at += 2;
                                let code = u32::from_str_radix(hex, 16).ok()?;
                                let mut buffer = [0; 4];
                                bytes.extend_from_slice(
                                    char::from_u32(code)?.encode_utf8(&mut buffer).as_bytes(),
                                );
                            }
                            other => bytes.push(other),
                        }
                    }
                    _ if byte == quote => break,
                    _ => bytes.push(byte),
                }
            }
            joined.push_str(&String::from_utf8(bytes).ok()?);
        }
        Some(joined)
    }

    fn number(&mut self) -> Option<Value> {
        self.space();
        let start = self.at;
        while self.at < self.text.len()
            && matches!(
                self.text[self.at],
                b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9' | b'_'
            )
        {
            self.at += 1;
        }
        let text = std::str::from_utf8(&self.text[start..self.at])
            .ok()?
            .replace('_', "");
        if let Ok(integer) = text.parse::<i64>() {
            return Some(Value::from(integer));
        }
        text.parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
    }

    /// `datetime.datetime(Y, M, D, h, m, s, µs, tzinfo=…)` after its `(`:
    /// milliseconds since the epoch, UTC unless another zone is named.
    fn datetime(&mut self) -> Option<Value> {
        let mut parts = Vec::new();
        loop {
            match self.peek()? {
                b')' => {
                    self.at += 1;
                    break;
                }
                b'-' | b'0'..=b'9' => parts.push(self.number()?.as_i64()?),
                _ => {
                    // `tzinfo=…`: skip to the closing parenthesis.
                    let mut depth = 0;
                    while let Some(&byte) = self.text.get(self.at) {
                        match byte {
                            b'(' => depth += 1,
                            b')' if depth == 0 => break,
                            b')' => depth -= 1,
                            _ => {}
                        }
                        self.at += 1;
                    }
                }
            }
            self.eat(",");
        }
        let get = |index: usize| parts.get(index).copied().unwrap_or(0);
        let date = chrono::NaiveDate::from_ymd_opt(get(0) as i32, get(1) as u32, get(2) as u32)?;
        let time =
            date.and_hms_micro_opt(get(3) as u32, get(4) as u32, get(5) as u32, get(6) as u32)?;
        Some(Value::from(time.and_utc().timestamp_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn scrapy_stats_as_pprint_writes_them() {
        let text = "{'downloader/request_bytes': 215,\n 'elapsed_time_seconds': 0.5,\n \
                    'finish_reason': 'finished',\n 'finish_time': datetime.datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=datetime.timezone.utc),\n \
                    'log_count/INFO': 10,\n 'memusage/startup': 83267584,\n 'nested': [1, (2, 3), None, True],\n \
                    'long': 'a'\n         'b'}";
        assert_eq!(
            parse(text).unwrap(),
            json!({
                "downloader/request_bytes": 215,
                "elapsed_time_seconds": 0.5,
                "finish_reason": "finished",
                "finish_time": 1767323045600i64,
                "log_count/INFO": 10,
                "memusage/startup": 83267584,
                "nested": [1, [2, 3], null, true],
                "long": "ab",
            })
        );
        assert_eq!(parse("{}"), Some(json!({})));
        assert_eq!(parse("{'a': }"), None);
        assert_eq!(parse("nonsense"), None);
    }
}
