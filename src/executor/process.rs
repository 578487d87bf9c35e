//! The child-process runner: one [`RunActor`] per task instance supervises
//! `/bin/sh -c COMMAND` and reports the run as a stream of [`RunEvent`]s.
//!
//! - The child runs in its own process group (its pgid is its pid), so a
//!   timeout or a [`KillRun`] reaches every process the command started.
//! - The child's environment is the executor's environment plus the spec's
//!   variables, which override same-named ones. Tasks therefore see the
//!   executor's `PATH`, locale and so on, as they would from a login shell.
//! - stdout and stderr are read concurrently and passed through the output
//!   cap of [`crate::domain::output`]. The events channel is bounded, and a
//!   reader that cannot send stops reading its pipe, so a child that outpaces
//!   the receiver blocks on write instead of growing memory.
//! - Ending a run: SIGTERM to the group, then SIGKILL to the group after the
//!   kill grace period if the main process still runs. Once the main process
//!   of a timed-out or killed run exits, the group gets SIGKILL as well, so no
//!   member outlives it.
//! - A run ends when its main process exits and has been waited for, so it
//!   leaves no zombie. The pipes are read until EOF or for [`DRAIN_PERIOD`],
//!   because a background process may keep them open indefinitely.
//!
//! This module does not talk to the network. The executor node forwards the
//! events.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::process::ExitStatusExt;
use std::pin::pin;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use chrono::{DateTime, Utc};
use kameo::Actor;
use kameo::actor::{ActorRef, Spawn, WeakActorRef};
use kameo::message::{Context, Message};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, error, info, info_span, warn};

use super::user::{self, Account};
use crate::domain::output::{DEFAULT_OUTPUT_CAP, OutputCap, Tail};

/// Default delay between SIGTERM and SIGKILL when a run is ended.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(5);

/// How long the pipes are still read after the main process exits. A
/// background process that inherited them may keep them open for ever, and
/// the run must end anyway. When the period is over, the bytes already in
/// the pipes are still read, so nothing the main process wrote is lost.
pub const DRAIN_PERIOD: Duration = Duration::from_secs(2);

/// Size of one read from a pipe, and so the largest `Output` event: the
/// default Linux pipe buffer size.
const READ_BUFFER_SIZE: usize = 64 * 1024;

/// Command, environment and limits of one task instance's run.
#[derive(Clone)]
pub struct RunSpec {
    pub instance_id: u64,
    /// Shell command, run as `/bin/sh -c COMMAND`.
    pub command: String,
    /// Variables added to the executor's environment, overriding same-named ones.
    pub env: BTreeMap<String, String>,
    /// User to run as. Switching to another user needs an executor running as root.
    pub run_as: Option<String>,
    /// Bytes written to the child's stdin, which is then closed. `None` connects
    /// stdin to `/dev/null`.
    pub stdin: Option<Vec<u8>>,
    /// Run time after which the run is ended as timed out, counted from spawn.
    pub timeout: Option<Duration>,
    /// Delay between SIGTERM and SIGKILL when the run is ended.
    pub kill_grace: Duration,
    /// Maximum bytes kept per output stream.
    pub output_cap: usize,
}

impl RunSpec {
    /// Creates a spec with no extra environment, no stdin, no timeout and the
    /// default kill grace and output cap.
    pub fn new(instance_id: u64, command: impl Into<String>) -> Self {
        Self {
            instance_id,
            command: command.into(),
            env: BTreeMap::new(),
            run_as: None,
            stdin: None,
            timeout: None,
            kill_grace: DEFAULT_KILL_GRACE,
            output_cap: DEFAULT_OUTPUT_CAP,
        }
    }
}

/// Shows environment names but not values, and the stdin length but not its
/// bytes, because either may contain secrets.
impl fmt::Debug for RunSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunSpec")
            .field("instance_id", &self.instance_id)
            .field("command", &self.command)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("run_as", &self.run_as)
            .field("stdin_len", &self.stdin.as_ref().map(Vec::len))
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("output_cap", &self.output_cap)
            .finish()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutputStream {
    Stdout,
    Stderr,
}

