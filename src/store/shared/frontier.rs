//! The crawl frontier (HCF): per project, frontiers of slots; each slot
//! has the set of fingerprints it has seen and a queue of batches.

use rusqlite::{Connection, OptionalExtension, params};

use super::{RetryMark, SharedStore, applied_answer, forget_uploads, remember_upload};
use crate::store::{PackedStrings, StoreResult};

/// A slot, by project, frontier and name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotAddress {
    pub project_id: i64,
    pub frontier: String,
    pub slot: String,
}

/// Requests to add, checked and rendered by the domain, in the order
/// given, held compactly: an upload may hold a million tiny requests
/// (`{"fp":"a"}` is 10 bytes), and a few strings each would cost many times
/// the body. Request `i` is the `i`th of each field.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct NewRequests {
    fps: PackedStrings,
    /// The requests as batches list them: the JSON `[fp, qdata]`.
    entries: PackedStrings,
    /// JSON kept with the fingerprint; "" when not given (JSON text is
    /// never empty).
    fdata: PackedStrings,
    /// Lower first.
    priorities: Vec<f64>,
}

impl NewRequests {
    pub fn push(&mut self, fp: &str, fdata: Option<&str>, priority: f64, entry: &str) {
        self.fps.push(fp);
        self.fdata.push(fdata.unwrap_or(""));
        self.priorities.push(priority);
        self.entries.push(entry);
    }

    pub fn len(&self) -> usize {
        self.fps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fps.is_empty()
    }

    fn fdata(&self, index: usize) -> Option<&str> {
        Some(self.fdata.get(index)).filter(|fdata| !fdata.is_empty())
    }
}

/// A batch of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: i64,
    pub priority: f64,
    /// How many requests it holds.
    pub size: usize,
    /// The JSON `[[fp, qdata], ...]`.
    pub requests: String,
}

impl SharedStore {
    /// Adds requests to a slot (created if needed): those whose
    /// fingerprint the slot has never seen are kept with their fingerprint
    /// and queued, in batches of at most `batch_size` requests of one
    /// priority, in the order given. Answers how many were new. With a
    /// `mark`, an upload already applied is answered as it was then and not
    /// applied again.
    pub fn add_requests(
        &self,
        slot: SlotAddress,
        requests: NewRequests,
        batch_size: usize,
        mark: Option<RetryMark>,
    ) -> StoreResult<u64> {
        self.write(move |connection| {
            let slot_id = create_slot_in(connection, &slot)?;
            if let Some(mark) = mark
                && let Some(answer) = applied_answer(connection, "slot", slot_id, mark)?
            {
                return Ok(answer as u64);
            }
            let mut remember = connection.prepare_cached(
                "INSERT INTO hcf_fingerprints (slot_id, fp, fdata) VALUES (?1, ?2, ?3)
                 ON CONFLICT DO NOTHING",
            )?;
            // The new requests (their indices), grouped by priority in
            // order of arrival.
            let mut queues: Vec<(f64, Vec<usize>)> = Vec::new();
            let mut newcount = 0u64;
            for (index, fp) in requests.fps.iter().enumerate() {
                let priority = requests.priorities[index];
                if remember.execute(params![slot_id, fp, requests.fdata(index)])? == 0 {
                    continue;
                }
                newcount += 1;
                match queues.iter_mut().find(|(p, _)| *p == priority) {
                    Some((_, queue)) => queue.push(index),
                    None => queues.push((priority, vec![index])),
                }
            }
            queues.sort_by(|a, b| a.0.total_cmp(&b.0));
            let mut enqueue = connection.prepare_cached(
                "INSERT INTO hcf_batches (slot_id, priority, size, requests) VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut text = String::new();
            for (priority, queue) in &queues {
                for chunk in queue.chunks(batch_size.max(1)) {
                    text.clear();
                    text.push('[');
                    for (place, &index) in chunk.iter().enumerate() {
                        if place > 0 {
                            text.push(',');
                        }
                        text.push_str(requests.entries.get(index));
                    }
                    text.push(']');
                    enqueue.execute(params![slot_id, priority, chunk.len() as i64, text])?;
                }
            }
            if let Some(mark) = mark {
                remember_upload(connection, "slot", slot_id, mark, newcount as i64)?;
            }
            Ok(newcount)
        })
    }

    /// The slot's id, if it exists.
    pub fn slot_id(&self, slot: &SlotAddress) -> StoreResult<Option<i64>> {
        slot_id_in(&self.read(), slot)
    }

    /// Up to `limit` batches of a slot, lowest priority first, then oldest,
    /// after the batch `after` (its priority and id): one page of a read.
    /// Here and in [`SharedStore::fingerprints`] an index gives the order:
    /// stepping stops after `limit` rows (no bound `LIMIT`, see
    /// [`crate::store`]).
    pub fn batches(
        &self,
        slot_id: i64,
        after: Option<(f64, i64)>,
        limit: usize,
    ) -> StoreResult<Vec<Batch>> {
        let connection = self.read();
        let batch_of = |row: &rusqlite::Row<'_>| {
            Ok(Batch {
                id: row.get(0)?,
                priority: row.get(1)?,
                size: row.get::<_, i64>(2)? as usize,
                requests: row.get(3)?,
            })
        };
        let batches = match after {
            None => connection
                .prepare_cached(
                    "SELECT id, priority, size, requests FROM hcf_batches
                     WHERE slot_id = ?1 ORDER BY priority, id",
                )?
                .query_map(params![slot_id], batch_of)?
                .take(limit)
                .collect::<Result<_, _>>()?,
            Some((priority, id)) => connection
                .prepare_cached(
                    "SELECT id, priority, size, requests FROM hcf_batches
                     WHERE slot_id = ?1 AND (priority, id) > (?2, ?3)
                     ORDER BY priority, id",
                )?
                .query_map(params![slot_id, priority, id], batch_of)?
                .take(limit)
                .collect::<Result<_, _>>()?,
        };
        Ok(batches)
    }

