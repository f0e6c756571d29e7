//! Checking and unpacking Scrapy project eggs.
//!
//! An egg is the ZIP that `scrapyd-deploy` (setuptools `bdist_egg`) builds:
//! the project's packages plus `EGG-INFO/`, whose `entry_points.txt` names
//! the project's settings module in a `[scrapy]` section. Eggs come from the
//! network, so before anything is written every entry is checked: its path
//! must stay inside the egg folder, it must be a plain file or folder, and the
//! archive must stay within [`EggLimits`]. Unpacking then happens in a
//! temporary sibling folder that is renamed into place only once every byte
//! was written and checked, so the egg folder either is complete or does not
//! exist.
//!
//! This module knows nothing about HTTP or the store; the caller decides
//! where eggs live and what to do with the errors.

use std::collections::HashSet;
use std::fs::{self, DirBuilder, OpenOptions, Permissions};
use std::io::{self, Cursor, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use zip::{CompressionMethod, ZipArchive};

/// Where setuptools puts the entry points, relative to the egg root.
const ENTRY_POINTS_PATH: &str = "EGG-INFO/entry_points.txt";

/// A real `entry_points.txt` is a few hundred bytes; the cap keeps a hostile
/// one from being read into memory whole.
const MAX_ENTRY_POINTS_BYTES: u64 = 1024 * 1024;

/// Unix file-type bits of a ZIP entry's mode, and the value for a symlink.
const FILE_TYPE_MASK: u32 = 0o170_000;
const SYMLINK_TYPE: u32 = 0o120_000;

/// Modes for what is unpacked: readable by the crawl processes whatever
/// the archive asked for, and never executable or setuid.
const FILE_MODE: u32 = 0o644;
const FOLDER_MODE: u32 = 0o755;

/// Size of the buffer entries are copied through while unpacking.
const COPY_BUFFER_BYTES: usize = 64 * 1024;

/// How big an egg may get once unpacked.
#[derive(Debug, Clone)]
pub struct EggLimits {
    /// Total bytes of all files, counted as they are decompressed.
    pub max_unpacked_bytes: u64,
    /// Entries (files and folders) in the archive.
    pub max_entries: usize,
}

impl Default for EggLimits {
    /// Far above any real Scrapy project, far below what fills a disk.
    fn default() -> Self {
        EggLimits {
            max_unpacked_bytes: 512 * 1024 * 1024,
            max_entries: 20_000,
        }
    }
}

/// What the daemon needs to know about an egg to run its crawls.
#[derive(Debug, Clone, PartialEq)]
pub struct EggInfo {
    /// The dotted module named by `settings` in the `[scrapy]` entry points,
    /// e.g. `myproject.settings`; becomes `SCRAPY_SETTINGS_MODULE`.
    pub settings_module: String,
}

/// Why an egg was refused. Entry names in messages have control characters
/// escaped, so a message is always one printable line.
#[derive(Debug, thiserror::Error)]
pub enum EggError {
    #[error("egg is not a ZIP file (if using curl, use egg=@path not egg=path)")]
    NotZip,
    #[error(
        "egg has no EGG-INFO/entry_points.txt; build it with scrapyd-deploy \
         or `python setup.py bdist_egg`"
    )]
    MissingEntryPoints,
    #[error("egg's EGG-INFO/entry_points.txt cannot be used: {reason}")]
    BadEntryPoints { reason: String },
    #[error(
        "egg's EGG-INFO/entry_points.txt has no `settings = <module>` line in a [scrapy] section"
    )]
    NoScrapySettings,
    #[error(
        "settings module '{module}' in the egg's EGG-INFO/entry_points.txt \
         is not a dotted Python module name"
    )]
    InvalidSettingsModule { module: String },
    #[error("egg entry '{name}' would be written outside the egg folder")]
    EntryOutsideFolder { name: String },
    #[error("egg entry '{name}' has an unsafe name: it {reason}")]
    UnsafeEntryName { name: String, reason: &'static str },
    #[error("egg entry '{name}' is a symbolic link; eggs may hold only files and folders")]
    SymlinkEntry { name: String },
    #[error("egg entry '{name}' appears more than once")]
    DuplicateEntry { name: String },
    /// Two entries with byte-identical names; the ZIP reader keeps only one
    /// of them, so which name it was is not known.
    #[error("egg has two entries with exactly the same name")]
    DuplicateEntryName,
    #[error("egg entry '{name}' is a file, but other entries need a folder of that name")]
    FileFolderConflict { name: String },
    #[error("egg has {count} entries, more than the limit of {limit}")]
    TooManyEntries { count: usize, limit: usize },
    #[error("egg unpacks to more than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("egg entry '{name}' is encrypted; eggs must not be")]
    EncryptedEntry { name: String },
    #[error(
        "egg entry '{name}' uses {method} compression; \
         only stored and deflated entries are supported"
    )]
    UnsupportedCompression { name: String, method: String },
    #[error("egg entry '{name}' is corrupt or truncated: {detail}")]
    CorruptEntry { name: String, detail: String },
    #[error("egg folder {} already exists", .path.display())]
    DestinationExists { path: PathBuf },
    #[error("cannot {action} {}: {source}", .path.display())]
    Io {
        /// What was being done, e.g. "write egg file".
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Checks only that the egg is a ZIP archive, Scrapyd's one check of an
/// upload, which comes before the names are checked.
pub fn check_zip(egg: &[u8]) -> Result<(), EggError> {
    open_archive(egg).map(drop)
}

/// Checks the whole egg without writing anything: every entry's name, type
/// and declared size, the entry count, and the settings module named in
/// `EGG-INFO/entry_points.txt`.
///
/// Declared sizes can lie; [`unpack_egg`] counts real bytes as well.
pub fn inspect_egg(egg: &[u8], limits: &EggLimits) -> Result<EggInfo, EggError> {
    let mut archive = open_archive(egg)?;
    let entries = check_entries(&archive, limits)?;
    read_egg_info(&mut archive, &entries)
}

/// Checks the egg as [`inspect_egg`] does, then unpacks it into `dest`, which
/// must not exist yet (its parent must).
///
/// Entries are written into a temporary folder next to `dest`, which becomes
/// `dest` by a rename only after every entry was written and its CRC checked.
/// On any error the temporary folder is removed and `dest` is not created.
/// Files get mode 0644 and folders 0755, whatever the archive says.
pub fn unpack_egg(egg: &[u8], dest: &Path, limits: &EggLimits) -> Result<EggInfo, EggError> {
    ensure_absent(dest)?;
    let mut archive = open_archive(egg)?;
    let entries = check_entries(&archive, limits)?;
    let info = read_egg_info(&mut archive, &entries)?;

    // A sibling of `dest` is on the same filesystem, so the final rename is
    // atomic: nobody ever sees a half-unpacked egg under the real name.
    let parent = match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".egg-unpacking-")
        .tempdir_in(parent)
        .map_err(io_error("create a temporary folder in", parent))?;
    write_entries(&mut archive, &entries, staging.path(), limits)?;

    // The staging folder is created 0700, which keeps the half-written egg
    // private; the finished one must be readable like any other folder.
    fs::set_permissions(staging.path(), Permissions::from_mode(FOLDER_MODE))
        .map_err(io_error("set permissions of", staging.path()))?;
    match fs::rename(staging.path(), dest) {
        Ok(()) => {
            // The folder now lives at `dest`; stop the guard from removing
            // whatever might later appear under the old temporary name.
            let _old_temporary_path = staging.keep();
            Ok(info)
        }
        // Someone created `dest` while we were unpacking.
        Err(error)
            if matches!(
                error.kind(),
                io::ErrorKind::AlreadyExists | io::ErrorKind::DirectoryNotEmpty
            ) =>
        {
            Err(EggError::DestinationExists {
                path: dest.to_path_buf(),
            })
        }
        Err(error) => Err(io_error("move the unpacked egg to", dest)(error)),
    }
}

