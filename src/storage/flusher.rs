//! Group commit: one thread flushes sled for every caller waiting at the
//! time, so many concurrent writers share one fsync.

use std::sync::mpsc as std_mpsc;

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
    pub fn start_joinable(db: sled::Db) -> (Flusher, std::thread::JoinHandle<()>) {
        let (requests, incoming) = std_mpsc::channel::<Waiter>();
        let thread = std::thread::Builder::new()
            .name("delicate-flusher".into())
            .spawn(move || run(db, incoming))
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

fn run(db: sled::Db, incoming: std_mpsc::Receiver<Waiter>) {
    while let Ok(first) = incoming.recv() {
        let mut waiters = vec![first];
        waiters.extend(incoming.try_iter());
        let result = db.flush().map(|_| ()).map_err(|e| e.to_string());
        if let Err(error) = &result {
            tracing::error!(%error, "storage flush failed");
        }
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
    }
}
