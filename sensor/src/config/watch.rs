//! Published policy snapshots: the reloader publishes a new [`Policy`] whole, workers
//! notice it with one atomic load per batch ([`PolicyWatch`]) and the analyzer receives
//! it on a channel. Next to `Policy` so that the workers need nothing from `reload`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crossbeam_channel::{Receiver, Sender};

use super::Policy;

/// A poisoned lock only means another thread panicked while holding it; the data (an
/// `Arc` or a list of senders) is still whole, so carry on with it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The current policy and its generation, with the channels of the threads that wait
/// for a new one.
#[derive(Debug)]
pub struct PolicySnapshots {
    generation: AtomicU64,
    current: Mutex<Arc<Policy>>,
    subscribers: Mutex<Vec<Sender<Arc<Policy>>>>,
}

impl PolicySnapshots {
    /// Generation 1: the policy the sensor starts with.
    pub fn new(policy: Arc<Policy>) -> Arc<PolicySnapshots> {
        Arc::new(PolicySnapshots {
            generation: AtomicU64::new(1),
            current: Mutex::new(policy),
            subscribers: Mutex::new(Vec::new()),
        })
    }

    pub fn current(&self) -> Arc<Policy> {
        Arc::clone(&lock(&self.current))
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A per-worker view that notices a new snapshot with one atomic load.
    pub fn watch(self: &Arc<Self>) -> PolicyWatch {
        PolicyWatch {
            seen: self.generation(),
            shared: Arc::clone(self),
        }
    }

    /// A channel that receives every snapshot published from now on (for a thread that
    /// waits in a `select!`, such as the analyzer).
    pub fn subscribe(&self) -> Receiver<Arc<Policy>> {
        // Unbounded: reloads are rare operator actions, and a reader must never miss one.
        let (tx, rx) = crossbeam_channel::unbounded();
        lock(&self.subscribers).push(tx);
        rx
    }

    /// Makes `policy` current; returns its generation.
    pub fn publish(&self, policy: Arc<Policy>) -> u64 {
        *lock(&self.current) = Arc::clone(&policy);
        // Subscribers first, generation last: an observation a worker makes under the
        // new policy is sent after the analyzer's copy is already in its channel.
        lock(&self.subscribers).retain(|tx| tx.send(Arc::clone(&policy)).is_ok());
        self.generation.fetch_add(1, Ordering::AcqRel) + 1
    }
}

/// A worker's view of the [`PolicySnapshots`].
#[derive(Debug)]
pub struct PolicyWatch {
    shared: Arc<PolicySnapshots>,
    seen: u64,
}

impl PolicyWatch {
    /// The new snapshot if one was published since the last call (one atomic load when
    /// nothing changed: cheap enough for once per batch).
    pub fn changed(&mut self) -> Option<Arc<Policy>> {
        let generation = self.shared.generation.load(Ordering::Acquire);
        if generation == self.seen {
            return None;
        }
        self.seen = generation;
        Some(self.shared.current())
    }
}
