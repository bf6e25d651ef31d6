//! LLM providers: which are configured, their secrets, and defaults.
//!
//! `[provider]` is the one-provider shorthand; `[[providers]]` adds more,
//! routed by model name (see `agent::routing`). With neither, OpenAI and
//! Anthropic are configured from their usual environment variables, and
//! the offline mock is always there as `mock`.

use serde::Deserialize;

use super::{Config, ConfigError};

pub const DEFAULT_OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
pub const DEFAULT_OPENAI_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_ANTHROPIC_BASE_URL: &str = "https://api.anthropic.com";
pub const DEFAULT_ANTHROPIC_MODEL: &str = "claude-sonnet-4-5";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    /// The routing name (`name/model`); the plugin's name by default.
    #[serde(default)]
    pub name: Option<String>,
    /// Name of a loaded provider plugin: `openai`, `anthropic`, `mock`, ...
    pub plugin: String,
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the API key; the key itself never
    /// appears in the config file.
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// The model used when a request names none.
    #[serde(default)]
    pub model: Option<String>,
    /// Model names routed to this provider without a `name/` prefix.
    #[serde(default)]
    pub models: Vec<String>,
    /// Provider used when this one cannot be reached, or keeps failing,
    /// before its response starts.
    #[serde(default)]
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Provider for requests whose model matches no rule; the first
    /// configured provider by default.
    pub default: Option<String>,
}

/// A provider as the running server uses it, its secret resolved.
#[derive(Clone, Debug)]
pub struct ResolvedProvider {
    pub name: String,
    pub plugin: String,
    pub base_url: String,
    pub model: String,
    pub models: Vec<String>,
    pub fallback: Option<String>,
    pub api_key: Option<Secret>,
    /// The variable `api_key` is read from, for messages.
    pub api_key_env: String,
    /// Where this provider came from, for the start-up log.
    pub origin: &'static str,
}

/// Every provider, and the one that takes requests no rule matches.
#[derive(Clone, Debug)]
pub struct ResolvedProviders {
    pub all: Vec<ResolvedProvider>,
    pub default: String,
}

/// A credential that prints as `[redacted]`, so it cannot leak into logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Secret {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Read access to the environment, so tests need not mutate the process's.
pub trait Env {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|v| !v.is_empty())
    }
}

impl Config {
    pub fn resolve_providers(&self, env: &dyn Env) -> Result<ResolvedProviders, ConfigError> {
        let mut all: Vec<ResolvedProvider> = self
            .provider
            .iter()
            .chain(&self.providers)
            .map(|p| resolve(p, env, "config file"))
            .collect();
        if all.is_empty() {
            for (plugin, origin) in [
                ("openai", "OPENAI_API_KEY / OPENAI_BASE_URL"),
                ("anthropic", "ANTHROPIC_API_KEY / ANTHROPIC_BASE_URL"),
            ] {
                let (key_var, url_var) = env_vars(plugin);
                if env.var(key_var).is_some() || env.var(url_var).is_some() {
                    all.push(resolve(&ProviderConfig::plugin(plugin), env, origin));
                }
            }
        }
        if !all.iter().any(|p| p.name == "mock") {
            let origin = "built in; offline and deterministic";
            all.push(resolve(&ProviderConfig::plugin("mock"), env, origin));
        }
        let default = self
            .routing
            .default
            .clone()
            .unwrap_or_else(|| all[0].name.clone());
        check(&all, &default)?;
        Ok(ResolvedProviders { all, default })
    }
}

