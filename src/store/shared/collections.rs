//! Collections: per project, named key-value stores of JSON objects, read
//! in key order.

use std::ops::Bound;

use rusqlite::{Connection, OptionalExtension, params};

use super::{RetryMark, SharedStore, applied_answer, forget_uploads, remember_upload};
use crate::store::{PackedStrings, StoreResult};

/// Scrapy Cloud's four collection types; what each means here is the
/// domain's business (`crate::collections`), the store only keeps them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CollectionKind {
    /// `s`
    Store,
    /// `cs`: records expire.
    CachedStore,
    /// `vs`
    VersionedStore,
    /// `vcs`: records expire.
    VersionedCachedStore,
}

impl CollectionKind {
    pub const ALL: [CollectionKind; 4] = [
        CollectionKind::Store,
        CollectionKind::CachedStore,
        CollectionKind::VersionedStore,
        CollectionKind::VersionedCachedStore,
    ];

    /// The type as the API's paths name it.
    pub fn code(self) -> &'static str {
        match self {
            CollectionKind::Store => "s",
            CollectionKind::CachedStore => "cs",
            CollectionKind::VersionedStore => "vs",
            CollectionKind::VersionedCachedStore => "vcs",
        }
    }

    pub fn from_code(code: &str) -> Option<CollectionKind> {
        CollectionKind::ALL
            .into_iter()
            .find(|kind| kind.code() == code)
    }
}

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct CollectionRow {
    pub key: String,
    /// When it was last written, in milliseconds.
    pub ts: i64,
    /// When it stops being visible (cached types), in milliseconds. Rows are
    /// read whether expired or not and the domain judges: a condition on it
    /// with the time as a parameter made SQLite compile the query again at
    /// every call (the partial index on it), which halved the rate of gets.
    pub expires: Option<i64>,
    /// A JSON object, without `_key`.
    pub value: String,
}

/// The records of one upload, `(key, value as JSON)` in the order given,
/// held compactly: an upload may hold a million tiny records, and a key
/// and a value string each would cost several times the body.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CollectionRecords {
    keys: PackedStrings,
    values: PackedStrings,
}

impl CollectionRecords {
    pub fn push(&mut self, key: &str, value: &str) {
        self.keys.push(key);
        self.values.push(value);
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The records as `(key, value)`, in the order given.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.keys.iter().zip(self.values.iter())
    }
}

impl<'a> FromIterator<(&'a str, &'a str)> for CollectionRecords {
    fn from_iter<I: IntoIterator<Item = (&'a str, &'a str)>>(records: I) -> CollectionRecords {
        let mut collected = CollectionRecords::default();
        for (key, value) in records {
            collected.push(key, value);
        }
        collected
    }
}

impl SharedStore {
    /// Writes `(key, value)` records at time `ts`, creating the collection
    /// if needed; a key written before is replaced. `expires` (milliseconds)
    /// is when the records stop being visible, for cached types. With a
    /// `mark`, an upload already applied is not applied again.
    #[allow(clippy::too_many_arguments)]
    pub fn set_records(
        &self,
        project_id: i64,
        kind: CollectionKind,
        name: String,
        records: CollectionRecords,
        ts: i64,
        expires: Option<i64>,
        mark: Option<RetryMark>,
    ) -> StoreResult<()> {
        self.write(move |connection| {
            let collection_id = create_collection_in(connection, project_id, kind, &name)?;
            if let Some(mark) = mark {
                if applied_answer(connection, "collection", collection_id, mark)?.is_some() {
                    return Ok(());
                }
                remember_upload(connection, "collection", collection_id, mark, 0)?;
            }
            if expires.is_some() {
                // Writes to cached collections sweep what has expired (an
                // index range of the expired records only).
                connection
                    .prepare_cached(
                        "DELETE FROM collection_records WHERE expires IS NOT NULL AND expires <= ?1",
                    )?
                    .execute([ts])?;
            }
            let mut insert = connection.prepare_cached(
                "INSERT INTO collection_records (collection_id, key, ts, expires, value)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (collection_id, key) DO UPDATE
                 SET ts = excluded.ts, expires = excluded.expires, value = excluded.value",
            )?;
            for (key, value) in records.iter() {
                insert.execute(params![collection_id, key, ts, expires, value])?;
            }
            Ok(())
        })
    }

    /// The collection's id, if it was ever written (and not truncated since).
    pub fn collection_id(
        &self,
        project_id: i64,
        kind: CollectionKind,
        name: &str,
    ) -> StoreResult<Option<i64>> {
        Ok(self
            .read()
            .prepare_cached(
                "SELECT id FROM collections WHERE project_id = ?1 AND name = ?2 AND kind = ?3",
            )?
            .query_row(params![project_id, name, kind.code()], |row| row.get(0))
            .optional()?)
    }

