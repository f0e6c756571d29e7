//! Any bytes as an egg: checked and unpacked without a panic, and nothing
//! written outside the destination's parent folder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scrapyd_rs::eggs::{EggLimits, inspect_egg, unpack_egg};

fuzz_target!(|egg: &[u8]| {
    let limits = EggLimits {
        max_unpacked_bytes: 1 << 20,
        max_entries: 100,
    };
    if inspect_egg(egg, &limits).is_ok() {
        let root = tempfile_root();
        let _ = unpack_egg(egg, &root.join("version"), &limits);
        let _ = std::fs::remove_dir_all(&root);
    }
});

fn tempfile_root() -> std::path::PathBuf {
    let root = std::env::temp_dir().join(format!("egg-fuzz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    std::fs::create_dir_all(&root).unwrap();
    root
}
