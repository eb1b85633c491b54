//! A storage proxy for race and fault tests — a test double standing
//! between kassette and the real S3-compatible server. It forwards every
//! request unchanged (signatures stay valid: the `Host` header is passed
//! through) and, by rules the test sets, delays a request before
//! forwarding it, delays its response after, or performs it and then
//! "loses" the response (answers 500, as a dropped connection would look to
//! a client that retries). Random delays on concurrent requests reorder
//! their responses. A [`Hold`] stops the first request it matches until
//! the test releases it, so a test can act (kill a process) while a pass
//! is known to be at that request; the held request is then dropped.

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
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

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
    holds: Mutex<Vec<Hold>>,
    log: Mutex<Vec<Seen>>,
}

type Matcher = Box<dyn Fn(&Seen) -> bool + Send + Sync>;

/// Stops the first request it matches: the request is not forwarded until
/// [`Hold::release`], and then it is dropped (answered `502`, as if the
/// server had died before receiving it; a client still alive retries, and
/// its retry goes through).
#[derive(Clone)]
pub struct Hold {
    matches: Arc<Matcher>,
    taken: Arc<std::sync::atomic::AtomicBool>,
    held: Arc<tokio::sync::watch::Sender<Option<Seen>>>,
    released: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Hold {
    /// Waits until a request is held; returns it.
    pub async fn held(&self) -> Seen {
        let mut rx = self.held.subscribe();
        let seen = rx.wait_for(Option::is_some).await.expect("hold alive");
        seen.clone().expect("held")
    }

    /// Whether a request is held (or was).
    pub fn is_held(&self) -> bool {
        self.held.borrow().is_some()
    }

    /// Lets the held request (and any later) go: it is dropped.
    pub fn release(&self) {
        self.released.send_replace(true);
    }
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
            holds: Mutex::new(Vec::new()),
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

    /// Holds the first request `matches` accepts from now on (see
    /// [`Hold`]); other requests pass as usual.
    pub fn hold(&self, matches: impl Fn(&Seen) -> bool + Send + Sync + 'static) -> Hold {
        let hold = Hold {
            matches: Arc::new(Box::new(matches)),
            taken: Arc::default(),
            held: Arc::new(tokio::sync::watch::Sender::new(None)),
            released: Arc::new(tokio::sync::watch::Sender::new(false)),
        };
        self.shared.holds.lock().unwrap().push(hold.clone());
        hold
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
    let hold = {
        let mut holds = shared.holds.lock().unwrap();
        holds.retain(|h| !h.taken.load(std::sync::atomic::Ordering::SeqCst));
        holds
            .iter()
            .find(|h| {
                (h.matches)(&seen) && !h.taken.swap(true, std::sync::atomic::Ordering::SeqCst)
            })
            .cloned()
    };
    if let Some(hold) = hold {
        let mut released = hold.released.subscribe();
        hold.held.send_replace(Some(seen.clone()));
        let _ = released.wait_for(|r| *r).await;
        return status(StatusCode::BAD_GATEWAY);
    }
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
