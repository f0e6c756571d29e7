//! A thin layer over SQLite's own file layer (its "unix" VFS) that gathers
//! the writes of a commit to the WAL into one `pwrite`.
//!
//! Why: SQLite writes each WAL frame with two calls (its 24-byte header,
//! then the page), so a commit of 24 pages costs 48 system calls, about
//! five times as long as one call writing the same bytes. The writer
//! thread spends that time on every commit, with every caller waiting.
//!
//! How: writes to a WAL file that continue the bytes held so far are kept
//! in memory (up to [`HELD_LIMIT`]) and sent to the file, in order:
//!
//! - before anything else SQLite does with the WAL file: a flush (`xSync`,
//!   so before a commit counts under `synchronous = FULL`), a read, a size
//!   query, a truncation, a close;
//! - before a commit is published to other connections: SQLite does that
//!   through the database file's shared memory, behind a memory barrier
//!   (`walIndexWriteHdr`), so the database file's handle knows its WAL's
//!   and sends its held bytes at `xShmBarrier` (this is what keeps
//!   `synchronous = NORMAL` right too);
//! - before the WAL's write lock is let go (`xShmUnlock` of its slot): what
//!   a transaction rolled back had spilled goes out while it still holds
//!   the lock, as SQLite itself would have written it, never later over
//!   another writer's frames.
//!
//! Other files (temporary files, the database's pages) pass straight
//! through.
//!
//! A write error (a full disk) surfaces at the call that sends the held
//! bytes. From `xWrite` or `xSync` it is the write's own error, which fails
//! the spill or the commit as the write would have. From any other call it
//! is `SQLITE_IOERR_WRITE`: frames a transaction spilled earlier are lost,
//! and an I/O error makes SQLite roll the whole transaction back, where a
//! full disk reported by a read would only undo the statement.

use std::ffi::{CStr, c_int, c_void};
use std::sync::OnceLock;

use rusqlite::ffi;

/// The name connections open their files with.
pub(super) const VFS_NAME: &CStr = c"scrapyd-rs-gathered-wal";

/// Held bytes are sent before they pass this many (and a write bigger than
/// this goes straight through): the most the unix VFS writes in one call
/// (`seekAndWriteFd` takes at most 128 KiB − 1). That is a commit of 31
/// pages of the job store, or 7 of the job data's 16 KiB pages a call.
const HELD_LIMIT: usize = 0x1ffff;

/// Registers the layer (once per process) and tells whether it is there:
/// where SQLite has no default VFS to wrap, connections use the default.
pub(super) fn registered() -> bool {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    *REGISTERED.get_or_init(|| unsafe { register() })
}

/// SQLite's default VFS, which every call ends in.
static REAL: OnceLock<RealVfs> = OnceLock::new();

struct RealVfs(*mut ffi::sqlite3_vfs);

// SAFETY: SQLite's VFS objects are process-wide and immutable once
// registered; SQLite itself calls them from every thread.
unsafe impl Send for RealVfs {}
unsafe impl Sync for RealVfs {}

/// What SQLite allocates for each open file of this layer: the layer's
/// part, then the real VFS's file object (`szOsFile` covers both).
#[repr(C)]
struct GatheredFile {
    /// First, as SQLite requires: the methods SQLite calls.
    base: ffi::sqlite3_file,
    /// The real file object, right after this struct.
    real: *mut ffi::sqlite3_file,
    /// For a WAL file: the bytes written but not yet sent. Null otherwise.
    held: *mut Held,
    /// For a database file: its WAL while open, whose held bytes go out
    /// before a commit is published. For a WAL: its database file, to
    /// untie them at close. Null otherwise.
    tied: *mut GatheredFile,
}

struct Held {
    /// File offset of `bytes[0]`.
    offset: i64,
    bytes: Vec<u8>,
    /// Writes sent to the file so far (read by the tests).
    sent: u64,
}