fn check(all: &[ResolvedProvider], default: &str) -> Result<(), ConfigError> {
    let names = all
        .iter()
        .map(|p| p.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    for (i, provider) in all.iter().enumerate() {
        if all[..i].iter().any(|p| p.name == provider.name) {
            return Err(ConfigError::Invalid(format!(
                "provider name `{}` is used twice; give one a `name`",
                provider.name
            )));
        }
        if let Some(fallback) = &provider.fallback
            && (fallback == &provider.name || !all.iter().any(|p| &p.name == fallback))
        {
            return Err(ConfigError::Invalid(format!(
                "provider `{}` falls back to `{fallback}`, which is not another configured provider ({names})",
                provider.name
            )));
        }
    }
    if !all.iter().any(|p| p.name == default) {
        return Err(ConfigError::Invalid(format!(
            "routing.default `{default}` is not a configured provider ({names})"
        )));
    }
    Ok(())
}

impl ProviderConfig {
    fn plugin(plugin: &str) -> ProviderConfig {
        ProviderConfig {
            name: None,
            plugin: plugin.into(),
            base_url: None,
            api_key_env: None,
            model: None,
            models: Vec::new(),
            fallback: None,
        }
    }
}

fn resolve(p: &ProviderConfig, env: &dyn Env, origin: &'static str) -> ResolvedProvider {
    let (key_var, url_var) = env_vars(&p.plugin);
    let key_env = p.api_key_env.as_deref().unwrap_or(key_var);
    let base_url = p
        .base_url
        .clone()
        .or_else(|| env.var(url_var))
        .unwrap_or_else(|| default_base_url(&p.plugin).to_owned());
    let env_model = if p.plugin == "openai" {
        env.var("OPENAI_MODEL")
    } else {
        None
    };
    ResolvedProvider {
        name: p.name.clone().unwrap_or_else(|| p.plugin.clone()),
        plugin: p.plugin.clone(),
        base_url: base_url.trim_end_matches('/').to_owned(),
        model: p
            .model
            .clone()
            .or(env_model)
            .unwrap_or_else(|| default_model(&p.plugin).to_owned()),
        models: p.models.clone(),
        fallback: p.fallback.clone(),
        api_key: env.var(key_env).map(Secret),
        api_key_env: key_env.to_owned(),
        origin,
    }
}

/// The usual key and base-URL variables of a built-in provider.
fn env_vars(plugin: &str) -> (&'static str, &'static str) {
    match plugin {
        "openai" => ("OPENAI_API_KEY", "OPENAI_BASE_URL"),
        "anthropic" => ("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL"),
        _ => ("", ""),
    }
}

fn default_base_url(plugin: &str) -> &'static str {
    match plugin {
        "openai" => DEFAULT_OPENAI_BASE_URL,
        "anthropic" => DEFAULT_ANTHROPIC_BASE_URL,
        _ => "",
    }
}

fn default_model(plugin: &str) -> &'static str {
    match plugin {
        "openai" => DEFAULT_OPENAI_MODEL,
        "anthropic" => DEFAULT_ANTHROPIC_MODEL,
        _ => "mock",
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    struct FakeEnv(HashMap<&'static str, &'static str>);

    impl Env for FakeEnv {
        fn var(&self, name: &str) -> Option<String> {
            self.0.get(name).map(|v| v.to_string())
        }
    }

    fn config(text: &str) -> Config {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn mock_alone_without_configuration() {
        let providers = config("")
            .resolve_providers(&FakeEnv(HashMap::new()))
            .unwrap();
        assert_eq!(providers.default, "mock");
        assert_eq!(providers.all.len(), 1);
    }

    #[test]
    fn environment_variables_configure_openai_and_anthropic() {
        let env = FakeEnv(HashMap::from([
            ("OPENAI_BASE_URL", "http://127.0.0.1:9/v1/"),
            ("ANTHROPIC_API_KEY", "sk-ant"),
        ]));
        let providers = config("").resolve_providers(&env).unwrap();
        let names: Vec<&str> = providers.all.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["openai", "anthropic", "mock"]);
        assert_eq!(providers.default, "openai");
        assert_eq!(providers.all[0].base_url, "http://127.0.0.1:9/v1");
        assert!(providers.all[0].api_key.is_none());
        assert_eq!(providers.all[1].base_url, DEFAULT_ANTHROPIC_BASE_URL);
        assert_eq!(
            providers.all[1].api_key.as_ref().unwrap().expose(),
            "sk-ant"
        );
    }

    #[test]
    fn configured_providers_with_routing_and_fallback() {
        let text = r#"
            [provider]
            plugin = "openai"
            api_key_env = "MY_KEY"
            fallback = "claude"
            [[providers]]
            name = "claude"
            plugin = "anthropic"
            models = ["claude-x"]
            [routing]
            default = "claude"
        "#;
        let env = FakeEnv(HashMap::from([("MY_KEY", "sk-test")]));
        let providers = config(text).resolve_providers(&env).unwrap();
        assert_eq!(providers.default, "claude");
        assert_eq!(
            providers.all[0].api_key.as_ref().unwrap().expose(),
            "sk-test"
        );
        assert_eq!(providers.all[1].models, ["claude-x"]);
        assert_eq!(providers.all[1].model, DEFAULT_ANTHROPIC_MODEL);
    }

    #[test]
    fn refuses_dangling_names() {
        let env = FakeEnv(HashMap::new());
        let error = |text| {
            config(text)
                .resolve_providers(&env)
                .unwrap_err()
                .to_string()
        };
        assert!(
            error("[provider]\nplugin = \"openai\"\nfallback = \"nope\"\n")
                .contains("falls back to `nope`")
        );
        assert!(error("[routing]\ndefault = \"nope\"\n").contains("routing.default `nope`"));
        assert!(
            error("[[providers]]\nplugin = \"openai\"\n[[providers]]\nplugin = \"openai\"\n")
                .contains("used twice")
        );
    }

    #[test]
    fn secrets_do_not_print() {
        assert_eq!(format!("{:?}", Secret::new("sk-live".into())), "[redacted]");
    }
}