/// Progress of a run. `Finished` is the last event and is sent exactly once,
/// unless the tokio runtime shuts down first. Per stream, `Tail` follows the
/// last `Output`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RunEvent {
    Started {
        pid: u32,
        /// Start time of the main process in clock ticks since boot (field 22
        /// of `/proc/PID/stat`), for [`kill_leftover_group`]. Read before the
        /// process is waited for, so it cannot belong to a reused pid.
        start_time: Option<u64>,
        at: DateTime<Utc>,
    },
    /// Live output at `offset` bytes from the start of the stream.
    Output {
        stream: OutputStream,
        offset: u64,
        bytes: Vec<u8>,
    },
    /// Sent when a stream grew past its cap. The receiver applies it with
    /// [`crate::domain::output::apply_tail`].
    Tail {
        stream: OutputStream,
        tail: Tail,
    },
    Finished(RunOutcome),
}

/// How a run ended and its outcome: the same types the scheduler stores,
/// so an outcome crosses the wire unchanged. The runner never produces
/// `RunEnd::Interrupted`; the executor node does, when it stops or restarts.
pub use crate::domain::lifecycle::{Outcome as RunOutcome, RunEnd};

/// Actor supervising the child of one task instance.
///
/// It stops by itself after sending `Finished`. Dropping every reference to
/// it does not end the run: the child keeps running until it exits.
#[derive(Actor)]
pub struct RunActor {
    pid: Option<u32>,
    kill_requested: watch::Sender<bool>,
}

/// Request to end the run: SIGTERM to the process group, then SIGKILL after
/// the kill grace period. Repeating it has no further effect, and on a run
/// that is already timing out the end stays `TimedOut`. Once the run has
/// finished the actor is stopped, so sending this fails harmlessly.
#[derive(Clone, Copy, Debug)]
pub struct KillRun;

impl Message<KillRun> for RunActor {
    type Reply = ();

    async fn handle(&mut self, _msg: KillRun, _ctx: &mut Context<Self, Self::Reply>) {
        self.kill_requested.send_replace(true);
    }
}

/// Request for the pid of the main process, which is also its process group
/// id. `None` if the spawn failed.
#[derive(Clone, Copy, Debug)]
pub struct GetPid;

impl Message<GetPid> for RunActor {
    type Reply = Option<u32>;

    async fn handle(&mut self, _msg: GetPid, _ctx: &mut Context<Self, Self::Reply>) -> Option<u32> {
        self.pid
    }
}

/// Starts the child and its supervising actor. Events go to `events`
/// (bounded: when it is full the runner stops reading the pipes, so the child
/// blocks on write and memory stays bounded).
///
/// A spawn failure is reported as a `Finished` event with
/// [`RunEnd::SpawnFailed`]. If the receiver of `events` is dropped, the run
/// goes on and its output is discarded.
pub async fn start_run(spec: RunSpec, events: mpsc::Sender<RunEvent>) -> ActorRef<RunActor> {
    let span = info_span!("executor.run", instance.id = spec.instance_id);
    let spawned = spawn_child(&spec).instrument(span.clone()).await;

    let (kill_requested, kill_receiver) = watch::channel(false);
    let actor = RunActor::spawn(RunActor {
        pid: spawned.as_ref().ok().map(|child| child.pid),
        kill_requested,
    });

    let weak_actor = actor.downgrade();
    let run = async move {
        let outcome = match spawned {
            Ok(child) => supervise(child, &spec, &events, kill_receiver).await,
            Err(reason) => {
                warn!(%reason, "run could not start");
                outcome(RunEnd::SpawnFailed, None, Some(reason))
            }
        };
        if events.send(RunEvent::Finished(outcome)).await.is_err() {
            debug!("events receiver dropped before the run finished");
        }
        stop_actor(weak_actor).await;
    };
    tokio::spawn(run.instrument(span));

    actor
}

async fn stop_actor(actor: WeakActorRef<RunActor>) {
    if let Some(actor) = actor.upgrade() {
        // An error means the actor is already stopping.
        let _ = actor.stop_gracefully().await;
    }
}

/// A child that was spawned and not yet waited for.
struct SpawnedChild {
    child: Child,
    pid: u32,
    start_time: Option<u64>,
    started_at: DateTime<Utc>,
}