type EggArchive<'a> = ZipArchive<Cursor<&'a [u8]>>;

/// An entry that passed every check, and where it goes under the egg folder.
struct CheckedEntry {
    /// Position in the archive's central directory.
    index: usize,
    /// The name as shown in error messages.
    shown_name: String,
    /// Relative, normalised path: only plain components, never empty.
    path: PathBuf,
    is_folder: bool,
}

fn open_archive(egg: &[u8]) -> Result<EggArchive<'_>, EggError> {
    ZipArchive::new(Cursor::new(egg)).map_err(|_| EggError::NotZip)
}

fn ensure_absent(dest: &Path) -> Result<(), EggError> {
    // `symlink_metadata` so that even a dangling symlink counts as taken.
    match fs::symlink_metadata(dest) {
        Ok(_) => Err(EggError::DestinationExists {
            path: dest.to_path_buf(),
        }),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(io_error("check", dest)(error)),
    }
}

/// Checks everything the central directory says about the entries, in
/// archive order, and returns the entries to unpack.
fn check_entries(
    archive: &EggArchive<'_>,
    limits: &EggLimits,
) -> Result<Vec<CheckedEntry>, EggError> {
    if archive.len() > limits.max_entries {
        return Err(EggError::TooManyEntries {
            count: archive.len(),
            limit: limits.max_entries,
        });
    }
    if archive.has_duplicate_names() {
        return Err(EggError::DuplicateEntryName);
    }

    let mut declared_bytes: u64 = 0;
    let mut seen_paths: HashSet<PathBuf> = HashSet::new();
    // Every path that must be a folder: explicit folder entries and the
    // parents of every entry.
    let mut folder_paths: HashSet<PathBuf> = HashSet::new();
    let mut entries = Vec::with_capacity(archive.len());

    for index in 0..archive.len() {
        let entry = archive
            .by_index_data(index)
            .map_err(|error| EggError::CorruptEntry {
                name: format!("number {index}"),
                detail: error.to_string(),
            })?;
        let name = entry.name().map_err(|_| EggError::UnsafeEntryName {
            name: shown_name(&String::from_utf8_lossy(entry.name_raw())),
            reason: "cannot be decoded as text",
        })?;
        let shown_name = shown_name(&name);
        let (path, is_folder) = relative_path(&name, &shown_name)?;
        if path.as_os_str().is_empty() {
            // A folder entry for the egg root itself (`./`): nothing to do.
            continue;
        }
        // A second opinion from the zip crate, which parses names with
        // Windows rules too and so also refuses drive prefixes like `a/c:x`.
        if entry.enclosed_name().is_none() {
            return Err(EggError::EntryOutsideFolder { name: shown_name });
        }
        if entry
            .unix_mode()
            .is_some_and(|mode| mode & FILE_TYPE_MASK == SYMLINK_TYPE)
        {
            return Err(EggError::SymlinkEntry { name: shown_name });
        }
        if entry.encrypted() {
            return Err(EggError::EncryptedEntry { name: shown_name });
        }
        let method = entry.compression();
        if !matches!(
            method,
            CompressionMethod::Stored | CompressionMethod::Deflated
        ) {
            return Err(EggError::UnsupportedCompression {
                name: shown_name,
                method: method.to_string(),
            });
        }
        if !is_folder {
            declared_bytes = declared_bytes.saturating_add(entry.size());
            if declared_bytes > limits.max_unpacked_bytes {
                return Err(EggError::TooLarge {
                    limit: limits.max_unpacked_bytes,
                });
            }
        }
        if !seen_paths.insert(path.clone()) {
            return Err(EggError::DuplicateEntry { name: shown_name });
        }
        for ancestor in path.ancestors().skip(1) {
            if ancestor.as_os_str().is_empty() || !folder_paths.insert(ancestor.to_path_buf()) {
                // Either the root, or this ancestor and its own were seen.
                break;
            }
        }
        if is_folder {
            folder_paths.insert(path.clone());
        }
        entries.push(CheckedEntry {
            index,
            shown_name,
            path,
            is_folder,
        });
    }

    // Checked after the loop because the file may come before or after the
    // entries that need its name as a folder.
    if let Some(conflict) = entries
        .iter()
        .find(|entry| !entry.is_folder && folder_paths.contains(&entry.path))
    {
        return Err(EggError::FileFolderConflict {
            name: conflict.shown_name.clone(),
        });
    }
    Ok(entries)
}

