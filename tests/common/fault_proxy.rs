//! A fault-injecting HTTP proxy — a **test double** of an unreliable
//! network and an overloaded S3 server, placed in front of the real
//! S3-compatible server of the test environment.
//!
//! Every request is forwarded verbatim (the `Host` header included, so
//! SigV4 signatures made for the proxy's address stay valid). At a
//! configurable rate, a request instead meets one fault, chosen by a seeded
//! random generator (same seed, same sequence of decisions):
//!
//! - `500` InternalError or `503` SlowDown answered without forwarding;
//! - a connection reset in the middle of the response body (forwarded,
//!   half the body sent, then the connection is torn down);
//! - a truncated body (forwarded, the body ends early, short of its
//!   `Content-Length`);
//! - added latency (100–600 ms) before forwarding.
//!
//! Body faults need a response with a body; for one without (HEAD, PUT), an
//! error status is injected instead. The proxy counts what it injected by
//! kind ([`FaultProxy::counts`]) so a test can report and assert on them.
//!
//! [`FaultProxy::failing_once`] is the deterministic form: no random
//! faults; the first request carrying a given query parameter value (e.g.
//! `partNumber=2`, one part of a multipart upload) has its body read and is
//! answered `500 InternalError` without being forwarded, and the body of
//! every request carrying that parameter is recorded, so a test can check
//! what the retry sent.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, Request, Response, StatusCode};
use bytes::Bytes;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The kinds of fault the proxy injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    InternalError,
    SlowDown,
    ResetMidBody,
    TruncatedBody,
    Latency,
}

impl Fault {
    const ALL: [Fault; 5] = [
        Fault::InternalError,
        Fault::SlowDown,
        Fault::ResetMidBody,
        Fault::TruncatedBody,
        Fault::Latency,
    ];
}

struct Shared {
    upstream: String,
    rate: f64,
    rng: Mutex<StdRng>,
    counts: Mutex<BTreeMap<Fault, u64>>,
    requests: Mutex<u64>,
    client: reqwest::Client,
    /// (parameter, value) of the request to fail once; cleared once failed.
    fail_once: Mutex<Option<(String, String)>>,
    /// The parameter whose requests' bodies are recorded.
    record: Option<String>,
    recorded: Mutex<Vec<Recorded>>,
}

/// The body of one request [`FaultProxy::failing_once`] watched.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// The watched parameter's value (e.g. the part number).
    pub value: String,
    pub body: Bytes,
    /// Whether the proxy failed this request instead of forwarding it.
    pub failed: bool,
}

/// A running proxy; stops when dropped.
pub struct FaultProxy {
    pub endpoint: String,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` (e.g. `http://127.0.0.1:9000`) that
    /// injects a fault into `rate` (0.0–1.0) of requests, decided by `seed`.
    pub async fn start(upstream: &str, rate: f64, seed: u64) -> Self {
        Self::launch(upstream, rate, seed, None).await
    }

    /// A proxy with no random faults that answers the first request whose
    /// query has `param=value` with `500 InternalError` (after reading its
    /// body, without forwarding it), and records the body of every request
    /// that has `param` ([`FaultProxy::recorded`]).
    pub async fn failing_once(upstream: &str, param: &str, value: &str) -> Self {
        Self::launch(
            upstream,
            0.0,
            0,
            Some((param.to_string(), value.to_string())),
        )
        .await
    }

