//! Token usage: what each chat's model responses cost, as the providers
//! count it, recorded per org, API key, provider and model, and summed for
//! the org's admins.
//!
//! A chat's usage is one write at its end, not one per model turn: a chat
//! with tool calls has several turns, and the store's writes are what
//! costs. A chat that is dropped before its end (its client went away)
//! still has what it used recorded, by a task of its own.

use crate::auth::Caller;
use crate::store::{Store, StoreError, UsageFilter, UsageRecord};
pub use crate::store::{UsageColumn, UsageRow};

#[derive(Debug, thiserror::Error)]
pub enum UsageQueryError {
    #[error(
        "`{name}` must be a date (2026-01-31) or an RFC 3339 timestamp (2026-01-31T09:00:00Z), not `{value}`"
    )]
    Time { name: &'static str, value: String },
    #[error(
        "`group_by` may name org, key, provider, model and day, separated by commas; `{0}` is none of them"
    )]
    Column(String),
    #[error("`group_by` names `{0}` twice")]
    Repeated(String),
}

/// What `GET /admin/usage` asks for, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageQuery {
    /// Inclusive, in the stored form.
    pub from: Option<String>,
    /// Exclusive, in the stored form.
    pub to: Option<String>,
    pub group_by: Vec<UsageColumn>,
}

impl UsageQuery {
    /// `from` and `to` are dates or timestamps. A date `to` includes its
    /// day, so `from=2026-01-01&to=2026-01-31` is all of January.
    pub fn parse(
        from: Option<&str>,
        to: Option<&str>,
        group_by: Option<&str>,
    ) -> Result<UsageQuery, UsageQueryError> {
        let mut columns = Vec::new();
        for name in group_by.unwrap_or_default().split(',').map(str::trim) {
            if name.is_empty() {
                continue;
            }
            let column = column(name).ok_or_else(|| UsageQueryError::Column(name.into()))?;
            if columns.contains(&column) {
                return Err(UsageQueryError::Repeated(name.into()));
            }
            columns.push(column);
        }
        Ok(UsageQuery {
            from: from.map(|v| bound("from", v, false)).transpose()?,
            to: to.map(|v| bound("to", v, true)).transpose()?,
            group_by: columns,
        })
    }
}

pub fn column_name(column: UsageColumn) -> &'static str {
    match column {
        UsageColumn::Org => "org",
        UsageColumn::Key => "key",
        UsageColumn::Provider => "provider",
        UsageColumn::Model => "model",
        UsageColumn::Day => "day",
    }
}

fn column(name: &str) -> Option<UsageColumn> {
    [
        UsageColumn::Org,
        UsageColumn::Key,
        UsageColumn::Provider,
        UsageColumn::Model,
        UsageColumn::Day,
    ]
    .into_iter()
    .find(|c| column_name(*c) == name)
}

