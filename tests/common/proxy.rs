//! A storage proxy for race and fault tests — a test double standing
//! between kassette and the real S3-compatible server. It forwards every
//! request unchanged (signatures stay valid: the `Host` header is passed
//! through) and, by rules the test sets, delays a request before
//! forwarding it, delays its response after, or performs it and then
//! "loses" the response (answers 500, as a dropped connection would look to
//! a client that retries). Random delays on concurrent requests reorder
//! their responses.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;

/// What the proxy does with one request.
#[derive(Debug, Clone, Default)]
pub struct Action {
    pub delay_before: Duration,
    pub delay_after: Duration,
    /// Forward the request, then answer 500 instead of the real response.
    pub lose_response: bool,
}

/// One request as the proxy saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    /// Path and query, e.g. `/bucket/key?uploads`.
    pub uri: String,
    pub headers: HeaderMap,
}

impl Seen {
    /// Whether this is a create-if-absent PUT.
    pub fn is_conditional_put(&self) -> bool {
        self.method == "PUT" && self.headers.contains_key("if-none-match")
    }
}

type Rule = Box<dyn FnMut(&Seen) -> Option<Action> + Send>;

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rules: Mutex<Vec<Rule>>,
    log: Mutex<Vec<Seen>>,
}

/// A running proxy; stops with the test's runtime.
#[derive(Clone)]
pub struct StorageProxy {
    shared: Arc<Shared>,
    pub url: String,
}

impl StorageProxy {
    /// Starts a proxy in front of `upstream` (e.g. `http://127.0.0.1:9000`).
    pub async fn start(upstream: &str) -> Self {
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client: reqwest::Client::builder()
                .build()
                .expect("proxy HTTP client"),
            rules: Mutex::new(Vec::new()),
            log: Mutex::new(Vec::new()),
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind proxy");
        let url = format!("http://{}", listener.local_addr().unwrap());
        let app = axum::Router::new()
            .fallback(forward)
            .with_state(shared.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Self { shared, url }
    }

    /// Adds a rule: asked for every request, in order; the first that
    /// returns an action decides. A rule keeps its own state (e.g. "only
    /// the first time").
    pub fn rule(&self, rule: impl FnMut(&Seen) -> Option<Action> + Send + 'static) {
        self.shared.rules.lock().unwrap().push(Box::new(rule));
    }

    /// Every request seen so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.shared.log.lock().unwrap().clone()
    }
}

/// Random delay in `0..=max` (for reordering).
pub fn jitter(max: Duration) -> Duration {
    let ms = max.as_millis() as u64;
    Duration::from_millis(rand::random::<u64>() % (ms + 1))
}

async fn forward(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let seen = Seen {
        method: parts.method.to_string(),
        uri: parts
            .uri
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default(),
        headers: parts.headers.clone(),
    };
    shared.log.lock().unwrap().push(seen.clone());
    let action = {
        let mut rules = shared.rules.lock().unwrap();
        rules.iter_mut().find_map(|rule| rule(&seen))
    }
    .unwrap_or_default();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return status(StatusCode::BAD_REQUEST);
    };
    tokio::time::sleep(action.delay_before).await;
    let mut headers = parts.headers.clone();
    for hop in ["connection", "content-length", "transfer-encoding"] {
        headers.remove(hop);
    }
    let url = format!("{}{}", shared.upstream, seen.uri);
    let method = reqwest::Method::from_bytes(seen.method.as_bytes()).expect("method");
    let upstream = shared
        .client
        .request(method, url)
        .headers(headers)
        .body(body)
        .send()
        .await;
    let Ok(upstream) = upstream else {
        return status(StatusCode::BAD_GATEWAY);
    };
    let code = upstream.status();
    let mut reply_headers = upstream.headers().clone();
    let Ok(bytes) = upstream.bytes().await else {
        return status(StatusCode::BAD_GATEWAY);
    };
    tokio::time::sleep(action.delay_after).await;
    if action.lose_response {
        return status(StatusCode::INTERNAL_SERVER_ERROR);
    }
    for hop in ["connection", "content-length", "transfer-encoding"] {
        reply_headers.remove(hop);
    }
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = StatusCode::from_u16(code.as_u16()).expect("status");
    for (name, value) in &reply_headers {
        if let (Ok(name), Ok(value)) = (
            axum::http::HeaderName::from_bytes(name.as_str().as_bytes()),
            axum::http::HeaderValue::from_bytes(value.as_bytes()),
        ) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

fn status(code: StatusCode) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = code;
    response
}
