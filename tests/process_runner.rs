//! Runs real child processes through the executor's runner.
//!
//! Set `DELICATE_TEST_LOG=debug` to see the runner's tracing output.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::time::Duration;

use delicate::domain::output::{DEFAULT_OUTPUT_CAP, apply_tail, cut_marker};
use delicate::executor::process::{
    GetPid, KillRun, OutputStream, RunActor, RunEnd, RunEvent, RunOutcome, RunSpec, boot_ticks,
    kill_leftover_group, process_start_time, start_run,
};
use kameo::actor::ActorRef;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Upper bound for anything a test waits for. Far above the expected
/// durations, so only a hang reaches it.
const TEST_DEADLINE: Duration = Duration::from_secs(60);

/// Interval between checks while polling for a condition.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

const EVENTS_CAPACITY: usize = 16;

fn init_tracing() {
    if let Ok(filter) = std::env::var("DELICATE_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    }
}

/// Sends SIGKILL to a process group when a failing test unwinds, so it
/// leaves no `sleep 600` behind. A passing test has already checked that the
/// group is gone, and signalling it again could hit a reused pgid.
struct GroupGuard(u32);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // SAFETY: killpg has no memory preconditions.
            unsafe { libc::killpg(self.0 as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// Events of a run that has finished.
struct FinishedRun {
    events: Vec<RunEvent>,
}

impl FinishedRun {
    fn outcome(&self) -> &RunOutcome {
        match self.events.last() {
            Some(RunEvent::Finished(outcome)) => outcome,
            other => panic!("last event is not Finished: {other:?}"),
        }
    }

    /// Reassembles a stream the way the scheduler's store does: live chunks
    /// at their offsets, then the tail.
    fn stored(&self, stream: OutputStream) -> Vec<u8> {
        let mut stored = Vec::new();
        for event in &self.events {
            match event {
                RunEvent::Output {
                    stream: s,
                    offset,
                    bytes,
                } if *s == stream => {
                    assert_eq!(
                        *offset,
                        stored.len() as u64,
                        "{stream:?} chunks are contiguous"
                    );
                    stored.extend_from_slice(bytes);
                }
                RunEvent::Tail { stream: s, tail } if *s == stream => apply_tail(&mut stored, tail),
                _ => {}
            }
        }
        stored
    }

    fn stdout(&self) -> Vec<u8> {
        self.stored(OutputStream::Stdout)
    }
}

/// Receives events until the runner drops its senders, and checks that
/// `Finished` comes exactly once, last.
async fn collect_events(receiver: &mut mpsc::Receiver<RunEvent>) -> FinishedRun {
    let mut events = Vec::new();
    let received = timeout(TEST_DEADLINE, async {
        while let Some(event) = receiver.recv().await {
            events.push(event);
        }
    })
    .await;
    assert!(
        received.is_ok(),
        "run did not finish within {TEST_DEADLINE:?}"
    );

    let finished = events
        .iter()
        .filter(|event| matches!(event, RunEvent::Finished(_)))
        .count();
    assert_eq!(finished, 1, "exactly one Finished event");
    assert!(
        matches!(events.last(), Some(RunEvent::Finished(_))),
        "Finished is last"
    );
    FinishedRun { events }
}

async fn run_to_end(spec: RunSpec) -> FinishedRun {
    init_tracing();
    let (sender, mut receiver) = mpsc::channel(EVENTS_CAPACITY);
    let _actor = start_run(spec, sender).await;
    collect_events(&mut receiver).await
}

/// Starts a run and waits for its Started event.
async fn start_and_wait(spec: RunSpec) -> (ActorRef<RunActor>, mpsc::Receiver<RunEvent>, u32) {
    init_tracing();
    let (sender, mut receiver) = mpsc::channel(EVENTS_CAPACITY);
    let actor = start_run(spec, sender).await;
    let first = timeout(TEST_DEADLINE, receiver.recv())
        .await
        .expect("Started in time");
    match first {
        Some(RunEvent::Started { pid, .. }) => (actor, receiver, pid),
        other => panic!("first event is not Started: {other:?}"),
    }
}

/// Waits until the stdout of a run contains `expected`, keeping the events.
async fn wait_for_stdout(
    receiver: &mut mpsc::Receiver<RunEvent>,
    expected: &[u8],
) -> Vec<RunEvent> {
    let mut events = Vec::new();
    let mut stdout = Vec::new();
    let waited = timeout(TEST_DEADLINE, async {
        while !stdout
            .windows(expected.len())
            .any(|window| window == expected)
        {
            let event = receiver
                .recv()
                .await
                .expect("events channel closed before stdout matched");
            if let RunEvent::Output {
                stream: OutputStream::Stdout,
                bytes,
                ..
            } = &event
            {
                stdout.extend_from_slice(bytes);
            }
            events.push(event);
        }
    })
    .await;
    assert!(waited.is_ok(), "stdout did not show {expected:?} in time");
    events
}

/// Pids of live (non-zombie) processes in group `pgid`, from `/proc/*/stat`.
/// Zombies are left out because an orphan's zombie is reaped by init, which
/// may be slow or absent in a container.
fn live_group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return members;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read(entry.path().join("stat")) else {
            continue;
        };
        let Some(name_end) = stat.iter().rposition(|&byte| byte == b')') else {
            continue;
        };
        let rest = String::from_utf8_lossy(&stat[name_end + 1..]).into_owned();
        let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
        let state = fields.first().copied().unwrap_or("");
        let pgrp = fields.get(2).and_then(|field| field.parse::<u32>().ok());
        if pgrp == Some(pgid) && state != "Z" {
            members.push(pid);
        }
    }
    members
}

async fn assert_group_gone(pgid: u32) {
    let deadline = Instant::now() + TEST_DEADLINE;
    loop {
        let members = live_group_members(pgid);
        if members.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "process group {pgid} still has live members {members:?}"
        );
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

#[tokio::test]
async fn echo_output_and_exit_zero() {
    let run = run_to_end(RunSpec::new(1, "echo hello")).await;

    assert_eq!(run.stdout(), b"hello\n");
    assert_eq!(run.stored(OutputStream::Stderr), b"");
    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::Exited);
    assert_eq!(outcome.exit_code, Some(0));
    assert_eq!(outcome.signal, None);
    assert_eq!(outcome.reason, None);
}

#[tokio::test]
async fn stderr_captured_separately() {
    let run = run_to_end(RunSpec::new(2, "echo out; echo err >&2")).await;

    assert_eq!(run.stdout(), b"out\n");
    assert_eq!(run.stored(OutputStream::Stderr), b"err\n");
}

#[tokio::test]
async fn exit_code_recorded() {
    let run = run_to_end(RunSpec::new(3, "exit 3")).await;

    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::Exited);
    assert_eq!(outcome.exit_code, Some(3));
    assert_eq!(outcome.reason.as_deref(), Some("exited with code 3"));
}

