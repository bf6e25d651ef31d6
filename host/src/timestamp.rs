//! Timestamps as the seed contracts show them.

/// Now as RFC 3339 UTC with second precision: `2025-01-31T09:00:00Z`.
pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}
