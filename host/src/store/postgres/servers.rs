//! MCP servers registered at run time; every change tells the replicas.

use super::{CHANNEL, PgStore, pg_error};
use crate::store::{StoreError, StoredServer};
use crate::timestamp::now;

impl PgStore {
    pub async fn servers(&self) -> Result<Vec<StoredServer>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT org, name, config, secrets, reach_any FROM registered_servers
                 ORDER BY registered_at, org, name",
                &[],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| StoredServer {
                tenant: row.get(0),
                name: row.get(1),
                config: row.get(2),
                secrets: row.get(3),
                reach_any: row.get(4),
            })
            .collect())
    }

    pub async fn save_server(&self, server: StoredServer) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute(
            "INSERT INTO registered_servers (org, name, config, secrets, reach_any, registered_at)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (org, name) DO UPDATE SET config = EXCLUDED.config,
                 secrets = EXCLUDED.secrets, reach_any = EXCLUDED.reach_any",
            &[
                &server.tenant,
                &server.name,
                &server.config,
                &server.secrets,
                &server.reach_any,
                &now(),
            ],
        )
        .await
        .map_err(pg_error)?;
        notify(&tx, "servers").await?;
        tx.commit().await.map_err(pg_error)
    }

    pub async fn remove_server(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(pg_error)?;
        tx.execute(
            "DELETE FROM registered_servers WHERE org = $1 AND name = $2",
            &[&tenant, &name],
        )
        .await
        .map_err(pg_error)?;
        notify(&tx, "servers").await?;
        tx.commit().await.map_err(pg_error)
    }
}

/// Tells every replica, when the transaction commits, what changed.
pub(super) async fn notify(
    tx: &tokio_postgres::Transaction<'_>,
    payload: &str,
) -> Result<(), StoreError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &payload])
        .await
        .map_err(pg_error)?;
    Ok(())
}
