//! Projects, their versions (eggs) and their spiders.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Store, StoreResult};
use crate::names::scrapyd_version_name;
use crate::version::compare_versions;

/// A project: its Scrapyd name and its Scrapy Cloud numeric id.
#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: i64,
    pub name: String,
}

/// One uploaded version of a project.
#[derive(Debug, Clone, PartialEq)]
pub struct Version {
    /// Exactly as uploaded.
    pub version: String,
    /// The folder under `<eggs_dir>/<project>/` it is unpacked in.
    pub dir_name: String,
    /// `SCRAPY_SETTINGS_MODULE` for its crawls.
    pub settings_module: String,
    /// Its spiders, sorted, as `scrapy list` printed them at upload.
    pub spiders: Vec<String>,
    pub uploaded_at: f64,
}

/// Every project with its versions, read whole and kept until one of them
/// changes: scheduling and the listings look projects up on every call.
#[derive(Debug, Default)]
pub(super) struct Catalog {
    /// Sorted by name; each project's versions oldest first.
    projects: Vec<(Project, Vec<Version>)>,
}

impl Catalog {
    fn read(connection: &Connection) -> StoreResult<Catalog> {
        let mut projects: Vec<(Project, Vec<Version>)> = Vec::new();
        let mut statement =
            connection.prepare_cached("SELECT id, name FROM projects ORDER BY name")?;
        let rows = statement.query_map([], |row| {
            Ok(Project {
                id: row.get(0)?,
                name: row.get(1)?,
            })
        })?;
        for row in rows {
            projects.push((row?, Vec::new()));
        }
        let mut statement = connection.prepare_cached(
            "SELECT project_id, version, dir_name, settings_module, spiders, uploaded_at FROM versions",
        )?;
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, String>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, String>(4)?,
                row.get::<_, f64>(5)?,
            ))
        })?;
        for row in rows {
            let (project_id, version, dir_name, settings_module, spiders, uploaded_at) = row?;
            if let Some((_, versions)) = projects.iter_mut().find(|(p, _)| p.id == project_id) {
                versions.push(Version {
                    version,
                    dir_name,
                    settings_module,
                    spiders: serde_json::from_str(&spiders)?,
                    uploaded_at,
                });
            }
        }
        for (_, versions) in &mut projects {
            versions.sort_by(|a, b| compare_versions(&a.version, &b.version));
        }
        Ok(Catalog { projects })
    }

    fn versions_of(&self, project_id: i64) -> &[Version] {
        self.projects
            .iter()
            .find(|(project, _)| project.id == project_id)
            .map_or(&[], |(_, versions)| versions.as_slice())
    }
}

impl Store {
    /// The catalog as of now: the cached one if nothing changed since it
    /// was read, else read again.
    fn catalog(&self) -> StoreResult<Arc<Catalog>> {
        // Read the generation first: a change committed while the catalog
        // is being read leaves it marked as old.
        let generation = self.catalog_generation.load(Ordering::SeqCst);
        let mut cached = self.catalog.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((cached_generation, catalog)) = cached.as_ref()
            && *cached_generation == generation
        {
            return Ok(Arc::clone(catalog));
        }
        let catalog = Arc::new(Catalog::read(&self.read())?);
        *cached = Some((generation, Arc::clone(&catalog)));
        Ok(catalog)
    }

    /// Marks the catalog as changed; called once a change is committed.
    fn catalog_changed(&self) {
        self.catalog_generation.fetch_add(1, Ordering::SeqCst);
    }

    /// A project by its numeric id.
    pub fn project_by_id(&self, id: i64) -> StoreResult<Option<Project>> {
        let catalog = self.catalog()?;
        Ok(catalog
            .projects
            .iter()
            .find(|(project, _)| project.id == id)
            .map(|(project, _)| project.clone()))
    }

    pub fn project(&self, name: &str) -> StoreResult<Option<Project>> {
        let catalog = self.catalog()?;
        Ok(catalog
            .projects
            .iter()
            .find(|(project, _)| project.name == name)
            .map(|(project, _)| project.clone()))
    }

    /// Every project, sorted by name.
    pub fn projects(&self) -> StoreResult<Vec<Project>> {
        Ok(self
            .catalog()?
            .projects
            .iter()
            .map(|(project, _)| project.clone())
            .collect())
    }

    /// A project's versions, oldest first by loose-version order, so the
    /// last one is the current version.
    pub fn versions(&self, project_id: i64) -> StoreResult<Vec<Version>> {
        Ok(self.catalog()?.versions_of(project_id).to_vec())
    }

