//! A project's activity log: events (JSON objects) in the order they were
//! added, written by clients and by the daemon itself (`job:scheduled`,
//! `job:started`, `job:completed`, `job:cancelled`).

use rusqlite::{Connection, params};
use serde_json::{Map, Value};

use super::{Store, StoreResult};

/// One stored event with its time in milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub struct ActivityEvent {
    pub ts: i64,
    pub event: Map<String, Value>,
}

/// Appends events inside a write that is already under way, so a job's
/// change of state and its event are committed together.
pub(super) fn add_activity_in(
    connection: &Connection,
    project_id: i64,
    ts: i64,
    events: &[Map<String, Value>],
) -> StoreResult<()> {
    let mut statement = connection
        .prepare_cached("INSERT INTO activity (project_id, ts, event) VALUES (?1, ?2, ?3)")?;
    for event in events {
        statement.execute(params![
            project_id,
            ts,
            Value::Object(event.clone()).to_string()
        ])?;
    }
    Ok(())
}

impl Store {
    /// Appends events, in order.
    pub fn add_activity(
        &self,
        project_id: i64,
        ts: i64,
        events: Vec<Map<String, Value>>,
    ) -> StoreResult<()> {
        self.write(move |connection| add_activity_in(connection, project_id, ts, &events))
    }

    /// Events newest first, each given to `visit` until it answers false.
    pub fn read_activity(
        &self,
        project_id: i64,
        visit: &mut dyn FnMut(ActivityEvent) -> bool,
    ) -> StoreResult<()> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT ts, event FROM activity WHERE project_id = ?1 ORDER BY seq DESC",
        )?;
        let mut rows = statement.query([project_id])?;
        while let Some(row) = rows.next()? {
            let text: String = row.get(1)?;
            let event = match serde_json::from_str(&text)? {
                Value::Object(map) => map,
                _ => Map::new(),
            };
            if !visit(ActivityEvent {
                ts: row.get(0)?,
                event,
            }) {
                break;
            }
        }
        Ok(())
    }
}
