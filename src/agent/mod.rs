//! The node agent: an authenticated HTTP+JSON API beside one Cassandra
//! node, doing that node's share of a pass — snapshot, inventory, hash,
//! upload what the store lacks, clear the snapshot — and reporting progress
//! at any time. The coordinator drives it; the agent never talks to other
//! nodes. API types are in [`api`].
//!
//! [`app`] builds the router from an [`AgentState`] (tests call it on a
//! listener bound to `127.0.0.1:0`); [`serve`] runs it until shutdown.

pub mod api;
pub mod auth;
mod jobs;
mod restore;
mod upload;

pub use restore::is_restored;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};

use crate::cassandra::control::{Control, ControlError, Jolokia, ManagementApi, Nodetool};
use crate::catalog::names;
use crate::config::{AgentConfig, CassandraControl};
use crate::storage::Store;
use api::{
    ApiError, JobStatus, NodeInfo, Progress, SnapshotRequest, SnapshotTaken, StartJob,
    StoreIdentity, TableSnapshot, Work,
};
use jobs::{JobContext, Jobs};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AgentState {
    /// The bearer token callers must present; empty (nothing is
    /// authorised) when the given one is unusable.
    token: Arc<String>,
    data_dirs: Vec<PathBuf>,
    control: Control,
    store: Arc<dyn Store>,
    digest_cache: PathBuf,
    /// Where the agent keeps its own files (digest cache, staging).
    state_dir: PathBuf,
    concurrency: usize,
    progress: Arc<Mutex<Progress>>,
    /// Upload, download and import run as jobs, one at a time.
    jobs: Jobs,
    /// The store this agent writes to, as `GET /v1/node` reports it.
    store_identity: Option<StoreIdentity>,
}

impl AgentState {
    pub fn new(
        token: &[u8],
        data_dirs: Vec<PathBuf>,
        control: Control,
        store: Arc<dyn Store>,
        digest_cache: PathBuf,
        concurrency: usize,
    ) -> Self {
        let state_dir = digest_cache
            .parent()
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("."));
        Self {
            token: Arc::new(auth::token_from_file(token).unwrap_or_default()),
            data_dirs,
            control,
            store,
            digest_cache,
            state_dir,
            concurrency: concurrency.max(1),
            progress: Arc::new(Mutex::new(Progress {
                state: "idle".into(),
                ..Progress::default()
            })),
            jobs: Jobs::default(),
            store_identity: None,
        }
    }

    /// Records which store the agent writes to, for coordinators to check.
    pub fn with_store_identity(mut self, identity: StoreIdentity) -> Self {
        self.store_identity = Some(identity);
        self
    }

    fn progress(&self) -> Progress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    fn set_progress(&self, change: impl FnOnce(&mut Progress)) {
        if let Ok(mut progress) = self.progress.lock() {
            change(&mut progress);
        }
    }
}

/// Why a request failed; turned into an HTTP answer in one place.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("missing or wrong bearer token")]
    Unauthorized,
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Control(#[from] ControlError),
    #[error("{0}")]
    Failed(String),
}

