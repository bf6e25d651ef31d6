//! Who is calling: an API key's org and role, or the local user.
//!
//! With no `[[api_keys]]` the server is in local mode: it listens on
//! loopback (or was told `security.anonymous`), and every caller is the one
//! local user, who may do anything and is one tenant. With keys it is in
//! keyed mode: every route but `GET /` needs one, and the key's org is the
//! tenant.
//!
//! Keys are looked up by their SHA-256, so the table holds no plaintext
//! and a lookup does not compare secrets byte by byte.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

pub use crate::config::Role;
use crate::config::{ApiKeyConfig, ConfigError, Env};

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub org: String,
    pub role: Role,
    /// A short, non-secret label for logs: the key's hash prefix.
    pub key_label: String,
}

/// Who a request comes from, read from its headers once.
#[derive(Debug, Clone)]
pub enum Identity {
    /// Local mode: the one local user.
    Local,
    Key(Principal),
    /// Keyed mode, and no usable key.
    Refused(KeyRefusal),
}

/// Why a request has no principal; each surface words the 401 its way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRefusal {
    /// Neither `x-api-key` nor `Authorization` was sent.
    Missing,
    /// `Authorization` was sent, but not as `Bearer <key>`.
    NotBearer,
    /// The key is not a configured one.
    Unknown,
    /// A route that always takes a key, on a server with none configured.
    NoKeys,
}

impl KeyRefusal {
    /// What to fix, for the surfaces that have no wording of their own.
    pub fn message(self) -> &'static str {
        match self {
            KeyRefusal::Missing => {
                "an API key is required: send it in the x-api-key header or as `Authorization: Bearer <key>`"
            }
            KeyRefusal::NotBearer => "the Authorization header must be `Bearer <api key>`",
            KeyRefusal::Unknown => "invalid API key",
            KeyRefusal::NoKeys => {
                "this endpoint needs an API key, and none are configured: add an [[api_keys]] entry to the config"
            }
        }
    }
}

impl Identity {
    /// For routes that take a key in every mode (Feather, TrueFoundry,
    /// `/mcp/`): the key's principal.
    pub fn key(self) -> Result<Principal, KeyRefusal> {
        match self {
            Identity::Key(principal) => Ok(principal),
            Identity::Local => Err(KeyRefusal::NoKeys),
            Identity::Refused(why) => Err(why),
        }
    }

    /// For every other route: the key's principal, or `None` for the
    /// local user.
    pub fn user(self) -> Result<Option<Principal>, KeyRefusal> {
        match self {
            Identity::Key(principal) => Ok(Some(principal)),
            Identity::Local => Ok(None),
            Identity::Refused(why) => Err(why),
        }
    }
}

/// The tenant a user's data belongs to: the key's org, or `None` for the
/// local user.
pub fn tenant(user: &Option<Principal>) -> Option<&str> {
    user.as_ref().map(|p| p.org.as_str())
}

/// Who is calling a tool, for whom, and why: checked and logged by the
/// dispatcher on every tool path.
#[derive(Debug, Clone)]
pub struct Caller {
    /// `None` for the local user (local mode).
    pub principal: Option<Principal>,
    /// The end user every end-user-scoped call is pinned to.
    pub end_user: Option<String>,
    /// Why the call is made, for the log: `feather_chat`, `mcp_endpoint`...
    pub reason: &'static str,
}

impl Caller {
    pub fn anonymous(reason: &'static str) -> Caller {
        Caller {
            principal: None,
            end_user: None,
            reason,
        }
    }

    pub fn with_key(principal: Principal, reason: &'static str) -> Caller {
        Caller {
            principal: Some(principal),
            end_user: None,
            reason,
        }
    }

    pub fn tenant(&self) -> Option<&str> {
        tenant(&self.principal)
    }

    /// Whether the caller may call a tool that is, or is not, read-only:
    /// viewers only read.
    pub fn may_call(&self, read_only: bool) -> bool {
        read_only
            || self
                .principal
                .as_ref()
                .is_none_or(|p| p.role != Role::Viewer)
    }
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

    /// The caller named by the `Authorization` (a Bearer token, first) or
    /// `x-api-key` header values; with no keys configured, the local user
    /// whatever they say.
    pub fn identify(&self, authorization: Option<&str>, x_api_key: Option<&str>) -> Identity {
        if self.is_empty() {
            return Identity::Local;
        }
        match authorization.and_then(bearer_token).or(x_api_key) {
            Some(key) => self
                .authenticate(key)
                .map_or(Identity::Refused(KeyRefusal::Unknown), Identity::Key),
            None if authorization.is_some() => Identity::Refused(KeyRefusal::NotBearer),
            None => Identity::Refused(KeyRefusal::Missing),
        }
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
    fn identifies_bearer_first_then_x_api_key() {
        let config = ApiKeyConfig {
            key: Some("sk-viewer-123".into()),
            key_env: None,
            org: "acme".into(),
            role: Role::Viewer,
        };
        let keys = ApiKeys::from_config(&[config], &NoEnv).unwrap();
        let role = |identity: Identity| identity.key().map(|p| p.role);
        assert_eq!(role(keys.identify(None, None)), Err(KeyRefusal::Missing));
        assert_eq!(
            role(keys.identify(Some("Bearer sk-viewer-123"), Some("sk-nope-0000"))),
            Ok(Role::Viewer)
        );
        assert_eq!(
            role(keys.identify(Some("Basic abc"), Some("sk-viewer-123"))),
            Ok(Role::Viewer)
        );
        assert_eq!(
            role(keys.identify(Some("Basic abc"), None)),
            Err(KeyRefusal::NotBearer)
        );
        assert_eq!(
            role(keys.identify(None, Some("sk-nope-0000"))),
            Err(KeyRefusal::Unknown)
        );
        let none = ApiKeys::default();
        assert!(matches!(
            none.identify(Some("Bearer x"), None).user(),
            Ok(None)
        ));
        assert_eq!(
            none.identify(None, None).key().unwrap_err(),
            KeyRefusal::NoKeys
        );
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
