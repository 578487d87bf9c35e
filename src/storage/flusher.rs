//! Group commit: one thread flushes sled for every caller waiting at the
//! time, so many concurrent writers share one fsync.

use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::StoreError;

type Waiter = oneshot::Sender<Result<(), String>>;

#[derive(Clone)]
pub struct Flusher {
    requests: std_mpsc::Sender<Waiter>,
}

impl Flusher {
    /// Starts the flusher and also returns its thread. The thread exits once
    /// every clone of the `Flusher` is dropped, and only then drops its
    /// `sled::Db`, so a caller that must release the store's file lock (to
    /// reopen the directory in the same process) joins it.
    ///
    /// `spacing` is the least time from the start of one flush to the start
    /// of the next: callers that come sooner wait and share the next flush.
    /// Zero flushes a lone caller at once.
    pub fn start_joinable(
        db: sled::Db,
        spacing: Duration,
    ) -> (Flusher, std::thread::JoinHandle<()>) {
        let (requests, incoming) = std_mpsc::channel::<Waiter>();
        let thread = std::thread::Builder::new()
            .name("delicate-flusher".into())
            .spawn(move || run(db, spacing, incoming))
            .expect("spawning the flusher thread");
        (Flusher { requests }, thread)
    }

    pub async fn flush(&self) -> Result<(), StoreError> {
        let (done, wait) = oneshot::channel();
        self.requests
            .send(done)
            .map_err(|_| StoreError::Flush("the flusher thread has stopped".into()))?;
        wait.await
            .map_err(|_| StoreError::Flush("the flusher thread has stopped".into()))?
            .map_err(StoreError::Flush)
    }
}

/// Time a flush waits for more callers to join it, used only while callers
/// come concurrently. Each sled flush seals and writes its own log buffer (a
/// `pwrite` and a `sync_file_range` on a sled I/O thread), so under
/// concurrent load fewer, larger flushes cost less CPU and disk time per
/// caller than one flush per caller. The wait always runs to its end, so it
/// bounds the rate of a fixed set of callers that each wait for their flush.
/// In `bench api` with 16 connections, 2 ms gave about 5,000 creations per
/// second and 300 µs about 11,000.
const LINGER: Duration = Duration::from_micros(300);

fn run(db: sled::Db, spacing: Duration, incoming: std_mpsc::Receiver<Waiter>) {
    let mut concurrent = false;
    let mut last_start: Option<Instant> = None;
    while let Ok(first) = incoming.recv() {
        let mut waiters = vec![first];
        if let Some(last) = last_start {
            collect_until(&incoming, &mut waiters, last + spacing);
        }
        waiters.extend(incoming.try_iter());
        // A lone caller is flushed at once unless the previous flush served
        // several callers, so a single writer waits for the linger at most
        // once after a burst.
        if concurrent || waiters.len() > 1 {
            collect_until(&incoming, &mut waiters, Instant::now() + LINGER);
        }
        concurrent = waiters.len() > 1;
        last_start = Some(Instant::now());
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, waiters = waiters.len(), "storage flush failed");
        }
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}

/// Adds the callers that arrive before `deadline` to `waiters`.
fn collect_until(
    incoming: &std_mpsc::Receiver<Waiter>,
    waiters: &mut Vec<Waiter>,
    deadline: Instant,
) {
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match incoming.recv_timeout(left) {
            Ok(waiter) => waiters.push(waiter),
            Err(_) => return,
        }
    }
}
