//! Token usage, shared by every replica: one row per chat, provider and
//! model, summed on request.

use super::{PgStore, pg_error};
use crate::store::{StoreError, UsageFilter, UsageRecord, UsageRow};

impl PgStore {
    pub async fn record_usage(&self, records: Vec<UsageRecord>) -> Result<(), StoreError> {
        let mut client = self.client().await?;
        // A chat that fell back to another provider has two rows; they are
        // one write.
        let transaction = client.transaction().await.map_err(pg_error)?;
        let insert = transaction
            .prepare_cached(
                "INSERT INTO usage (at, org, api_key, provider, model, requests, input_tokens, output_tokens)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            )
            .await
            .map_err(pg_error)?;
        for r in &records {
            let counts = [
                i64::from(r.requests),
                to_i64(r.input_tokens),
                to_i64(r.output_tokens),
            ];
            transaction
                .execute(
                    &insert,
                    &[
                        &r.at,
                        &r.org,
                        &r.api_key,
                        &r.provider,
                        &r.model,
                        &counts[0],
                        &counts[1],
                        &counts[2],
                    ],
                )
                .await
                .map_err(pg_error)?;
        }
        transaction.commit().await.map_err(pg_error)
    }

    pub async fn usage(&self, filter: UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
        let client = self.client().await?;
        let rows = client
            .query(&filter.sql(), &[&filter.org, &filter.from, &filter.to])
            .await
            .map_err(pg_error)?;
        let groups = filter.group_by.len();
        let count =
            |row: &tokio_postgres::Row, i: usize| row.get::<_, i64>(i).max(0).unsigned_abs();
        Ok(rows
            .iter()
            .map(|row| UsageRow {
                group: (0..groups).map(|i| row.get(i)).collect(),
                requests: count(row, groups),
                input_tokens: count(row, groups + 1),
                output_tokens: count(row, groups + 2),
            })
            .collect())
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