/// Turns an entry name into a relative path of plain components, and says
/// whether the entry is a folder (ZIP folders end in `/`).
///
/// `.` and empty components are dropped (`a//b` and `./a/b` are `a/b`);
/// anything that could leave the egg folder or confuse a filesystem is an
/// error. The returned path is empty only for a folder entry naming the root.
fn relative_path(name: &str, shown_name: &str) -> Result<(PathBuf, bool), EggError> {
    let unsafe_name = |reason| EggError::UnsafeEntryName {
        name: shown_name.to_string(),
        reason,
    };
    if name.chars().any(char::is_control) {
        // NUL would cut the path short in the OS; newlines and the like
        // have no business in a Python project and garble logs.
        return Err(unsafe_name("contains a control character"));
    }
    if name.contains('\\') {
        // ZIP separators are `/`. Some tools write `\` meaning a separator,
        // so `..\x` is a parent reference on Windows and a plain name here;
        // refusing it avoids guessing.
        return Err(unsafe_name("contains a backslash"));
    }
    if name.starts_with('/') {
        return Err(EggError::EntryOutsideFolder {
            name: shown_name.to_string(),
        });
    }
    let is_folder = name.ends_with('/');
    let mut path = PathBuf::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                return Err(EggError::EntryOutsideFolder {
                    name: shown_name.to_string(),
                });
            }
            component => path.push(component),
        }
    }
    if path.as_os_str().is_empty() && !is_folder {
        return Err(unsafe_name("names no file"));
    }
    Ok((path, is_folder))
}

