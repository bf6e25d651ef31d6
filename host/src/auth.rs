//! API keys: who is calling, for which org, with which role.
//!
//! Keys are looked up by their SHA-256, so the table holds no plaintext
//! and a lookup does not compare secrets byte by byte.

use std::collections::HashMap;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{ConfigError, Env};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub org: String,
    pub role: Role,
    /// A short, non-secret label for logs: the key's hash prefix.
    pub key_label: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The key itself; prefer `key_env` outside examples and tests.
    #[serde(default)]
    pub key: Option<String>,
    /// Environment variable holding the key.
    #[serde(default)]
    pub key_env: Option<String>,
    pub org: String,
    pub role: Role,
}

#[derive(Debug, Default)]
pub struct ApiKeys {
    by_hash: HashMap<[u8; 32], Principal>,
}

impl ApiKeys {
    pub fn from_config(keys: &[ApiKeyConfig], env: &dyn Env) -> Result<ApiKeys, ConfigError> {
        let mut by_hash = HashMap::new();
        for (i, entry) in keys.iter().enumerate() {
            let key = match (&entry.key, &entry.key_env) {
                (Some(key), None) => key.clone(),
                (None, Some(var)) => env.var(var).ok_or_else(|| {
                    ConfigError::Invalid(format!(
                        "api_keys[{i}]: environment variable {var} is not set"
                    ))
                })?,
                _ => {
                    return Err(ConfigError::Invalid(format!(
                        "api_keys[{i}]: give exactly one of `key` and `key_env`"
                    )));
                }
            };
            if key.len() < 8 {
                return Err(ConfigError::Invalid(format!(
                    "api_keys[{i}]: keys must be at least 8 characters"
                )));
            }
            let hash = digest(&key);
            let principal = Principal {
                org: entry.org.clone(),
                role: entry.role,
                key_label: label(&hash),
            };
            if by_hash.insert(hash, principal).is_some() {
                return Err(ConfigError::Invalid(format!(
                    "api_keys[{i}]: the same key is listed twice"
                )));
            }
        }
        Ok(ApiKeys { by_hash })
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    pub fn authenticate(&self, presented: &str) -> Option<Principal> {
        self.by_hash.get(&digest(presented)).cloned()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn label(hash: &[u8; 32]) -> String {
    hash[..4].iter().map(|b| format!("{b:02x}")).collect()
}

/// The token of an `Authorization: Bearer <token>` header value.
pub fn bearer_token(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoEnv;

    impl Env for NoEnv {
        fn var(&self, _: &str) -> Option<String> {
            None
        }
    }

    #[test]
    fn authenticates_known_keys_only() {
        let config = ApiKeyConfig {
            key: Some("sk-admin-123".into()),
            key_env: None,
            org: "acme".into(),
            role: Role::Admin,
        };
        let keys = ApiKeys::from_config(&[config], &NoEnv).unwrap();
        let principal = keys.authenticate("sk-admin-123").unwrap();
        assert_eq!(
            (principal.org.as_str(), principal.role),
            ("acme", Role::Admin)
        );
        assert!(!principal.key_label.contains("sk-"));
        assert!(keys.authenticate("sk-admin-124").is_none());
        assert_eq!(bearer_token("Bearer sk-1"), Some("sk-1"));
        assert_eq!(bearer_token("bearer  sk-1 "), Some("sk-1"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
    }

    #[test]
    fn refuses_unusable_entries() {
        let missing = ApiKeyConfig {
            key: None,
            key_env: Some("NOPE".into()),
            org: "a".into(),
            role: Role::Viewer,
        };
        assert!(
            ApiKeys::from_config(&[missing], &NoEnv)
                .unwrap_err()
                .to_string()
                .contains("NOPE is not set")
        );
        let short = ApiKeyConfig {
            key: Some("x".into()),
            key_env: None,
            org: "a".into(),
            role: Role::Viewer,
        };
        assert!(ApiKeys::from_config(&[short], &NoEnv).is_err());
    }
}