/// Spawns the child. The error is the `reason` of a `SpawnFailed` outcome.
async fn spawn_child(spec: &RunSpec) -> Result<SpawnedChild, String> {
    let account = resolve_run_as(spec.run_as.as_deref()).await?;

    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&spec.command)
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(if spec.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });

    if let Some(account) = &account {
        command
            .env("HOME", &account.home)
            .env("USER", &account.name)
            .env("LOGNAME", &account.name);
        // SAFETY: the closure makes only async-signal-safe calls and does not
        // allocate, as code between fork and exec must.
        unsafe { command.pre_exec(switch_user_in_child(account)) };
    }
    // The spec's variables come last, so they override the account's.
    command.envs(&spec.env);

    let ticks_before = boot_ticks();
    let child = command
        .spawn()
        .map_err(|error| format!("spawn failed: {error}"))?;
    let ticks_after = boot_ticks();
    let started_at = Utc::now();
    // A child that has not been waited for always has a pid.
    let pid = child.id().expect("pid of a child not yet waited for");
    // The kernel stamps the child's start time during the spawn, so when
    // the clock tick did not change across it, that tick is the start time.
    // Reading /proc/PID/stat instead cost about a tenth of the executor's
    // CPU under `bench dispatch`.
    let start_time = match (ticks_before, ticks_after) {
        (Some(before), Some(after)) if before == after => Some(before),
        _ => process_start_time(pid),
    };
    Ok(SpawnedChild {
        child,
        pid,
        start_time,
        started_at,
    })
}

/// Decides which account the child runs as. `Ok(None)` means the executor's
/// own account.
async fn resolve_run_as(run_as: Option<&str>) -> Result<Option<Account>, String> {
    let Some(name) = run_as else {
        return Ok(None);
    };
    if user::effective_user_name().as_deref() == Some(name) {
        return Ok(None);
    }
    if !user::is_root() {
        return Err(format!("run_as {name:?} needs an executor running as root"));
    }

    let owned_name = name.to_owned();
    match tokio::task::spawn_blocking(move || user::lookup_by_name(&owned_name)).await {
        Ok(Ok(account)) => Ok(Some(account)),
        Ok(Err(error)) => Err(error.to_string()),
        Err(error) => Err(format!("failed to look up run_as user {name:?}: {error}")),
    }
}

