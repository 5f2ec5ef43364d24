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

use super::{Control, DeployError, DeployReport};

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
        .layer(DefaultBodyLimit::max(MAX_COMPONENT_BYTES))
        .with_state(control);
    let thread = std::thread::Builder::new()
        .name("weir-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let served = async {
                    let listener = tokio::net::TcpListener::from_std(listener)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
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