unsafe fn register() -> bool {
    let real = unsafe { ffi::sqlite3_vfs_find(std::ptr::null()) };
    if real.is_null() {
        return false;
    }
    let _ = REAL.set(RealVfs(real));
    // Every VFS call but xOpen goes to the real VFS's own functions; only
    // the size of a file object and xOpen differ.
    let mut vfs: ffi::sqlite3_vfs = unsafe { *real };
    vfs.szOsFile = (real_file_offset() + unsafe { (*real).szOsFile } as usize) as c_int;
    vfs.zName = VFS_NAME.as_ptr();
    vfs.pNext = std::ptr::null_mut();
    vfs.xOpen = Some(open);
    // SQLite keeps the pointer: the struct lives as long as the process.
    let vfs = Box::leak(Box::new(vfs));
    unsafe { ffi::sqlite3_vfs_register(vfs, 0) == ffi::SQLITE_OK }
}

/// Where the real file object starts: after the layer's part, aligned as
/// SQLite aligns file objects (8 bytes).
const fn real_file_offset() -> usize {
    std::mem::size_of::<GatheredFile>().next_multiple_of(8)
}

fn real_vfs() -> *mut ffi::sqlite3_vfs {
    REAL.get().expect("registered before any file opens").0
}

unsafe extern "C" fn open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let gathered = file.cast::<GatheredFile>();
    let real_vfs = real_vfs();
    unsafe {
        let real = file
            .cast::<u8>()
            .add(real_file_offset())
            .cast::<ffi::sqlite3_file>();
        (*gathered).real = real;
        (*gathered).held = std::ptr::null_mut();
        (*gathered).tied = std::ptr::null_mut();
        let rc = ((*real_vfs).xOpen.expect("the unix VFS opens files"))(
            real_vfs, name, real, flags, out_flags,
        );
        // SQLite calls xClose when (and only when) the methods are set,
        // failure or not: mirror what the real open left.
        if (*real).pMethods.is_null() {
            (*gathered).base.pMethods = std::ptr::null();
            return rc;
        }
        (*gathered).base.pMethods = if (*(*real).pMethods).iVersion >= 3 {
            &METHODS
        } else {
            &METHODS_V1
        };
        if rc == ffi::SQLITE_OK && flags & ffi::SQLITE_OPEN_WAL != 0 {
            // The database file's object, which SQLite opened through this
            // layer too (checked: only then is it a `GatheredFile`).
            let database = ffi::sqlite3_database_file_object(name).cast::<GatheredFile>();
            if database.is_null() || !is_gathered(database.cast()) {
                // Nothing would send held bytes before a commit is
                // published: pass this WAL's writes straight through.
                return rc;
            }
            (*gathered).held = Box::into_raw(Box::new(Held {
                offset: 0,
                bytes: Vec::new(),
                sent: 0,
            }));
            (*gathered).tied = database;
            (*database).tied = gathered;
        }
        rc
    }
}

fn is_gathered(file: *mut ffi::sqlite3_file) -> bool {
    let methods = unsafe { (*file).pMethods };
    std::ptr::eq(methods, &METHODS) || std::ptr::eq(methods, &METHODS_V1)
}

/// The real file object and its methods.
unsafe fn real(
    file: *mut ffi::sqlite3_file,
) -> (*mut ffi::sqlite3_file, &'static ffi::sqlite3_io_methods) {
    unsafe {
        let real = (*file.cast::<GatheredFile>()).real;
        (real, &*(*real).pMethods)
    }
}

/// Sends the held bytes, if any, to the file.
unsafe fn send_held(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let held = (*file.cast::<GatheredFile>()).held;
        if held.is_null() || (*held).bytes.is_empty() {
            return ffi::SQLITE_OK;
        }
        let (real, methods) = real(file);
        let bytes = &mut (*held).bytes;
        let rc = (methods.xWrite.expect("files write"))(
            real,
            bytes.as_ptr().cast(),
            bytes.len() as c_int,
            (*held).offset,
        );
        // Sent or failed, the bytes are no longer held: the caller makes a
        // failure fail the whole transaction (see the module's comment).
        bytes.clear();
        if rc == ffi::SQLITE_OK {
            (*held).sent += 1;
        }
        rc
    }
}

/// [`send_held`] for calls that are not writes: a failure is an I/O error,
/// which rolls the whole transaction back.
unsafe fn send_held_or_ioerr(file: *mut ffi::sqlite3_file) -> c_int {
    match unsafe { send_held(file) } {
        ffi::SQLITE_OK => ffi::SQLITE_OK,
        _ => ffi::SQLITE_IOERR_WRITE,
    }
}