#[tokio::test]
async fn timeout_kills_whole_process_group() {
    let mut spec = RunSpec::new(4, "sleep 600 & sleep 600");
    spec.timeout = Some(Duration::from_secs(2));
    let (_actor, mut receiver, pid) = start_and_wait(spec).await;
    let _guard = GroupGuard(pid);

    let run = collect_events(&mut receiver).await;

    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::TimedOut);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(libc::SIGTERM));
    assert_eq!(outcome.reason.as_deref(), Some("timed out after 2 s"));
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn kill_run_ends_sleep() {
    let (actor, mut receiver, pid) = start_and_wait(RunSpec::new(5, "sleep 600")).await;
    let _guard = GroupGuard(pid);

    assert_eq!(actor.ask(GetPid).await.expect("actor alive"), Some(pid));
    actor.tell(KillRun).await.expect("actor alive");
    // A second request is accepted and changes nothing.
    let _ = actor.tell(KillRun).await;
    let run = collect_events(&mut receiver).await;

    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::Killed);
    assert_eq!(outcome.signal, Some(libc::SIGTERM));
    assert_eq!(outcome.reason.as_deref(), Some("killed on request"));
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn sigterm_ignoring_child_gets_sigkill() {
    let mut spec = RunSpec::new(6, "trap '' TERM; echo ready; sleep 600");
    spec.kill_grace = Duration::from_millis(200);
    let (actor, mut receiver, pid) = start_and_wait(spec).await;
    let _guard = GroupGuard(pid);

    // Sending the kill before the trap is set would test nothing.
    wait_for_stdout(&mut receiver, b"ready\n").await;
    actor.tell(KillRun).await.expect("actor alive");
    let run = collect_events(&mut receiver).await;

    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::Killed);
    assert_eq!(outcome.signal, Some(libc::SIGKILL));
    assert_eq!(
        outcome.reason.as_deref(),
        Some("killed on request, then SIGKILL after the 200 ms grace period")
    );
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn group_member_killed_after_main_exits() {
    // The main shell dies of SIGTERM, but the subshell's sleep ignores it.
    // The grace period is long, so only the SIGKILL sent once the main
    // process has exited can end the sleep before the test deadline.
    let command = "(trap '' TERM; echo ready; exec sleep 600) & wait";
    let mut spec = RunSpec::new(18, command);
    spec.kill_grace = Duration::from_secs(600);
    let (actor, mut receiver, pid) = start_and_wait(spec).await;
    let _guard = GroupGuard(pid);

    wait_for_stdout(&mut receiver, b"ready\n").await;
    actor.tell(KillRun).await.expect("actor alive");
    let run = collect_events(&mut receiver).await;

    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::Killed);
    assert_eq!(outcome.signal, Some(libc::SIGTERM));
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn large_output_keeps_head_and_tail() {
    const STREAM_LEN: usize = 5 * 1024 * 1024;
    let cap = DEFAULT_OUTPUT_CAP;
    let half = cap / 2;
    let command = format!("seq 1 2000000 | head -c {STREAM_LEN}");
    let run = run_to_end(RunSpec::new(7, command)).await;

    let mut stream: Vec<u8> = (1..=2_000_000)
        .flat_map(|number| format!("{number}\n").into_bytes())
        .collect();
    stream.truncate(STREAM_LEN);
    let cut = (STREAM_LEN - 2 * half) as u64;
    let mut expected = stream[..half].to_vec();
    expected.extend_from_slice(&cut_marker(cut));
    expected.extend_from_slice(&stream[STREAM_LEN - half..]);

    assert_eq!(run.outcome().exit_code, Some(0));
    let stored = run.stdout();
    assert_eq!(stored.len(), expected.len());
    assert!(
        stored == expected,
        "stored output differs from head + marker + tail"
    );

    // The runner emits at most `cap` live bytes and a `cap / 2` tail, never
    // the whole stream.
    let mut live_bytes = 0;
    let mut tail_bytes = 0;
    for event in &run.events {
        match event {
            RunEvent::Output { offset, bytes, .. } => {
                assert!(
                    *offset < cap as u64,
                    "live output at offset {offset} past the cap"
                );
                live_bytes += bytes.len();
            }
            RunEvent::Tail { tail, .. } => {
                assert_eq!(tail.cut, cut);
                tail_bytes += tail.bytes.len();
            }
            _ => {}
        }
    }
    assert!(live_bytes <= cap, "{live_bytes} live bytes exceed the cap");
    assert_eq!(tail_bytes, half);
    assert!(live_bytes + tail_bytes < STREAM_LEN);
}

