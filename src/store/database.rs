//! One SQLite database file of the store, opened the same way for each of
//! them (the job store, the job data, the collections and frontiers): its
//! folder made, a write connection brought up to date by the database's
//! migrations and handed to a writer thread of its own, and a read
//! connection behind a mutex (WAL lets it read while a write is in
//! progress). A second read connection, opened when first wanted, serves
//! reads that span many queries in one transaction (a whole job listing),
//! so that these never keep the short reads waiting.

use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, ToSql};

use super::writer::{Generation, Writer};
use super::{StoreError, StoreResult};

/// A pragma a database sets beyond [`open_connection`]'s, and its value.
pub(super) type Pragma = (&'static str, &'static (dyn ToSql + Sync));

/// What sets one database apart from the others.
pub(super) struct Schema {
    /// The writer thread's name (its answers go out on `<name>-answers`).
    pub writer_name: &'static str,
    /// Its writes are bulk work: the writer runs at a lower CPU priority
    /// ([`crate::priority`]).
    pub bulk_writes: bool,
    /// Applied in order; `PRAGMA user_version` records how many have run.
    pub migrations: &'static [&'static str],
    /// Set on the write connection, in order, before the migrations (so
    /// before the first table of a new file).
    pub write_pragmas: &'static [Pragma],
    /// Set on the read connection.
    pub read_pragmas: &'static [Pragma],
    /// How the file is laid out, if not SQLite's default.
    pub layout: Option<FileLayout>,
    /// Run in the transaction of migration `index`, right after its SQL:
    /// for the rows a step must fill that SQL cannot write.
    pub fill: Option<fn(index: usize, &Connection) -> StoreResult<()>>,
}

/// What is fixed when a database file is made: a file made otherwise (by
/// an older version) is rebuilt once on opening.
#[derive(Clone, Copy, PartialEq, Debug)]
pub(super) struct FileLayout {
    pub page_size: i64,
    /// Pages freed by deletes go back to the disk at `PRAGMA
    /// incremental_vacuum` (`auto_vacuum = INCREMENTAL`).
    pub incremental_vacuum: bool,
}

pub(super) struct Database {
    path: PathBuf,
    reader: Mutex<Connection>,
    read_pragmas: &'static [Pragma],
    /// See [`Database::read_long`]; `None` until first wanted.
    long_reader: Mutex<Option<Connection>>,
    pub writer: Writer,
    /// Counts the writer's committed batches.
    pub generation: Generation,
    /// Keeps the folder of a temporary database alive as long as the store.
    _temporary: Option<tempfile::TempDir>,
}

impl Database {
    /// Opens (creating it and its folder if needed) the database at `path`
    /// and brings its schema up to date.
    pub fn open(path: &Path, schema: &Schema) -> StoreResult<Database> {
        if let Some(folder) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(folder).map_err(|source| StoreError::Folder {
                path: folder.display().to_string(),
                source,
            })?;
        }
        Database::open_with(path, schema, None)
    }

    /// A private database `file_name` in a temporary folder, deleted with
    /// it; for tests.
    pub fn open_temporary(file_name: &str, schema: &Schema) -> StoreResult<Database> {
        let folder = tempfile::tempdir().map_err(|source| StoreError::Folder {
            path: std::env::temp_dir().display().to_string(),
            source,
        })?;
        let path = folder.path().join(file_name);
        Database::open_with(&path, schema, Some(folder))
    }

    fn open_with(
        path: &Path,
        schema: &Schema,
        temporary: Option<tempfile::TempDir>,
    ) -> StoreResult<Database> {
        let mut write_connection = open_connection(path, schema.layout)?;
        if let Some(layout) = schema.layout {
            keep_layout(&write_connection, layout)?;
        }
        for (name, value) in schema.write_pragmas {
            write_connection.pragma_update(None, name, value)?;
        }
        migrate(&mut write_connection, schema)?;
        let reader = open_reader(path, schema.read_pragmas)?;
        let generation = Generation::default();
        let writer = Writer::start(
            schema.writer_name,
            write_connection,
            generation.clone(),
            schema.bulk_writes,
        )
        .map_err(|source| StoreError::Folder {
            path: path.display().to_string(),
            source,
        })?;
        Ok(Database {
            path: path.to_path_buf(),
            reader: Mutex::new(reader),
            read_pragmas: schema.read_pragmas,
            long_reader: Mutex::new(None),
            writer,
            generation,
            _temporary: temporary,
        })
    }

    /// The read connection.
    pub fn read(&self) -> MutexGuard<'_, Connection> {
        lock(&self.reader)
    }

    /// The read connection for reads that hold one transaction over many
    /// queries: opened on first use (most daemons never list a long
    /// queue), then kept.
    pub fn read_long(&self) -> StoreResult<LongRead<'_>> {
        let mut reader = lock(&self.long_reader);
        // A read whose end failed to roll back would hold the WAL for good
        // and refuse every later transaction: such a connection is ended
        // now, or replaced.
        if let Some(connection) = reader.as_ref()
            && !connection.is_autocommit()
            && connection.execute_batch("ROLLBACK").is_err()
        {
            *reader = None;
        }
        if reader.is_none() {
            *reader = Some(open_reader(&self.path, self.read_pragmas)?);
        }
        Ok(LongRead(reader))
    }
}