/// For a database file: sends the held bytes of its WAL, if open.
unsafe fn send_wal_held(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let wal = (*file.cast::<GatheredFile>()).tied;
        let is_wal = !(*file.cast::<GatheredFile>()).held.is_null();
        if wal.is_null() || is_wal {
            return ffi::SQLITE_OK;
        }
        send_held_or_ioerr(wal.cast())
    }
}

/// Defines a method that calls the real one; `after_held` first sends the
/// held bytes (failing with `SQLITE_IOERR_WRITE` if they cannot be).
/// `@call` is the call itself, for the methods written out below.
macro_rules! forward {
    (after_held $name:ident, $method:ident, ($($arg:ident: $ty:ty),*)) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> c_int {
            unsafe {
                let rc = send_held_or_ioerr(file);
                if rc != ffi::SQLITE_OK {
                    return rc;
                }
                forward!(@call file, $method, ($($arg),*))
            }
        }
    };
    ($name:ident, $method:ident, ($($arg:ident: $ty:ty),*) -> $out:ty) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file, $($arg: $ty),*) -> $out {
            unsafe { forward!(@call file, $method, ($($arg),*)) }
        }
    };
    (@call $file:ident, $method:ident, ($($arg:expr),*)) => {{
        let (real, methods) = real($file);
        (methods.$method.expect(concat!("files have ", stringify!($method))))(real, $($arg),*)
    }};
}

