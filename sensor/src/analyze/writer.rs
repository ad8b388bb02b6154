//! The store writer: commits the analyzer's batches on a thread of its own.
//!
//! A commit serialises every device seen since the last one and runs one SQLite
//! transaction: milliseconds on a busy network. Done on the analyzer thread, every
//! observation that arrives meanwhile waits, and an alert raised behind them is late
//! by the whole commit (the packet-to-alert latency's p99). The analyzer hands the
//! batch over (device records cloned, not serialised) and carries on; the writer
//! serialises and writes it.
//!
//! **Reads see every write handed over before them**: the analyzer reads the store
//! only through [`Analyzer::store`], which first waits until the writer has written
//! everything queued. Reads are rare (start, operator changes, the API, alerts evicted
//! from memory), so the wait costs nothing on the packet path.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Sender};

use super::{Analyzer, DeviceRecord};
use crate::store::{self, DeviceKey, DeviceRow, Store};

/// Batches queued for the writer before the analyzer waits for it: commits are at
/// most every few hundred milliseconds, so a full queue means the disk cannot keep up,
/// and waiting then bounds memory.
const QUEUED_BATCHES: usize = 4;

/// One device row, serialised by the writer.
pub(super) struct PendingDevice {
    pub key: DeviceKey,
    pub record: DeviceRecord,
}

enum Job {
    Write {
        batch: store::Batch,
        devices: Vec<PendingDevice>,
    },
    /// Answered once everything queued before it is written.
    Barrier(Sender<()>),
}

/// What the writer reports back; read by the analyzer between observations.
#[derive(Default)]
struct Outcome {
    commits: AtomicU64,
    errors: AtomicU64,
    /// `PRAGMA data_version` after the latest write (another connection's commit
    /// changes it).
    data_version: AtomicI64,
}

/// The analyzer's store: shared with the writer thread when there is one.
pub(super) struct SharedStore {
    store: Arc<Mutex<Store>>,
    writer: Option<Writer>,
}

struct Writer {
    jobs: Option<Sender<Job>>,
    outcome: Arc<Outcome>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has written what is queued; the
        // join makes the connection close (and a temporary store go) here, not later.
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn lock(store: &Mutex<Store>) -> MutexGuard<'_, Store> {
    // A writer that panicked left the connection as SQLite left it: usable.
    store
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn write(store: &Mutex<Store>, mut batch: store::Batch, devices: Vec<PendingDevice>) -> bool {
    batch
        .devices
        .extend(devices.into_iter().map(|device| DeviceRow {
            key: device.key,
            first_seen_ns: device.record.first_seen_ns,
            last_seen_ns: device.record.last_seen_ns,
            record: device.record.to_json_text(),
        }));
    lock(store).write(&batch).is_ok()
}

impl SharedStore {
    pub(super) fn new(store: Store) -> SharedStore {
        SharedStore {
            store: Arc::new(Mutex::new(store)),
            writer: None,
        }
    }

    /// Starts the writer thread; false when it cannot be spawned (commits stay inline).
    pub(super) fn start_writer(&mut self) -> bool {
        if self.writer.is_some() {
            return true;
        }
        let (jobs, queue) = bounded::<Job>(QUEUED_BATCHES);
        let outcome = Arc::new(Outcome::default());
        let version = lock(&self.store).data_version().unwrap_or(0);
        outcome.data_version.store(version, Ordering::Relaxed);
        let store = Arc::clone(&self.store);
        let reported = Arc::clone(&outcome);
        let thread = std::thread::Builder::new()
            .name("otsensor-store".into())
            .spawn(move || {
                for job in queue {
                    match job {
                        Job::Write { batch, devices } => {
                            let written = write(&store, batch, devices);
                            let counter = if written {
                                &reported.commits
                            } else {
                                &reported.errors
                            };
                            counter.fetch_add(1, Ordering::Relaxed);
                            match lock(&store).data_version() {
                                Ok(version) => {
                                    reported.data_version.store(version, Ordering::Relaxed)
                                }
                                Err(_) => {
                                    reported.errors.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                        }
                        Job::Barrier(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
        match thread {
            Ok(thread) => {
                self.writer = Some(Writer {
                    jobs: Some(jobs),
                    outcome,
                    thread: Some(thread),
                });
                true
            }
            Err(_) => false,
        }
    }

    /// Waits until the writer has written everything handed to it.
    fn drain(&self) {
        let Some(jobs) = self.writer.as_ref().and_then(|w| w.jobs.as_ref()) else {
            return;
        };
        let (done, wait) = bounded(1);
        if jobs.send(Job::Barrier(done)).is_ok() {
            let _ = wait.recv();
        }
    }

    /// The store, once every batch handed over is written.
    pub(super) fn get(&self) -> MutexGuard<'_, Store> {
        self.drain();
        lock(&self.store)
    }

    /// Writes `batch` and `devices` in one transaction: on the writer thread when there
    /// is one (returns at once), else here. `Some(written)` when written here.
    fn submit(&mut self, batch: store::Batch, devices: Vec<PendingDevice>) -> Option<bool> {
        if let Some(jobs) = self.writer.as_ref().and_then(|w| w.jobs.as_ref()) {
            match jobs.send(Job::Write { batch, devices }) {
                Ok(()) => return None,
                // The writer is gone: write here.
                Err(error) => {
                    let Job::Write { batch, devices } = error.into_inner() else {
                        return Some(false);
                    };
                    return Some(write(&self.store, batch, devices));
                }
            }
        }
        Some(write(&self.store, batch, devices))
    }

    /// Commits and errors the writer counted since the last call, and the store's
    /// data version after its latest write; none without a writer.
    fn outcome(&self) -> Option<(u64, u64, i64)> {
        let outcome = &self.writer.as_ref()?.outcome;
        Some((
            outcome.commits.swap(0, Ordering::Relaxed),
            outcome.errors.swap(0, Ordering::Relaxed),
            outcome.data_version.load(Ordering::Relaxed),
        ))
    }
}

impl Analyzer {
    /// Commits on a writer thread from now on (the pipeline's analyzer; tests and
    /// tools that read the store right after a commit keep writing inline).
    pub fn store_on_own_thread(&mut self) -> bool {
        self.store.start_writer()
    }

    /// The store, with every commit handed to the writer written.
    pub(super) fn store(&self) -> MutexGuard<'_, Store> {
        self.store.get()
    }

    /// Writes a commit's batch; returns the data version to compare with the one
    /// loaded (another connection's change), when known.
    pub(super) fn write_batch(
        &mut self,
        batch: store::Batch,
        devices: Vec<PendingDevice>,
    ) -> Option<i64> {
        if !batch.is_empty() || !devices.is_empty() {
            match self.store.submit(batch, devices) {
                Some(true) => self.counters.store_commits += 1,
                Some(false) => self.counters.store_errors += 1,
                None => {}
            }
        }
        match self.store.outcome() {
            Some((commits, errors, version)) => {
                self.counters.store_commits += commits;
                self.counters.store_errors += errors;
                Some(version)
            }
            None => None,
        }
    }

    /// Waits for the writer and counts what it did (end of a run).
    pub(super) fn settle_writer(&mut self) {
        self.store.drain();
        if let Some((commits, errors, _)) = self.store.outcome() {
            self.counters.store_commits += commits;
            self.counters.store_errors += errors;
        }
    }
}
