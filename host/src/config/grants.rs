//! What a component MCP server (`transport = "wasm"`) may reach. Nothing
//! is ambient: no grant means no file, no host and no variable.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Grants {
    /// Host directories the component sees, each at its own guest path.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirGrant>,
    /// `host:port` pairs it may send HTTP requests to through `wasi:http`,
    /// subject to the same internal-address policy as MCP server URLs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Its whole environment.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Linear memory it may use; 128 MiB when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// CPU time it may spend while a tool call is in flight before it is
    /// stopped; 10 s when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<u64>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DirGrant {
    pub host: PathBuf,
    pub guest: String,
    #[serde(default)]
    pub write: bool,
}

impl Grants {
    pub fn memory_bytes(&self) -> usize {
        (self.memory_mb.unwrap_or(128) as usize) << 20
    }

    pub fn cpu_time(&self) -> Duration {
        Duration::from_millis(self.cpu_ms.unwrap_or(10_000))
    }

    /// Whether `authority` (`host:port`) is a granted host. Names compare
    /// without regard to case, as DNS does.
    pub fn allows_host(&self, authority: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(authority))
    }

    pub fn validate(&self, server: &str) -> Result<(), ConfigError> {
        let invalid = |what: String| ConfigError::Invalid(format!("mcp server `{server}`: {what}"));
        for host in &self.hosts {
            let port = host
                .rsplit_once(':')
                .map(|(name, port)| (name, port.parse::<u16>()));
            if !matches!(port, Some((name, Ok(_))) if !name.is_empty() && !name.contains('/')) {
                return Err(invalid(format!(
                    "grants.hosts entry `{host}` must be `host:port`, such as `api.example.com:443`"
                )));
            }
        }
        for dir in &self.dirs {
            if !dir.guest.starts_with('/') {
                return Err(invalid(format!(
                    "grants.dirs guest path `{}` must be absolute, such as `/docs`",
                    dir.guest
                )));
            }
        }
        if self.memory_mb == Some(0) || self.cpu_ms == Some(0) {
            return Err(invalid(
                "grants.memory_mb and grants.cpu_ms must be more than 0".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(toml: &str) -> Grants {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn hosts_are_host_and_port_and_match_without_case() {
        let granted = grants("hosts = [\"API.example.com:443\"]");
        assert!(granted.validate("s").is_ok());
        assert!(granted.allows_host("api.example.com:443"));
        assert!(!granted.allows_host("api.example.com:80"));
        for bad in ["api.example.com", ":443", "http://a:1", "a:port"] {
            let error = grants(&format!("hosts = [\"{bad}\"]")).validate("s");
            assert!(error.is_err(), "{bad}");
        }
    }

    #[test]
    fn nothing_is_granted_by_default_and_limits_have_defaults() {
        let none = Grants::default();
        assert!(none.dirs.is_empty() && none.hosts.is_empty() && none.env.is_empty());
        assert_eq!(none.memory_bytes(), 128 << 20);
        assert_eq!(none.cpu_time(), Duration::from_secs(10));
        assert!(
            grants("dirs = [{ host = \"/srv\", guest = \"docs\" }]")
                .validate("s")
                .is_err()
        );
        assert!(grants("memory_mb = 0").validate("s").is_err());
    }
}