unsafe extern "C" fn write(
    file: *mut ffi::sqlite3_file,
    data: *const c_void,
    amount: c_int,
    offset: i64,
) -> c_int {
    unsafe {
        let held = (*file.cast::<GatheredFile>()).held;
        let (real, methods) = real(file);
        let write = methods.xWrite.expect("files write");
        if held.is_null() {
            return write(real, data, amount, offset);
        }
        let held_end = (*held).offset + (*held).bytes.len() as i64;
        let amount_bytes = amount as usize;
        let continues = (*held).bytes.is_empty() || offset == held_end;
        if !continues || (*held).bytes.len() + amount_bytes > HELD_LIMIT {
            let rc = send_held(file);
            if rc != ffi::SQLITE_OK {
                return rc;
            }
        }
        if amount_bytes > HELD_LIMIT {
            return write(real, data, amount, offset);
        }
        let bytes = &mut (*held).bytes;
        if bytes.is_empty() {
            (*held).offset = offset;
        }
        bytes.extend_from_slice(std::slice::from_raw_parts(data.cast::<u8>(), amount_bytes));
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn close(file: *mut ffi::sqlite3_file) -> c_int {
    unsafe {
        let sent = send_held_or_ioerr(file);
        let closed = forward!(@call file, xClose, ());
        let gathered = file.cast::<GatheredFile>();
        let held = (*gathered).held;
        if !held.is_null() {
            drop(Box::from_raw(held));
            (*gathered).held = std::ptr::null_mut();
        }
        // A WAL closes before its database file (`sqlite3PagerClose`);
        // either way, neither keeps a pointer to the one that closed.
        let tied = (*gathered).tied;
        if !tied.is_null() {
            (*tied).tied = std::ptr::null_mut();
        }
        (*gathered).tied = std::ptr::null_mut();
        if sent != ffi::SQLITE_OK { sent } else { closed }
    }
}

// SQLite calls these on a WAL file; the ones further down only on the
// database file (its locks, shared memory and memory map).
forward!(after_held read, xRead, (buffer: *mut c_void, amount: c_int, offset: i64));
forward!(after_held truncate, xTruncate, (size: i64));
forward!(after_held file_size, xFileSize, (size: *mut i64));

unsafe extern "C" fn sync(file: *mut ffi::sqlite3_file, flags: c_int) -> c_int {
    unsafe {
        // The commit's flush: a failed send fails the commit, as the write
        // would have, with the write's own error (a full disk says so).
        let rc = send_held(file);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        forward!(@call file, xSync, (flags))
    }
}

forward!(lock, xLock, (level: c_int) -> c_int);
forward!(unlock, xUnlock, (level: c_int) -> c_int);
forward!(check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int);
forward!(file_control, xFileControl, (op: c_int, arg: *mut c_void) -> c_int);
forward!(sector_size, xSectorSize, () -> c_int);
forward!(device_characteristics, xDeviceCharacteristics, () -> c_int);
forward!(shm_map, xShmMap, (page: c_int, page_size: c_int, extend: c_int, out: *mut *mut c_void) -> c_int);
forward!(shm_unmap, xShmUnmap, (delete: c_int) -> c_int);
forward!(fetch, xFetch, (offset: i64, amount: c_int, out: *mut *mut c_void) -> c_int);
forward!(unfetch, xUnfetch, (offset: i64, page: *mut c_void) -> c_int);

/// The WAL's write lock: slot 0 of the shared memory's locks.
const WAL_WRITE_LOCK: c_int = 0;

unsafe extern "C" fn shm_lock(
    file: *mut ffi::sqlite3_file,
    offset: c_int,
    n: c_int,
    flags: c_int,
) -> c_int {
    unsafe {
        if flags & ffi::SQLITE_SHM_UNLOCK != 0
            && offset <= WAL_WRITE_LOCK
            && WAL_WRITE_LOCK < offset + n
        {
            // Frames of a transaction that was rolled back, unpublished:
            // written while the lock is still held, their error is moot.
            let _ = send_wal_held(file);
        }
        forward!(@call file, xShmLock, (offset, n, flags))
    }
}

unsafe extern "C" fn shm_barrier(file: *mut ffi::sqlite3_file) {
    unsafe {
        // Before a commit is published. Under FULL, the daemon's mode,
        // nothing is held by then: the flush sent it, and a failure there
        // failed the commit. Under NORMAL a write failing here (a barrier
        // reports no error) would leave the published commit short.
        let _ = send_wal_held(file);
        forward!(@call file, xShmBarrier, ())
    }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(close),
    xRead: Some(read),
    xWrite: Some(write),
    xTruncate: Some(truncate),
    xSync: Some(sync),
    xFileSize: Some(file_size),
    xLock: Some(lock),
    xUnlock: Some(unlock),
    xCheckReservedLock: Some(check_reserved_lock),
    xFileControl: Some(file_control),
    xSectorSize: Some(sector_size),
    xDeviceCharacteristics: Some(device_characteristics),
    xShmMap: Some(shm_map),
    xShmLock: Some(shm_lock),
    xShmBarrier: Some(shm_barrier),
    xShmUnmap: Some(shm_unmap),
    xFetch: Some(fetch),
    xUnfetch: Some(unfetch),
};

/// For real files without shared memory or memory mapping (none of the
/// unix VFS's default kind): SQLite then uses neither.
static METHODS_V1: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 1,
    xShmMap: None,
    xShmLock: None,
    xShmBarrier: None,
    xShmUnmap: None,
    xFetch: None,
    xUnfetch: None,
    ..METHODS
};

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::{Connection, OpenFlags};

    fn open(path: &std::path::Path) -> Connection {
        open_with(path, "FULL")
    }

    fn open_with(path: &std::path::Path, synchronous: &str) -> Connection {
        assert!(registered());
        let connection =
            Connection::open_with_flags_and_vfs(path, OpenFlags::default(), VFS_NAME).unwrap();
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};"
            ))
            .unwrap();
        connection
    }

    /// The connection's WAL's held bytes.
    fn wal_held(connection: &Connection) -> &Held {
        let mut wal: *mut ffi::sqlite3_file = std::ptr::null_mut();
        unsafe {
            let rc = ffi::sqlite3_file_control(
                connection.handle(),
                c"main".as_ptr(),
                ffi::SQLITE_FCNTL_JOURNAL_POINTER,
                (&raw mut wal).cast(),
            );
            assert_eq!(rc, ffi::SQLITE_OK);
            let held = (*wal.cast::<GatheredFile>()).held;
            assert!(!held.is_null(), "the WAL is gathered");
            &*held
        }
    }

    /// How many writes the connection's WAL has sent to its file.
    fn wal_writes(connection: &Connection) -> u64 {
        wal_held(connection).sent
    }

    #[test]
    fn what_a_rolled_back_transaction_spilled_is_not_held_past_it() {
        let folder = tempfile::tempdir().unwrap();
        let writer = open(&folder.path().join("undone.sqlite"));
        writer
            .execute_batch(
                "PRAGMA cache_size = 10; CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB);
                 PRAGMA wal_checkpoint(TRUNCATE); BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 15)
                 INSERT INTO t SELECT i, zeroblob(3000) FROM n;",
            )
            .unwrap();
        // The cache spilled pages to the WAL, and some are held.
        assert!(!wal_held(&writer).bytes.is_empty());
        // The WAL holds no committed frame: the rollback reads nothing
        // from it, and nothing else would send what is held.
        writer.execute_batch("ROLLBACK").unwrap();
        // Written while the transaction still held the write lock.
        assert!(wal_held(&writer).bytes.is_empty());
    }

    #[test]
    fn under_normal_every_published_commit_is_in_the_file() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("normal.sqlite");
        let writer = open_with(&path, "NORMAL");
        writer
            .execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
            .unwrap();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        // A reader on another thread, reading through its own handle the
        // frames of each commit it sees, as soon as it can see it.
        let reader = {
            let (path, done) = (path.clone(), std::sync::Arc::clone(&done));
            std::thread::spawn(move || {
                let reader = open(&path);
                let mut reads = 0;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    let (count, length): (i64, Option<i64>) = reader
                        .query_row("SELECT count(*), sum(length(pad)) FROM t", [], |row| {
                            Ok((row.get(0)?, row.get(1)?))
                        })
                        .unwrap();
                    assert_eq!(length.unwrap_or(0), count * 3000, "after {count} rows");
                    reads += 1;
                }
                reads
            })
        };
        for round in 1..=3000_i64 {
            writer
                .execute("INSERT INTO t VALUES (?1, randomblob(3000))", [round])
                .unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
    }

    #[test]
    fn a_commit_reaches_the_wal_in_one_write() {
        let folder = tempfile::tempdir().unwrap();
        let writer = open(&folder.path().join("one.sqlite"));
        writer
            .execute_batch("CREATE TABLE t (n INTEGER PRIMARY KEY, pad BLOB)")
            .unwrap();
        let before = wal_writes(&writer);
        // 20 rows of 3,000 bytes: 20 pages and more, 40 calls and more
        // without the gathering.
        writer
            .execute_batch(
                "BEGIN; WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20)
                 INSERT INTO t SELECT i, zeroblob(3000) FROM n; COMMIT;",
            )
            .unwrap();
        assert_eq!(wal_writes(&writer) - before, 1);
    }

    #[test]
    fn every_commit_reads_back_whole_through_any_vfs() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("many.sqlite");
        let writer = open(&path);
        // A cache of 20 pages makes big transactions spill frames to the
        // WAL before their commit and read them back.
        writer
            .execute_batch(
                "PRAGMA cache_size = 20; PRAGMA wal_autocheckpoint = 50;
                 CREATE TABLE t (n INTEGER PRIMARY KEY, body BLOB, tag TEXT);
                 CREATE INDEX t_tag ON t (tag);",
            )
            .unwrap();
        let reader = open(&path);
        let mut expected = 0_i64;
        for round in 0..300_i64 {
            // Mostly small commits; every 50th holds ~800 KiB, more than
            // the held bytes' limit.
            let rows = if round % 50 == 49 { 200 } else { round % 7 + 1 };
            writer.execute_batch("BEGIN").unwrap();
            for row in 0..rows {
                writer
                    .execute(
                        "INSERT INTO t (body, tag) VALUES (randomblob(?1), ?2)",
                        rusqlite::params![1000 + (row * 37) % 3000, format!("r{round}")],
                    )
                    .unwrap();
            }
            // A change undone inside the transaction.
            writer
                .execute_batch(
                    "SAVEPOINT s; INSERT INTO t (body, tag) VALUES (randomblob(5000), 'undone');
                     ROLLBACK TO s; RELEASE s;",
                )
                .unwrap();
            writer.execute_batch("COMMIT").unwrap();
            expected += rows;
            let seen: i64 = reader
                .query_row("SELECT count(*) FROM t", [], |row| row.get(0))
                .unwrap();
            assert_eq!(seen, expected, "after round {round}");
        }
        let check: String = reader
            .query_row("PRAGMA integrity_check", [], |row| row.get(0))
            .unwrap();
        assert_eq!(check, "ok");
        let sum = |connection: &Connection| -> (i64, i64) {
            connection
                .query_row("SELECT count(*), sum(length(body)) FROM t", [], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })
                .unwrap()
        };
        let written = sum(&writer);
        drop((writer, reader));
        // SQLite's own VFS reads the same file.
        let plain = Connection::open(&path).unwrap();
        assert_eq!(sum(&plain), written);
        assert_eq!(written.0, expected);
    }
}
