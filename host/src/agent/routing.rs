//! Choosing a provider and model for a request by its model name.
//!
//! In order: an exact name in a provider's `models` list; a
//! `provider/model` prefix naming a configured provider; otherwise the
//! default provider, if it takes any model. Model names that merely
//! contain a slash (`meta-llama/Llama-3`) reach the default provider whole.

use std::sync::Arc;

use crate::config::{ResolvedProvider, ResolvedProviders};

#[derive(Debug, thiserror::Error)]
pub enum RoutingError {
    #[error("unknown provider `{name}` (configured: {configured})")]
    UnknownProvider { name: String, configured: String },
    #[error("unknown model `{model}`; configured: {configured}")]
    UnknownModel { model: String, configured: String },
}

/// Where one request goes.
#[derive(Clone, Debug)]
pub struct Route {
    pub provider: Arc<ResolvedProvider>,
    pub model: String,
}

impl Route {
    /// The model for a metrics label: a configured name, or `other` for
    /// one a client chose, so clients cannot grow the series without bound.
    pub fn model_label(&self) -> &str {
        let configured =
            self.model == self.provider.model || self.provider.models.contains(&self.model);
        if configured { &self.model } else { "other" }
    }
}

pub struct Router {
    providers: Vec<Arc<ResolvedProvider>>,
    default: Arc<ResolvedProvider>,
}

impl Router {
    pub fn new(resolved: ResolvedProviders) -> Router {
        let providers: Vec<Arc<ResolvedProvider>> =
            resolved.all.into_iter().map(Arc::new).collect();
        let default = providers
            .iter()
            .find(|p| p.name == resolved.default)
            .unwrap_or(&providers[0])
            .clone();
        Router { providers, default }
    }

    pub fn all(&self) -> impl Iterator<Item = &ResolvedProvider> {
        self.providers.iter().map(|p| p.as_ref())
    }

    pub fn get(&self, name: &str) -> Option<Arc<ResolvedProvider>> {
        self.providers.iter().find(|p| p.name == name).cloned()
    }

    pub fn route(&self, model: Option<&str>) -> Result<Route, RoutingError> {
        let Some(model) = model.map(str::trim).filter(|m| !m.is_empty()) else {
            return Ok(Route {
                provider: self.default.clone(),
                model: self.default.model.clone(),
            });
        };
        if let Some(provider) = self
            .providers
            .iter()
            .find(|p| p.models.iter().any(|m| m == model))
        {
            return Ok(Route {
                provider: provider.clone(),
                model: model.to_owned(),
            });
        }
        if let Some((prefix, rest)) = model.split_once('/')
            && let Some(provider) = self.get(prefix)
        {
            let model = if rest.is_empty() {
                provider.model.clone()
            } else {
                rest.to_owned()
            };
            return Ok(Route { provider, model });
        }
        if self.default.models.is_empty() {
            return Ok(Route {
                provider: self.default.clone(),
                model: model.to_owned(),
            });
        }
        Err(RoutingError::UnknownModel {
            model: model.to_owned(),
            configured: self.describe(),
        })
    }

    /// A provider by name, as a route to its default model.
    pub fn fallback_for(&self, route: &Route) -> Option<Route> {
        let provider = self.get(route.provider.fallback.as_deref()?)?;
        Some(Route {
            model: provider.model.clone(),
            provider,
        })
    }

    /// "openai (gpt-4o, any with openai/...), mock (...)" for error messages.
    fn describe(&self) -> String {
        self.providers
            .iter()
            .map(|p| {
                let mut models = p.models.clone();
                models.push(format!("{}/<model>", p.name));
                format!("{} ({})", p.name, models.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(name: &str, models: &[&str]) -> ResolvedProvider {
        ResolvedProvider {
            name: name.into(),
            plugin: name.into(),
            base_url: String::new(),
            model: format!("{name}-default"),
            models: models.iter().map(|m| m.to_string()).collect(),
            fallback: None,
            api_key: None,
            api_key_env: String::new(),
            origin: "test",
        }
    }

    fn router(default: &str, default_models: &[&str]) -> Router {
        Router::new(ResolvedProviders {
            all: vec![
                provider(default, default_models),
                provider("claude", &["claude-x"]),
                provider("mock", &[]),
            ],
            default: default.into(),
        })
    }

    fn routed(router: &Router, model: Option<&str>) -> (String, String) {
        let route = router.route(model).unwrap();
        (route.provider.name.clone(), route.model)
    }

    #[test]
    fn routes_by_list_prefix_and_default() {
        let router = router("openai", &[]);
        assert_eq!(
            routed(&router, None),
            ("openai".into(), "openai-default".into())
        );
        assert_eq!(
            routed(&router, Some("claude-x")),
            ("claude".into(), "claude-x".into())
        );
        assert_eq!(
            routed(&router, Some("mock/anything")),
            ("mock".into(), "anything".into())
        );
        assert_eq!(
            routed(&router, Some("claude/")),
            ("claude".into(), "claude-default".into())
        );
        assert_eq!(
            routed(&router, Some("meta-llama/Llama-3")),
            ("openai".into(), "meta-llama/Llama-3".into())
        );
        assert_eq!(
            routed(&router, Some("gpt-5")),
            ("openai".into(), "gpt-5".into())
        );
    }

    #[test]
    fn a_default_with_a_model_list_refuses_other_models() {
        let router = router("openai", &["gpt-4o"]);
        let error = router.route(Some("gpt-9")).unwrap_err().to_string();
        assert_eq!(
            error,
            "unknown model `gpt-9`; configured: openai (gpt-4o, openai/<model>); claude (claude-x, claude/<model>); mock (mock/<model>)"
        );
    }
}
