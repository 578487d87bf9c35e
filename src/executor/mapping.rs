//! Conversions between the wire protocol and the runner: a `RunRequest` to a
//! [`RunSpec`], and a [`RunEvent`] to an outbox [`EventKind`].

use std::time::Duration;

use crate::net::messages::{EventKind, RunRequest, Stream};

use super::process::{OutputStream, RunEvent, RunSpec};

/// Maximum timeout taken from a request, about 100 years. Larger values are
/// clamped, because a deadline past the range of the clock would panic.
const MAX_TIMEOUT_SECS: u64 = 100 * 365 * 24 * 3600;
/// Maximum kill grace period taken from a request, for the same reason.
const MAX_KILL_GRACE: Duration = Duration::from_secs(24 * 3600);

/// Builds the runner's spec. A timeout of 0 means none. The output cap is the
/// request's, limited to `max_output_cap`; 0 in the request means the maximum.
pub(crate) fn run_spec(request: &RunRequest, max_output_cap: usize) -> RunSpec {
    let timeout =
        (request.timeout > 0).then(|| Duration::from_secs(request.timeout.min(MAX_TIMEOUT_SECS)));
    let requested_cap = usize::try_from(request.output_cap).unwrap_or(usize::MAX);
    let output_cap = match requested_cap {
        0 => max_output_cap,
        cap => cap.min(max_output_cap),
    };
    RunSpec {
        instance_id: request.instance_id,
        command: request.command.clone(),
        env: request.env.clone(),
        run_as: request.run_as.clone(),
        stdin: request.stdin.clone(),
        timeout,
        kill_grace: Duration::from_millis(request.kill_grace_ms).min(MAX_KILL_GRACE),
        output_cap,
    }
}

pub(crate) fn stream(stream: OutputStream) -> Stream {
    match stream {
        OutputStream::Stdout => Stream::Stdout,
        OutputStream::Stderr => Stream::Stderr,
    }
}

/// Converts a runner event to the event stored in the outbox.
pub(crate) fn event_kind(event: RunEvent) -> EventKind {
    match event {
        RunEvent::Started { pid, at, .. } => EventKind::Started { pid, at },
        RunEvent::Output {
            stream: output,
            offset,
            bytes,
        } => EventKind::Output {
            stream: stream(output),
            offset,
            bytes,
        },
        RunEvent::Tail {
            stream: output,
            tail,
        } => EventKind::Tail {
            stream: stream(output),
            keep: tail.keep,
            cut: tail.cut,
            bytes: tail.bytes,
        },
        RunEvent::Finished(finished) => EventKind::Finished(finished),
    }
}

/// Returns the first 80 characters of a command, for debug logs. The command may
/// embed a secret further on, and the environment is never logged.
pub(crate) fn command_preview(command: &str) -> String {
    const PREVIEW_CHARS: usize = 80;
    let mut preview: String = command.chars().take(PREVIEW_CHARS).collect();
    if command.chars().nth(PREVIEW_CHARS).is_some() {
        preview.push('…');
    }
    preview
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn request() -> RunRequest {
        RunRequest {
            instance_id: 9,
            task_id: 3,
            command: "echo hi".into(),
            env: BTreeMap::from([("TOKEN".into(), "secret".into())]),
            run_as: None,
            stdin: Some(b"input".to_vec()),
            timeout: 0,
            kill_grace_ms: 1500,
            output_cap: 0,
        }
    }

    #[test]
    fn zero_timeout_means_none() {
        let spec = run_spec(&request(), 1024);
        assert_eq!(spec.timeout, None);
        assert_eq!(spec.kill_grace, Duration::from_millis(1500));
        assert_eq!(spec.stdin.as_deref(), Some(&b"input"[..]));
        assert_eq!(spec.env.get("TOKEN").map(String::as_str), Some("secret"));
    }

    #[test]
    fn output_cap_is_limited_by_the_executor() {
        let mut req = request();
        assert_eq!(run_spec(&req, 1024).output_cap, 1024);
        req.output_cap = 100;
        assert_eq!(run_spec(&req, 1024).output_cap, 100);
        req.output_cap = u64::MAX;
        assert_eq!(run_spec(&req, 1024).output_cap, 1024);
    }

    #[test]
    fn huge_durations_are_clamped() {
        let mut req = request();
        req.timeout = u64::MAX;
        req.kill_grace_ms = u64::MAX;
        let spec = run_spec(&req, 1024);
        assert_eq!(spec.timeout, Some(Duration::from_secs(MAX_TIMEOUT_SECS)));
        assert_eq!(spec.kill_grace, MAX_KILL_GRACE);
    }

    #[test]
    fn command_preview_cuts_at_char_boundary() {
        let long = "é".repeat(100);
        let preview = command_preview(&long);
        assert_eq!(preview.chars().count(), 81);
        assert_eq!(command_preview("ls"), "ls");
    }
}
