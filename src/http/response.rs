//! Building answers: Scrapyd's JSON envelope with its CORS headers, and the
//! few fixed pages (401, 404).

use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};
use serde_json::{Map, Value};

use super::HttpResponse;
use super::body::{self, Body};

/// The methods an endpoint accepts, as `Allow` lists them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Methods {
    Get,
    Post,
}

impl Methods {
    pub fn allow(self) -> &'static str {
        match self {
            Methods::Get => "OPTIONS, HEAD, GET",
            Methods::Post => "OPTIONS, HEAD, POST",
        }
    }

    /// The message of Twisted's UnsupportedMethod, which Scrapyd answers.
    /// Twisted lists the resource's `render_*` methods in the order its
    /// classes define them, base classes first: `HEAD` (twisted's
    /// `Resource`), `OPTIONS` (Scrapyd's `WsResource`), then the endpoint's
    /// own `GET` or `POST`. Not sorted.
    pub fn unsupported_message(self) -> &'static str {
        match self {
            Methods::Get => "UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'GET']",
            Methods::Post => "UnsupportedMethod: Expected one of [b'HEAD', b'OPTIONS', b'POST']",
        }
    }
}

fn with_cors(mut response: HttpResponse, methods: Methods) -> HttpResponse {
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(methods.allow()),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With"),
    );
    response
}

/// A JSON answer, HTTP 200 whatever it says, with Scrapyd's headers.
fn json_response<'a>(
    entries: impl IntoIterator<Item = (&'a str, &'a Value)>,
    methods: Methods,
) -> HttpResponse {
    let mut body = crate::pyjson::object_to_vec(entries);
    body.push(b'\n');
    json_stream(body::full(body), methods)
}

/// A JSON answer with Scrapyd's headers around any body (whole, or sent
/// in chunks).
pub fn json_stream(body: Body, methods: Methods) -> HttpResponse {
    let response = Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .unwrap_or_default();
    with_cors(response, methods)
}

/// A JSON answer of `length` bytes; `body` holds them, or nothing for
/// the answer to `HEAD`, which gives the length of what it leaves out.
pub fn json_sized(body: Body, length: u64, methods: Methods) -> HttpResponse {
    let mut response = json_stream(body, methods);
    response
        .headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}

/// Success: `fields`, then `status`, then `node_name`.
pub fn json_ok(fields: Map<String, Value>, node_name: &str, methods: Methods) -> HttpResponse {
    let (status, node_name) = (Value::from("ok"), Value::from(node_name));
    let entries = fields.iter().map(|(key, value)| (key.as_str(), value));
    json_response(
        entries.chain([("status", &status), ("node_name", &node_name)]),
        methods,
    )
}

/// Scrapyd's error answer: HTTP 200 with `status: error`, then `message`,
/// then `node_name`.
pub fn json_error(message: &str, node_name: &str, methods: Methods) -> HttpResponse {
    let (status, message, node_name) = (
        Value::from("error"),
        Value::from(message),
        Value::from(node_name),
    );
    json_response(
        [
            ("status", &status),
            ("message", &message),
            ("node_name", &node_name),
        ],
        methods,
    )
}

/// With `debug` on, Scrapyd answers errors with the error's text itself.
pub fn debug_error(text: String, methods: Methods) -> HttpResponse {
    let response = Response::builder()
        .body(body::full(text))
        .unwrap_or_default();
    with_cors(response, methods)
}

/// The answer to `OPTIONS`: 204 with `Allow`.
pub fn options(methods: Methods) -> HttpResponse {
    let response = Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header(header::ALLOW, methods.allow())
        .body(body::empty())
        .unwrap_or_default();
    with_cors(response, methods)
}

pub fn unauthorized() -> HttpResponse {
    Response::builder()
        .status(StatusCode::UNAUTHORIZED)
        .header(header::WWW_AUTHENTICATE, "Basic realm=\"Scrapyd\"")
        .header(header::CONTENT_TYPE, "text/html")
        .body(body::full(&b"Unauthorized"[..]))
        .unwrap_or_default()
}

pub fn not_found() -> HttpResponse {
    html(
        StatusCode::NOT_FOUND,
        "<html>\n  <head><title>404 - No Such Resource</title></head>\n  <body>\n    \
         <h1>No Such Resource</h1>\n    <p>No such child resource.</p>\n  </body>\n</html>\n"
            .to_string(),
    )
}

pub fn method_not_allowed() -> HttpResponse {
    plain(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed\n")
}

pub fn html(status: StatusCode, body: String) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
        .body(body::full(body))
        .unwrap_or_default()
}

pub fn plain(status: StatusCode, body: &'static str) -> HttpResponse {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(body::full(body.as_bytes()))
        .unwrap_or_default()
}