    /// The named version, or the current one when `version` is `None`.
    pub fn version(&self, project_id: i64, version: Option<&str>) -> StoreResult<Option<Version>> {
        let catalog = self.catalog()?;
        let versions = catalog.versions_of(project_id);
        Ok(match version {
            // An empty version asked for is none, as in Scrapyd.
            Some(wanted) if !wanted.is_empty() => {
                versions.iter().find(|v| v.version == wanted).cloned()
            }
            _ => versions.last().cloned(),
        })
    }

    /// The version a client means by `name`: the one named exactly so, else
    /// the only one whose Scrapyd name ([`scrapyd_version_name`]) is `name`,
    /// so that `1_0`, as Scrapyd lists `1.0`, finds `1.0`. Two versions
    /// with that Scrapyd name make it ambiguous: none is found.
    pub fn find_version(&self, project_id: i64, name: &str) -> StoreResult<Option<Version>> {
        let catalog = self.catalog()?;
        let versions = catalog.versions_of(project_id);
        if let Some(exact) = versions.iter().find(|v| v.version == name) {
            return Ok(Some(exact.clone()));
        }
        let mut sanitized = versions
            .iter()
            .filter(|v| scrapyd_version_name(&v.version) == name);
        Ok(match (sanitized.next(), sanitized.next()) {
            (Some(only), None) => Some(only.clone()),
            _ => None,
        })
    }

    /// Records a version, creating the project on its first upload and
    /// replacing a version uploaded before under the same name.
    pub fn put_version(&self, project: &str, version: &Version, now: f64) -> StoreResult<Project> {
        let (name, version) = (project.to_string(), version.clone());
        let result = self.write(move |connection| {
            let id = create_project_in(connection, &name, now)?;
            // Every spider has its Scrapy Cloud id from its first upload.
            for spider in &version.spiders {
                spider_id_in(connection, id, spider)?;
            }
            connection.execute(
                "INSERT OR REPLACE INTO versions
                     (project_id, version, dir_name, settings_module, spiders, uploaded_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    id,
                    version.version,
                    version.dir_name,
                    version.settings_module,
                    serde_json::to_string(&version.spiders)?,
                    version.uploaded_at,
                ],
            )?;
            Ok(Project { id, name })
        });
        self.catalog_changed();
        result
    }

    /// Deletes one version. When it was the last one the project goes too
    /// (with its pending jobs, see [`Store::delete_project`]); the answer
    /// says whether that happened.
    pub fn delete_version(&self, project: &Project, version: &str, now: f64) -> StoreResult<bool> {
        let (project_id, version) = (project.id, version.to_string());
        let result = self.write(move |connection| {
            connection.execute(
                "DELETE FROM versions WHERE project_id = ?1 AND version = ?2",
                params![project_id, version],
            )?;
            let left: i64 = connection.query_row(
                "SELECT count(*) FROM versions WHERE project_id = ?1",
                [project_id],
                |row| row.get(0),
            )?;
            if left == 0 {
                delete_project_in(connection, project_id, now)?;
            }
            Ok(left == 0)
        });
        self.catalog_changed();
        result
    }

