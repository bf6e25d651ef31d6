//! Org connections to customer MCP servers, and their tool catalogues.
//!
//! Credentials arrive sealed (see `sealing`); this layer stores bytes it
//! cannot read.

use rusqlite::{OptionalExtension, Row, params};

use super::SqliteStore;
use crate::store::{ConnectionRow, ConnectionToolRow, StoreError};

const COLUMNS: &str =
    "id, org, name, server_id, url, auth_type, header_names, credentials, created_at";

impl SqliteStore {
    /// Inserts a connection with its tools; false if the org already has
    /// one with the same server id.
    pub async fn insert_connection(&self, row: ConnectionRow) -> Result<bool, StoreError> {
        self.write(move |c| {
            let inserted = c.execute(
                "INSERT OR IGNORE INTO connections (id, org, name, server_id, url, auth_type, header_names, credentials, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    row.id,
                    row.org,
                    row.name,
                    row.server_id,
                    row.url,
                    row.auth_type,
                    serde_json::Value::from(row.header_names.clone()).to_string(),
                    row.credentials,
                    row.created_at
                ],
            )?;
            if inserted == 0 {
                return Ok(false);
            }
            insert_tools(c, &row.id, &row.tools)?;
            Ok(true)
        })
        .await
    }

    /// An org's connections, or every org's when `org` is `None`.
    pub async fn connections(&self, org: Option<&str>) -> Result<Vec<ConnectionRow>, StoreError> {
        let org = org.map(str::to_owned);
        self.read(move |c| {
            let mut query = c.prepare(&format!(
                "SELECT {COLUMNS} FROM connections WHERE ?1 IS NULL OR org = ?1 ORDER BY created_at, id"
            ))?;
            let mut rows = query
                .query_map([org], connection_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            for row in &mut rows {
                row.tools = tools(c, &row.id)?;
            }
            Ok(rows)
        })
        .await
    }

    pub async fn connection(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.read(move |c| {
            let row = c
                .query_row(
                    &format!("SELECT {COLUMNS} FROM connections WHERE org = ?1 AND id = ?2"),
                    [&org, &id],
                    connection_row,
                )
                .optional()?;
            match row {
                Some(mut row) => {
                    row.tools = tools(c, &row.id)?;
                    Ok(Some(row))
                }
                None => Ok(None),
            }
        })
        .await
    }

    /// Deletes an org's connection and its tools; false if there was none.
    pub async fn delete_connection(&self, org: &str, id: &str) -> Result<bool, StoreError> {
        let (org, id) = (org.to_owned(), id.to_owned());
        self.write(move |c| {
            c.execute(
                "DELETE FROM connections WHERE org = ?1 AND id = ?2",
                [org, id],
            )
            .map(|n| n > 0)
        })
        .await
    }

    /// Enables or disables one tool; false if the org has no such tool.
    pub async fn set_tool_enabled(
        &self,
        org: &str,
        id: &str,
        slug: &str,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        let (org, id, slug) = (org.to_owned(), id.to_owned(), slug.to_owned());
        self.write(move |c| {
            c.execute(
                "UPDATE connection_tools SET enabled = ?4
                 WHERE connection_id = ?2 AND slug = ?3
                   AND EXISTS (SELECT 1 FROM connections WHERE id = ?2 AND org = ?1)",
                params![org, id, slug, enabled],
            )
            .map(|n| n > 0)
        })
        .await
    }
}

fn connection_row(row: &Row<'_>) -> rusqlite::Result<ConnectionRow> {
    let header_names: String = row.get(6)?;
    Ok(ConnectionRow {
        id: row.get(0)?,
        org: row.get(1)?,
        name: row.get(2)?,
        server_id: row.get(3)?,
        url: row.get(4)?,
        auth_type: row.get(5)?,
        header_names: serde_json::from_str(&header_names).unwrap_or_default(),
        credentials: row.get(7)?,
        created_at: row.get(8)?,
        tools: Vec::new(),
    })
}

fn tools(c: &rusqlite::Connection, id: &str) -> rusqlite::Result<Vec<ConnectionToolRow>> {
    let mut query = c.prepare(
        "SELECT slug, name, description, read_only, enabled FROM connection_tools
         WHERE connection_id = ?1 ORDER BY rowid",
    )?;
    let rows = query.query_map([id], |row| {
        Ok(ConnectionToolRow {
            slug: row.get(0)?,
            name: row.get(1)?,
            description: row.get(2)?,
            read_only: row.get(3)?,
            enabled: row.get(4)?,
        })
    })?;
    rows.collect()
}

fn insert_tools(
    c: &rusqlite::Connection,
    id: &str,
    tools: &[ConnectionToolRow],
) -> rusqlite::Result<()> {
    let mut insert = c.prepare(
        "INSERT INTO connection_tools (connection_id, slug, name, description, read_only, enabled)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for tool in tools {
        insert.execute(params![
            id,
            tool.slug,
            tool.name,
            tool.description,
            tool.read_only,
            tool.enabled
        ])?;
    }
    Ok(())
}
