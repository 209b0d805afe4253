//! HTTP: `/metrics` (Prometheus text format), `/healthz` (the loop turns), `/readyz`
//! (group joined and a broker reachable), `/v1/decisions` (bearer token).

use std::collections::HashMap;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::{delete, get};

use crate::decisions::{self, DecisionTable};
use crate::kafka::Health;
use crate::metrics::Metrics;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: Arc<Metrics>,
    pub health: Arc<Health>,
    pub decisions: Arc<DecisionTable>,
    /// The bearer token `/v1/decisions` requires; `None` keeps the endpoint off.
    pub token: Option<Arc<str>>,
    /// The bearer token lifting a decision requires; `None` keeps lifting off.
    pub admin_token: Option<Arc<str>>,
    /// `normalize.lowercase_accounts`: `?account=` is keyed as the engine keys names.
    pub lowercase_accounts: bool,
    /// `normalize.allowlist`: no decision is added by hand on these networks either.
    pub allowlist: crate::normalize::CidrSet,
}

impl HttpState {
    /// Metrics and health only; the decisions endpoint off.
    pub fn new(metrics: Arc<Metrics>, health: Arc<Health>) -> HttpState {
        HttpState {
            metrics,
            health,
            decisions: Arc::new(DecisionTable::new()),
            token: None,
            admin_token: None,
            lowercase_accounts: true,
            allowlist: Default::default(),
        }
    }
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
        .route("/v1/decisions", get(list_decisions).post(add_decision))
        .route("/v1/decisions/{id}", delete(lift_decision))
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
    "atowatch: /metrics /healthz /readyz /v1/decisions (GET; POST adds one by hand; DELETE /v1/decisions/{id} lifts one)\n"
}

/// Compares without an early exit, so response time does not leak a token prefix.
fn same_token(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_error(status: StatusCode, msg: &str) -> axum::response::Response {
    let body = serde_json::json!({ "error": msg }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Parses `since`: RFC 3339 or epoch milliseconds.
fn parse_since(s: &str) -> Option<i64> {
    s.parse::<i64>()
        .ok()
        .or_else(|| crate::event::parse_rfc3339_ms(s))
}

/// The request's bearer token checked against `want`: `None` when it matches, else the
/// error response.
fn refuse(headers: &HeaderMap, want: &str, wrong: &str) -> Option<axum::response::Response> {
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let Some(given) = given else {
        let mut r = json_error(StatusCode::UNAUTHORIZED, "a bearer token is required");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"atowatch\""),
        );
        return Some(r);
    };
    if !same_token(given.trim().as_bytes(), want.as_bytes()) {
        return Some(json_error(StatusCode::FORBIDDEN, wrong));
    }
    None
}

async fn list_decisions(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> axum::response::Response {
    let Some(token) = s.token.as_deref() else {
        return json_error(
            StatusCode::NOT_FOUND,
            "the decisions API is off: set decisions.api_token_file or ATOWATCH_DECISIONS_TOKEN",
        );
    };
    if let Some(r) = refuse(&headers, token, "wrong token") {
        return r;
    }
    let mut query = decisions::Query::default();
    for (k, v) in &q {
        match k.as_str() {
            "ip" => match crate::normalize::parse_ip(v) {
                Some(ip) => query.ip = Some(ip),
                None => return json_error(StatusCode::BAD_REQUEST, "ip: not an IP address"),
            },
            "account" => {
                let name = crate::normalize::account_name(v.into(), s.lowercase_accounts);
                query.account = Some(name.into_owned());
            }
            "since" => match parse_since(v) {
                Some(ms) => query.since_ms = Some(ms),
                None => {
                    return json_error(
                        StatusCode::BAD_REQUEST,
                        "since: use RFC 3339 or epoch milliseconds (the `now` of the previous answer)",
                    );
                }
            },
            other => {
                return json_error(
                    StatusCode::BAD_REQUEST,
                    &format!("unknown parameter `{other}` (ip, account, since)"),
                );
            }
        }
    }
    let now = chrono::Utc::now().timestamp_millis();
    let (active, ended) = s.decisions.query(&query, now);
    let mut body = serde_json::json!({
        "now": crate::event::format_ts(now),
        "decisions": active,
    });
    if query.since_ms.is_some() {
        body["deleted"] = serde_json::to_value(ended).expect("decisions serialize");
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The admin token checked: `None` when the request may change decisions, else the
/// error response. `what` names the action for the messages.
fn refuse_admin(
    s: &HttpState,
    headers: &HeaderMap,
    what: &str,
) -> Option<axum::response::Response> {
    let Some(admin) = s.admin_token.as_deref() else {
        return Some(json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "{what} decisions is off: set decisions.admin_token_file or ATOWATCH_DECISIONS_ADMIN_TOKEN"
            ),
        ));
    };
    refuse(
        headers,
        admin,
        &format!(
            "wrong token: {what} takes the admin token (decisions.admin_token), not the API token"
        ),
    )
}

/// `POST /v1/decisions` with `{"ip"|"range"|"account": …, "type": "ban"|"challenge",
/// "duration": "4h", "reason": …}`: adds a decision by hand, with the admin token. It is
/// in force here at once and published on the decisions topic within a second, for
/// every other instance. 201 with the decision added; 200 with the one in force when a
/// stronger or longer decision on the entity is already held (it stays).
async fn add_decision(
    State(s): State<HttpState>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    if let Some(r) = refuse_admin(&s, &headers, "adding") {
        return r;
    }
    let req: decisions::ManualRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!(
                    "body: {e} (expected {{\"ip\"|\"range\"|\"account\": …, \"type\": \"ban\"|\"challenge\", \"duration\": \"4h\", \"reason\": …}})"
                ),
            );
        }
    };
    let now = chrono::Utc::now().timestamp_millis();
    let d = match req.decision(now, s.lowercase_accounts, &s.allowlist) {
        Ok(d) => d,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, &e),
    };
    let (held, added) = s.decisions.add(d, now);
    let mut body = serde_json::json!({ "now": crate::event::format_ts(now) });
    let status = if added {
        crate::info!(
            "decisions",
            "added by hand: {} ({} until {}): {}",
            held.id,
            held.action.as_str(),
            held.until,
            held.reason
        );
        body["added"] = serde_json::to_value(&held).expect("decisions serialize");
        StatusCode::CREATED
    } else {
        body["in_force"] = serde_json::to_value(&held).expect("decisions serialize");
        body["note"] = "a stronger or longer decision on this entity is already in force".into();
        StatusCode::OK
    };
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// `DELETE /v1/decisions/{id}` (`ip:203.0.113.7`, `range:2001:db8::/64`,
/// `account:alice`, URL-encoded): lifts an active decision, with the admin token. The
/// answer holds the decision lifted.
async fn lift_decision(
    State(s): State<HttpState>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> axum::response::Response {
    if let Some(r) = refuse_admin(&s, &headers, "lifting") {
        return r;
    }
    let now = chrono::Utc::now().timestamp_millis();
    let Some(d) = s.decisions.lift(&id, now) else {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!(
                "no active decision `{id}` (ids are scope:value, as GET /v1/decisions lists them)"
            ),
        );
    };
    crate::info!(
        "decisions",
        "lifted by hand: {} ({} from {}, due to end {})",
        d.id,
        d.action.as_str(),
        d.rule,
        d.until
    );
    let body = serde_json::json!({
        "now": crate::event::format_ts(now),
        "lifted": d,
    });
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
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
