//! MCP servers registered at run time, kept so they come back after a
//! restart. Their `env` and `headers` are sealed before they get here.

use rusqlite::params;

use super::SqliteStore;
use crate::store::{StoreError, StoredServer};
use crate::timestamp::now;

impl SqliteStore {
    pub async fn servers(&self) -> Result<Vec<StoredServer>, StoreError> {
        self.read(|c| {
            let mut query = c.prepare(
                "SELECT org, name, config, secrets, reach_any FROM registered_servers
                 ORDER BY registered_at, org, name",
            )?;
            let rows = query.query_map([], |row| {
                Ok(StoredServer {
                    tenant: row.get(0)?,
                    name: row.get(1)?,
                    config: row.get(2)?,
                    secrets: row.get(3)?,
                    reach_any: row.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    pub async fn save_server(&self, server: StoredServer) -> Result<(), StoreError> {
        self.write(move |c| {
            c.execute(
                "INSERT OR REPLACE INTO registered_servers
                     (org, name, config, secrets, reach_any, registered_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    server.tenant,
                    server.name,
                    server.config,
                    server.secrets,
                    server.reach_any,
                    now()
                ],
            )
        })
        .await
        .map(drop)
    }

    pub async fn remove_server(&self, tenant: &str, name: &str) -> Result<(), StoreError> {
        let (tenant, name) = (tenant.to_owned(), name.to_owned());
        self.write(move |c| {
            c.execute(
                "DELETE FROM registered_servers WHERE org = ?1 AND name = ?2",
                [tenant, name],
            )
        })
        .await
        .map(drop)
    }
}