/// Returns the `pre_exec` hook that drops root for `account`: supplementary
/// groups first, then the group, then the user, because each step needs the
/// privileges the next one removes.
fn switch_user_in_child(account: &Account) -> impl FnMut() -> io::Result<()> + Send + Sync + use<> {
    let groups = account.groups.clone();
    let uid = account.uid;
    let gid = account.gid;
    move || {
        // SAFETY: `groups` contains `groups.len()` gids, and these calls are
        // plain system calls.
        unsafe {
            if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                || libc::setgid(gid) != 0
                || libc::setuid(uid) != 0
            {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Runs a spawned child to its end and returns the outcome.
async fn supervise(
    spawned: SpawnedChild,
    spec: &RunSpec,
    events: &mpsc::Sender<RunEvent>,
    kill_requested: watch::Receiver<bool>,
) -> RunOutcome {
    let SpawnedChild {
        mut child,
        pid,
        start_time,
        started_at,
    } = spawned;
    // Debug, like the other per-run lines: at hundreds of runs per second
    // one info line each costs the executor more than the run's own events.
    debug!(pid, "run started");
    let started = RunEvent::Started {
        pid,
        start_time,
        at: started_at,
    };
    if events.send(started).await.is_err() {
        debug!("events receiver dropped, output will be discarded");
    }

    let (stop_reading, stop_receiver) = watch::channel(false);
    let readers = [
        spawn_reader(
            OutputStream::Stdout,
            child.stdout.take(),
            spec.output_cap,
            events,
            &stop_receiver,
        ),
        spawn_reader(
            OutputStream::Stderr,
            child.stderr.take(),
            spec.output_cap,
            events,
            &stop_receiver,
        ),
    ];
    let writer = spec
        .stdin
        .clone()
        .zip(child.stdin.take())
        .map(|(bytes, stdin)| tokio::spawn(write_stdin(stdin, bytes).in_current_span()));

    let (status, termination) = wait_for_exit(&mut child, pid, spec, kill_requested).await;
    if termination.is_some() {
        signal_group(pid, libc::SIGKILL);
    }
    if let Some(writer) = writer {
        // The child no longer reads stdin, and the writer may be blocked on a
        // full pipe that a background process still holds open.
        writer.abort();
    }
    drain_readers(readers, stop_reading).await;

    match status {
        Ok(status) => outcome_after_exit(status, termination, spec),
        Err(error) => {
            error!(pid, %error, "failed to wait for the child");
            let end = termination.map_or(RunEnd::Exited, |t| t.cause);
            let reason = format!("failed to wait for process {pid}: {error}");
            outcome(end, None, Some(reason))
        }
    }
}

/// Cause of an end that the runner forced, and whether it needed SIGKILL.
#[derive(Clone, Copy, Debug)]
struct Termination {
    /// `TimedOut` or `Killed`.
    cause: RunEnd,
    /// Whether SIGKILL followed SIGTERM because the grace period ran out.
    escalated: bool,
}

/// Waits for the main process to exit, ending the group on timeout or on a
/// kill request.
async fn wait_for_exit(
    child: &mut Child,
    pgid: u32,
    spec: &RunSpec,
    mut kill_requested: watch::Receiver<bool>,
) -> (io::Result<ExitStatus>, Option<Termination>) {
    let timeout_at = spec.timeout.map(|timeout| Instant::now() + timeout);
    let mut termination: Option<Termination> = None;
    let mut escalate_at: Option<Instant> = None;
    let mut kill_channel_open = true;

    loop {
        let mut begin = None;
        tokio::select! {
            status = child.wait() => return (status, termination),
            _ = sleep_until(timeout_at), if termination.is_none() => {
                begin = Some(RunEnd::TimedOut);
            }
            requested = kill_requested.wait_for(|requested| *requested),
                if termination.is_none() && kill_channel_open =>
            {
                match requested {
                    Ok(_) => begin = Some(RunEnd::Killed),
                    // The actor is gone, so no kill request can come any more.
                    Err(_) => kill_channel_open = false,
                }
            }
            _ = sleep_until(escalate_at) => {
                warn!(pgid, grace = ?spec.kill_grace, "main process still running after the kill grace period, sending SIGKILL to the group");
                signal_group(pgid, libc::SIGKILL);
                escalate_at = None;
                if let Some(termination) = &mut termination {
                    termination.escalated = true;
                }
            }
        }

        if let Some(cause) = begin {
            info!(pgid, ?cause, "ending the process group with SIGTERM");
            signal_group(pgid, libc::SIGTERM);
            termination = Some(Termination {
                cause,
                escalated: false,
            });
            escalate_at = Some(Instant::now() + spec.kill_grace);
        }
    }
}

/// Sleeps until `at`, or for ever if it is `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Sends `signal` to the process group `pgid`. A group that no longer exists
/// is not an error.
fn signal_group(pgid: u32, signal: libc::c_int) {
    // pgid 0 would signal the executor's own group, and pid 1 is init.
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: killpg has no memory preconditions.
    if unsafe { libc::killpg(pgid, signal) } != 0 {
        let error = io::Error::last_os_error();
        if error.raw_os_error() != Some(libc::ESRCH) {
            warn!(pgid, signal, %error, "failed to signal the process group");
        }
    }
}

async fn write_stdin(mut stdin: ChildStdin, bytes: Vec<u8>) {
    // A child that exits without reading its stdin makes this fail with
    // EPIPE, which is normal.
    if let Err(error) = stdin.write_all(&bytes).await {
        debug!(%error, "stdin not fully written");
    }
    // Dropping `stdin` closes the pipe, so the child reads EOF.
}

fn spawn_reader<R>(
    stream: OutputStream,
    pipe: Option<R>,
    cap: usize,
    events: &mpsc::Sender<RunEvent>,
    stop: &watch::Receiver<bool>,
) -> Option<JoinHandle<()>>
where
    R: AsyncRead + AsRawFd + Unpin + Send + 'static,
{
    let reader = OutputReader {
        stream,
        state: OutputCap::new(cap),
        events: events.clone(),
        receiver_open: true,
    };
    let stop = stop.clone();
    pipe.map(|pipe| tokio::spawn(reader.run(pipe, stop).in_current_span()))
}

/// Waits for both readers to reach EOF, for at most [`DRAIN_PERIOD`]. After
/// that the readers take only the bytes already in the pipes, then stop.
async fn drain_readers(readers: [Option<JoinHandle<()>>; 2], stop_reading: watch::Sender<bool>) {
    let mut joined = pin!(async {
        for reader in readers.into_iter().flatten() {
            if let Err(error) = reader.await {
                error!(%error, "output reader failed");
            }
        }
    });

    if tokio::time::timeout(DRAIN_PERIOD, &mut joined)
        .await
        .is_err()
    {
        info!(
            drain_period = ?DRAIN_PERIOD,
            "output pipes still open after the main process exited, \
             probably held by a background process; ending the run"
        );
        stop_reading.send_replace(true);
        joined.await;
    }
}

/// Reads one output stream through the cap and sends its events.
struct OutputReader {
    stream: OutputStream,
    state: OutputCap,
    events: mpsc::Sender<RunEvent>,
    /// False once the events receiver is dropped, after which output is discarded.
    receiver_open: bool,
}

impl OutputReader {
    async fn run<R>(mut self, mut pipe: R, mut stop: watch::Receiver<bool>)
    where
        R: AsyncRead + AsRawFd + Unpin,
    {
        let mut buffer = vec![0; READ_BUFFER_SIZE];
        let mut at_eof = false;

        while !at_eof {
            // `biased` puts the stop signal first, so a writer that never
            // pauses cannot keep this loop reading.
            let read = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => break,
                read = pipe.read(&mut buffer) => read,
            };
            at_eof = !self.forward_read(read, &buffer).await;
        }

        if !at_eof {
            self.read_buffered(&mut pipe, &mut buffer).await;
        }
        let state = std::mem::replace(&mut self.state, OutputCap::new(0));
        if let Some(tail) = state.finish() {
            let stream = self.stream;
            self.send(RunEvent::Tail { stream, tail }).await;
        }
    }

    /// Reads only the bytes already in the pipe, so output written before
    /// the main process exited is kept but a live writer cannot extend it.
    async fn read_buffered<R>(&mut self, pipe: &mut R, buffer: &mut [u8])
    where
        R: AsyncRead + AsRawFd + Unpin,
    {
        let mut remaining = bytes_in_pipe(pipe);
        while remaining > 0 {
            let len = remaining.min(buffer.len());
            let read = pipe.read(&mut buffer[..len]).await;
            if let Ok(count) = read {
                remaining = remaining.saturating_sub(count);
            }
            if !self.forward_read(read, buffer).await {
                break;
            }
        }
    }

    /// Passes the result of one read through the cap. Returns false at EOF
    /// or on a read error.
    async fn forward_read(&mut self, read: io::Result<usize>, buffer: &[u8]) -> bool {
        match read {
            Ok(0) => false,
            Ok(count) => {
                self.forward(&buffer[..count]).await;
                true
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => true,
            Err(error) => {
                warn!(stream = ?self.stream, %error, "failed to read child output");
                false
            }
        }
    }

    async fn forward(&mut self, bytes: &[u8]) {
        let chunks: Vec<(u64, Vec<u8>)> = self
            .state
            .push(bytes)
            .into_iter()
            .map(|chunk| (chunk.offset, chunk.bytes.to_vec()))
            .collect();
        for (offset, bytes) in chunks {
            let stream = self.stream;
            self.send(RunEvent::Output {
                stream,
                offset,
                bytes,
            })
            .await;
        }
    }

    async fn send(&mut self, event: RunEvent) {
        if self.receiver_open && self.events.send(event).await.is_err() {
            debug!(stream = ?self.stream, "events receiver dropped, discarding output");
            self.receiver_open = false;
        }
    }
}

/// Returns the number of bytes waiting in a pipe (FIONREAD), or 0 if that
/// cannot be read.
fn bytes_in_pipe(pipe: &impl AsRawFd) -> usize {
    let mut count: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, which is valid.
    let rc = unsafe { libc::ioctl(pipe.as_raw_fd(), libc::FIONREAD, &mut count) };
    if rc != 0 {
        return 0;
    }
    usize::try_from(count).unwrap_or(0)
}

fn outcome(end: RunEnd, status: Option<ExitStatus>, reason: Option<String>) -> RunOutcome {
    RunOutcome {
        end,
        exit_code: status.and_then(|status| status.code()),
        signal: status.and_then(|status| status.signal()),
        reason,
        finished_at: Utc::now(),
    }
}

fn outcome_after_exit(
    status: ExitStatus,
    termination: Option<Termination>,
    spec: &RunSpec,
) -> RunOutcome {
    let (end, reason) = match termination {
        Some(termination) => (termination.cause, termination_reason(termination, spec)),
        None => (RunEnd::Exited, exit_reason(status)),
    };
    debug!(
        end = ?end,
        exit_code = ?status.code(),
        signal = ?status.signal(),
        "run ended"
    );
    outcome(end, Some(status), reason)
}

fn termination_reason(termination: Termination, spec: &RunSpec) -> Option<String> {
    let mut reason = match (termination.cause, spec.timeout) {
        (RunEnd::TimedOut, Some(timeout)) => {
            format!("timed out after {}", format_duration(timeout))
        }
        _ => "killed on request".to_owned(),
    };
    if termination.escalated {
        let grace = format_duration(spec.kill_grace);
        reason.push_str(&format!(", then SIGKILL after the {grace} grace period"));
    }
    Some(reason)
}

fn exit_reason(status: ExitStatus) -> Option<String> {
    if let Some(code) = status.code() {
        return (code != 0).then(|| format!("exited with code {code}"));
    }
    let signal = status.signal()?;
    let mut reason = match signal_name(signal) {
        Some(name) => format!("killed by signal {signal} ({name})"),
        None => format!("killed by signal {signal}"),
    };
    if status.core_dumped() {
        reason.push_str(", core dumped");
    }
    Some(reason)
}

/// Formats whole seconds as `2 s` and anything finer as milliseconds.
fn format_duration(duration: Duration) -> String {
    if duration.subsec_nanos() == 0 {
        format!("{} s", duration.as_secs())
    } else {
        format!("{} ms", duration.as_millis())
    }
}

/// Names of the Linux signals a task commonly dies from.
fn signal_name(signal: i32) -> Option<&'static str> {
    let name = match signal {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGSYS => "SIGSYS",
        _ => return None,
    };
    Some(name)
}

/// Fields of `/proc/PID/stat` used for restart bookkeeping.
struct ProcStat {
    state: u8,
    pgrp: u32,
    start_time: u64,
}

/// Reads `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn read_proc_stat(pid: u32) -> Option<ProcStat> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    let name_end = text.iter().rposition(|&byte| byte == b')')?;
    let rest = std::str::from_utf8(&text[name_end + 1..]).ok()?;
    // `fields[0]` is field 3 (state), so field N is `fields[N - 3]`.
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    Some(ProcStat {
        state: *fields.first()?.as_bytes().first()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// Returns the start time of process `pid` in clock ticks since boot (field
/// 22 of `/proc/PID/stat`), or `None` if there is no such process.
///
/// Together with the pid it identifies a process across pid reuse.
pub fn process_start_time(pid: u32) -> Option<u64> {
    read_proc_stat(pid).map(|stat| stat.start_time)
}

/// Returns the time since boot in clock ticks (`CLOCK_BOOTTIME` divided by
/// the length of a `_SC_CLK_TCK` tick), the unit and clock of field 22 of
/// `/proc/PID/stat`. The kernel rounds a process's start down to a tick in
/// the same way (`nsec_to_clock_t` in Linux), so a process started between
/// two calls that return the same value has that value as its start time.
pub fn boot_ticks() -> Option<u64> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid timespec for clock_gettime to write.
    if unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut now) } != 0 {
        return None;
    }
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }).ok()?;
    let nanos_per_tick = 1_000_000_000u64.checked_div(ticks_per_second)?;
    let nanos =
        u64::try_from(now.tv_sec).ok()? * 1_000_000_000 + u64::try_from(now.tv_nsec).ok()?;
    Some(nanos / nanos_per_tick)
}

