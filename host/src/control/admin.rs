//! The admin HTTP API, on loopback only: what `weir deploy`, `weir status`
//! and `weir rollback` call.
//!
//! | Method and path                    | Body            | Answer                    |
//! |------------------------------------|-----------------|---------------------------|
//! | `GET /v1/status`                   |                 | `[OperatorStatus]`        |
//! | `POST /v1/operators/{id}/deploy`   | component bytes | `DeployReport`            |
//! | `POST /v1/operators/{id}/rollback` |                 | `DeployReport`            |
//! | `POST /v1/savepoint`               | folder or empty | `{"path": folder}`        |
//! | `GET /v1/checkpoint`               |                 | `CheckpointStats` or null |
//! | `GET /metrics`                     |                 | Prometheus text format    |
//!
//! Errors are `{"error": "..."}` with 404 (no such operator) or 409 (the
//! version was refused; the running one goes on).

use anyhow::{Context, Result};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;

use super::{Control, DeployError, DeployReport, TapRequest, dashboard};

/// Time between two snapshots sent to a dashboard.
const SNAPSHOT_EVERY: std::time::Duration = std::time::Duration::from_millis(500);

/// A tap with nothing to send sends an empty line this often, so a reader
/// that went away is noticed (and the tap detached) even when no record
/// flows.
const TAP_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(2);

/// Set when the server stops, so the endless responses (events, taps) end.
type Closing = tokio::sync::watch::Receiver<bool>;

/// Largest component the API accepts (interpreted guests such as Python
/// components are tens of megabytes).
const MAX_COMPONENT_BYTES: usize = 512 << 20;

/// A running admin server; dropping it stops it.
pub struct AdminServer {
    /// The address it listens on (useful with port 0).
    pub address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Starts the admin API on `address` (a loopback address; port 0 picks one).
///
/// # Errors
/// When the address is not loopback or cannot be bound.
pub fn serve(control: Arc<Control>, address: SocketAddr) -> Result<AdminServer> {
    crate::config::check_admin_address(address)?;
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("cannot listen on {address} for the admin API"))?;
    listener.set_nonblocking(true)?;
    let address = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let (closing, closing_rx) = tokio::sync::watch::channel(false);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let app = axum::Router::new()
        .route("/v1/status", get(status))
        .route("/v1/operators/{id}/deploy", post(deploy))
        .route("/v1/operators/{id}/rollback", post(rollback))
        .route("/v1/operators/{id}/resume", post(resume))
        .route("/v1/operators/{id}/replay", post(replay))
        .route("/v1/savepoint", post(savepoint))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/metrics", get(metrics))
        .route("/", get(page))
        .route("/dashboard.js", get(script))
        .route("/dashboard.css", get(style))
        .route("/events", get(events))
        .route("/v1/tap", get(tap))
        .layer(axum::Extension(closing_rx))
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
        .with_state(control);
    let thread = std::thread::Builder::new()
        .name("weir-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let served = async {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            let _ = stopped.await;
                            let _ = closing.send(true);
                        })
                        .await
                };
                if let Err(e) = served.await {
                    tracing::error!("the admin API stopped: {e}");
                }
            });
        })?;
    Ok(AdminServer {
        address,
        stop: Some(stop),
        thread: Some(thread),
    })
}

async fn status(State(control): State<Arc<Control>>) -> Response {
    Json(control.status()).into_response()
}

async fn metrics(State(control): State<Arc<Control>>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        control.metrics(),
    )
        .into_response()
}

async fn page() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/html; charset=utf-8")],
        dashboard::INDEX_HTML,
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/javascript; charset=utf-8",
        )],
        dashboard::SCRIPT,
    )
        .into_response()
}

async fn style() -> Response {
    (
        [(axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8")],
        dashboard::STYLE,
    )
        .into_response()
}

/// Server-sent events: a snapshot of the run now and every
/// [`SNAPSHOT_EVERY`] while the page is open.
async fn events(
    State(control): State<Arc<Control>>,
    axum::Extension(closing): axum::Extension<Closing>,
) -> Response {
    use axum::response::sse::{Event, Sse};
    let stream = futures_util::stream::unfold(
        (control, closing, true),
        |(control, mut closing, first)| async move {
            if !first {
                tokio::select! {
                    () = tokio::time::sleep(SNAPSHOT_EVERY) => {}
                    _ = closing.changed() => return None,
                }
            }
            if *closing.borrow() {
                return None;
            }
            let event = Event::default().data(control.snapshot().to_string());
            Some((
                Ok::<_, std::convert::Infallible>(event),
                (control, closing, false),
            ))
        },
    );
    Sse::new(stream).into_response()
}

/// `weir tap`: JSON lines of what the tap sees, until the reader goes
/// away or the pipeline ends (what the workers sent before is drained).
async fn tap(
    State(control): State<Arc<Control>>,
    axum::Extension(closing): axum::Extension<Closing>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let request = match tap_request(query.as_deref().unwrap_or_default()) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    let tap = match control.tap(&request) {
        Ok(tap) => tap,
        Err(e @ DeployError::UnknownOperator(..)) => return error(StatusCode::NOT_FOUND, e),
        Err(e) => return error(StatusCode::BAD_REQUEST, e),
    };
    // The first line (empty) tells the reader the tap is attached.
    let stream = futures_util::stream::unfold(
        (tap, closing, Some(String::from("\n")), false),
        |(mut tap, mut closing, first, mut closed)| async move {
            if let Some(first) = first {
                return Some((Ok(first), (tap, closing, None, closed)));
            }
            let event = if closed {
                tap.events.try_recv().ok()?
            } else {
                tokio::select! {
                    biased;
                    event = tap.events.recv() => event?,
                    () = tokio::time::sleep(TAP_KEEPALIVE) => {
                        return Some((Ok("\n".to_owned()), (tap, closing, None, closed)));
                    }
                    _ = closing.changed() => {
                        closed = true;
                        tap.events.try_recv().ok()?
                    }
                }
            };
            let mut line = serde_json::to_string(&event).unwrap_or_default();
            line.push('\n');
            Some((
                Ok::<_, std::convert::Infallible>(line),
                (tap, closing, None, closed),
            ))
        },
    );
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}

/// The query of `/v1/tap`: `operator`, `rate`, `key`, `field`.
fn tap_request(query: &str) -> Result<TapRequest, String> {
    let mut request = TapRequest::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = percent_decode(value)?;
        match name {
            "operator" => request.operator = Some(value),
            "key" => request.key = Some(value),
            "field" => request.field = Some(value),
            "rate" => {
                request.rate = Some(
                    value
                        .parse()
                        .map_err(|_| format!("`rate` is not a number: {value:?}"))?,
                )
            }
            other => return Err(format!("unknown tap parameter `{other}`")),
        }
    }
    if request.operator.is_none() && request.key.is_none() {
        return Err("a tap needs an `operator` (OPERATOR or OPERATOR.OUTPUT) or a `key`".into());
    }
    Ok(request)
}

/// `%XX` escapes and `+` of a query value.
fn percent_decode(value: &str) -> Result<String, String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| format!("bad escape in query value {value:?}"))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| format!("query value {value:?} is not UTF-8"))
}

