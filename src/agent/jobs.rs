//! The lifetime of the agent's long work (upload, download, import): each
//! runs as a **job** — a task the agent owns, keyed by its pass — not inside
//! the coordinator's HTTP request, so a dropped connection neither kills it
//! half-way at a random await point nor leaves it running for ever.
//!
//! A job ends in exactly one of these ways, and its state says which:
//!
//! - `done` / `failed`: the work finished;
//! - `abandoned`: no poll (heartbeat) from its coordinator arrived within
//!   the timeout the coordinator asked for — it was killed or cut off;
//! - `taken over`: a job of another pass started (under the catalog's lease
//!   only one pass is alive, so the running one belongs to a dead pass);
//! - `cancelled`: its own pass ended it.
//!
//! Ending a job drops its work future — in-flight store requests stop,
//! child processes are killed (see [`crate::cassandra::control`]), the
//! progress logger goes with it — then waits for its blocking parts, which
//! watch the [`JobContext`] token and stop after the file at hand. Only
//! then is the job's end recorded and the next job started: no task of a
//! job outlives it, and a new pass never runs beside a dead one's work.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::api::{JobState, JobStatus, Progress, StartJob, Work};
use super::{AgentError, AgentState};

/// What the work of a job gets: the token that says it must stop (checked
/// by blocking code between files) and a guard every blocking task holds,
/// so the job's end waits for them.
#[derive(Clone)]
pub(super) struct JobContext {
    pub cancel: CancellationToken,
    pub alive: tokio::sync::mpsc::Sender<()>,
}

impl JobContext {
    /// Fails with the reason when the job is being stopped.
    pub fn check(&self) -> Result<(), AgentError> {
        if self.cancel.is_cancelled() {
            Err(AgentError::Failed("the job was stopped".into()))
        } else {
            Ok(())
        }
    }

    /// Runs `work` on the blocking pool; the job's end waits for it.
    pub async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, AgentError> + Send + 'static,
    ) -> Result<T, AgentError> {
        let alive = self.alive.clone();
        tokio::task::spawn_blocking(move || {
            let _alive = alive;
            work()
        })
        .await
        .map_err(|e| AgentError::Failed(e.to_string()))?
    }
}

/// The jobs of one agent: at most one running.
#[derive(Clone, Default)]
pub(super) struct Jobs {
    /// The current (or last) job; the async lock serialises starts.
    current: Arc<tokio::sync::Mutex<Option<Arc<Job>>>>,
    /// The jobs before it, newest last, so their end stays readable.
    earlier: Arc<Mutex<std::collections::VecDeque<Arc<Job>>>>,
}

/// How many ended jobs an agent remembers besides its current one.
const EARLIER_JOBS: usize = 8;

/// One job, shared by its task and the handlers.
pub(super) struct Job {
    id: String,
    pass: String,
    kind: &'static str,
    timeout: Duration,
    cancel: CancellationToken,
    inner: Mutex<JobInner>,
    ended: tokio::sync::watch::Sender<bool>,
}

struct JobInner {
    last_heartbeat: Instant,
    /// Set by whoever stops the job, before the token fires.
    stop_reason: Option<JobState>,
    state: JobState,
    report: Option<serde_json::Value>,
    error: Option<(String, u16)>,
}

impl Job {
    fn heartbeat(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.last_heartbeat = Instant::now();
        }
    }

    fn deadline(&self) -> Instant {
        let last = self
            .inner
            .lock()
            .map(|i| i.last_heartbeat)
            .unwrap_or_else(|_| Instant::now());
        last + self.timeout
    }

    fn is_running(&self) -> bool {
        self.inner
            .lock()
            .is_ok_and(|i| i.state == JobState::Running)
    }

    /// Asks the job to stop for `reason` (the first reason wins).
    fn stop(&self, reason: JobState) {
        if let Ok(mut inner) = self.inner.lock()
            && inner.stop_reason.is_none()
        {
            inner.stop_reason = Some(reason);
        }
        self.cancel.cancel();
    }

    fn stop_reason(&self) -> JobState {
        self.inner
            .lock()
            .ok()
            .and_then(|i| i.stop_reason)
            .unwrap_or(JobState::Cancelled)
    }

    /// Resolves once the job has ended (its task and blocking parts too).
    async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        // Err: the sender is gone, which only happens once it has ended.
        let _ = ended.wait_for(|done| *done).await;
    }

    fn status(&self, progress: Progress) -> JobStatus {
        let (state, report, error) = self
            .inner
            .lock()
            .map(|i| (i.state, i.report.clone(), i.error.clone()))
            .unwrap_or((JobState::Failed, None, None));
        JobStatus {
            id: self.id.clone(),
            pass: self.pass.clone(),
            kind: self.kind.to_string(),
            state,
            progress,
            report,
            error: error.as_ref().map(|(e, _)| e.clone()),
            error_status: error.map(|(_, s)| s),
        }
    }
}