    /// The record of `key`.
    pub fn collection_record(
        &self,
        collection_id: i64,
        key: &str,
    ) -> StoreResult<Option<CollectionRow>> {
        Ok(self
            .read()
            .prepare_cached(
                "SELECT key, ts, expires, value FROM collection_records
                 WHERE collection_id = ?1 AND key = ?2",
            )?
            .query_row(params![collection_id, key], row_of)
            .optional()?)
    }

    /// The record of `key` in a collection named by project, type and
    /// name: [`SharedStore::collection_record`] in one query, one read
    /// transaction (a `get` is mostly that).
    pub fn find_record(
        &self,
        project_id: i64,
        kind: CollectionKind,
        name: &str,
        key: &str,
    ) -> StoreResult<Option<CollectionRow>> {
        Ok(self
            .read()
            .prepare_cached(
                // Not a join: SQLite compiles a join again whenever the
                // key bound changes (to weigh the join's order by it).
                "SELECT key, ts, expires, value FROM collection_records
                 WHERE collection_id = (SELECT id FROM collections
                                        WHERE project_id = ?1 AND name = ?2 AND kind = ?3)
                   AND key = ?4",
            )?
            .query_row(params![project_id, name, kind.code(), key], row_of)
            .optional()?)
    }

    /// Up to `limit` records in key order, from `from` on: one page of a
    /// scan. The read connection is held for this page only. The key index
    /// gives the order: stepping stops after `limit` rows (no bound
    /// `LIMIT`, see [`crate::store`]).
    pub fn collection_rows(
        &self,
        collection_id: i64,
        from: Bound<&str>,
        limit: usize,
    ) -> StoreResult<Vec<CollectionRow>> {
        const FROM_START: &str = "SELECT key, ts, expires, value FROM collection_records
            WHERE collection_id = ?1 ORDER BY key";
        const FROM_KEY: &str = "SELECT key, ts, expires, value FROM collection_records
            WHERE collection_id = ?1 AND key >= ?2 ORDER BY key";
        const AFTER_KEY: &str = "SELECT key, ts, expires, value FROM collection_records
            WHERE collection_id = ?1 AND key > ?2 ORDER BY key";
        let connection = self.read();
        let rows = match from {
            Bound::Unbounded => connection
                .prepare_cached(FROM_START)?
                .query_map(params![collection_id], row_of)?
                .take(limit)
                .collect::<Result<_, _>>()?,
            Bound::Included(key) => connection
                .prepare_cached(FROM_KEY)?
                .query_map(params![collection_id, key], row_of)?
                .take(limit)
                .collect::<Result<_, _>>()?,
            Bound::Excluded(key) => connection
                .prepare_cached(AFTER_KEY)?
                .query_map(params![collection_id, key], row_of)?
                .take(limit)
                .collect::<Result<_, _>>()?,
        };
        Ok(rows)
    }

    /// Removes records by key; keys that are not there are fine. The
    /// collection stays, even when emptied.
    pub fn delete_records(
        &self,
        project_id: i64,
        kind: CollectionKind,
        name: String,
        keys: Vec<String>,
    ) -> StoreResult<()> {
        self.write(move |connection| {
            let Some(collection_id) = connection
                .prepare_cached(
                    "SELECT id FROM collections WHERE project_id = ?1 AND name = ?2 AND kind = ?3",
                )?
                .query_row(params![project_id, name, kind.code()], |row| {
                    row.get::<_, i64>(0)
                })
                .optional()?
            else {
                return Ok(());
            };
            let mut delete = connection.prepare_cached(
                "DELETE FROM collection_records WHERE collection_id = ?1 AND key = ?2",
            )?;
            for key in &keys {
                delete.execute(params![collection_id, key])?;
            }
            forget_uploads(connection, "collection", collection_id)?;
            Ok(())
        })
    }

    /// Removes the collections called `name`, of every type, with their
    /// records; answers how many there were.
    pub fn truncate_collections(&self, project_id: i64, name: String) -> StoreResult<usize> {
        self.write(move |connection| {
            let ids: Vec<i64> = connection
                .prepare_cached("SELECT id FROM collections WHERE project_id = ?1 AND name = ?2")?
                .query_map(params![project_id, name], |row| row.get(0))?
                .collect::<Result<_, _>>()?;
            for id in &ids {
                connection
                    .prepare_cached("DELETE FROM collection_records WHERE collection_id = ?1")?
                    .execute([id])?;
                forget_uploads(connection, "collection", *id)?;
                connection
                    .prepare_cached("DELETE FROM collections WHERE id = ?1")?
                    .execute([id])?;
            }
            Ok(ids.len())
        })
    }

    /// Every collection of a project, by name then type.
    pub fn collections(&self, project_id: i64) -> StoreResult<Vec<(String, CollectionKind)>> {
        let connection = self.read();
        let mut statement = connection
            .prepare_cached("SELECT name, kind FROM collections WHERE project_id = ?1")?;
        let mut found: Vec<(String, CollectionKind)> = statement
            .query_map([project_id], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
            })?
            .filter_map(|row| match row {
                Ok((name, code)) => CollectionKind::from_code(&code).map(|kind| Ok((name, kind))),
                Err(error) => Some(Err(error)),
            })
            .collect::<Result<_, _>>()?;
        found.sort();
        Ok(found)
    }
}

