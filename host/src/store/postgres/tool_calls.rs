//! The durable tool-call log, shared by every replica.

use super::{PgStore, pg_error};
use crate::store::{StoreError, ToolCallRecord};

impl PgStore {
    pub async fn log_tool_call(&self, record: ToolCallRecord) -> Result<(), StoreError> {
        let client = self.client().await?;
        let insert = client
            .prepare_cached(
                "INSERT INTO tool_calls (at, org, api_key, end_user_id, connection_id, server, tool, mode, reason, duration_ms, success, error)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .await
            .map_err(pg_error)?;
        client
            .execute(
                &insert,
                &[
                    &record.at,
                    &record.org,
                    &record.api_key,
                    &record.end_user_id,
                    &record.connection_id,
                    &record.server,
                    &record.tool,
                    &record.mode,
                    &record.reason,
                    &record.duration_ms,
                    &record.success,
                    &record.error,
                ],
            )
            .await
            .map_err(pg_error)?;
        Ok(())
    }

    pub async fn tool_calls(
        &self,
        org: &str,
        connection: Option<String>,
        limit: u32,
    ) -> Result<Vec<ToolCallRecord>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(
                "SELECT at, org, api_key, end_user_id, connection_id, server, tool, mode, reason, duration_ms, success, error
                 FROM tool_calls
                 WHERE org = $1 AND ($2::TEXT IS NULL OR connection_id = $2)
                 ORDER BY seq DESC LIMIT $3",
                &[&org, &connection, &i64::from(limit)],
            )
            .await
            .map_err(pg_error)?;
        Ok(rows
            .iter()
            .map(|row| ToolCallRecord {
                at: row.get(0),
                org: row.get(1),
                api_key: row.get(2),
                end_user_id: row.get(3),
                connection_id: row.get(4),
                server: row.get(5),
                tool: row.get(6),
                mode: row.get(7),
                reason: row.get(8),
                duration_ms: row.get(9),
                success: row.get(10),
                error: row.get(11),
            })
            .collect())
    }
}
