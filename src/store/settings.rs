//! Project settings: the Scrapy Cloud key-value settings of a project
//! (`botgroups` among them), each value any JSON.

use rusqlite::{OptionalExtension, params};
use serde_json::{Map, Value};

use super::{Store, StoreResult};

impl Store {
    /// Every setting of a project, in name order.
    pub fn project_settings(&self, project_id: i64) -> StoreResult<Map<String, Value>> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT name, value FROM project_settings WHERE project_id = ?1 ORDER BY name",
        )?;
        let rows = statement.query_map([project_id], |row| {
            Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut settings = Map::new();
        for row in rows {
            let (name, value) = row?;
            settings.insert(name, serde_json::from_str(&value)?);
        }
        Ok(settings)
    }

    /// One setting, `None` when unset.
    pub fn project_setting(&self, project_id: i64, name: &str) -> StoreResult<Option<Value>> {
        let value: Option<String> = self
            .read()
            .prepare_cached(
                "SELECT value FROM project_settings WHERE project_id = ?1 AND name = ?2",
            )?
            .query_row(params![project_id, name], |row| row.get(0))
            .optional()?;
        Ok(value.map(|text| serde_json::from_str(&text)).transpose()?)
    }

    /// Sets every setting of `changes`, leaving the others as they are.
    pub fn merge_project_settings(
        &self,
        project_id: i64,
        changes: Map<String, Value>,
    ) -> StoreResult<()> {
        self.write(move |connection| {
            let mut statement = connection.prepare_cached(
                "INSERT INTO project_settings (project_id, name, value) VALUES (?1, ?2, ?3)
                 ON CONFLICT (project_id, name) DO UPDATE SET value = excluded.value",
            )?;
            for (name, value) in &changes {
                statement.execute(params![project_id, name, value.to_string()])?;
            }
            Ok(())
        })
    }

    /// Unsets one setting; unsetting an unset one is fine.
    pub fn delete_project_setting(&self, project_id: i64, name: &str) -> StoreResult<()> {
        let name = name.to_string();
        self.write(move |connection| {
            connection.execute(
                "DELETE FROM project_settings WHERE project_id = ?1 AND name = ?2",
                params![project_id, name],
            )?;
            Ok(())
        })
    }

    /// The projects whose `botgroups` setting names groups, with those
    /// groups: their jobs run only where one of the groups is served.
    pub fn project_botgroups(&self) -> StoreResult<Vec<(i64, Vec<String>)>> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT project_id, value FROM project_settings WHERE name = 'botgroups'",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, String>(1)?))
        })?;
        let mut found = Vec::new();
        for row in rows {
            let (project_id, value) = row?;
            let groups: Vec<String> = match serde_json::from_str::<Value>(&value)? {
                Value::Array(items) => items
                    .into_iter()
                    .filter_map(|item| item.as_str().map(str::to_string))
                    .collect(),
                Value::String(group) => vec![group],
                _ => Vec::new(),
            };
            if !groups.is_empty() {
                found.push((project_id, groups));
            }
        }
        Ok(found)
    }
}