/// The name with control characters escaped, for messages and logs.
fn shown_name(name: &str) -> String {
    let mut shown = String::with_capacity(name.len());
    for character in name.chars() {
        if character.is_control() {
            shown.extend(character.escape_default());
        } else {
            shown.push(character);
        }
    }
    shown
}

/// Reads `EGG-INFO/entry_points.txt` and finds the settings module.
fn read_egg_info(
    archive: &mut EggArchive<'_>,
    entries: &[CheckedEntry],
) -> Result<EggInfo, EggError> {
    let entry_points = entries
        .iter()
        .find(|entry| !entry.is_folder && entry.path == Path::new(ENTRY_POINTS_PATH))
        .ok_or(EggError::MissingEntryPoints)?;
    let corrupt = |error: &dyn std::fmt::Display| EggError::CorruptEntry {
        name: entry_points.shown_name.clone(),
        detail: error.to_string(),
    };
    let file = archive
        .by_index(entry_points.index)
        .map_err(|error| corrupt(&error))?;
    let mut bytes = Vec::new();
    file.take(MAX_ENTRY_POINTS_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| corrupt(&error))?;
    if bytes.len() as u64 > MAX_ENTRY_POINTS_BYTES {
        return Err(EggError::BadEntryPoints {
            reason: format!("it is larger than {MAX_ENTRY_POINTS_BYTES} bytes"),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| EggError::BadEntryPoints {
        reason: "it is not UTF-8 text".to_string(),
    })?;
    let settings_module = settings_module(&text)?;
    Ok(EggInfo { settings_module })
}

/// Finds `settings = <module>` in the `[scrapy]` section of an
/// `entry_points.txt`, the way setuptools reads entry points.
fn settings_module(entry_points: &str) -> Result<String, EggError> {
    // Files written on Windows may start with a byte order mark.
    let entry_points = entry_points.trim_start_matches('\u{feff}');
    let mut in_scrapy_section = false;
    for line in entry_points.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(header) = line.strip_prefix('[') {
            in_scrapy_section = header
                .strip_suffix(']')
                .is_some_and(|section| section.trim() == "scrapy");
            continue;
        }
        if !in_scrapy_section {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim() != "settings" {
            continue;
        }
        // An entry point is `module:attribute [extras]`; only the module
        // part names what Scrapy imports as settings.
        let without_extras = value.split('[').next().unwrap_or(value);
        let module = without_extras
            .split(':')
            .next()
            .unwrap_or(without_extras)
            .trim();
        if !is_dotted_python_name(module) {
            return Err(EggError::InvalidSettingsModule {
                module: shown_name(value.trim()),
            });
        }
        return Ok(module.to_string());
    }
    Err(EggError::NoScrapySettings)
}

/// `a.b_c.d1`: identifiers separated by dots. Python allows non-ASCII
/// letters in identifiers, and so does this; what matters is that the name
/// is safe to pass as `SCRAPY_SETTINGS_MODULE`.
fn is_dotted_python_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|identifier| {
            let mut characters = identifier.chars();
            characters
                .next()
                .is_some_and(|first| first == '_' || first.is_alphabetic())
                && characters.all(|rest| rest == '_' || rest.is_alphanumeric())
        })
}

