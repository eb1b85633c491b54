//! A typed client for one node agent's API ([`crate::agent::api`]).

use std::net::SocketAddr;
use std::time::Duration;

use reqwest::Method;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::agent::api::{
    ApiError, DownloadReport, DownloadRequest, ImportReport, ImportRequest, JobState, JobStatus,
    NodeInfo, Progress, SnapshotRequest, SnapshotTaken, StartJob, TableSnapshot, UploadReport,
    UploadRequest, Work,
};

/// The pass a job belongs to, and how long the agent keeps it without a
/// poll. The client polls ten times per timeout, so one lost poll never
/// ends a job, and a coordinator that is gone ends it within the timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSpec {
    pub pass: String,
    pub heartbeat_timeout: Duration,
}

impl JobSpec {
    /// A new pass id for `operation` (`backup`, `restore`): the operation
    /// and 64 random bits.
    pub fn new_pass(operation: &str, heartbeat_timeout: Duration) -> Self {
        Self {
            pass: format!("{operation}-{:016x}", rand::random::<u64>()),
            heartbeat_timeout,
        }
    }

    fn poll_every(&self) -> Duration {
        (self.heartbeat_timeout / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
    }
}

/// The wait before a job's first poll (see [`AgentClient::run_job`]).
const FIRST_POLL: Duration = Duration::from_millis(20);

/// Why a call to an agent failed; always names the agent.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("agent {agent}: unreachable: {message}")]
    Unreachable { agent: String, message: String },
    #[error("agent {agent}: {status}: {message}")]
    Refused {
        agent: String,
        status: u16,
        message: String,
    },
    /// The agent answered, but not with what the API promises.
    #[error("agent {agent}: answer to {request}: {message}")]
    BadAnswer {
        agent: String,
        request: String,
        message: String,
    },
}

/// The largest answer read from an agent (an upload report lists every
/// file of a node: a million files are about 300 MB of JSON).
pub const MAX_ANSWER_BYTES: u64 = 512 << 20;
/// The most of an error answer read (its message is one line).
const MAX_ERROR_BYTES: u64 = 64 << 10;

/// One agent, at `http://host:port` (or `https://`), with the shared
/// bearer token.
#[derive(Clone)]
pub struct AgentClient {
    /// Scheme and authority requests go to: the address, or the TLS server
    /// name (resolved to the address by the HTTP client).
    base: String,
    /// The agent's `host:port`, as errors name it.
    address: String,
    token: String,
    http: reqwest::Client,
}

impl std::fmt::Debug for AgentClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The token stays out of logs.
        f.debug_struct("AgentClient")
            .field("base", &self.base)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

impl AgentClient {
    /// A client for the agent at `address` (`host:port`), over plain HTTP.
    pub fn new(address: &str, token: &str) -> Result<Self, ClientError> {
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        Self::from_builder(address, token, builder)
    }

    /// A plain-HTTP client built from `builder`; one that cannot be built
    /// is an error naming the agent.
    pub fn from_builder(
        address: &str,
        token: &str,
        builder: reqwest::ClientBuilder,
    ) -> Result<Self, ClientError> {
        let http = crate::http::build(&format!("agent {address}"), builder).map_err(|e| {
            ClientError::Unreachable {
                agent: address.to_string(),
                message: e.to_string(),
            }
        })?;
        Ok(Self {
            base: format!("http://{address}"),
            address: address.to_string(),
            token: token.trim_ascii().to_string(),
            http,
        })
    }

    /// A client for an agent serving HTTPS with a certificate issued by the
    /// CA(s) in `ca_pem` (only those are trusted, not the system's roots)
    /// for its address.
    pub fn with_tls(address: &str, token: &str, ca_pem: &[u8]) -> Result<Self, ClientError> {
        let http = tls_client(address, ca_pem, reqwest::Client::builder())?;
        Ok(Self {
            base: format!("https://{address}"),
            address: address.to_string(),
            token: token.trim_ascii().to_string(),
            http,
        })
    }

    /// Like [`AgentClient::with_tls`], but the certificate is verified
    /// against `server_name` (`KASSETTE_AGENT_TLS_SERVER_NAME`) rather than
    /// the address: requests go to `https://server_name:port`, which the
    /// client resolves to `socket` alone. One certificate then serves every
    /// pod, whose IPs are not known when it is issued.
    pub fn with_tls_server_name(
        socket: SocketAddr,
        server_name: &str,
        token: &str,
        ca_pem: &[u8],
    ) -> Result<Self, ClientError> {
        let address = socket.to_string();
        let builder = reqwest::Client::builder().resolve(server_name, socket);
        let http = tls_client(&address, ca_pem, builder)?;
        Ok(Self {
            base: format!("https://{server_name}:{}", socket.port()),
            address,
            token: token.trim_ascii().to_string(),
            http,
        })
    }