/// The long-read connection, held.
pub(super) struct LongRead<'a>(MutexGuard<'a, Option<Connection>>);

impl Deref for LongRead<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0.as_ref().expect("opened before it is handed out")
    }
}

fn lock<T>(connection: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-done change:
    // reads change nothing.
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A read connection: the common settings, then the database's own.
fn open_reader(path: &Path, pragmas: &[Pragma]) -> StoreResult<Connection> {
    let connection = open_connection(path, None)?;
    for (name, value) in pragmas {
        connection.pragma_update(None, name, value)?;
    }
    Ok(connection)
}

fn open_connection(path: &Path, layout: Option<FileLayout>) -> StoreResult<Connection> {
    // Every connection goes through the layer that gathers a commit's WAL
    // writes into one call. With `synchronous = FULL`, set below, a write
    // it cannot send fails the commit before any reader can see it.
    let connection = if super::wal_writes::registered() {
        Connection::open_with_flags_and_vfs(
            path,
            rusqlite::OpenFlags::default(),
            super::wal_writes::VFS_NAME,
        )?
    } else {
        Connection::open(path)?
    };
    // Before WAL: switching a new file to WAL writes its header, after
    // which its layout can only change by rebuilding the file. Only on a
    // new file: on one with tables, setting `auto_vacuum` even to its
    // current mode is a write (and a daemon must start on a full disk).
    if let Some(layout) = layout {
        let pages: i64 = connection.pragma_query_value(None, "page_count", |row| row.get(0))?;
        if pages == 0 {
            set_layout(&connection, layout)?;
        }
    }
    // WAL lets readers proceed during a write; FULL syncs the WAL on every
    // commit, which is what makes an "ok" answer durable across a power
    // loss, not only across a crash of this process.
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.pragma_update(None, "foreign_keys", "ON")?;
    connection.busy_timeout(std::time::Duration::from_secs(10))?;
    Ok(connection)
}

fn set_layout(connection: &Connection, layout: FileLayout) -> StoreResult<()> {
    connection.pragma_update(None, "page_size", layout.page_size)?;
    let vacuum = if layout.incremental_vacuum {
        "INCREMENTAL"
    } else {
        "NONE"
    };
    connection.pragma_update(None, "auto_vacuum", vacuum)?;
    Ok(())
}

fn layout_of(connection: &Connection) -> StoreResult<FileLayout> {
    const INCREMENTAL: i64 = 2;
    let page_size = connection.pragma_query_value(None, "page_size", |row| row.get(0))?;
    let vacuum: i64 = connection.pragma_query_value(None, "auto_vacuum", |row| row.get(0))?;
    Ok(FileLayout {
        page_size,
        incremental_vacuum: vacuum == INCREMENTAL,
    })
}

/// A file made with another layout (by an older version) is rebuilt once
/// with this one, out of WAL, where a page size cannot change.
fn keep_layout(connection: &Connection, layout: FileLayout) -> StoreResult<()> {
    if layout_of(connection)? == layout {
        return Ok(());
    }
    connection.pragma_update(None, "journal_mode", "DELETE")?;
    set_layout(connection, layout)?;
    connection.execute_batch("VACUUM")?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    Ok(())
}

/// Applies the migrations of one database that have not run yet.
fn migrate(connection: &mut Connection, schema: &Schema) -> StoreResult<()> {
    let applied: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (index, migration) in schema
        .migrations
        .iter()
        .enumerate()
        .skip(applied.max(0) as usize)
    {
        if applied > 0 {
            // A store from an earlier version: some migrations copy every
            // row of a table, which takes a while on a big one.
            tracing::info!(
                database = schema.writer_name,
                migration = index + 1,
                "upgrading the database's layout"
            );
        }
        let transaction = connection.transaction()?;
        transaction.execute_batch(migration)?;
        if let Some(fill) = schema.fill {
            fill(index, &transaction)?;
        }
        transaction.pragma_update(None, "user_version", index as i64 + 1)?;
        transaction.commit()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCHEMA: Schema = Schema {
        writer_name: "test-writer",
        bulk_writes: false,
        migrations: &["CREATE TABLE t (v INTEGER);"],
        write_pragmas: &[("application_id", &7_i64)],
        read_pragmas: &[("cache_size", &-2048_i64)],
        layout: None,
        fill: None,
    };

    #[test]
    fn each_connection_gets_its_pragmas_and_the_file_its_migrations() {
        let database = Database::open_temporary("pragmas.sqlite", &SCHEMA).unwrap();
        let read = database.read();
        let pragma = |name: &str| -> i64 {
            read.pragma_query_value(None, name, |row| row.get(0))
                .unwrap()
        };
        // Set on the writer, kept in the file's header.
        assert_eq!(pragma("application_id"), 7);
        assert_eq!(pragma("cache_size"), -2048);
        assert_eq!(pragma("user_version"), 1);
        assert_eq!(pragma("synchronous"), 2);
    }

    #[test]
    fn a_long_read_left_open_is_ended_before_the_next() {
        let database = Database::open_temporary("long.sqlite", &SCHEMA).unwrap();
        {
            let reader = database.read_long().unwrap();
            reader.execute_batch("BEGIN; SELECT * FROM t;").unwrap();
            assert!(!reader.is_autocommit());
        }
        let reader = database.read_long().unwrap();
        assert!(reader.is_autocommit());
        reader
            .execute_batch("BEGIN; SELECT * FROM t; ROLLBACK;")
            .unwrap();
    }

    const LAID_OUT: Schema = Schema {
        layout: Some(FileLayout {
            page_size: 16384,
            incremental_vacuum: true,
        }),
        ..SCHEMA
    };

    fn layout(database: &Database) -> FileLayout {
        layout_of(&database.read()).unwrap()
    }

    #[test]
    fn a_layout_holds_for_new_files_and_old_ones_are_rebuilt_once() {
        let fresh = Database::open_temporary("fresh.sqlite", &LAID_OUT).unwrap();
        assert_eq!(Some(layout(&fresh)), LAID_OUT.layout);
        // A file made without it, with a row in it.
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("old.sqlite");
        {
            let old = Connection::open(&path).unwrap();
            old.pragma_update(None, "journal_mode", "WAL").unwrap();
            old.execute_batch(
                "CREATE TABLE t (v INTEGER); INSERT INTO t VALUES (5); PRAGMA user_version = 1;",
            )
            .unwrap();
        }
        let database = Database::open(&path, &LAID_OUT).unwrap();
        assert_eq!(Some(layout(&database)), LAID_OUT.layout);
        let journal: String = database
            .read()
            .pragma_query_value(None, "journal_mode", |row| row.get(0))
            .unwrap();
        assert_eq!(journal, "wal");
        let kept: i64 = database
            .read()
            .query_row("SELECT v FROM t", [], |row| row.get(0))
            .unwrap();
        assert_eq!(kept, 5);
    }
}