/// Writes every checked entry under `root`, counting decompressed bytes
/// against the limit as they arrive.
fn write_entries(
    archive: &mut EggArchive<'_>,
    entries: &[CheckedEntry],
    root: &Path,
    limits: &EggLimits,
) -> Result<(), EggError> {
    let mut folder_builder = DirBuilder::new();
    folder_builder.recursive(true).mode(FOLDER_MODE);
    let mut buffer = vec![0u8; COPY_BUFFER_BYTES];
    let mut unpacked_bytes: u64 = 0;

    for entry in entries {
        let target = root.join(&entry.path);
        if entry.is_folder {
            folder_builder
                .create(&target)
                .map_err(io_error("create egg folder", &target))?;
            continue;
        }
        // Eggs usually have no folder entries, only files inside folders.
        if let Some(parent) = target.parent() {
            folder_builder
                .create(parent)
                .map_err(io_error("create egg folder", parent))?;
        }
        let corrupt = |error: &dyn std::fmt::Display| EggError::CorruptEntry {
            name: entry.shown_name.clone(),
            detail: error.to_string(),
        };
        let mut source = archive
            .by_index(entry.index)
            .map_err(|error| corrupt(&error))?;
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&target)
            .map_err(io_error("create egg file", &target))?;
        loop {
            // The zip reader checks the CRC when it reaches the end of the
            // entry, so reading until 0 is what verifies the data.
            let read = match source.read(&mut buffer) {
                Ok(0) => break,
                Ok(read) => read,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(corrupt(&error)),
            };
            // Declared sizes were checked already, but a zip bomb can lie
            // about them; this counts what really comes out.
            unpacked_bytes = unpacked_bytes.saturating_add(read as u64);
            if unpacked_bytes > limits.max_unpacked_bytes {
                return Err(EggError::TooLarge {
                    limit: limits.max_unpacked_bytes,
                });
            }
            file.write_all(&buffer[..read])
                .map_err(io_error("write egg file", &target))?;
        }
    }
    Ok(())
}