impl AgentError {
    fn status(&self) -> StatusCode {
        match self {
            AgentError::Unauthorized => StatusCode::UNAUTHORIZED,
            AgentError::BadRequest(_) => StatusCode::BAD_REQUEST,
            AgentError::NotFound(_) => StatusCode::NOT_FOUND,
            AgentError::Conflict(_) => StatusCode::CONFLICT,
            AgentError::Control(_) | AgentError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for AgentError {
    fn into_response(self) -> Response {
        let status = self.status();
        if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        (
            status,
            Json(ApiError {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}

/// The agent's router.
pub fn app(state: AgentState) -> Router {
    Router::new()
        .route("/v1/node", get(node_info))
        .route("/v1/snapshots", post(take_snapshot).get(list_snapshots))
        .route("/v1/table-snapshots", get(list_table_snapshots))
        .route("/v1/snapshots/{tag}", delete(clear_snapshot))
        .route("/v1/jobs", post(start_job))
        .route("/v1/jobs/{id}", get(poll_job))
        .route("/v1/passes/{pass}", delete(end_pass))
        .route("/v1/progress", get(progress))
        .route("/v1/staging", get(list_staging))
        .route("/v1/staging/{name}", delete(remove_staging))
        .route("/v1/repairs", post(repair))
        .layer(middleware::from_fn_with_state(state.clone(), authenticate))
        .with_state(state)
}

/// `kassette agent`: opens the store, binds the listener and serves until
/// SIGTERM or Ctrl-C.
pub async fn run(config: AgentConfig) -> Result<(), crate::Error> {
    use crate::Error;
    let control = match &config.control {
        CassandraControl::Nodetool { command } => Control::Nodetool(Nodetool::new(command)),
        CassandraControl::Jolokia { url } => {
            Control::Jolokia(Jolokia::new(url.clone()).map_err(|e| Error::Failed(e.to_string()))?)
        }
        CassandraControl::ManagementApi { url } => Control::ManagementApi(
            ManagementApi::new(url.clone()).map_err(|e| Error::Failed(e.to_string()))?,
        ),
    };
    let token = std::fs::read(&config.token_file)
        .map_err(|e| Error::Failed(format!("{}: {e}", config.token_file.display())))?;
    auth::token_from_file(&token).map_err(|e| {
        crate::config::ConfigError::new(
            crate::config::vars::AGENT_TOKEN_FILE,
            format!("{} {e}", config.token_file.display()),
        )
    })?;
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|e| Error::Failed(format!("{}: {e}", config.state_dir.display())))?;
    let store = crate::storage::open(&config.storage)
        .await
        .map_err(|e| Error::Failed(format!("storage: {e}")))?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| Error::Failed(format!("listen on {}: {e}", config.listen)))?;
    let state = AgentState::new(
        &token,
        config.data_dirs.clone(),
        control,
        store,
        config.state_dir.join("digests.json"),
        config.storage.limits.concurrency as usize,
    )
    .with_store_identity(StoreIdentity::of(&config.storage));
    tracing::info!(listen = %config.listen, data_dirs = ?config.data_dirs, tls = config.tls.is_some(), "agent ready");
    let served = match &config.tls {
        None => serve(listener, state, shutdown_signal()).await,
        Some((cert, key)) => serve_tls(listener, state, cert, key, shutdown_signal()).await,
    };
    served.map_err(|e| Error::Failed(format!("agent server: {e}")))
}

/// Like [`serve`], over TLS with the PEM certificate chain and key.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: AgentState,
    cert: &std::path::Path,
    key: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let tls = axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key).await?;
    let handle = axum_server::Handle::new();
    let stopper = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        stopper.graceful_shutdown(Some(std::time::Duration::from_secs(30)));
    });
    axum_server::from_tcp_rustls(listener.into_std()?, tls)?
        .handle(handle)
        .serve(app(state).into_make_service())
        .await
}

/// Resolves on SIGTERM (Kubernetes stopping the pod) or Ctrl-C.
async fn shutdown_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
}

/// Serves `app(state)` on an already-bound listener until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AgentState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}

/// Every request needs the shared bearer token (see [`auth`]).
async fn authenticate(State(state): State<AgentState>, request: Request, next: Next) -> Response {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.as_bytes());
    if auth::is_authorized(header, &state.token) {
        next.run(request).await
    } else {
        AgentError::Unauthorized.into_response()
    }
}

async fn node_info(State(state): State<AgentState>) -> Json<NodeInfo> {
    Json(NodeInfo {
        kassette_version: env!("CARGO_PKG_VERSION").to_string(),
        data_dirs: state
            .data_dirs
            .iter()
            .map(|d| d.display().to_string())
            .collect(),
        store: state.store_identity.clone(),
    })
}

