//! Token usage: what each chat's model responses cost, as the providers
//! count it, recorded per org, API key, provider and model, and summed for
//! the org's admins.
//!
//! Chats add their counts to a tally in memory, which is written to the
//! store once a second, one row per org, key, provider and model: a write
//! per chat cost as much CPU as the rest of a short chat. A chat adds what
//! it used when it ends, or when it is dropped early (its client left).
//! Reports add this replica's tally not yet written, so a chat's usage
//! shows at once where it ran, and within a second everywhere. A write
//! that fails is retried with the next; what is lost in a crash is at most
//! the last second's tally.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::auth::Caller;
use crate::store::{Store, StoreError, UsageFilter, UsageRecord};
pub use crate::store::{UsageColumn, UsageRow};

/// How often the tally is written.
const FLUSH_EVERY: Duration = Duration::from_secs(1);

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

/// Who used what: the key a tally is kept under.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Payer {
    org: String,
    api_key: Option<String>,
    provider: String,
    model: String,
}

#[derive(Clone, Copy, Default)]
struct Counts {
    requests: u32,
    input_tokens: u64,
    output_tokens: u64,
}

impl Counts {
    fn add(&mut self, other: Counts) {
        self.requests = self.requests.saturating_add(other.requests);
        self.input_tokens = self.input_tokens.saturating_add(other.input_tokens);
        self.output_tokens = self.output_tokens.saturating_add(other.output_tokens);
    }
}

type Tally = HashMap<Payer, Counts>;

/// Where usage is kept: the store, and the tally not yet written to it.
#[derive(Clone)]
pub struct UsageLog {
    store: Store,
    tally: Arc<Mutex<Tally>>,
    /// Held by a write for its whole length, and by a report while it
    /// reads the tally and the store: counts taken from the tally for a
    /// write are in neither until it commits, and a report must see them
    /// once, not never and not twice.
    writing: Arc<tokio::sync::RwLock<()>>,
}

impl UsageLog {
    /// Starts writing the tally every second, for as long as the runtime runs.
    pub fn start(store: Store) -> UsageLog {
        let log = UsageLog {
            store,
            tally: Arc::default(),
            writing: Arc::default(),
        };
        let writer = log.clone();
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(FLUSH_EVERY);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                writer.flush().await;
            }
        });
        log
    }

    /// A meter for one chat of `caller`'s.
    pub fn meter(&self, caller: &Caller) -> UsageMeter {
        UsageMeter {
            tally: self.tally.clone(),
            org: caller.tenant().unwrap_or_default().to_owned(),
            api_key: caller.principal.as_ref().map(|p| p.key_label.clone()),
            used: Vec::new(),
        }
    }

    /// Writes the tally; on failure it is kept for the next write.
    pub async fn flush(&self) {
        let _writing = self.writing.write().await;
        let tally = std::mem::take(&mut *lock(&self.tally));
        if tally.is_empty() {
            return;
        }
        let at = crate::timestamp::now();
        let records = tally
            .iter()
            .map(|(payer, counts)| record(payer, *counts, &at))
            .collect();
        if let Err(e) = self.store.record_usage(records).await {
            tracing::warn!("cannot record token usage (kept for the next attempt): {e}");
            let mut pending = lock(&self.tally);
            for (payer, counts) in tally {
                pending.entry(payer).or_default().add(counts);
            }
        }
    }

    /// One org's usage: what is written, and this replica's tally.
    pub async fn report(&self, org: &str, query: UsageQuery) -> Result<UsageReport, StoreError> {
        let _reading = self.writing.read().await;
        let unwritten: Vec<UsageRecord> = {
            let now = crate::timestamp::now();
            let in_range = query.from.as_ref().is_none_or(|from| now >= *from)
                && query.to.as_ref().is_none_or(|to| now < *to);
            let tally = lock(&self.tally);
            tally
                .iter()
                .filter(|(payer, _)| in_range && payer.org == org)
                .map(|(payer, counts)| record(payer, *counts, &now))
                .collect()
        };
        let grouped = !query.group_by.is_empty();
        let mut rows = self
            .store
            .usage(UsageFilter {
                org: org.to_owned(),
                from: query.from,
                to: query.to,
                group_by: query.group_by.clone(),
            })
            .await?;
        for record in unwritten {
            add_to_rows(&mut rows, &query.group_by, &record);
        }
        rows.sort_by(|a, b| a.group.cmp(&b.group));
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

fn lock(tally: &Mutex<Tally>) -> std::sync::MutexGuard<'_, Tally> {
    // The tally is counts only: one left half-updated by a panic is still
    // worth keeping.
    tally.lock().unwrap_or_else(PoisonError::into_inner)
}

fn record(payer: &Payer, counts: Counts, at: &str) -> UsageRecord {
    UsageRecord {
        at: at.to_owned(),
        org: payer.org.clone(),
        api_key: payer.api_key.clone(),
        provider: payer.provider.clone(),
        model: payer.model.clone(),
        requests: counts.requests,
        input_tokens: counts.input_tokens,
        output_tokens: counts.output_tokens,
    }
}

/// Adds an unwritten record to the summed rows, as the store would have.
fn add_to_rows(rows: &mut Vec<UsageRow>, group_by: &[UsageColumn], record: &UsageRecord) {
    let group: Vec<String> = group_by
        .iter()
        .map(|column| match column {
            UsageColumn::Org => record.org.clone(),
            UsageColumn::Key => record.api_key.clone().unwrap_or_default(),
            UsageColumn::Provider => record.provider.clone(),
            UsageColumn::Model => record.model.clone(),
            UsageColumn::Day => record.at.get(..10).unwrap_or_default().to_owned(),
        })
        .collect();
    let row = match rows.iter().position(|row| row.group == group) {
        Some(i) => &mut rows[i],
        None => {
            rows.push(UsageRow {
                group,
                requests: 0,
                input_tokens: 0,
                output_tokens: 0,
            });
            let last = rows.len() - 1;
            &mut rows[last]
        }
    };
    row.requests += u64::from(record.requests);
    row.input_tokens += record.input_tokens;
    row.output_tokens += record.output_tokens;
}

/// Counts one chat's usage as its model responses report it, and adds it
/// to the tally when dropped: when the chat ends, or is dropped early.
pub struct UsageMeter {
    tally: Arc<Mutex<Tally>>,
    org: String,
    api_key: Option<String>,
    /// One entry per provider and model the chat used.
    used: Vec<(String, String, Counts)>,
}

impl UsageMeter {
    /// Adds one model response's tokens.
    pub fn add(&mut self, provider: &str, model: &str, input: u32, output: u32) {
        let counts = Counts {
            requests: 1,
            input_tokens: u64::from(input),
            output_tokens: u64::from(output),
        };
        match self
            .used
            .iter_mut()
            .find(|(p, m, _)| p == provider && m == model)
        {
            Some((_, _, used)) => used.add(counts),
            None => self
                .used
                .push((provider.to_owned(), model.to_owned(), counts)),
        }
    }
}

impl Drop for UsageMeter {
    fn drop(&mut self) {
        if self.used.is_empty() {
            return;
        }
        let mut tally = lock(&self.tally);
        for (provider, model, counts) in self.used.drain(..) {
            let payer = Payer {
                org: self.org.clone(),
                api_key: self.api_key.clone(),
                provider,
                model,
            };
            tally.entry(payer).or_default().add(counts);
        }
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
