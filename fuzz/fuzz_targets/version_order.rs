//! The version order must be a total order for any three strings.
#![no_main]

use std::cmp::Ordering;

use libfuzzer_sys::fuzz_target;
use scrapyd_rs::version::compare_versions;

fuzz_target!(|texts: (String, String, String)| {
    let (a, b, c) = texts;
    assert_eq!(compare_versions(&a, &b), compare_versions(&b, &a).reverse());
    assert_eq!(compare_versions(&a, &b) == Ordering::Equal, a == b);
    if compare_versions(&a, &b) != Ordering::Greater
        && compare_versions(&b, &c) != Ordering::Greater
    {
        assert_ne!(compare_versions(&a, &c), Ordering::Greater);
    }
});
