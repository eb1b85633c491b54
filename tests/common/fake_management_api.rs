//! **A fake** of the Management API for Apache Cassandra: its agent jar is
//! not on Maven Central, so no real one can run here. It serves the
//! operations kassette uses, exactly as the project's published
//! `openapi.json` defines them (paths, methods, query names, JSON field
//! names; unknown fields are refused), and carries them out on a real test
//! node with `nodetool` — so snapshots really appear on disk and a test
//! through it exercises the agent end to end. Every request is recorded.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;

use super::setting;

/// `TakeSnapshotRequest` of the openapi document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TakeSnapshotRequest {
    pub snapshot_name: Option<String>,
    pub keyspaces: Option<Vec<String>>,
    pub table_name: Option<String>,
    pub keyspace_tables: Option<Vec<String>>,
    pub skip_flush: Option<bool>,
}

/// The query of `DELETE /api/v0/ops/node/snapshots`; any other name is
/// refused (a real server ignores it, which would widen the clear).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClearQuery {
    #[serde(rename = "snapshotNames")]
    pub snapshot_names: Option<String>,
    pub keyspaces: Option<String>,
}

/// `RepairRequest` of the openapi document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepairRequest {
    pub keyspace: String,
    pub tables: Option<Vec<String>>,
    pub full_repair: Option<bool>,
    pub associated_tokens: Option<serde_json::Value>,
    pub datacenters: Option<Vec<String>>,
    pub repair_parallelism: Option<String>,
    pub repair_thread_count: Option<i32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobQuery {
    pub job_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshQuery {
    #[serde(rename = "keyspaceName")]
    pub keyspace_name: Option<String>,
    pub table: Option<String>,
}

/// What the fake was asked, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    TakeSnapshot {
        name: String,
        keyspaces: Vec<String>,
    },
    ClearSnapshot {
        name: String,
        keyspaces: Option<String>,
    },
    Repair {
        keyspace: String,
        tables: Vec<String>,
        full: bool,
    },
    Refresh {
        keyspace: String,
        table: String,
    },
}

/// Repair jobs by id: `None` while running, then the outcome.
type Jobs = Arc<Mutex<std::collections::HashMap<String, Option<Result<(), String>>>>>;

#[derive(Clone)]
struct Fake {
    node: usize,
    calls: Arc<Mutex<Vec<Call>>>,
    jobs: Jobs,
}

/// A running fake for test node `node`.
pub struct FakeManagementApi {
    pub url: String,
    calls: Arc<Mutex<Vec<Call>>>,
}

impl FakeManagementApi {
    pub async fn start(node: usize) -> Self {
        Self::start_at(node, "127.0.0.1:0").await
    }

    /// A fake for test node `node` listening on `address` (e.g. the node's
    /// own loopback address, where a pod's `localhost:8080` would be).
    pub async fn start_at(node: usize, address: &str) -> Self {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake {
            node,
            calls: calls.clone(),
            jobs: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/api/v0/ops/node/snapshots",
                post(take_snapshot).delete(clear_snapshots),
            )
            .route("/api/v0/ops/keyspace/refresh", post(refresh))
            .route("/api/v1/ops/node/repair", post(repair))
            .route("/api/v0/ops/executor/job", axum::routing::get(job_status))
            .with_state(fake);
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .unwrap_or_else(|e| panic!("bind the fake Management API to {address}: {e}"));
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, calls }
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }
}

/// Runs nodetool on the fake's node; the API answers 500 with the error
/// text, as the real server does for a failed operation.
async fn nodetool(node: usize, args: Vec<String>) -> Result<(), (StatusCode, String)> {
    let mut all = vec!["-n".to_string(), node.to_string()];
    all.extend(args);
    let out = tokio::process::Command::new(setting("KASSETTE_TEST_NODETOOL"))
        .args(&all)
        .output()
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err((
            StatusCode::INTERNAL_SERVER_ERROR,
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
                .to_string(),
        ))
    }
}