    /// The agent's `host:port`.
    pub fn address(&self) -> &str {
        &self.address
    }

    pub async fn node_info(&self) -> Result<NodeInfo, ClientError> {
        self.call(Method::GET, "/v1/node", None::<&()>).await
    }

    pub async fn snapshot(&self, request: &SnapshotRequest) -> Result<SnapshotTaken, ClientError> {
        self.call(Method::POST, "/v1/snapshots", Some(request))
            .await
    }

    /// Runs the upload as a job of `job`'s pass and waits for its report
    /// (poll [`AgentClient::progress`] meanwhile).
    pub async fn upload(
        &self,
        job: &JobSpec,
        request: &UploadRequest,
    ) -> Result<UploadReport, ClientError> {
        self.run_job(job, Work::Upload(request.clone())).await
    }

    pub async fn progress(&self) -> Result<Progress, ClientError> {
        self.call(Method::GET, "/v1/progress", None::<&()>).await
    }

    /// Runs the download as a job and waits until the agent has staged and
    /// verified the files.
    pub async fn download(
        &self,
        job: &JobSpec,
        request: &DownloadRequest,
    ) -> Result<DownloadReport, ClientError> {
        self.run_job(job, Work::Download(request.clone())).await
    }

    pub async fn import(
        &self,
        job: &JobSpec,
        request: &ImportRequest,
    ) -> Result<ImportReport, ClientError> {
        self.run_job(job, Work::Import(request.clone())).await
    }

    /// Starts `work` as a job and polls it (each poll a heartbeat) until it
    /// ends; its report, or its error. Polls that fail are retried until
    /// half the heartbeat timeout has passed without an answer. The first
    /// poll comes after [`FIRST_POLL`] and each wait is half again the last,
    /// up to [`JobSpec::poll_every`]: a short job (an unchanged node's
    /// upload) is seen done within half its own duration, not after a full
    /// poll interval, and a long one is polled as before.
    pub async fn run_job<T: DeserializeOwned>(
        &self,
        job: &JobSpec,
        work: Work,
    ) -> Result<T, ClientError> {
        let start = StartJob {
            pass: job.pass.clone(),
            heartbeat_timeout_ms: u64::try_from(job.heartbeat_timeout.as_millis())
                .unwrap_or(u64::MAX),
            work,
        };
        let mut status: JobStatus = self.call(Method::POST, "/v1/jobs", Some(&start)).await?;
        let path = format!("/v1/jobs/{}", status.id);
        let mut answered = tokio::time::Instant::now();
        let mut wait = FIRST_POLL;
        while status.state == JobState::Running {
            tokio::time::sleep(wait.min(job.poll_every())).await;
            wait += wait / 2;
            match self.call(Method::GET, &path, None::<&()>).await {
                Ok(now) => {
                    status = now;
                    answered = tokio::time::Instant::now();
                }
                Err(err @ ClientError::Refused { .. }) => return Err(err),
                Err(err) if answered.elapsed() > job.heartbeat_timeout / 2 => return Err(err),
                Err(err) => {
                    tracing::debug!(error = %err, "job poll failed; retrying");
                }
            }
        }
        match status.state {
            JobState::Done => {
                serde_json::from_value(status.report.unwrap_or_default()).map_err(|e| {
                    ClientError::Unreachable {
                        agent: self.address().to_string(),
                        message: format!("job {} answered an unreadable report: {e}", status.id),
                    }
                })
            }
            _ => Err(ClientError::Refused {
                agent: self.address().to_string(),
                status: status.error_status.unwrap_or(500),
                message: status
                    .error
                    .unwrap_or_else(|| format!("job {} {}", status.id, status.state.word())),
            }),
        }
    }

    /// Ends every job of `pass` on the agent (waiting until they stopped).
    pub async fn end_pass(&self, pass: &str) -> Result<(), ClientError> {
        let response = self
            .send(Method::DELETE, &format!("/v1/passes/{pass}"), None::<&()>)
            .await?;
        self.check(response).await.map(|_| ())
    }

    /// Names of the staging areas on the agent's volume.
    pub async fn staging_areas(&self) -> Result<Vec<String>, ClientError> {
        self.call(Method::GET, "/v1/staging", None::<&()>).await
    }

