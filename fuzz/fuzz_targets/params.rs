//! Request parameters from any query, content type and body: an answer or
//! an error, never a panic.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use scrapyd_rs::http::params::Params;

fuzz_target!(|input: (String, bool, Vec<u8>)| {
    let (query, multipart, body) = input;
    let content_type = if multipart {
        "multipart/form-data; boundary=zz"
    } else {
        "application/x-www-form-urlencoded"
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    if let Ok(mut params) = runtime.block_on(Params::parse(
        Some(&query),
        Some(content_type),
        Bytes::from(body),
    )) {
        let _ = params.optional_float("priority", 0.0);
        let _ = params.all("setting");
        let _ = params.required("project");
        let _ = params.remaining();
    }
});
