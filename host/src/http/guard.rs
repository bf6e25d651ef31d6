//! What every request passes before its route, on every surface: the host
//! it names, the page it comes from, and the type of its body. A page on
//! another site cannot drive this server, whether it posts a form (no
//! JSON), runs script (its `Origin` is refused) or rebinds a DNS name to
//! this machine (its `Host` is not one of ours). Refusals, and bodies over
//! the size limit, take the surface's own error shape.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::IntoResponse;

use utoipa_axum::router::OpenApiRouter;

use super::AppState;

/// How a surface words a refusal.
pub type Shape<R> = fn(StatusCode, String) -> R;

pub struct Guard {
    /// Lowercase names without port; `None` accepts any.
    hosts: Option<Vec<String>>,
    origins: Vec<String>,
    max_body_bytes: usize,
}

impl Guard {
    /// The loopback names, the listen address, and `allowed_hosts` (where
    /// `"*"` accepts any host).
    pub fn new(
        listen: SocketAddr,
        allowed_hosts: &[String],
        origins: &[String],
        max_body_bytes: usize,
    ) -> Guard {
        let any = allowed_hosts.iter().any(|h| h == "*");
        let mut hosts: Vec<String> = ["localhost", "127.0.0.1", "::1"]
            .into_iter()
            .map(str::to_owned)
            .chain(std::iter::once(listen.ip().to_string()))
            .chain(
                allowed_hosts
                    .iter()
                    .map(|h| without_port(h).to_ascii_lowercase()),
            )
            .collect();
        hosts.dedup();
        Guard {
            hosts: (!any).then_some(hosts),
            origins: origins.to_vec(),
            max_body_bytes,
        }
    }

    /// Why a request is refused before its route, if it is.
    fn check(&self, request: &Request) -> Result<(), (StatusCode, String)> {
        let headers = request.headers();
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| request.uri().authority().map(|a| a.as_str()))
            .unwrap_or_default();
        if let Some(hosts) = &self.hosts {
            let name = without_port(host).to_ascii_lowercase();
            if !hosts.contains(&name) {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "requests must name this server as one of {} in `Host`, not `{host}`; add the name clients use to security.allowed_hosts",
                        hosts.join(", ")
                    ),
                ));
            }
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let origin = origin.to_str().unwrap_or_default();
            let same_site = ["http://", "https://"]
                .iter()
                .any(|scheme| origin.strip_prefix(scheme) == Some(host));
            if !same_site && !self.origins.iter().any(|o| o == origin) {
                return Err((
                    StatusCode::FORBIDDEN,
                    format!(
                        "requests from pages on `{origin}` are refused; list the origin in cors.allowed_origins to allow it"
                    ),
                ));
            }
        }
        let changes = matches!(
            *request.method(),
            Method::POST | Method::PUT | Method::PATCH | Method::DELETE
        );
        if changes && has_body(headers) && !is_json(headers) {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "send the request body as JSON, with `Content-Type: application/json`".into(),
            ));
        }
        Ok(())
    }
}

/// `routes`, guarded, with refusals in the surface's shape.
pub fn guarded<R: IntoResponse + 'static>(
    routes: OpenApiRouter<Arc<AppState>>,
    guard: &Arc<Guard>,
    shape: Shape<R>,
) -> OpenApiRouter<Arc<AppState>> {
    let guard = guard.clone();
    routes.route_layer(middleware::from_fn(move |request: Request, next: Next| {
        let guard = guard.clone();
        async move {
            if let Err((status, message)) = guard.check(&request) {
                return shape(status, message).into_response();
            }
            let response = next.run(request).await;
            if response.status() != StatusCode::PAYLOAD_TOO_LARGE {
                return response;
            }
            let limit = guard.max_body_bytes;
            shape(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body is too large: the limit is {limit} bytes (limits.max_body_bytes)"
                ),
            )
            .into_response()
        }
    }))
}

fn has_body(headers: &HeaderMap) -> bool {
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    match length {
        Some(length) => length > 0,
        None => headers.contains_key(header::TRANSFER_ENCODING),
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|essence| essence.trim().eq_ignore_ascii_case("application/json"))
}

/// `example.com:8000` -> `example.com`, `[::1]:8000` -> `::1`.
fn without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;

    fn request(method: Method, headers: &[(&str, &str)]) -> Request {
        let mut builder = Request::builder().method(method).uri("/chat");
        for (name, value) in headers {
            builder = builder.header(*name, *value);
        }
        builder.body(Body::empty()).unwrap()
    }

    fn guard(allowed: &[&str]) -> Guard {
        let allowed: Vec<String> = allowed.iter().map(|h| h.to_string()).collect();
        Guard::new(
            "127.0.0.1:8000".parse().unwrap(),
            &allowed,
            &["http://localhost:3000".into()],
            1024,
        )
    }

    #[test]
    fn hosts_are_ours_or_listed() {
        let guard = guard(&["agents.example.test"]);
        for host in [
            "localhost:8000",
            "127.0.0.1",
            "[::1]:8000",
            "AGENTS.example.test:443",
        ] {
            assert!(
                guard
                    .check(&request(Method::GET, &[("host", host)]))
                    .is_ok(),
                "{host}"
            );
        }
        let refused = guard
            .check(&request(Method::GET, &[("host", "attacker.example:8000")]))
            .unwrap_err();
        assert_eq!(refused.0, StatusCode::FORBIDDEN);
        assert!(
            refused.1.contains("security.allowed_hosts"),
            "{}",
            refused.1
        );
        let any = super::Guard::new("0.0.0.0:80".parse().unwrap(), &["*".into()], &[], 1);
        assert!(
            any.check(&request(Method::GET, &[("host", "x.example")]))
                .is_ok()
        );
    }

    #[test]
    fn pages_elsewhere_and_bodies_that_are_not_json_are_refused() {
        let guard = guard(&[]);
        let host = ("host", "localhost:8000");
        let json = ("content-type", "application/json; charset=utf-8");
        let body = ("content-length", "2");
        let allowed = [
            vec![host, json, body],
            vec![host, ("origin", "http://localhost:3000"), json, body],
            vec![host, ("origin", "http://localhost:8000"), json, body],
            vec![host],
        ];
        for headers in allowed {
            assert!(
                guard.check(&request(Method::POST, &headers)).is_ok(),
                "{headers:?}"
            );
        }
        let page = [host, ("origin", "https://evil.example"), json, body];
        assert_eq!(
            guard.check(&request(Method::POST, &page)).unwrap_err().0,
            StatusCode::FORBIDDEN
        );
        let text = [host, ("content-type", "text/plain"), body];
        assert_eq!(
            guard.check(&request(Method::POST, &text)).unwrap_err().0,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        assert!(guard.check(&request(Method::GET, &text)).is_ok());
    }
}