#[tokio::test]
async fn non_utf8_bytes_stored_exactly() {
    let run = run_to_end(RunSpec::new(8, r"printf '\300\377'")).await;

    assert_eq!(run.stdout(), vec![0xc0, 0xff]);
}

#[tokio::test]
async fn stdin_bytes_reach_child() {
    let mut spec = RunSpec::new(9, "cat");
    spec.stdin = Some(b"line1\nline2\n".to_vec());
    let run = run_to_end(spec).await;

    assert_eq!(run.stdout(), b"line1\nline2\n");
    assert_eq!(run.outcome().exit_code, Some(0));
}

#[tokio::test]
async fn unread_stdin_does_not_block_end() {
    // Far more than a pipe buffer, so the writer blocks until the run ends.
    let mut spec = RunSpec::new(19, "exit 0");
    spec.stdin = Some(vec![b'x'; 4 * 1024 * 1024]);
    let run = run_to_end(spec).await;

    assert_eq!(run.outcome().end, RunEnd::Exited);
    assert_eq!(run.outcome().exit_code, Some(0));
}

#[tokio::test]
async fn missing_stdin_reads_dev_null() {
    let run = run_to_end(RunSpec::new(10, "cat; echo end")).await;

    assert_eq!(run.stdout(), b"end\n");
}