/// Snapshot tags become directory names: letters, digits, `.`, `_`, `-`,
/// starting alphanumeric, at most 200 characters (a backup name plus the
/// coordinator's prefix).
pub(crate) fn check_tag(tag: &str) -> Result<(), AgentError> {
    if crate::config::parse::is_safe_name(tag, 200) {
        Ok(())
    } else {
        Err(AgentError::BadRequest(format!(
            "{tag:?} is not a snapshot tag"
        )))
    }
}

/// A name from a request that the catalog's rule refuses.
pub(crate) fn check_names(checked: Result<(), names::NameError>) -> Result<(), AgentError> {
    checked.map_err(|e| AgentError::BadRequest(e.to_string()))
}

async fn take_snapshot(
    State(state): State<AgentState>,
    Json(request): Json<SnapshotRequest>,
) -> Result<Json<SnapshotTaken>, AgentError> {
    check_tag(&request.tag)?;
    for keyspace in &request.keyspaces {
        check_names(names::check_keyspace(keyspace))?;
    }
    state
        .control
        .snapshot(&request.tag, &request.keyspaces)
        .await?;
    let snapshot_at = jiff::Timestamp::now();
    let (dirs, tag) = (state.data_dirs.clone(), request.tag.clone());
    let files =
        tokio::task::spawn_blocking(move || crate::cassandra::snapshot::inventory(&dirs, &tag))
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))?
            .map_err(|e| AgentError::Failed(e.to_string()))?;
    tracing::info!(tag = %request.tag, files = files.len(), "snapshot taken");
    Ok(Json(SnapshotTaken {
        tag: request.tag,
        snapshot_at,
        files: files.len() as u64,
        bytes: files.iter().map(|f| f.identity.size).sum(),
    }))
}

/// Tags of the snapshots on this node's disks (to find ones a killed pass
/// left behind).
async fn list_snapshots(State(state): State<AgentState>) -> Result<Json<Vec<String>>, AgentError> {
    let dirs = state.data_dirs.clone();
    let tags =
        tokio::task::spawn_blocking(move || crate::cassandra::snapshot::snapshot_tags(&dirs))
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))?
            .map_err(|e| AgentError::Failed(e.to_string()))?;
    Ok(Json(tags))
}

/// Every snapshot on this node's disks, with its keyspace and table.
async fn list_table_snapshots(
    State(state): State<AgentState>,
) -> Result<Json<Vec<TableSnapshot>>, AgentError> {
    let dirs = state.data_dirs.clone();
    let found =
        tokio::task::spawn_blocking(move || crate::cassandra::snapshot::table_snapshots(&dirs))
            .await
            .map_err(|e| AgentError::Failed(e.to_string()))?
            .map_err(|e| AgentError::Failed(e.to_string()))?;
    Ok(Json(
        found
            .into_iter()
            .map(|(tag, keyspace, table)| TableSnapshot {
                tag,
                keyspace,
                table,
            })
            .collect(),
    ))
}

#[derive(Debug, serde::Deserialize)]
struct ClearQuery {
    /// Only this keyspace's snapshot of that tag.
    keyspace: Option<String>,
}

async fn clear_snapshot(
    State(state): State<AgentState>,
    Path(tag): Path<String>,
    Query(query): Query<ClearQuery>,
) -> Result<StatusCode, AgentError> {
    check_tag(&tag)?;
    match &query.keyspace {
        None => state.control.clear_snapshot(&tag).await?,
        Some(keyspace) if crate::config::parse::is_safe_name(keyspace, 48) => {
            state.control.clear_snapshot_in(&tag, keyspace).await?;
        }
        Some(keyspace) => {
            return Err(AgentError::BadRequest(format!(
                "{keyspace:?} is not a keyspace name"
            )));
        }
    }
    tracing::info!(%tag, keyspace = ?query.keyspace, "snapshot cleared");
    Ok(StatusCode::NO_CONTENT)
}

