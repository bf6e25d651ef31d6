//! Org connections and their tool catalogues; every change tells the
//! replicas, which drop that org's cached rows.

use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

use super::servers::notify;
use super::{PgStore, pg_error};
use crate::store::{ConnectionRow, ConnectionToolRow, StoreError};

const COLUMNS: &str =
    "id, org, name, server_id, url, auth_type, header_names, credentials, created_at";

impl PgStore {
    pub async fn insert_connection(&self, row: ConnectionRow) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let header_names = serde_json::Value::from(row.header_names.clone()).to_string();
        let inserted = tx
            .execute(
                "INSERT INTO connections (id, org, name, server_id, url, auth_type, header_names, credentials, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                 ON CONFLICT DO NOTHING",
                &[
                    &row.id,
                    &row.org,
                    &row.name,
                    &row.server_id,
                    &row.url,
                    &row.auth_type,
                    &header_names,
                    &row.credentials,
                    &row.created_at,
                ],
            )
            .await
            .map_err(pg_error)?;
        if inserted == 0 {
            return Ok(false);
        }
        for (position, tool) in (0i32..).zip(&row.tools) {
            tx.execute(
                "INSERT INTO connection_tools (connection_id, position, slug, name, description, read_only, enabled)
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
                &[
                    &row.id,
                    &position,
                    &tool.slug,
                    &tool.name,
                    &tool.description,
                    &tool.read_only,
                    &tool.enabled,
                ],
            )
            .await
            .map_err(pg_error)?;
        }
        notify(&tx, &format!("connections:{}", row.org)).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(true)
    }

    pub async fn connections(&self, org: Option<&str>) -> Result<Vec<ConnectionRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM connections WHERE $1::TEXT IS NULL OR org = $1
                     ORDER BY created_at, id"
                ),
                &[&org],
            )
            .await
            .map_err(pg_error)?;
        let mut connections = Vec::with_capacity(rows.len());
        for row in &rows {
            let mut connection = connection_row(row);
            connection.tools = tools(&client, &connection.id).await?;
            connections.push(connection);
        }
        Ok(connections)
    }

    pub async fn connection(
        &self,
        org: &str,
        id: &str,
    ) -> Result<Option<ConnectionRow>, StoreError> {
        let client = self.client().await?;
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM connections WHERE org = $1 AND id = $2"),
                &[&org, &id],
            )
            .await
            .map_err(pg_error)?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut connection = connection_row(&row);
        connection.tools = tools(&client, &connection.id).await?;
        Ok(Some(connection))
    }

    pub async fn delete_connection(&self, org: &str, id: &str) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let deleted = tx
            .execute(
                "DELETE FROM connections WHERE org = $1 AND id = $2",
                &[&org, &id],
            )
            .await
            .map_err(pg_error)?;
        notify(&tx, &format!("connections:{org}")).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(deleted > 0)
    }

    pub async fn set_tool_enabled(
        &self,
        org: &str,
        id: &str,
        slug: &str,
        enabled: bool,
    ) -> Result<bool, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        let changed = tx
            .execute(
                "UPDATE connection_tools SET enabled = $4
                 WHERE connection_id = $2 AND slug = $3
                   AND EXISTS (SELECT 1 FROM connections WHERE id = $2 AND org = $1)",
                &[&org, &id, &slug, &enabled],
            )
            .await
            .map_err(pg_error)?;
        notify(&tx, &format!("connections:{org}")).await?;
        tx.commit().await.map_err(pg_error)?;
        Ok(changed > 0)
    }
}

fn connection_row(row: &Row) -> ConnectionRow {
    let header_names: String = row.get(6);
    ConnectionRow {
        id: row.get(0),
        org: row.get(1),
        name: row.get(2),
        server_id: row.get(3),
        url: row.get(4),
        auth_type: row.get(5),
        header_names: serde_json::from_str(&header_names).unwrap_or_default(),
        credentials: row.get(7),
        created_at: row.get(8),
        tools: Vec::new(),
    }
}

async fn tools(
    client: &impl GenericClient,
    id: &str,
) -> Result<Vec<ConnectionToolRow>, StoreError> {
    let rows = client
        .query(
            "SELECT slug, name, description, read_only, enabled FROM connection_tools
             WHERE connection_id = $1 ORDER BY position",
            &[&id],
        )
        .await
        .map_err(pg_error)?;
    Ok(rows
        .iter()
        .map(|row| ConnectionToolRow {
            slug: row.get(0),
            name: row.get(1),
            description: row.get(2),
            read_only: row.get(3),
            enabled: row.get(4),
        })
        .collect())
}