fn row_of(row: &rusqlite::Row<'_>) -> rusqlite::Result<CollectionRow> {
    Ok(CollectionRow {
        key: row.get(0)?,
        ts: row.get(1)?,
        expires: row.get(2)?,
        value: row.get(3)?,
    })
}

fn create_collection_in(
    connection: &Connection,
    project_id: i64,
    kind: CollectionKind,
    name: &str,
) -> StoreResult<i64> {
    connection
        .prepare_cached(
            "INSERT INTO collections (project_id, name, kind) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )?
        .execute(params![project_id, name, kind.code()])?;
    Ok(connection
        .prepare_cached(
            "SELECT id FROM collections WHERE project_id = ?1 AND name = ?2 AND kind = ?3",
        )?
        .query_row(params![project_id, name, kind.code()], |row| row.get(0))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(rows: &[CollectionRow]) -> Vec<&str> {
        rows.iter().map(|row| row.key.as_str()).collect()
    }

    #[test]
    fn records_are_replaced_read_in_key_order_and_expire() {
        let store = SharedStore::open_temporary().unwrap();
        let kind = CollectionKind::Store;
        let records = |pairs: &[(&str, &str)]| pairs.iter().copied().collect::<CollectionRecords>();
        store
            .set_records(
                1,
                kind,
                "c".into(),
                records(&[("b", "{}"), ("a", "{}")]),
                10,
                None,
                None,
            )
            .unwrap();
        store
            .set_records(
                1,
                kind,
                "c".into(),
                records(&[("b", r#"{"v":2}"#)]),
                20,
                None,
                None,
            )
            .unwrap();
        let id = store.collection_id(1, kind, "c").unwrap().unwrap();
        let rows = store.collection_rows(id, Bound::Unbounded, 10).unwrap();
        assert_eq!(keys(&rows), ["a", "b"]);
        assert_eq!((rows[1].ts, rows[1].value.as_str()), (20, r#"{"v":2}"#));
        let after_a = store.collection_rows(id, Bound::Excluded("a"), 10).unwrap();
        assert_eq!(keys(&after_a), ["b"]);
        // A cached record keeps when it expires; a later write to a cached
        // collection removes it once expired.
        let cached = CollectionKind::CachedStore;
        store
            .set_records(
                1,
                cached,
                "c".into(),
                records(&[("k", "{}")]),
                10,
                Some(100),
                None,
            )
            .unwrap();
        let cached_id = store.collection_id(1, cached, "c").unwrap().unwrap();
        let row = store.collection_record(cached_id, "k").unwrap().unwrap();
        assert_eq!(row.expires, Some(100));
        let later = records(&[("other", "{}")]);
        store
            .set_records(1, cached, "c".into(), later, 100, Some(200), None)
            .unwrap();
        assert!(store.collection_record(cached_id, "k").unwrap().is_none());
        assert_eq!(
            store.collections(1).unwrap(),
            [("c".to_string(), kind), ("c".to_string(), cached)]
        );
        assert_eq!(store.truncate_collections(1, "c".into()).unwrap(), 2);
        assert!(store.collections(1).unwrap().is_empty());
    }

    #[test]
    fn a_retried_upload_is_applied_once() {
        let store = SharedStore::open_temporary().unwrap();
        let kind = CollectionKind::Store;
        let mark = RetryMark::of(0, "apikey", b"body", 1000);
        let one = [("k", r#"{"n":1}"#)].into_iter().collect();
        let two = [("k", r#"{"n":2}"#)].into_iter().collect();
        store
            .set_records(1, kind, "c".into(), one, 1, None, Some(mark))
            .unwrap();
        // Meanwhile another writer changed the key; the retry must not undo it.
        store
            .set_records(1, kind, "c".into(), two, 2, None, None)
            .unwrap();
        let again: CollectionRecords = [("k", r#"{"n":1}"#)].into_iter().collect();
        store
            .set_records(1, kind, "c".into(), again, 3, None, Some(mark))
            .unwrap();
        let id = store.collection_id(1, kind, "c").unwrap().unwrap();
        let row = store.collection_record(id, "k").unwrap().unwrap();
        assert_eq!(row.value, r#"{"n":2}"#);
        assert_eq!(store.find_record(1, kind, "c", "k").unwrap(), Some(row));
        assert_eq!(store.find_record(1, kind, "other", "k").unwrap(), None);
        // Once keys were deleted, the same upload again is a change.
        store
            .delete_records(1, kind, "c".into(), vec!["k".into()])
            .unwrap();
        let again: CollectionRecords = [("k", r#"{"n":1}"#)].into_iter().collect();
        store
            .set_records(1, kind, "c".into(), again, 4, None, Some(mark))
            .unwrap();
        assert!(store.collection_record(id, "k").unwrap().is_some());
    }
}