async fn checkpoint(State(control): State<Arc<Control>>) -> Response {
    Json(control.last_checkpoint()).into_response()
}

async fn savepoint(State(control): State<Arc<Control>>, body: String) -> Response {
    let to = (!body.trim().is_empty()).then(|| std::path::PathBuf::from(body.trim()));
    // A savepoint waits for a checkpoint: off the async threads.
    match tokio::task::spawn_blocking(move || control.savepoint(to)).await {
        Ok(Ok(path)) => Json(serde_json::json!({ "path": path })).into_response(),
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

async fn deploy(
    State(control): State<Arc<Control>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    // A deploy compiles and waits for the workers: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || control.deploy(&id, &body, "api")).await;
    answer(outcome)
}

async fn rollback(State(control): State<Arc<Control>>, Path(id): Path<String>) -> Response {
    let outcome = tokio::task::spawn_blocking(move || control.rollback(&id)).await;
    answer(outcome)
}

async fn resume(State(control): State<Arc<Control>>, Path(id): Path<String>) -> Response {
    match control.resume(&id) {
        Ok(resumed) => {
            Json(serde_json::json!({ "operator": id, "resumed": resumed })).into_response()
        }
        Err(e) => error(StatusCode::NOT_FOUND, e),
    }
}

async fn replay(
    State(control): State<Arc<Control>>,
    Path(id): Path<String>,
    body: String,
) -> Response {
    // Sending waits while the operator's input is full: off the async threads.
    let outcome = tokio::task::spawn_blocking(move || control.replay(&id, &body)).await;
    match outcome {
        Ok(Ok(report)) => Json(report).into_response(),
        Ok(Err(e @ DeployError::UnknownOperator(..))) => error(StatusCode::NOT_FOUND, e),
        Ok(Err(e)) => error(StatusCode::CONFLICT, e),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, e),
    }
}

fn error(code: StatusCode, e: impl std::fmt::Display) -> Response {
    (code, Json(serde_json::json!({ "error": e.to_string() }))).into_response()
}

fn answer(outcome: Result<Result<DeployReport, DeployError>, tokio::task::JoinError>) -> Response {
    let (code, message) = match outcome {
        Ok(Ok(report)) => return Json(report).into_response(),
        Ok(Err(e @ DeployError::UnknownOperator(..))) => (StatusCode::NOT_FOUND, e.to_string()),
        Ok(Err(e @ DeployError::Refused(_))) => (StatusCode::CONFLICT, e.to_string()),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the deploy failed: {e}"),
        ),
    };
    (code, Json(serde_json::json!({ "error": message }))).into_response()
}

#[cfg(test)]
mod tests {
    use super::{percent_decode, tap_request};

    #[test]
    fn tap_queries_are_decoded() {
        let request = tap_request("key=a%20b%2Bc&field=user.id").unwrap();
        assert_eq!(request.key.as_deref(), Some("a b+c"));
        assert_eq!(request.field.as_deref(), Some("user.id"));
        let request = tap_request("operator=daily.late&rate=2.5").unwrap();
        assert_eq!(request.operator.as_deref(), Some("daily.late"));
        assert_eq!(request.rate, Some(2.5));
        assert_eq!(percent_decode("%E2%82%AC+1").unwrap(), "€ 1");
    }

    #[test]
    fn bad_tap_queries_say_what_is_wrong() {
        assert_eq!(
            tap_request("rate=fast&operator=x").unwrap_err(),
            "`rate` is not a number: \"fast\""
        );
        assert_eq!(
            tap_request("colour=red").unwrap_err(),
            "unknown tap parameter `colour`"
        );
        assert!(tap_request("").unwrap_err().contains("needs an `operator`"));
        assert!(percent_decode("%zz").unwrap_err().contains("bad escape"));
        assert!(percent_decode("%ff").unwrap_err().contains("not UTF-8"));
    }
}