/// Sends SIGKILL to a process group left running by a previous life of the
/// executor. Returns whether the signal was sent.
///
/// The group is signalled only if its leader (pid `pgid`) still exists, still
/// leads group `pgid` and has `expected_start_time`, which guards against a
/// reused pid. A group whose leader has exited is left alone, because nothing
/// proves that it is the recorded one.
pub fn kill_leftover_group(pgid: u32, expected_start_time: u64) -> bool {
    let Ok(raw_pgid) = libc::pid_t::try_from(pgid) else {
        return false;
    };
    // SAFETY: getpgrp has no preconditions.
    let own_group = unsafe { libc::getpgrp() };
    if raw_pgid <= 1 || raw_pgid == own_group {
        return false;
    }

    let Some(leader) = read_proc_stat(pgid) else {
        return false;
    };
    if leader.pgrp != pgid || leader.start_time != expected_start_time {
        debug!(
            pgid,
            expected_start_time,
            start_time = leader.start_time,
            state = %char::from(leader.state),
            "process group leader does not match the record, leaving it alone"
        );
        return false;
    }

    // SAFETY: killpg has no memory preconditions.
    let sent = unsafe { libc::killpg(raw_pgid, libc::SIGKILL) } == 0;
    if sent {
        info!(pgid, "killed process group left by a previous executor");
    }
    sent
}
