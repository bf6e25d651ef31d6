//! Token usage: one row per chat, provider and model, summed on request.

use rusqlite::params;

use super::SqliteStore;
use crate::store::{StoreError, UsageFilter, UsageRecord, UsageRow};

impl SqliteStore {
    pub async fn record_usage(&self, records: Vec<UsageRecord>) -> Result<(), StoreError> {
        self.write(move |c| {
            let mut insert = c.prepare_cached(
                "INSERT INTO usage (at, org, api_key, provider, model, requests, input_tokens, output_tokens)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )?;
            for r in records {
                insert.execute(params![
                    r.at,
                    r.org,
                    r.api_key,
                    r.provider,
                    r.model,
                    r.requests,
                    to_i64(r.input_tokens),
                    to_i64(r.output_tokens)
                ])?;
            }
            Ok(())
        })
        .await
    }

    pub async fn usage(&self, filter: UsageFilter) -> Result<Vec<UsageRow>, StoreError> {
        self.read(move |c| {
            let mut query = c.prepare(&filter.sql())?;
            let groups = filter.group_by.len();
            let rows = query.query_map(params![filter.org, filter.from, filter.to], |row| {
                let count = |i: usize| row.get::<_, i64>(i).map(|n| n.max(0).unsigned_abs());
                Ok(UsageRow {
                    group: (0..groups)
                        .map(|i| row.get::<_, String>(i))
                        .collect::<Result<_, _>>()?,
                    requests: count(groups)?,
                    input_tokens: count(groups + 1)?,
                    output_tokens: count(groups + 2)?,
                })
            })?;
            rows.collect()
        })
        .await
    }
}

/// SQLite's integers are signed; no count gets near the limit.
fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
