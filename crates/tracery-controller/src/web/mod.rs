//! The web view: server-rendered pages, a small script, and a JSON API under `/api/v1/`,
//! served on their own HTTP port (`--ui ADDR`).
//!
//! Every call goes through the same code as the gRPC API: the handlers call the `Tracery`
//! service in-process with the browser's token as the `authorization` metadata, so
//! validation, error messages, authorization and the audit log are the CLI's.

mod api;
mod auth;
mod html;
mod json;
mod listen;
mod pages;
mod snapshot_page;
mod sse;
mod timeline;
mod trace_page;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::net::TcpListener;
use tonic::Code;

use crate::registry::Registry;
use crate::tracery_api::TraceryApi;

pub use listen::{bind_ui, ui_url, UiError, DEFAULT_UI};

/// What every handler shares: the registry, and the `Tracery` service it calls.
pub(crate) struct Web {
    registry: Arc<Registry>,
    api: TraceryApi,
}

/// Serves the web view on `listener` until the controller stops.
pub(crate) async fn serve(listener: TcpListener, registry: Arc<Registry>) {
    let addr = listener.local_addr().ok();
    let mut stop = registry.stop.clone();
    let web = Arc::new(Web {
        api: TraceryApi::new(registry.clone()),
        registry,
    });
    let app = router(web).into_make_service_with_connect_info::<SocketAddr>();
    tracing::info!(addr = ?addr, "web view listening");
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        })
        .await;
    if let Err(e) = served {
        tracing::warn!(error = %e, "the web view stopped");
    }
}

fn router(web: Arc<Web>) -> Router {
    let api = Router::new()
        .route(
            "/breakpoints",
            get(api::list_breakpoints).post(api::set_breakpoint),
        )
        .route(
            "/breakpoints/{id}",
            axum::routing::delete(api::delete_breakpoint),
        )
        .route("/snapshots", get(api::list_snapshots))
        .route("/snapshots/{id}", get(api::get_snapshot))
        .route("/traces", get(api::list_traces))
        .route("/traces/{id}", get(api::get_trace))
        .route("/traces/{id}/resume", post(api::resume_trace))
        .route("/events", get(sse::events));
    Router::new()
        .route("/", get(pages::home))
        .route("/breakpoints", get(pages::breakpoints))
        .route("/snapshots/{id}", get(snapshot_page::page))
        .route("/traces/{id}", get(trace_page::page))
        .nest("/api/v1", api)
        .route("/assets/{name}", get(asset))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            web.clone(),
            auth::require_token,
        ))
        .with_state(web)
}

/// The embedded style sheet and scripts (no CDN: the page works offline).
async fn asset(axum::extract::Path(name): axum::extract::Path<String>) -> Response {
    let (body, kind): (&'static str, &str) = match name.as_str() {
        "style.css" => (include_str!("assets/style.css"), "text/css; charset=utf-8"),
        "app.js" => (
            include_str!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "trace.js" => (
            include_str!("assets/trace.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return not_found().await,
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn not_found() -> Response {
    let body = html::layout(
        "Not found",
        "<h1>Not found</h1><p>No such page. <a href=\"/\">Start page</a></p>",
    );
    (StatusCode::NOT_FOUND, body).into_response()
}

/// The HTTP status that says what a gRPC status says.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted | Code::FailedPrecondition => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Cancelled | Code::Unknown | Code::Internal | Code::DataLoss => {
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

/// A page's error: the server's message, as the CLI would print it, in the page layout.
fn error_page(status: &tonic::Status) -> Response {
    let body = html::layout(
        "Error",
        &format!(
            "<h1>{}</h1><p class=\"error\">{}</p><p><a href=\"/\">Start page</a></p>",
            html::escape(&format!("{:?}", status.code())),
            html::escape(status.message())
        ),
    );
    (http_status(status.code()), body).into_response()
}