/// Builds the `map_err` closure for an I/O failure on `path`.
fn io_error(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> EggError {
    let path = path.to_path_buf();
    move |source| EggError::Io {
        action,
        path,
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zip::write::SimpleFileOptions;

    /// One entry of a test egg.
    #[derive(Clone, Copy)]
    enum Entry<'a> {
        File(&'a str, &'a [u8]),
        Folder(&'a str),
        Symlink(&'a str, &'a str),
    }

    const ENTRY_POINTS: &[u8] = b"[scrapy]\nsettings = myproject.settings\n";

    fn build_egg(entries: &[Entry<'_>]) -> Vec<u8> {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(0o644);
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        for entry in entries {
            match entry {
                Entry::File(name, contents) => {
                    writer.start_file(*name, options).expect("start file");
                    writer.write_all(contents).expect("write file");
                }
                Entry::Folder(name) => writer.add_directory(*name, options).expect("add folder"),
                Entry::Symlink(name, target) => writer
                    .add_symlink(*name, *target, options)
                    .expect("add symlink"),
            }
        }
        writer.finish().expect("finish zip").into_inner()
    }

    /// An egg shaped like the ones `scrapyd-deploy` uploads, plus `extra`.
    fn egg_with(extra: &[Entry<'_>]) -> Vec<u8> {
        let mut entries = vec![
            Entry::File(
                "EGG-INFO/PKG-INFO",
                b"Metadata-Version: 2.1\nName: project\n",
            ),
            Entry::File("EGG-INFO/entry_points.txt", ENTRY_POINTS),
            Entry::File("myproject/__init__.py", b""),
            Entry::File("myproject/settings.py", b"BOT_NAME = 'myproject'\n"),
            Entry::File(
                "myproject/spiders/example.py",
                b"import scrapy\n\nclass Example(scrapy.Spider):\n    name = 'example'\n",
            ),
        ];
        entries.extend_from_slice(extra);
        build_egg(&entries)
    }

    fn good_egg() -> Vec<u8> {
        egg_with(&[])
    }

    /// Replaces every occurrence of `from` by `to` (same length) in the
    /// archive bytes: how tests forge names the zip writer refuses to write.
    fn replace_bytes(egg: &mut [u8], from: &[u8], to: &[u8]) {
        assert_eq!(from.len(), to.len());
        let mut start = 0;
        while let Some(offset) = egg[start..]
            .windows(from.len())
            .position(|window| window == from)
        {
            let at = start + offset;
            egg[at..at + to.len()].copy_from_slice(to);
            start = at + to.len();
        }
    }

    fn inspect(egg: &[u8]) -> Result<EggInfo, EggError> {
        inspect_egg(egg, &EggLimits::default())
    }

    /// Unpacks into a fresh parent folder and checks that a failure left
    /// that parent empty: no `dest`, no temporary folder.
    fn unpack_failure(egg: &[u8], limits: &EggLimits) -> EggError {
        let parent = tempfile::tempdir().expect("temp dir");
        let dest = parent.path().join("1.0");
        let error = unpack_egg(egg, &dest, limits).expect_err("unpack must fail");
        let left: Vec<_> = fs::read_dir(parent.path()).expect("read parent").collect();
        assert!(left.is_empty(), "left behind after {error}: {left:?}");
        error
    }

    #[test]
    fn a_good_egg_names_its_settings_module() {
        let info = inspect(&good_egg()).expect("good egg");
        assert_eq!(info.settings_module, "myproject.settings");
    }

    #[test]
    fn a_good_egg_unpacks_with_its_contents_and_modes() {
        let parent = tempfile::tempdir().expect("temp dir");
        let dest = parent.path().join("1.0");
        let egg = egg_with(&[Entry::Folder("myproject/empty/")]);
        let info = unpack_egg(&egg, &dest, &EggLimits::default()).expect("unpack");
        assert_eq!(info.settings_module, "myproject.settings");
        assert_eq!(
            fs::read(dest.join("EGG-INFO/entry_points.txt")).expect("entry points"),
            ENTRY_POINTS
        );
        assert_eq!(
            fs::read(dest.join("myproject/settings.py")).expect("settings"),
            b"BOT_NAME = 'myproject'\n"
        );
        assert!(dest.join("myproject/spiders/example.py").is_file());
        assert!(dest.join("myproject/empty").is_dir());
        // Files are created 0644 (the umask may narrow that, never widen
        // it); the egg folder is set to 0755 outright.
        let mode =
            |path: &Path| fs::metadata(path).expect("metadata").permissions().mode() & 0o7777;
        let file_mode = mode(&dest.join("myproject/settings.py"));
        assert_eq!(file_mode & !0o644, 0, "{file_mode:o}");
        assert_eq!(file_mode & 0o600, 0o600, "{file_mode:o}");
        assert_eq!(mode(&dest), 0o755);
        // Only the egg folder itself: the temporary name is gone.
        let names: Vec<_> = fs::read_dir(parent.path())
            .expect("read parent")
            .map(|entry| entry.expect("entry").file_name())
            .collect();
        assert_eq!(names, ["1.0"]);
    }

    #[test]
    fn bytes_that_are_not_a_zip_are_refused() {
        let egg = b"this is the path, not the file";
        assert!(matches!(inspect(egg), Err(EggError::NotZip)));
        assert!(matches!(
            unpack_failure(egg, &EggLimits::default()),
            EggError::NotZip
        ));
        assert!(matches!(inspect(b""), Err(EggError::NotZip)));
    }

    #[test]
    fn a_truncated_zip_is_refused() {
        let egg = good_egg();
        let half = &egg[..egg.len() / 2];
        assert!(matches!(inspect(half), Err(EggError::NotZip)));
        assert!(matches!(
            unpack_failure(half, &EggLimits::default()),
            EggError::NotZip
        ));
    }

    #[test]
    fn a_corrupted_entry_is_refused_and_nothing_is_left() {
        let content = b"SPIDER = 'a unique marker that is stored, not deflated'\n";
        let options = SimpleFileOptions::default().compression_method(CompressionMethod::Stored);
        let mut writer = zip::ZipWriter::new(Cursor::new(Vec::new()));
        writer
            .start_file("EGG-INFO/entry_points.txt", options)
            .expect("start");
        writer.write_all(ENTRY_POINTS).expect("write");
        writer
            .start_file("myproject/spider.py", options)
            .expect("start");
        writer.write_all(content).expect("write");
        let mut egg = writer.finish().expect("finish").into_inner();
        replace_bytes(&mut egg, b"a unique marker", b"A UNIQUE MARKER");

        // Inspecting reads only entry_points.txt, which is intact.
        assert!(inspect(&egg).is_ok());
        let error = unpack_failure(&egg, &EggLimits::default());
        assert!(
            matches!(&error, EggError::CorruptEntry { name, .. } if name == "myproject/spider.py"),
            "{error}"
        );
    }

    #[test]
    fn an_egg_without_entry_points_is_refused() {
        let egg = build_egg(&[Entry::File("myproject/settings.py", b"")]);
        assert!(matches!(inspect(&egg), Err(EggError::MissingEntryPoints)));
    }

    #[test]
    fn entry_points_without_a_scrapy_section_are_refused() {
        let egg = build_egg(&[Entry::File(
            "EGG-INFO/entry_points.txt",
            b"[console_scripts]\nsettings = myproject.settings\n",
        )]);
        assert!(matches!(inspect(&egg), Err(EggError::NoScrapySettings)));
    }

    #[test]
    fn entry_points_are_read_like_setuptools_reads_them() {
        let cases: &[(&str, Result<&str, ()>)] = &[
            ("[scrapy]\nsettings=a.b\n", Ok("a.b")),
            (
                "\u{feff}# built by hand\n[other]\nsettings = x\n\n\
                 [ scrapy ]\n; comment\n  settings   =   pkg.settings  \n",
                Ok("pkg.settings"),
            ),
            ("[scrapy]\r\nsettings = a.settings\r\n", Ok("a.settings")),
            (
                "[scrapy]\nsettings = a.settings:ignored [extra]\n",
                Ok("a.settings"),
            ),
            (
                "[scrapy]\nsettings = données.réglages\n",
                Ok("données.réglages"),
            ),
            ("[scrapy]\nsettings = a..b\n", Err(())),
            ("[scrapy]\nsettings = a/b\n", Err(())),
            ("[scrapy]\nsettings = 1a.b\n", Err(())),
            ("[scrapy]\nsettings = a b\n", Err(())),
            ("[scrapy]\nsettings =\n", Err(())),
        ];
        for (text, expected) in cases {
            let result = settings_module(text);
            match expected {
                Ok(module) => assert_eq!(result.ok().as_deref(), Some(*module), "{text:?}"),
                Err(()) => assert!(
                    matches!(result, Err(EggError::InvalidSettingsModule { .. })),
                    "{text:?}: {result:?}"
                ),
            }
        }
        assert!(matches!(
            settings_module("[scrapy]\nother = a.b\n[next]\nsettings = a.b\n"),
            Err(EggError::NoScrapySettings)
        ));
    }

    #[test]
    fn a_parent_reference_is_refused_before_anything_is_written() {
        let egg = egg_with(&[Entry::File("../evil.py", b"boom")]);
        let error = inspect(&egg).expect_err("must fail");
        assert!(matches!(&error, EggError::EntryOutsideFolder { name } if name == "../evil.py"));
        assert_eq!(
            error.to_string(),
            "egg entry '../evil.py' would be written outside the egg folder"
        );
        let nested = egg_with(&[Entry::File("myproject/../../evil.py", b"boom")]);
        assert!(matches!(
            unpack_failure(&nested, &EggLimits::default()),
            EggError::EntryOutsideFolder { .. }
        ));
    }

    #[test]
    fn an_absolute_path_is_refused() {
        let egg = egg_with(&[Entry::File("/abs.py", b"boom")]);
        assert!(matches!(
            unpack_failure(&egg, &EggLimits::default()),
            EggError::EntryOutsideFolder { .. }
        ));
    }

    #[test]
    fn names_with_backslashes_or_control_characters_are_refused() {
        for name in ["..\\evil.py", "myproject\\x.py"] {
            let egg = egg_with(&[Entry::File(name, b"boom")]);
            assert!(
                matches!(inspect(&egg), Err(EggError::UnsafeEntryName { .. })),
                "{name}"
            );
        }
        // The writer refuses NUL in names, so forge it.
        let mut egg = egg_with(&[Entry::File("evilXpy", b"boom")]);
        replace_bytes(&mut egg, b"evilXpy", b"evil\0py");
        let error = inspect(&egg).expect_err("NUL must fail");
        assert!(matches!(error, EggError::UnsafeEntryName { .. }), "{error}");
        assert!(error.to_string().contains("evil\\u{0}py"), "{error}");
    }

    #[test]
    fn a_symlink_entry_is_refused() {
        let egg = egg_with(&[Entry::Symlink("myproject/link.py", "/etc/passwd")]);
        let error = unpack_failure(&egg, &EggLimits::default());
        assert!(matches!(&error, EggError::SymlinkEntry { name } if name == "myproject/link.py"));
    }

    #[test]
    fn a_duplicate_entry_is_refused() {
        // The writer refuses identical names, so write two and forge one.
        let mut exact = egg_with(&[Entry::File("myproject/settingz.py", b"a")]);
        replace_bytes(
            &mut exact,
            b"myproject/settingz.py",
            b"myproject/settings.py",
        );
        assert!(matches!(inspect(&exact), Err(EggError::DuplicateEntryName)));
        assert!(matches!(
            unpack_failure(&exact, &EggLimits::default()),
            EggError::DuplicateEntryName
        ));

        // Names that differ only in spelling still land on the same file.
        let spelled = egg_with(&[Entry::File("./myproject//settings.py", b"a")]);
        let error = inspect(&spelled).expect_err("must fail");
        let expected_name = "./myproject//settings.py";
        assert!(
            matches!(&error, EggError::DuplicateEntry { name } if name == expected_name),
            "{error}"
        );
    }

    #[test]
    fn a_file_where_a_folder_is_needed_is_refused() {
        let egg = egg_with(&[Entry::File("myproject/settings.py/inner.py", b"")]);
        assert!(matches!(
            unpack_failure(&egg, &EggLimits::default()),
            EggError::FileFolderConflict { .. }
        ));
    }

    #[test]
    fn too_many_entries_are_refused() {
        let limits = EggLimits {
            max_entries: 4,
            ..EggLimits::default()
        };
        let error = unpack_failure(&good_egg(), &limits);
        assert!(
            matches!(error, EggError::TooManyEntries { count: 5, limit: 4 }),
            "{error}"
        );
    }

    #[test]
    fn a_zip_bomb_is_refused_and_leaves_nothing() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let egg = egg_with(&[Entry::File("myproject/bomb.bin", &zeros)]);
        assert!(egg.len() < 1024 * 1024, "the bomb should compress well");
        let limits = EggLimits {
            max_unpacked_bytes: 1024 * 1024,
            ..EggLimits::default()
        };
        assert!(matches!(
            inspect_egg(&egg, &limits),
            Err(EggError::TooLarge { limit }) if limit == 1024 * 1024
        ));
        assert!(matches!(
            unpack_failure(&egg, &limits),
            EggError::TooLarge { .. }
        ));
    }

    #[test]
    fn a_zip_bomb_that_lies_about_its_size_is_refused_and_leaves_nothing() {
        let zeros = vec![0u8; 10 * 1024 * 1024];
        let mut egg = egg_with(&[Entry::File("myproject/bomb.bin", &zeros)]);
        // Rewrite the declared uncompressed size (10 MiB, little endian) in
        // the local and central headers to a harmless-looking 1000 bytes.
        let declared = (zeros.len() as u32).to_le_bytes();
        replace_bytes(&mut egg, &declared, &1000u32.to_le_bytes());
        let limits = EggLimits {
            max_unpacked_bytes: 1024 * 1024,
            ..EggLimits::default()
        };
        assert!(
            inspect_egg(&egg, &limits).is_ok(),
            "declared sizes look fine"
        );
        let error = unpack_failure(&egg, &limits);
        assert!(
            matches!(
                error,
                EggError::TooLarge { .. } | EggError::CorruptEntry { .. }
            ),
            "{error}"
        );
    }

    #[test]
    fn an_existing_destination_is_refused() {
        let parent = tempfile::tempdir().expect("temp dir");
        let dest = parent.path().join("1.0");
        fs::create_dir(&dest).expect("create dest");
        let error = unpack_egg(&good_egg(), &dest, &EggLimits::default()).expect_err("must fail");
        assert!(
            matches!(error, EggError::DestinationExists { .. }),
            "{error}"
        );
        assert_eq!(fs::read_dir(&dest).expect("read dest").count(), 0);
        assert_eq!(fs::read_dir(parent.path()).expect("read parent").count(), 1);
    }
}