#[tokio::test]
async fn env_reaches_child() {
    let mut spec = RunSpec::new(11, "echo $FOO; echo ${PATH:+path set}");
    spec.env = BTreeMap::from([("FOO".to_owned(), "bar".to_owned())]);
    let run = run_to_end(spec).await;

    assert_eq!(run.stdout(), b"bar\npath set\n");
}

#[tokio::test]
async fn signal_death_recorded() {
    let run = run_to_end(RunSpec::new(12, "kill -9 $$")).await;

    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::Exited);
    assert_eq!(outcome.exit_code, None);
    assert_eq!(outcome.signal, Some(9));
    assert_eq!(
        outcome.reason.as_deref(),
        Some("killed by signal 9 (SIGKILL)")
    );
}

#[tokio::test]
async fn background_holder_does_not_block_end() {
    // The background sleep inherits stdout, so the pipe never reaches EOF.
    let (_actor, mut receiver, pid) =
        start_and_wait(RunSpec::new(13, "sleep 600 & echo done")).await;
    let _guard = GroupGuard(pid);

    let run = collect_events(&mut receiver).await;

    assert_eq!(run.outcome().end, RunEnd::Exited);
    assert_eq!(run.outcome().exit_code, Some(0));
    assert_eq!(run.stdout(), b"done\n");
    // A normal exit leaves background processes alone, so the sleep is still
    // there and its group id cannot have been reused.
    assert!(
        !live_group_members(pid).is_empty(),
        "background sleep was killed"
    );
    // SAFETY: killpg has no memory preconditions.
    unsafe { libc::killpg(pid as libc::pid_t, libc::SIGKILL) };
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn run_as_unknown_user_fails_spawn() {
    let mut spec = RunSpec::new(14, "echo never");
    spec.run_as = Some("delicate-no-such-user".to_owned());
    let run = run_to_end(spec).await;

    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::SpawnFailed);
    assert_eq!(run.events.len(), 1, "a failed spawn sends only Finished");
    let reason = outcome.reason.as_deref().expect("SpawnFailed has a reason");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        assert_eq!(reason, r#"run_as user "delicate-no-such-user" not found"#);
    } else {
        assert_eq!(
            reason,
            r#"run_as "delicate-no-such-user" needs an executor running as root"#
        );
    }
}

#[tokio::test]
async fn run_as_own_user_runs_normally() {
    let own_name = std::process::Command::new("id")
        .arg("-un")
        .output()
        .expect("run id -un");
    let own_name = String::from_utf8(own_name.stdout).expect("user name is text");
    let mut spec = RunSpec::new(20, "echo ran");
    spec.run_as = Some(own_name.trim().to_owned());
    let run = run_to_end(spec).await;

    assert_eq!(run.outcome().end, RunEnd::Exited, "{:?}", run.outcome());
    assert_eq!(run.stdout(), b"ran\n");
}