    async fn launch(
        upstream: &str,
        rate: f64,
        seed: u64,
        fail_once: Option<(String, String)>,
    ) -> Self {
        let shared = Arc::new(Shared {
            record: fail_once.as_ref().map(|(param, _)| param.clone()),
            fail_once: Mutex::new(fail_once),
            recorded: Mutex::new(Vec::new()),
            upstream: upstream.trim_end_matches('/').to_string(),
            rate,
            rng: Mutex::new(StdRng::seed_from_u64(seed)),
            counts: Mutex::new(BTreeMap::new()),
            requests: Mutex::new(0),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("proxy HTTP client"),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind fault proxy");
        let addr: SocketAddr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(handle)
            .with_state(shared.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self {
            endpoint: format!("http://{addr}"),
            shared,
            task,
        }
    }

    /// Faults injected so far, by kind (every kind listed, zero included).
    pub fn counts(&self) -> BTreeMap<Fault, u64> {
        let counts = self.shared.counts.lock().unwrap();
        Fault::ALL
            .iter()
            .map(|f| (*f, counts.get(f).copied().unwrap_or(0)))
            .collect()
    }

    /// Bodies of the requests watched by [`FaultProxy::failing_once`], in
    /// the order they arrived.
    pub fn recorded(&self) -> Vec<Recorded> {
        self.shared.recorded.lock().unwrap().clone()
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        *self.shared.requests.lock().unwrap()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Shared {
    /// The fault for the next request, if any.
    fn draw(&self) -> Option<Fault> {
        *self.requests.lock().unwrap() += 1;
        let mut rng = self.rng.lock().unwrap();
        if rng.random::<f64>() >= self.rate {
            return None;
        }
        Some(Fault::ALL[rng.random_range(0..Fault::ALL.len())])
    }

    fn count(&self, fault: Fault) {
        *self.counts.lock().unwrap().entry(fault).or_insert(0) += 1;
    }

    fn latency(&self) -> Duration {
        Duration::from_millis(self.rng.lock().unwrap().random_range(100..600))
    }
}

/// The value of query parameter `name` in `query`, if present.
fn query_param<'a>(query: Option<&'a str>, name: &str) -> Option<&'a str> {
    query?
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value)
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request<Body>) -> Response<Body> {
    if let Some(param) = &shared.record
        && let Some(value) = query_param(request.uri().query(), param).map(String::from)
    {
        let (parts, body) = request.into_parts();
        let body = match axum::body::to_bytes(body, usize::MAX).await {
            Ok(body) => body,
            Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("request body: {e}")),
        };
        let fail = {
            let mut rule = shared.fail_once.lock().unwrap();
            let hit = rule
                .as_ref()
                .is_some_and(|(p, v)| p == param && *v == value);
            if hit {
                *rule = None;
            }
            hit
        };
        shared.recorded.lock().unwrap().push(Recorded {
            value,
            body: body.clone(),
            failed: fail,
        });
        if fail {
            shared.count(Fault::InternalError);
            return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
        }
        return pass_through(&shared, Request::from_parts(parts, Body::from(body))).await;
    }
    let fault = shared.draw();
    match fault {
        Some(Fault::InternalError) => {
            shared.count(Fault::InternalError);
            return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError");
        }
        Some(Fault::SlowDown) => {
            shared.count(Fault::SlowDown);
            return s3_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown");
        }
        Some(Fault::Latency) => {
            shared.count(Fault::Latency);
            tokio::time::sleep(shared.latency()).await;
        }
        _ => {}
    }
    let (status, headers, body) = match forward(&shared, request).await {
        Ok(response) => response,
        Err(e) => return plain(StatusCode::BAD_GATEWAY, format!("fault proxy: {e}")),
    };
    match fault {
        Some(kind @ (Fault::ResetMidBody | Fault::TruncatedBody)) if body.len() >= 2 => {
            shared.count(kind);
            broken(status, &headers, body, kind)
        }
        // No body to break: an error status stands in for the fault.
        Some(Fault::ResetMidBody | Fault::TruncatedBody) => {
            shared.count(Fault::SlowDown);
            s3_error(StatusCode::SERVICE_UNAVAILABLE, "SlowDown")
        }
        _ => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            copy_headers(&headers, response.headers_mut());
            response
        }
    }
}

/// Forwards `request` as it is and answers with the upstream's response.
async fn pass_through(shared: &Shared, request: Request<Body>) -> Response<Body> {
    match forward(shared, request).await {
        Ok((status, headers, body)) => {
            let mut response = Response::new(Body::from(body));
            *response.status_mut() = status;
            copy_headers(&headers, response.headers_mut());
            response
        }
        Err(e) => plain(StatusCode::BAD_GATEWAY, format!("fault proxy: {e}")),
    }
}

/// Sends `request` upstream; the whole response is read.
async fn forward(
    shared: &Shared,
    request: Request<Body>,
) -> Result<(StatusCode, HeaderMap, Bytes), String> {
    let (parts, body) = request.into_parts();
    let body = axum::body::to_bytes(body, usize::MAX)
        .await
        .map_err(|e| format!("request body: {e}"))?;
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", shared.upstream);
    let mut headers = parts.headers.clone();
    for hop in ["connection", "content-length", "transfer-encoding"] {
        headers.remove(hop);
    }
    let response = shared
        .client
        .request(parts.method, url)
        .headers(headers)
        .body(body)
        .send()
        .await
        .map_err(|e| format!("upstream: {e}"))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .bytes()
        .await
        .map_err(|e| format!("upstream body: {e}"))?;
    Ok((status, headers, body))
}

fn copy_headers(from: &HeaderMap, to: &mut HeaderMap) {
    for (name, value) in from {
        if name != HeaderName::from_static("transfer-encoding")
            && name != HeaderName::from_static("connection")
        {
            to.append(name.clone(), value.clone());
        }
    }
}

/// A response that declares the whole body but delivers half of it, then
/// ends (truncated) or fails (reset): either way the server closes the
/// connection short of its `Content-Length`.
fn broken(status: StatusCode, headers: &HeaderMap, body: Bytes, kind: Fault) -> Response<Body> {
    let half = body.slice(..body.len() / 2);
    let chunks: Vec<Result<Bytes, std::io::Error>> = match kind {
        Fault::ResetMidBody => vec![
            Ok(half),
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "fault proxy: reset",
            )),
        ],
        _ => vec![Ok(half)],
    };
    let mut response = Response::new(Body::from_stream(futures::stream::iter(chunks)));
    *response.status_mut() = status;
    copy_headers(headers, response.headers_mut());
    response
}

fn s3_error(status: StatusCode, code: &str) -> Response<Body> {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the fault proxy</Message><RequestId>fault</RequestId></Error>"
    );
    let mut response = plain(status, body);
    response
        .headers_mut()
        .insert("content-type", "application/xml".parse().unwrap());
    response
}

fn plain(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
}