/// A time bound in the stored form; a date is its day's start, or, for an
/// end, the next day's.
fn bound(name: &'static str, value: &str, end: bool) -> Result<String, UsageQueryError> {
    let invalid = || UsageQueryError::Time {
        name,
        value: value.into(),
    };
    let value = value.trim();
    // A timestamp first: a date parser would take a timestamp's date alone.
    let at = match value.parse::<jiff::Timestamp>() {
        Ok(at) => at,
        Err(_) => {
            let date = value.parse::<jiff::civil::Date>().map_err(|_| invalid())?;
            let day = if end {
                date.tomorrow().map_err(|_| invalid())?
            } else {
                date
            };
            day.to_zoned(jiff::tz::TimeZone::UTC)
                .map_err(|_| invalid())?
                .timestamp()
        }
    };
    Ok(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Usage summed: one row per group (none without `group_by`), and the
/// total.
pub struct UsageReport {
    pub rows: Vec<UsageRow>,
    pub total: UsageRow,
}

/// Where usage is kept.
#[derive(Clone)]
pub struct UsageLog {
    store: Store,
}

impl UsageLog {
    pub fn new(store: Store) -> UsageLog {
        UsageLog { store }
    }

    /// A meter for one chat of `caller`'s.
    pub fn meter(&self, caller: &Caller) -> UsageMeter {
        UsageMeter {
            store: self.store.clone(),
            org: caller.tenant().unwrap_or_default().to_owned(),
            api_key: caller.principal.as_ref().map(|p| p.key_label.clone()),
            used: Vec::new(),
        }
    }

    /// One org's usage.
    pub async fn report(&self, org: &str, query: UsageQuery) -> Result<UsageReport, StoreError> {
        let grouped = !query.group_by.is_empty();
        let rows = self
            .store
            .usage(UsageFilter {
                org: org.to_owned(),
                from: query.from,
                to: query.to,
                group_by: query.group_by,
            })
            .await?;
        let mut total = UsageRow {
            group: Vec::new(),
            requests: 0,
            input_tokens: 0,
            output_tokens: 0,
        };
        for row in &rows {
            total.requests += row.requests;
            total.input_tokens += row.input_tokens;
            total.output_tokens += row.output_tokens;
        }
        Ok(UsageReport {
            rows: if grouped { rows } else { Vec::new() },
            total,
        })
    }
}

/// Counts one chat's usage as its model responses report it, for one
/// write when the chat ends.
pub struct UsageMeter {
    store: Store,
    org: String,
    api_key: Option<String>,
    /// One entry per provider and model the chat used.
    used: Vec<UsageRecord>,
}

impl UsageMeter {
    /// Adds one model response's tokens.
    pub fn add(&mut self, provider: &str, model: &str, input: u32, output: u32) {
        let position = self
            .used
            .iter()
            .position(|u| u.provider == provider && u.model == model);
        let entry = match position {
            Some(i) => &mut self.used[i],
            None => {
                self.used.push(UsageRecord {
                    at: String::new(),
                    org: self.org.clone(),
                    api_key: self.api_key.clone(),
                    provider: provider.to_owned(),
                    model: model.to_owned(),
                    requests: 0,
                    input_tokens: 0,
                    output_tokens: 0,
                });
                let last = self.used.len() - 1;
                &mut self.used[last]
            }
        };
        entry.requests += 1;
        entry.input_tokens += u64::from(input);
        entry.output_tokens += u64::from(output);
    }

    /// Records what was counted. A failure to record does not fail the
    /// chat that used the tokens; it is logged.
    pub async fn record(mut self) {
        let used = std::mem::take(&mut self.used);
        write(&self.store, used).await;
    }
}

impl Drop for UsageMeter {
    /// A chat dropped before its end: what it used is still recorded.
    fn drop(&mut self) {
        let used = std::mem::take(&mut self.used);
        if used.is_empty() {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let store = self.store.clone();
            runtime.spawn(async move { write(&store, used).await });
        }
    }
}

async fn write(store: &Store, mut used: Vec<UsageRecord>) {
    if used.is_empty() {
        return;
    }
    let at = crate::timestamp::now();
    for record in &mut used {
        record.at.clone_from(&at);
    }
    if let Err(e) = store.record_usage(used).await {
        tracing::warn!("cannot record token usage: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_date_end_includes_its_day_and_timestamps_are_kept_in_utc() {
        let query = UsageQuery::parse(
            Some("2026-01-31T10:00:00+01:00"),
            Some("2026-01-31"),
            Some("day, model"),
        )
        .unwrap();
        assert_eq!(query.from.as_deref(), Some("2026-01-31T09:00:00Z"));
        assert_eq!(query.to.as_deref(), Some("2026-02-01T00:00:00Z"));
        assert_eq!(query.group_by, [UsageColumn::Day, UsageColumn::Model]);
        assert_eq!(
            UsageQuery::parse(Some("2026-01-01"), None, None)
                .unwrap()
                .from
                .as_deref(),
            Some("2026-01-01T00:00:00Z")
        );
    }

    #[test]
    fn bad_queries_say_what_to_fix() {
        let error = |from, group_by| {
            UsageQuery::parse(from, None, group_by)
                .unwrap_err()
                .to_string()
        };
        assert!(error(Some("yesterday"), None).contains("`from` must be a date"));
        assert!(error(None, Some("model,tenant")).contains("`tenant` is none of them"));
        assert!(error(None, Some("model,model")).contains("names `model` twice"));
    }
}