/// Checks a job's request before it is started, so that a bad one is a
/// 400 answer rather than a failed job.
pub(crate) fn validate_work(work: &Work) -> Result<(), AgentError> {
    let layout = |cluster: &str, datacenter: &str| {
        crate::catalog::Layout::new(cluster, datacenter)
            .map(|_| ())
            .map_err(|e| AgentError::BadRequest(e.to_string()))
    };
    match work {
        Work::Upload(request) => {
            check_tag(&request.tag)?;
            layout(&request.cluster, &request.datacenter)?;
            upload::check_request(request)
        }
        Work::Download(request) => {
            check_tag(&request.staging)?;
            layout(&request.cluster, &request.datacenter)?;
            // Every name is checked before the job starts, so a crafted
            // request is a 400 with nothing done, not a job that fails later.
            for file in &request.files {
                check_names(names::check_file(&file.keyspace, &file.table, &file.path))?;
                if let Some(blob) = &file.blob {
                    check_names(names::check_blob_key(blob))?;
                }
            }
            Ok(())
        }
        Work::Import(request) => {
            check_tag(&request.staging)?;
            for table in &request.tables {
                check_names(names::check_keyspace(&table.keyspace))?;
                check_names(names::check_table(&table.table))?;
            }
            Ok(())
        }
    }
}

/// Runs a job's work; its report as JSON.
async fn do_work(
    state: &AgentState,
    work: Work,
    context: JobContext,
) -> Result<serde_json::Value, AgentError> {
    let json = |value: Result<serde_json::Value, serde_json::Error>| {
        value.map_err(|e| AgentError::Failed(e.to_string()))
    };
    match work {
        Work::Upload(request) => json(
            upload::run(state, &request, &context)
                .await
                .map(serde_json::to_value)?,
        ),
        Work::Download(request) => json(
            restore::download(state, &request, &context)
                .await
                .map(serde_json::to_value)?,
        ),
        Work::Import(request) => json(
            restore::import(state, &request, &context)
                .await
                .map(serde_json::to_value)?,
        ),
    }
}

async fn start_job(
    State(state): State<AgentState>,
    Json(request): Json<StartJob>,
) -> Result<(StatusCode, Json<JobStatus>), AgentError> {
    let status = state.jobs.start(&state, request).await?;
    Ok((StatusCode::ACCEPTED, Json(status)))
}

async fn poll_job(
    State(state): State<AgentState>,
    Path(id): Path<String>,
) -> Result<Json<JobStatus>, AgentError> {
    state
        .jobs
        .poll(&state, &id)
        .await
        .map(Json)
        .ok_or_else(|| AgentError::NotFound(format!("no job {id} on this agent (restarted?)")))
}

async fn end_pass(
    State(state): State<AgentState>,
    Path(pass): Path<String>,
) -> Result<StatusCode, AgentError> {
    state.jobs.end_pass(&pass).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn list_staging(State(state): State<AgentState>) -> Result<Json<Vec<String>>, AgentError> {
    restore::staging_areas(&state).map(Json)
}

async fn remove_staging(
    State(state): State<AgentState>,
    Path(name): Path<String>,
) -> Result<StatusCode, AgentError> {
    restore::remove_staging(&state, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn repair(
    State(state): State<AgentState>,
    Json(request): Json<api::RepairRequest>,
) -> Result<StatusCode, AgentError> {
    tracing::info!(keyspace = %request.keyspace, tables = ?request.tables, "repair starting");
    state
        .control
        .repair(&request.keyspace, &request.tables)
        .await?;
    tracing::info!(keyspace = %request.keyspace, "repair done");
    Ok(StatusCode::NO_CONTENT)
}

async fn progress(State(state): State<AgentState>) -> Json<Progress> {
    Json(state.progress())
}