    /// Removes batches of a slot by id; ids it does not have are fine.
    pub fn delete_batches(&self, slot: SlotAddress, ids: Vec<i64>) -> StoreResult<()> {
        self.write(move |connection| {
            let Some(slot_id) = slot_id_in(connection, &slot)? else {
                return Ok(());
            };
            let mut delete = connection
                .prepare_cached("DELETE FROM hcf_batches WHERE slot_id = ?1 AND id = ?2")?;
            for id in ids {
                delete.execute(params![slot_id, id])?;
            }
            Ok(())
        })
    }

    /// Up to `limit` fingerprints of a slot with their fdata, in byte
    /// (code point) order, after `after`: one page of a listing.
    pub fn fingerprints(
        &self,
        slot_id: i64,
        after: Option<&str>,
        limit: usize,
    ) -> StoreResult<Vec<(String, Option<String>)>> {
        let connection = self.read();
        let row_of = |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?));
        // Two statements, so that each page is an index range from where
        // the last one stopped.
        let rows = match after {
            None => connection
                .prepare_cached(
                    "SELECT fp, fdata FROM hcf_fingerprints WHERE slot_id = ?1 ORDER BY fp",
                )?
                .query_map(params![slot_id], row_of)?
                .take(limit)
                .collect::<Result<_, _>>()?,
            Some(after) => connection
                .prepare_cached(
                    "SELECT fp, fdata FROM hcf_fingerprints WHERE slot_id = ?1 AND fp > ?2
                     ORDER BY fp",
                )?
                .query_map(params![slot_id, after], row_of)?
                .take(limit)
                .collect::<Result<_, _>>()?,
        };
        Ok(rows)
    }

    /// The names of a project's frontiers that have slots, sorted.
    pub fn frontiers(&self, project_id: i64) -> StoreResult<Vec<String>> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT DISTINCT frontier FROM hcf_slots WHERE project_id = ?1 ORDER BY frontier",
        )?;
        let names = statement
            .query_map([project_id], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(names)
    }

    /// The names of a frontier's slots, sorted.
    pub fn slots(&self, project_id: i64, frontier: &str) -> StoreResult<Vec<String>> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT slot FROM hcf_slots WHERE project_id = ?1 AND frontier = ?2 ORDER BY slot",
        )?;
        let names = statement
            .query_map(params![project_id, frontier], |row| row.get(0))?
            .collect::<Result<_, _>>()?;
        Ok(names)
    }

    /// Removes a slot: its fingerprints and its queue. A slot that does not
    /// exist is fine.
    pub fn delete_slot(&self, slot: SlotAddress) -> StoreResult<()> {
        self.write(move |connection| match slot_id_in(connection, &slot)? {
            Some(slot_id) => delete_slot_in(connection, slot_id),
            None => Ok(()),
        })
    }
}

fn slot_id_in(connection: &Connection, slot: &SlotAddress) -> StoreResult<Option<i64>> {
    Ok(connection
        .prepare_cached(
            "SELECT id FROM hcf_slots WHERE project_id = ?1 AND frontier = ?2 AND slot = ?3",
        )?
        .query_row(params![slot.project_id, slot.frontier, slot.slot], |row| {
            row.get(0)
        })
        .optional()?)
}

fn create_slot_in(connection: &Connection, slot: &SlotAddress) -> StoreResult<i64> {
    if let Some(id) = slot_id_in(connection, slot)? {
        return Ok(id);
    }
    connection
        .prepare_cached("INSERT INTO hcf_slots (project_id, frontier, slot) VALUES (?1, ?2, ?3)")?
        .execute(params![slot.project_id, slot.frontier, slot.slot])?;
    Ok(connection.last_insert_rowid())
}