/// Pass ids become log fields and URL segments.
fn check_pass(pass: &str) -> Result<(), AgentError> {
    let ok = !pass.is_empty()
        && pass.len() <= 100
        && pass.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok {
        Ok(())
    } else {
        Err(AgentError::BadRequest(format!("{pass:?} is not a pass id")))
    }
}

/// The shortest and longest heartbeat timeouts a coordinator may ask for.
const HEARTBEAT_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(3600));

impl Jobs {
    /// Starts `request` as the agent's job, first stopping (and waiting
    /// for) a running job of another pass. A second job of the same pass
    /// while one runs is refused: a pass drives one job per agent at a time.
    pub async fn start(
        &self,
        state: &AgentState,
        request: StartJob,
    ) -> Result<JobStatus, AgentError> {
        check_pass(&request.pass)?;
        let timeout = Duration::from_millis(request.heartbeat_timeout_ms);
        if !(HEARTBEAT_TIMEOUT_RANGE.0..=HEARTBEAT_TIMEOUT_RANGE.1).contains(&timeout) {
            return Err(AgentError::BadRequest(format!(
                "heartbeat_timeout_ms {} is outside 1 s..1 h",
                request.heartbeat_timeout_ms
            )));
        }
        super::validate_work(&request.work)?;
        let mut current = self.current.lock().await;
        if let Some(running) = current.as_ref().filter(|j| j.is_running()) {
            if running.pass == request.pass {
                return Err(AgentError::Conflict(format!(
                    "pass {} already runs {} job {} here",
                    running.pass, running.kind, running.id
                )));
            }
            tracing::warn!(job = %running.id, pass = %running.pass, kind = running.kind, by = %request.pass, "taking over: stopping the job of an earlier pass");
            running.stop(JobState::TakenOver);
            running.ended().await;
        }
        let job = Arc::new(Job {
            id: format!("{}-{:016x}", request.work.kind(), rand::random::<u64>()),
            pass: request.pass.clone(),
            kind: request.work.kind(),
            timeout,
            cancel: CancellationToken::new(),
            inner: Mutex::new(JobInner {
                last_heartbeat: Instant::now(),
                stop_reason: None,
                state: JobState::Running,
                report: None,
                error: None,
            }),
            ended: tokio::sync::watch::Sender::new(false),
        });
        state.set_progress(|p| {
            *p = Progress {
                state: request.work.kind().to_string(),
                pass: Some(job.pass.clone()),
                job: Some(job.id.clone()),
                ..Progress::default()
            }
        });
        tracing::info!(job = %job.id, pass = %job.pass, heartbeat_timeout = ?timeout, "job started");
        tokio::spawn(run(state.clone(), job.clone(), request.work));
        if let Some(previous) = current.replace(job.clone())
            && let Ok(mut earlier) = self.earlier.lock()
        {
            earlier.push_back(previous);
            while earlier.len() > EARLIER_JOBS {
                earlier.pop_front();
            }
        }
        Ok(job.status(state.progress()))
    }

    /// The status of job `id`, counting as a heartbeat; `None` if it is
    /// neither this agent's current job nor one of the last ended ones.
    pub async fn poll(&self, state: &AgentState, id: &str) -> Option<JobStatus> {
        let current = self.current.lock().await;
        if let Some(job) = current.as_ref().filter(|j| j.id == id) {
            job.heartbeat();
            return Some(job.status(state.progress()));
        }
        let earlier = self.earlier.lock().ok()?;
        let job = earlier.iter().find(|j| j.id == id)?;
        // Its counters were overwritten by later jobs.
        Some(job.status(Progress::default()))
    }