#[tokio::test]
async fn run_as_switches_to_nobody() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: switching users needs root");
        return;
    }
    let mut spec = RunSpec::new(15, "id -u; id -g; echo $USER $LOGNAME $HOME");
    spec.run_as = Some("nobody".to_owned());
    let run = run_to_end(spec).await;

    assert_eq!(run.outcome().exit_code, Some(0), "{:?}", run.outcome());
    let stdout = String::from_utf8(run.stdout()).expect("id prints text");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 3, "unexpected output {stdout:?}");
    assert_ne!(lines[0], "0", "still running as root");
    assert_ne!(lines[1], "0", "still in group root");
    assert!(
        lines[2].starts_with("nobody nobody "),
        "unexpected identity {:?}",
        lines[2]
    );
}

#[tokio::test]
async fn command_with_nul_fails_spawn() {
    let run = run_to_end(RunSpec::new(16, "echo a\0b")).await;

    let outcome = run.outcome();
    assert_eq!(outcome.end, RunEnd::SpawnFailed);
    let reason = outcome.reason.as_deref().unwrap_or("");
    assert!(
        reason.starts_with("spawn failed: "),
        "unexpected reason {reason:?}"
    );
}

#[tokio::test]
async fn actor_stops_after_finished() {
    init_tracing();
    let (sender, mut receiver) = mpsc::channel(EVENTS_CAPACITY);
    let actor = start_run(RunSpec::new(17, "true"), sender).await;
    collect_events(&mut receiver).await;

    let stopped = timeout(TEST_DEADLINE, actor.wait_for_shutdown()).await;
    assert!(stopped.is_ok(), "actor still alive after Finished");
}

/// Spawns `sleep 600` as the leader of its own process group.
fn spawn_group_leader() -> std::process::Child {
    std::process::Command::new("sleep")
        .arg("600")
        .process_group(0)
        .spawn()
        .expect("spawn sleep")
}

/// Waits for a child to exit, with a deadline. Returns whether it exited.
async fn reaped_within_deadline(child: &mut std::process::Child) -> bool {
    let deadline = Instant::now() + TEST_DEADLINE;
    while Instant::now() < deadline {
        if child.try_wait().expect("try_wait").is_some() {
            return true;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
    false
}

#[tokio::test]
async fn kill_leftover_group_checks_start_time() {
    let mut child = spawn_group_leader();
    let pid = child.id();
    let _guard = GroupGuard(pid);
    let start_time = process_start_time(pid).expect("start time of a live child");

    assert!(
        !kill_leftover_group(pid, start_time + 1),
        "killed despite a wrong start time"
    );
    assert!(
        child.try_wait().expect("try_wait").is_none(),
        "child exited after a mismatched kill"
    );

    assert!(
        kill_leftover_group(pid, start_time),
        "matching group not signalled"
    );
    assert!(
        reaped_within_deadline(&mut child).await,
        "child survived SIGKILL"
    );
    assert_group_gone(pid).await;
}

#[tokio::test]
async fn process_start_time_of_missing_pid() {
    // Linux caps pid_max at 2^22, so this pid cannot exist.
    assert_eq!(process_start_time(4_194_305), None);
    assert!(!kill_leftover_group(4_194_305, 0));
}

#[tokio::test]
async fn boot_ticks_bracket_start_time() {
    for _ in 0..20 {
        let before = boot_ticks().expect("CLOCK_BOOTTIME is readable");
        let mut child = spawn_group_leader();
        let after = boot_ticks().expect("CLOCK_BOOTTIME is readable");
        let pid = child.id();
        let _guard = GroupGuard(pid);
        let start_time = process_start_time(pid).expect("start time of a live child");
        assert!(
            before <= start_time,
            "start time {start_time} is before the tick {before} read before the spawn"
        );
        assert!(
            start_time <= after,
            "start time {start_time} is after the tick {after} read after the spawn"
        );
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
    }
}
