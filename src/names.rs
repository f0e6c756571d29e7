//! Names that become paths. Every project, spider and job name is checked
//! here before any path is built from it, and versions (kept exactly as
//! uploaded) get a folder name that cannot leave its folder.

use std::fmt::Write;

/// The longest name accepted as one path component, in bytes.
pub const MAX_NAME_BYTES: usize = 200;

/// A name that would leave its folder. The message is Scrapyd's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("DirectoryTraversalError: {0}")]
pub struct DirectoryTraversal(pub String);

/// Whether `name` can be used as one path component inside a folder:
/// not empty, not `.` or `..`, no separator, no control character (NUL
/// included: it would cut the path short), not too long.
pub fn is_safe_component(name: &str) -> bool {
    !name.is_empty()
        && name != "."
        && name != ".."
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
        && name.len() <= MAX_NAME_BYTES
}

/// Checks a project name.
pub fn check_project(project: &str) -> Result<(), DirectoryTraversal> {
    if is_safe_component(project) {
        Ok(())
    } else {
        Err(DirectoryTraversal(project.to_string()))
    }
}

/// Checks a version name. Versions keep their exact text and are stored
/// under [`version_dir_name`], so any text is safe on disk (Scrapyd takes
/// `r12-feature/login`, as scrapyd-deploy's `version = GIT` makes from a
/// branch name); only an empty name, which names no upload, one with a
/// NUL byte, which no crawl could be given (as `_version` and
/// `SCRAPYD_EGG_VERSION`), and one past [`MAX_VERSION_BYTES`] are refused.
pub fn check_version(version: &str) -> Result<(), DirectoryTraversal> {
    if version.is_empty() || version.contains('\0') || version.len() > MAX_VERSION_BYTES {
        Err(DirectoryTraversal(version.to_string()))
    } else {
        Ok(())
    }
}

/// The longest version name taken: far past any real one (a file system
/// takes names of 255 bytes; longer versions get a generated folder name).
pub const MAX_VERSION_BYTES: usize = 1024;

/// Checks the three parts of a job's file path (`project/spider/job`), as
/// Scrapyd does before writing a log or items file.
pub fn check_job_path(project: &str, spider: &str, job: &str) -> Result<(), DirectoryTraversal> {
    if [project, spider, job]
        .iter()
        .all(|part| is_safe_component(part))
    {
        Ok(())
    } else {
        Err(DirectoryTraversal(format!("{project}/{spider}/{job}")))
    }
}

/// The folder name of a version (its egg is that name and `.egg`).
/// Versions are returned exactly as uploaded, so the name is an injective
/// encoding: letters, digits, `-`, `_` and `.` stay, every other byte
/// becomes `%XX`. A dot becomes `%2E` too where it would start the name
/// (a hidden file, `.`, `..`, the staging files), end it in `.egg` (the
/// folder of `a.egg` would be the egg of `a`) or make it `scrapy.cfg`
/// (the project's own file).
pub fn version_dir_name(version: &str) -> String {
    let last_dot = version.len().wrapping_sub(4);
    let egg_suffix = version.ends_with(".egg");
    let mut name = String::with_capacity(version.len());
    for (index, byte) in version.bytes().enumerate() {
        let keep = byte.is_ascii_alphanumeric()
            || byte == b'-'
            || byte == b'_'
            || (byte == b'.'
                && index > 0
                && !(egg_suffix && index == last_dot)
                && version != "scrapy.cfg");
        if keep {
            name.push(byte as char);
        } else {
            let _ = write!(name, "%{byte:02X}");
        }
    }
    if name.is_empty() {
        // The empty version still needs a folder of its own.
        name.push('%');
    }
    name
}

/// The name Scrapyd 1.6 gives a version: its egg is stored as
/// `<name>.egg`, every character outside `A-Za-z0-9_-` replaced by `_`
/// (`1.0` is `1_0`). Versions here keep their exact text; this is only for
/// finding a version by the name a Scrapyd client knows it under.
pub fn scrapyd_version_name(version: &str) -> String {
    version
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_names() {
        assert!(check_project("myproject").is_ok());
        assert!(check_project("my project é").is_ok());
        for bad in [
            "", ".", "..", "../p", "a/b", "a\\b", "a\0b", "a\nb", "\u{7f}",
        ] {
            assert_eq!(check_project(bad), Err(DirectoryTraversal(bad.to_string())));
        }
        assert_eq!(
            check_project("../p").unwrap_err().to_string(),
            "DirectoryTraversalError: ../p"
        );
        assert!(check_project(&"x".repeat(MAX_NAME_BYTES + 1)).is_err());
    }

    #[test]
    fn job_paths() {
        assert!(check_job_path("p", "s", "0123abcd").is_ok());
        assert_eq!(
            check_job_path("p", "s", "../x").unwrap_err().to_string(),
            "DirectoryTraversalError: p/s/../x"
        );
    }

    #[test]
    fn version_folders_are_safe_and_distinct() {
        assert_eq!(version_dir_name("1.0"), "1.0");
        assert_eq!(version_dir_name("r23-master_x"), "r23-master_x");
        assert_eq!(version_dir_name(".."), "%2E.");
        // No folder is another version's egg, nor the project's scrapy.cfg.
        assert_eq!(version_dir_name("a.egg"), "a%2Eegg");
        assert_eq!(version_dir_name("a.egg.egg"), "a.egg%2Eegg");
        assert_eq!(version_dir_name("scrapy.cfg"), "scrapy%2Ecfg");
        assert_eq!(version_dir_name("r12-feature/login"), "r12-feature%2Flogin");
        assert_eq!(version_dir_name("a/b"), "a%2Fb");
        assert_eq!(version_dir_name(""), "%");
        assert_ne!(version_dir_name("1.0"), version_dir_name("1_0"));
        assert_ne!(version_dir_name("a%2Fb"), version_dir_name("a/b"));
        for version in ["..", ".", "/", "a/../b", "\0", "é"] {
            assert!(is_safe_component(&version_dir_name(version)));
        }
    }

    #[test]
    fn scrapyd_version_names() {
        assert_eq!(scrapyd_version_name("1.0"), "1_0");
        assert_eq!(scrapyd_version_name("r23-master_x"), "r23-master_x");
        assert_eq!(scrapyd_version_name("r1.0+x"), "r1_0_x");
        assert_eq!(scrapyd_version_name("a/b c"), "a_b_c");
        // One `_` per character, as Python's `re.sub` on a str.
        assert_eq!(scrapyd_version_name("é1"), "_1");
    }
}