    /// Stops the running job of `pass`, if any, and waits for its end.
    pub async fn end_pass(&self, pass: &str) -> Result<(), AgentError> {
        check_pass(pass)?;
        let current = self.current.lock().await;
        if let Some(job) = current
            .as_ref()
            .filter(|j| j.pass == pass && j.is_running())
        {
            job.stop(JobState::Cancelled);
            job.ended().await;
        }
        Ok(())
    }
}

/// The job's task: the work, raced against its stop token and heartbeat
/// deadline; then the wait for its blocking parts; then its end recorded.
async fn run(state: AgentState, job: Arc<Job>, work: Work) {
    let (alive, mut blocking_done) = tokio::sync::mpsc::channel::<()>(1);
    let context = JobContext {
        cancel: job.cancel.clone(),
        alive,
    };
    let result = {
        let work = super::do_work(&state, work, context);
        tokio::select! {
            result = work => Ok(result),
            reason = watchdog(&job) => Err(reason),
        }
        // The work future is dropped here: transfers stop, children die.
    };
    // Who stopped it, if anyone did, before the token fires for all.
    let stopped_by = job.inner.lock().ok().and_then(|i| i.stop_reason);
    job.cancel.cancel();
    // Every blocking task holds a sender; recv() answers None once the
    // last one is gone.
    while blocking_done.recv().await.is_some() {}
    let (state_now, report, error) = match (result, stopped_by) {
        (Ok(Ok(report)), _) => (JobState::Done, Some(report), None),
        // The work noticed the stop before the race did.
        (Ok(Err(err)), Some(reason)) => (
            reason,
            None,
            Some((stopped_message(&job, reason, Some(&err)), 409)),
        ),
        (Ok(Err(err)), None) => (
            JobState::Failed,
            None,
            Some((err.to_string(), err.status().as_u16())),
        ),
        (Err(reason), _) => (
            reason,
            None,
            Some((stopped_message(&job, reason, None), 409)),
        ),
    };
    if let Ok(mut inner) = job.inner.lock() {
        inner.state = state_now;
        inner.report = report;
        inner.error = error.clone();
    }
    state.set_progress(|p| {
        if p.job.as_deref() == Some(job.id.as_str()) {
            p.state = state_now.word().to_string();
            p.error = error.as_ref().map(|(e, _)| e.clone());
        }
    });
    match state_now {
        JobState::Done => tracing::info!(job = %job.id, pass = %job.pass, "job done"),
        JobState::Failed => {
            tracing::error!(job = %job.id, pass = %job.pass, error = %error.map(|e| e.0).unwrap_or_default(), "job failed")
        }
        other => {
            tracing::warn!(job = %job.id, pass = %job.pass, state = other.word(), "job stopped")
        }
    }
    job.ended.send_replace(true);
}

fn stopped_message(job: &Job, reason: JobState, err: Option<&AgentError>) -> String {
    let why = match reason {
        JobState::Abandoned => format!(
            "abandoned: no poll from its coordinator for {}",
            humantime::format_duration(job.timeout)
        ),
        JobState::TakenOver => "taken over by a job of another pass".to_string(),
        _ => "cancelled by its pass".to_string(),
    };
    match err {
        Some(err) => format!("{} job {} {why} ({err})", job.kind, job.id),
        None => format!("{} job {} {why}", job.kind, job.id),
    }
}

/// Resolves when the job must stop: someone stopped it, or its heartbeat
/// deadline passed (then it is `abandoned`).
async fn watchdog(job: &Job) -> JobState {
    loop {
        let deadline = job.deadline();
        tokio::select! {
            () = job.cancel.cancelled() => return job.stop_reason(),
            () = tokio::time::sleep_until(deadline) => {
                if job.deadline() <= Instant::now() {
                    job.stop(JobState::Abandoned);
                    return job.stop_reason();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pass_ids_are_plain() {
        assert!(check_pass("backup-00ff").is_ok());
        for bad in ["", "../x", "a/b", "a b", &"x".repeat(101)] {
            assert!(check_pass(bad).is_err(), "{bad:?}");
        }
    }
}