async fn take_snapshot(
    State(fake): State<Fake>,
    Json(request): Json<TakeSnapshotRequest>,
) -> Result<&'static str, (StatusCode, String)> {
    let Some(name) = request.snapshot_name.clone() else {
        return Err((
            StatusCode::BAD_REQUEST,
            "snapshot_name is required by this fake".into(),
        ));
    };
    let keyspaces = request.keyspaces.clone().unwrap_or_default();
    fake.calls.lock().unwrap().push(Call::TakeSnapshot {
        name: name.clone(),
        keyspaces: keyspaces.clone(),
    });
    let mut args = vec!["snapshot".to_string(), "-t".to_string(), name];
    if request.skip_flush == Some(true) {
        args.push("-sf".into());
    }
    if !keyspaces.is_empty() {
        args.push("--".into());
        args.extend(keyspaces);
    }
    nodetool(fake.node, args).await?;
    Ok("OK")
}

async fn clear_snapshots(
    State(fake): State<Fake>,
    Query(query): Query<ClearQuery>,
) -> Result<&'static str, (StatusCode, String)> {
    let name = query.snapshot_names.unwrap_or_default();
    fake.calls.lock().unwrap().push(Call::ClearSnapshot {
        name: name.clone(),
        keyspaces: query.keyspaces.clone(),
    });
    let mut args = vec!["clearsnapshot".to_string()];
    if name.is_empty() {
        args.push("--all".into());
    } else {
        args.extend(["-t".to_string(), name]);
    }
    if let Some(keyspaces) = query.keyspaces {
        args.push("--".into());
        args.extend(keyspaces.split(',').map(String::from));
    }
    nodetool(fake.node, args).await?;
    Ok("OK")
}

/// `POST /api/v1/ops/node/repair`: 202 with the job id as plain text; the
/// repair (`nodetool repair`, `-full` when asked) runs in the background.
async fn repair(
    State(fake): State<Fake>,
    Json(request): Json<RepairRequest>,
) -> Result<(StatusCode, String), (StatusCode, String)> {
    if request.keyspace.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "keyspaceName must be specified".into(),
        ));
    }
    let tables = request.tables.clone().unwrap_or_default();
    let full = request.full_repair.unwrap_or(false);
    fake.calls.lock().unwrap().push(Call::Repair {
        keyspace: request.keyspace.clone(),
        tables: tables.clone(),
        full,
    });
    let id = format!("repair-{}", fake.jobs.lock().unwrap().len() + 1);
    fake.jobs.lock().unwrap().insert(id.clone(), None);
    let mut args = vec!["repair".to_string()];
    if full {
        args.push("-full".into());
    }
    args.push(request.keyspace);
    args.extend(tables);
    let (jobs, job, node) = (fake.jobs.clone(), id.clone(), fake.node);
    tokio::spawn(async move {
        let outcome = nodetool(node, args).await.map_err(|(_, message)| message);
        jobs.lock().unwrap().insert(job, Some(outcome));
    });
    Ok((StatusCode::ACCEPTED, id))
}

/// `GET /api/v0/ops/executor/job?job_id=…`: a `Job` (status `WAITING`,
/// `COMPLETED` or `ERROR` with its `error`), 404 for an unknown id.
async fn job_status(
    State(fake): State<Fake>,
    Query(query): Query<JobQuery>,
) -> (StatusCode, Json<serde_json::Value>) {
    let jobs = fake.jobs.lock().unwrap();
    match jobs.get(&query.job_id) {
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({"id": query.job_id})),
        ),
        Some(None) => (
            StatusCode::OK,
            Json(serde_json::json!({"id": query.job_id, "type": "repair", "status": "WAITING"})),
        ),
        Some(Some(Ok(()))) => (
            StatusCode::OK,
            Json(serde_json::json!({"id": query.job_id, "type": "repair", "status": "COMPLETED"})),
        ),
        Some(Some(Err(error))) => (
            StatusCode::OK,
            Json(
                serde_json::json!({"id": query.job_id, "type": "repair", "status": "ERROR", "error": error}),
            ),
        ),
    }
}

async fn refresh(
    State(fake): State<Fake>,
    Query(query): Query<RefreshQuery>,
) -> Result<&'static str, (StatusCode, String)> {
    let (Some(keyspace), Some(table)) = (query.keyspace_name, query.table) else {
        return Err((
            StatusCode::BAD_REQUEST,
            "Must provide a keyspace name".into(),
        ));
    };
    fake.calls.lock().unwrap().push(Call::Refresh {
        keyspace: keyspace.clone(),
        table: table.clone(),
    });
    nodetool(fake.node, vec!["refresh".into(), keyspace, table]).await?;
    Ok("OK")
}
