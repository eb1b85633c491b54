//! The agent's request handling, in process: any method, path,
//! `Authorization` header and body reach the real router. Never a panic;
//! without the token, 401; a request the agent acts on holds only names the
//! catalog's rule accepts (the control command is `false`, a fake that
//! fails every Cassandra operation, so nothing on a node can change).
#![no_main]

use std::sync::OnceLock;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use kassette::agent::{AgentState, app};
use kassette::cassandra::control::{Control, Nodetool};
use kassette::config::{Backend, StorageConfig, TransferLimits};
use libfuzzer_sys::fuzz_target;
use tower::ServiceExt;

const TOKEN: &str = "fuzz-token";

struct World {
    runtime: tokio::runtime::Runtime,
    state: AgentState,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let store_dir = dir.path().join("store");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&store_dir).unwrap();
        std::fs::create_dir_all(&data).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let config = StorageConfig {
            backend: Backend::Local { root: store_dir },
            prefix: String::new(),
            limits: TransferLimits {
                concurrency: 2,
                max_bandwidth: None,
            },
        };
        let store = runtime.block_on(kassette::storage::open(&config)).unwrap();
        let state = AgentState::new(
            TOKEN.as_bytes(),
            vec![data],
            Control::Nodetool(Nodetool::new("false")),
            store,
            dir.path().join("state").join("digests.json"),
            2,
        );
        World {
            runtime,
            state,
            _dir: dir,
        }
    })
}

/// Every route of `kassette::agent::app` (a path ending in `/` takes its
/// last segment from the input).
const ROUTES: &[(&str, &str)] = &[
    ("GET", "/v1/node"),
    ("POST", "/v1/snapshots"),
    ("GET", "/v1/snapshots"),
    ("GET", "/v1/table-snapshots"),
    ("DELETE", "/v1/snapshots/"),
    ("POST", "/v1/jobs"),
    ("GET", "/v1/jobs/"),
    ("DELETE", "/v1/passes/"),
    ("GET", "/v1/progress"),
    ("GET", "/v1/staging"),
    ("DELETE", "/v1/staging/"),
    ("POST", "/v1/repairs"),
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let (method, path) = ROUTES[usize::from(selector) % ROUTES.len()];
    let authorized = selector & 0x80 == 0;
    // For the routes ending in `/`, the first line of the rest is the
    // path's last segment; the remainder is the body.
    let (segment, body) = match rest.iter().position(|b| *b == b'\n') {
        Some(i) if path.ends_with('/') => (&rest[..i], &rest[i + 1..]),
        _ => (&b""[..], rest),
    };
    let mut uri = path.to_string();
    uri.push_str(&String::from_utf8_lossy(segment));
    let mut request = Request::builder()
        .method(Method::from_bytes(method.as_bytes()).unwrap())
        .uri(uri.as_str())
        .header("content-type", "application/json");
    if authorized {
        request = request.header("authorization", format!("Bearer {TOKEN}"));
    }
    // A segment no URI can carry is the router's to refuse, not the agent's.
    let Ok(request) = request.body(Body::from(body.to_vec())) else {
        return;
    };
    let world = world();
    let response = world
        .runtime
        .block_on(app(world.state.clone()).oneshot(request))
        .unwrap();
    let status = response.status();
    if !authorized {
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // A request the agent acted on and accepted held valid names only.
    if status.is_success() {
        check_accepted(method, path, body);
    }
    assert!(!status.is_informational());
});

fn check_accepted(method: &str, path: &str, body: &[u8]) {
    use kassette::agent::api::{SnapshotRequest, StartJob, Work};
    use kassette::catalog::names;
    match (method, path) {
        ("POST", "/v1/snapshots") => {
            let request: SnapshotRequest = serde_json::from_slice(body).unwrap();
            for keyspace in &request.keyspaces {
                assert!(names::check_keyspace(keyspace).is_ok());
            }
        }
        ("POST", "/v1/jobs") => {
            let request: StartJob = serde_json::from_slice(body).unwrap();
            match &request.work {
                Work::Download(download) => {
                    for f in &download.files {
                        assert!(names::check_file(&f.keyspace, &f.table, &f.path).is_ok());
                    }
                }
                Work::Import(import) => {
                    for t in &import.tables {
                        assert!(names::check_keyspace(&t.keyspace).is_ok());
                        assert!(names::check_table(&t.table).is_ok());
                    }
                }
                Work::Upload(_) => {}
            }
        }
        _ => {}
    }
}
