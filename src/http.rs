//! HTTP: `/metrics` (Prometheus text format), `/healthz` (the loop turns), `/readyz`
//! (group joined and a broker reachable).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::kafka::Health;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
}

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("cannot listen on {addr} (http.bind / ATOWATCH_HTTP_BIND): {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/", get(index))
        .with_state(state)
}

async fn metrics(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.metrics.render(),
    )
}

async fn healthz(State(s): State<HttpState>) -> impl IntoResponse {
    if s.health.live(chrono::Utc::now().timestamp_millis()) {
        (StatusCode::OK, "ok\n")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "stalled: the pipeline loop has not turned for 60s\n",
        )
    }
}

async fn readyz(State(s): State<HttpState>) -> impl IntoResponse {
    match s.health.not_ready_reason() {
        None => (StatusCode::OK, "ready\n".to_string()),
        Some(why) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {why}\n"),
        ),
    }
}

async fn index() -> &'static str {
    "atowatch: /metrics /healthz /readyz\n"
}

/// Binds `addr` and serves until the runtime stops. Returns the bound address (port 0
/// picks a free one).
pub async fn serve(addr: &str, state: HttpState) -> Result<SocketAddr, HttpError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| HttpError::Bind {
            addr: addr.to_string(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| HttpError::Bind {
        addr: addr.to_string(),
        source,
    })?;
    let app = router(state);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            crate::error!("http", "server stopped: {e}");
        }
    });
    Ok(local)
}