    /// Every snapshot on the node with its keyspace and table.
    pub async fn table_snapshots(&self) -> Result<Vec<TableSnapshot>, ClientError> {
        self.call(Method::GET, "/v1/table-snapshots", None::<&()>)
            .await
    }

    /// Removes snapshot `tag` of `keyspace` only.
    pub async fn clear_snapshot_in(&self, tag: &str, keyspace: &str) -> Result<(), ClientError> {
        let response = self
            .send(
                Method::DELETE,
                &format!("/v1/snapshots/{tag}?keyspace={keyspace}"),
                None::<&()>,
            )
            .await?;
        self.check(response).await.map(|_| ())
    }

    /// Repairs this node's primary ranges of the request's tables; returns
    /// when the repair is done.
    pub async fn repair(
        &self,
        request: &crate::agent::api::RepairRequest,
    ) -> Result<(), ClientError> {
        let response = self
            .send(Method::POST, "/v1/repairs", Some(request))
            .await?;
        self.check(response).await.map(|_| ())
    }

    pub async fn remove_staging(&self, name: &str) -> Result<(), ClientError> {
        let response = self
            .send(Method::DELETE, &format!("/v1/staging/{name}"), None::<&()>)
            .await?;
        self.check(response).await.map(|_| ())
    }

    /// Tags of the snapshots on the node's disks.
    pub async fn snapshot_tags(&self) -> Result<Vec<String>, ClientError> {
        self.call(Method::GET, "/v1/snapshots", None::<&()>).await
    }

    pub async fn clear_snapshot(&self, tag: &str) -> Result<(), ClientError> {
        let response = self
            .send(Method::DELETE, &format!("/v1/snapshots/{tag}"), None::<&()>)
            .await?;
        self.check(response).await.map(|_| ())
    }

    async fn call<T: DeserializeOwned, B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ClientError> {
        let what = format!("{method} {path}");
        let response = self.send(method, path, body).await?;
        let response = self.check(response).await?;
        let bytes = self.read_body(response, &what).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadAnswer {
            agent: self.address().to_string(),
            request: what,
            message: format!("not the expected JSON: {e}"),
        })
    }

    /// The body of an answer, refused once it passes [`MAX_ANSWER_BYTES`]
    /// (a misbehaving agent must not make the coordinator allocate without
    /// bound).
    async fn read_body(
        &self,
        response: reqwest::Response,
        what: &str,
    ) -> Result<Vec<u8>, ClientError> {
        crate::http::read_capped(response, MAX_ANSWER_BYTES)
            .await
            .map_err(|message| ClientError::BadAnswer {
                agent: self.address().to_string(),
                request: what.to_string(),
                message,
            })
    }

    async fn send<B: Serialize>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<reqwest::Response, ClientError> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.map_err(|e| self.unreachable(e))
    }

    /// Turns an error answer into [`ClientError::Refused`] with the agent's
    /// own message.
    async fn check(&self, response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        // An error body is a short message; a longer one is not read.
        let body = crate::http::read_capped(response, MAX_ERROR_BYTES)
            .await
            .unwrap_or_default();
        let message = match serde_json::from_slice::<ApiError>(&body) {
            Ok(body) => body.error,
            Err(_) => status.canonical_reason().unwrap_or("error").to_string(),
        };
        Err(ClientError::Refused {
            agent: self.address().to_string(),
            status: status.as_u16(),
            message,
        })
    }

    fn unreachable(&self, err: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            agent: self.address().to_string(),
            message: crate::storage::error_chain(&err),
        }
    }
}

/// An HTTPS client trusting only the CA(s) in `ca_pem`; errors name the
/// agent at `address` and the CA file's variable.
fn tls_client(
    address: &str,
    ca_pem: &[u8],
    builder: reqwest::ClientBuilder,
) -> Result<reqwest::Client, ClientError> {
    let bad_ca = |message: String| ClientError::Unreachable {
        agent: address.to_string(),
        message: format!("{}: {message}", crate::config::vars::AGENT_CA_FILE),
    };
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem)
        .map_err(|e| bad_ca(crate::storage::error_chain(&e)))?;
    if certs.is_empty() {
        return Err(bad_ca("no PEM certificate in the file".into()));
    }
    let builder = builder
        .connect_timeout(Duration::from_secs(10))
        .tls_certs_only(certs);
    crate::http::build(&format!("agent {address}"), builder).map_err(|e| bad_ca(e.message))
}
