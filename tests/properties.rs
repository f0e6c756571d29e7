//! Property tests of the pure parts that read hostile input: version
//! ordering, request parameters (urlencoded and multipart) and egg checks.

use std::cmp::Ordering;
use std::io::Write;

use bytes::Bytes;
use proptest::prelude::*;
use scrapyd_rs::eggs::{EggLimits, inspect_egg, unpack_egg};
use scrapyd_rs::http::params::{Params, parse_urlencoded};
use scrapyd_rs::version::compare_versions;

/// Version-like strings: digits, dots, letters and a few odd characters,
/// so that runs of digits and text meet in every combination.
fn version_text() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[0-9a-z.\\-_]{0,12}|[0-9]{1,25}|.{0,8}").unwrap()
}

proptest! {
    #[test]
    fn version_order_is_antisymmetric(a in version_text(), b in version_text()) {
        prop_assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
        prop_assert_eq!(compare_versions(&a, &b) == Ordering::Equal, a == b);
    }

    #[test]
    fn version_order_is_transitive(a in version_text(), b in version_text(), c in version_text()) {
        let mut sorted = [a, b, c];
        sorted.sort_by(|x, y| compare_versions(x, y));
        prop_assert_ne!(compare_versions(&sorted[0], &sorted[1]), Ordering::Greater);
        prop_assert_ne!(compare_versions(&sorted[1], &sorted[2]), Ordering::Greater);
        prop_assert_ne!(compare_versions(&sorted[0], &sorted[2]), Ordering::Greater);
    }

    #[test]
    fn urlencoded_round_trips(pairs in proptest::collection::vec(("[a-z_]{1,6}", proptest::collection::vec(any::<u8>(), 0..20)), 0..10)) {
        let encoded: Vec<String> = pairs
            .iter()
            .map(|(name, value)| {
                let value: String = percent_encoding::percent_encode(value, percent_encoding::NON_ALPHANUMERIC).to_string();
                format!("{name}={value}")
            })
            .collect();
        let parsed = parse_urlencoded(encoded.join("&").as_bytes(), 1000, &mut Vec::new()).unwrap();
        let expected: Vec<(String, Bytes)> = pairs.into_iter().map(|(n, v)| (n, Bytes::from(v))).collect();
        prop_assert_eq!(parsed, expected);
    }

    #[test]
    fn urlencoded_never_panics(input in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_urlencoded(&input, 1000, &mut Vec::new());
    }

    #[test]
    fn multipart_round_trips(fields in proptest::collection::vec(("[a-z]{1,6}", proptest::collection::vec(any::<u8>(), 0..40)), 1..6)) {
        let boundary = "b0undaryXYZ";
        let mut body = Vec::new();
        for (name, value) in &fields {
            write!(body, "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"x/y.egg\"\r\n\r\n").unwrap();
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        write!(body, "--{boundary}--\r\n").unwrap();
        let content_type = format!("multipart/form-data; boundary={boundary}");
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let mut params = runtime.block_on(Params::parse(None, Some(&content_type), Bytes::from(body))).unwrap();
        // The first value of each name is the one an endpoint reads.
        let mut seen = std::collections::HashSet::new();
        for (name, value) in &fields {
            if seen.insert(name.clone()) {
                prop_assert_eq!(&params.required_bytes(name).unwrap()[..], &value[..]);
            }
        }
    }

    #[test]
    fn multipart_garbage_is_an_error_not_a_panic(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let _ = runtime.block_on(Params::parse(None, Some("multipart/form-data; boundary=zz"), Bytes::from(body)));
    }

    #[test]
    fn egg_check_never_panics(egg in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = inspect_egg(&egg, &EggLimits::default());
    }

    #[test]
    fn unpacking_never_writes_outside_its_folder(names in proptest::collection::vec("[a-z./\\\\]{1,12}", 1..6)) {
        let mut egg = Vec::new();
        {
            let mut zip = zip::ZipWriter::new(std::io::Cursor::new(&mut egg));
            let options = zip::write::SimpleFileOptions::default();
            zip.start_file("EGG-INFO/entry_points.txt", options).unwrap();
            zip.write_all(b"[scrapy]\nsettings = p.settings\n").unwrap();
            for name in &names {
                if zip.start_file(name.as_str(), options).is_ok() {
                    zip.write_all(b"x").unwrap();
                }
            }
            zip.finish().unwrap();
        }
        let root = tempfile::tempdir().unwrap();
        let parent = root.path().join("project");
        std::fs::create_dir(&parent).unwrap();
        let dest = parent.join("version");
        let result = unpack_egg(&egg, &dest, &EggLimits::default());
        // Whatever happened, nothing exists beside the project folder, and
        // the project folder holds the egg folder or nothing at all.
        let outside: Vec<_> = std::fs::read_dir(root.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        prop_assert_eq!(outside, vec![std::ffi::OsString::from("project")]);
        let inside: Vec<_> = std::fs::read_dir(&parent).unwrap().map(|e| e.unwrap().file_name()).collect();
        if result.is_ok() {
            prop_assert_eq!(inside, vec![std::ffi::OsString::from("version")]);
        } else {
            prop_assert!(inside.is_empty());
        }
    }
}