pub(super) fn delete_slot_in(connection: &Connection, slot_id: i64) -> StoreResult<()> {
    connection
        .prepare_cached("DELETE FROM hcf_fingerprints WHERE slot_id = ?1")?
        .execute([slot_id])?;
    connection
        .prepare_cached("DELETE FROM hcf_batches WHERE slot_id = ?1")?
        .execute([slot_id])?;
    forget_uploads(connection, "slot", slot_id)?;
    connection
        .prepare_cached("DELETE FROM hcf_slots WHERE id = ?1")?
        .execute([slot_id])?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(slot: &str) -> SlotAddress {
        SlotAddress {
            project_id: 1,
            frontier: "f".into(),
            slot: slot.into(),
        }
    }

    /// Requests `(fp, priority)` without qdata or fdata.
    fn upload_of(given: &[(&str, f64)]) -> NewRequests {
        let mut requests = NewRequests::default();
        for &(fp, priority) in given {
            let entry = format!("[{},null]", serde_json::Value::from(fp));
            requests.push(fp, None, priority, &entry);
        }
        requests
    }

    #[test]
    fn only_new_fingerprints_are_queued_lowest_priority_first() {
        let store = SharedStore::open_temporary().unwrap();
        let first = upload_of(&[("a", 0.0), ("b", 1.0), ("a", 0.0)]);
        assert_eq!(
            store.add_requests(address("s"), first, 100, None).unwrap(),
            2
        );
        let second = upload_of(&[("b", 1.0), ("c", 0.0), ("d", 0.0)]);
        assert_eq!(
            store.add_requests(address("s"), second, 1, None).unwrap(),
            2
        );
        let slot_id = store.slot_id(&address("s")).unwrap().unwrap();
        let batches = store.batches(slot_id, None, 10).unwrap();
        let requests: Vec<&str> = batches.iter().map(|b| b.requests.as_str()).collect();
        // Priority 0 first (the first upload's, then the second's), then 1.
        assert_eq!(
            requests,
            [
                r#"[["a",null]]"#,
                r#"[["c",null]]"#,
                r#"[["d",null]]"#,
                r#"[["b",null]]"#
            ]
        );
        let after_first = store
            .batches(slot_id, Some((batches[0].priority, batches[0].id)), 10)
            .unwrap();
        assert_eq!(after_first, batches[1..]);
        store
            .delete_batches(address("s"), vec![batches[0].id, 424242])
            .unwrap();
        assert_eq!(store.batches(slot_id, None, 10).unwrap(), batches[1..]);
        // Fingerprints stay after their batch is gone.
        let fps: Vec<String> = store
            .fingerprints(slot_id, None, 10)
            .unwrap()
            .into_iter()
            .map(|(fp, _)| fp)
            .collect();
        assert_eq!(fps, ["a", "b", "c", "d"]);
        let page = store.fingerprints(slot_id, Some("b"), 1).unwrap();
        assert_eq!(page, [("c".to_string(), None)]);
        assert_eq!(
            store
                .add_requests(address("s"), upload_of(&[("a", 0.0)]), 100, None)
                .unwrap(),
            0
        );
        assert_eq!(store.slots(1, "f").unwrap(), ["s"]);
        store.delete_slot(address("s")).unwrap();
        store.delete_slot(address("s")).unwrap();
        assert!(store.frontiers(1).unwrap().is_empty());
    }

    #[test]
    fn fingerprints_keep_their_fdata_when_given() {
        let store = SharedStore::open_temporary().unwrap();
        let mut upload = NewRequests::default();
        upload.push("a", Some(r#"{"x":1}"#), 0.0, r#"["a",null]"#);
        upload.push("b", None, 0.0, r#"["b",[1]]"#);
        assert_eq!(upload.len(), 2);
        assert_eq!(
            store.add_requests(address("s"), upload, 100, None).unwrap(),
            2
        );
        let slot_id = store.slot_id(&address("s")).unwrap().unwrap();
        assert_eq!(
            store.fingerprints(slot_id, None, 10).unwrap(),
            [
                ("a".to_string(), Some(r#"{"x":1}"#.to_string())),
                ("b".to_string(), None)
            ]
        );
        let batches = store.batches(slot_id, None, 10).unwrap();
        assert_eq!(batches[0].requests, r#"[["a",null],["b",[1]]]"#);
    }

    #[test]
    fn a_retried_upload_answers_its_first_newcount() {
        let store = SharedStore::open_temporary().unwrap();
        let mark = RetryMark::of(0, "apikey", b"a b", 1000);
        let upload = || upload_of(&[("a", 0.0), ("b", 0.0)]);
        assert_eq!(
            store
                .add_requests(address("s"), upload(), 100, Some(mark))
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .add_requests(address("s"), upload(), 100, Some(mark))
                .unwrap(),
            2
        );
        assert_eq!(
            store
                .add_requests(address("s"), upload(), 100, None)
                .unwrap(),
            0
        );
        let slot_id = store.slot_id(&address("s")).unwrap().unwrap();
        assert_eq!(store.batches(slot_id, None, 10).unwrap().len(), 1);
    }
}