    /// A page of a project's jobs (every state), by state then seq, after
    /// the `(state, seq)` given: what deleting the project walks to delete
    /// their data, a bounded page at a time.
    pub fn project_jobs_page(
        &self,
        project_id: i64,
        after: &(String, i64),
        limit: usize,
    ) -> StoreResult<Vec<(String, i64)>> {
        let connection = self.read();
        let mut statement = connection.prepare_cached(
            "SELECT state, seq FROM jobs WHERE project_id = ?1 AND (state, seq) > (?2, ?3)
             ORDER BY state, seq",
        )?;
        let rows = statement
            .query_map(params![project_id, after.0, after.1], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?
            .take(limit);
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Deletes a project, its versions and spider ids. Its pending jobs are
    /// cancelled (they could never start without an egg); running crawls go
    /// on and are recorded when they end. Returns how many were cancelled.
    pub fn delete_project(&self, project: &Project, now: f64) -> StoreResult<usize> {
        let project_id = project.id;
        let result = self.write(move |connection| delete_project_in(connection, project_id, now));
        self.catalog_changed();
        result
    }
}

/// Creates a project unless it exists. A name of digits becomes the
/// project's numeric id when that id was never used (no project and no job
/// has it), so `scrapyd-deploy` to project `123` and the Cloud API's project
/// 123 are one project; other names get the next free id.
pub(super) fn create_project_in(connection: &Connection, name: &str, now: f64) -> StoreResult<i64> {
    let existing: Option<i64> = connection
        .prepare_cached("SELECT id FROM projects WHERE name = ?1")?
        .query_row([name], |row| row.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let wanted = name
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0 && name.bytes().all(|b| b.is_ascii_digit()) && !name.starts_with('0'));
    let free = match wanted {
        Some(id) => connection
            .prepare_cached(
                "SELECT NOT EXISTS (SELECT 1 FROM projects WHERE id = ?1)
                    AND NOT EXISTS (SELECT 1 FROM jobs WHERE project_id = ?1)",
            )?
            .query_row([id], |row| row.get::<_, bool>(0))?,
        None => false,
    };
    Ok(connection.query_row(
        "INSERT INTO projects (id, name, created_at) VALUES (?1, ?2, ?3) RETURNING id",
        params![wanted.filter(|_| free), name, now],
        |row| row.get(0),
    )?)
}

fn delete_project_in(connection: &Connection, project_id: i64, now: f64) -> StoreResult<usize> {
    let cancelled = connection.execute(
        "UPDATE jobs SET state = 'finished', end_time = ?2, close_reason = 'cancelled', listed = 0,
             pending_entry = NULL
         WHERE project_id = ?1 AND state = 'pending'",
        params![project_id, now],
    )?;
    connection.execute("DELETE FROM versions WHERE project_id = ?1", [project_id])?;
    connection.execute("DELETE FROM spiders WHERE project_id = ?1", [project_id])?;
    connection.execute("DELETE FROM projects WHERE id = ?1", [project_id])?;
    Ok(cancelled)
}

pub(super) fn spider_id_in(
    connection: &Connection,
    project_id: i64,
    spider: &str,
) -> StoreResult<i64> {
    let existing: Option<i64> = connection
        .prepare_cached("SELECT id FROM spiders WHERE project_id = ?1 AND name = ?2")?
        .query_row(params![project_id, spider], |row| row.get(0))
        .optional()?;
    if let Some(id) = existing {
        return Ok(id);
    }
    let id: i64 = connection.query_row(
        "SELECT coalesce(max(id), 0) + 1 FROM spiders WHERE project_id = ?1",
        [project_id],
        |row| row.get(0),
    )?;
    connection.execute(
        "INSERT INTO spiders (project_id, id, name) VALUES (?1, ?2, ?3)",
        params![project_id, id, spider],
    )?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_with_versions(versions: &[&str]) -> (Store, i64) {
        let store = Store::open_temporary().unwrap();
        let mut project_id = 0;
        for version in versions {
            let record = Version {
                version: version.to_string(),
                dir_name: crate::names::version_dir_name(version),
                settings_module: "p.settings".into(),
                spiders: vec!["s".into()],
                uploaded_at: 0.0,
            };
            project_id = store.put_version("p", &record, 0.0).unwrap().id;
        }
        (store, project_id)
    }

    fn found(store: &Store, project_id: i64, name: &str) -> Option<String> {
        let version = store.find_version(project_id, name).unwrap();
        version.map(|v| v.version)
    }

    #[test]
    fn versions_are_found_exactly_or_by_their_scrapyd_name() {
        let (store, p) = store_with_versions(&["1.0", "r2+a", "3_0", "3.0"]);
        assert_eq!(found(&store, p, "1.0").as_deref(), Some("1.0"));
        assert_eq!(found(&store, p, "1_0").as_deref(), Some("1.0"));
        assert_eq!(found(&store, p, "r2_a").as_deref(), Some("r2+a"));
        // An exact name wins over a Scrapyd name.
        assert_eq!(found(&store, p, "3_0").as_deref(), Some("3_0"));
        assert_eq!(found(&store, p, "3.0").as_deref(), Some("3.0"));
        // Only the Scrapyd name itself, not any name with the same Scrapyd name.
        assert_eq!(found(&store, p, "1+0"), None);
        assert_eq!(found(&store, p, "9"), None);
    }

    #[test]
    fn two_versions_with_one_scrapyd_name_are_ambiguous() {
        let (store, p) = store_with_versions(&["1.0", "1+0"]);
        assert_eq!(found(&store, p, "1_0"), None);
        assert_eq!(found(&store, p, "1+0").as_deref(), Some("1+0"));
    }
}
