//! The web view's authentication: the gRPC API's token, presented the ways a browser can.
//!
//! A browser cannot add the `authorization` metadata a gRPC client sends, so the token is
//! accepted as `Authorization: Bearer TOKEN` (scripts, curl), as the `tracery_token` cookie,
//! or once as `?token=TOKEN`, which sets that cookie (HttpOnly, SameSite=Strict, so other
//! sites can neither read it nor post with it) and redirects to the same page without it.
//! The check itself is [`crate::auth::Access::authenticate`], as for the CLI.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tonic::metadata::MetadataValue;
use tonic::transport::server::TcpConnectInfo;

use super::{html, Web};

/// The cookie that carries the token after a `?token=` visit.
const COOKIE: &str = "tracery_token";

/// The token a request presented and where it came from; handlers pass both on to the
/// `Tracery` service so it authenticates and audits the call as it would a CLI's.
#[derive(Clone, Debug)]
pub(super) struct Presented {
    token: Option<String>,
    peer: SocketAddr,
}

impl Presented {
    /// A gRPC request carrying `message`, the token as `authorization: Bearer`, and the
    /// browser's address (for the audit log).
    pub(super) fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        if let Some(value) = self
            .token
            .as_ref()
            .and_then(|t| MetadataValue::try_from(format!("Bearer {t}")).ok())
        {
            request.metadata_mut().insert("authorization", value);
        }
        request.extensions_mut().insert(TcpConnectInfo {
            local_addr: None,
            remote_addr: Some(self.peer),
        });
        request
    }
}

/// Lets a request through only with a valid token; a `?token=` on a page becomes a cookie.
pub(super) async fn require_token(
    State(web): State<Arc<Web>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    mut request: Request,
    next: Next,
) -> Response {
    let from_query = query_token(request.uri());
    let token = from_query
        .clone()
        .or_else(|| bearer(request.headers()))
        .or_else(|| cookie(request.headers()));
    let presented = Presented { token, peer };
    let is_api = request.uri().path().starts_with("/api/");
    if let Err(status) = web
        .registry
        .opts
        .access
        .authenticate(&presented.request(()))
        .await
    {
        return refused(is_api, &status);
    }
    if let (Some(token), false) = (&from_query, is_api) {
        // Out of the address bar (and history) into an HttpOnly cookie.
        if let Some(set) = cookie_header(token) {
            let location = without_token(request.uri());
            let mut response =
                (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response();
            response.headers_mut().insert(header::SET_COOKIE, set);
            return response;
        }
    }
    request.extensions_mut().insert(presented);
    next.run(request).await
}

/// 401, saying how to get in: JSON for the API, a page for a browser.
fn refused(is_api: bool, status: &tonic::Status) -> Response {
    let how = "Open the address that `tracery-agent standalone` printed when it started (it \
               ends in ?token=...), or add ?token=TOKEN to this address with the token from \
               the file named above.";
    if is_api {
        let body = serde_json::json!({
            "error": status.message(),
            "code": "unauthenticated",
            "hint": "send Authorization: Bearer TOKEN",
        });
        return (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    }
    let body = html::layout(
        "Sign in",
        &format!(
            "<h1>This Tracery needs its API token</h1><p class=\"error\">{}</p><p>{}</p>",
            html::escape(status.message()),
            html::escape(how)
        ),
    );
    (StatusCode::UNAUTHORIZED, body).into_response()
}

fn query_token(uri: &Uri) -> Option<String> {
    uri.query()?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == "token")
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

/// The path and query of `uri` without its `token` parameter.
fn without_token(uri: &Uri) -> String {
    let rest: Vec<&str> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty() && !p.starts_with("token="))
        .collect();
    if rest.is_empty() {
        uri.path().to_owned()
    } else {
        format!("{}?{}", uri.path(), rest.join("&"))
    }
}

fn bearer(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    value.strip_prefix("Bearer ").map(|t| t.trim().to_owned())
}

fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v.to_owned())
}

/// `Set-Cookie` for `token`; `None` for a token a cookie cannot carry as is.
fn cookie_header(token: &str) -> Option<HeaderValue> {
    let plain = token
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b));
    if !plain {
        return None;
    }
    HeaderValue::from_str(&format!(
        "{COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/"
    ))
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_leaves_the_address_and_other_parameters_stay() {
        let uri: Uri = "/traces/abc?token=f00d&step=3".parse().unwrap();
        assert_eq!(query_token(&uri).as_deref(), Some("f00d"));
        assert_eq!(without_token(&uri), "/traces/abc?step=3");
        let uri: Uri = "/?token=f00d".parse().unwrap();
        assert_eq!(without_token(&uri), "/");
    }

    #[test]
    fn the_cookie_is_http_only_and_same_site_strict() {
        let v = cookie_header("f00d").unwrap();
        assert_eq!(
            v.to_str().unwrap(),
            "tracery_token=f00d; HttpOnly; SameSite=Strict; Path=/"
        );
        assert!(cookie_header("a;b").is_none());
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("x=1; tracery_token=f00d"),
        );
        assert_eq!(cookie(&h).as_deref(), Some("f00d"));
    }
}
