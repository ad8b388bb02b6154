//! Alert fan-out: every alert goes to each configured sink through that sink's own
//! bounded queue and thread.
//!
//! **Sinks never block the analyzer or the workers.** [`AlertSinks::send`] uses
//! `try_send`: a full queue is a counted drop (`otsensor_sink_dropped_total`). Each
//! sink thread retries a failed delivery with exponential back-off
//! ([`INITIAL_BACKOFF`] doubling to [`MAX_BACKOFF`]) for as long as the sensor runs, so
//! a SIEM that restarts loses nothing while the queue has room; at shutdown it keeps
//! trying for [`SHUTDOWN_GRACE`], then counts what is left as dropped.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::analyze::AlertOutlet;
use crate::detect::Alert;
use crate::metrics::Metrics;
use crate::output::eve::EveRecord;

/// First wait after a failed delivery.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest wait between retries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long a sink keeps retrying after the sensor began shutting down.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);
/// Default capacity of each sink's queue, in alerts.
pub const DEFAULT_QUEUE: usize = 10_000;

/// Why one delivery failed (it is retried).
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{target}: {source}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{target}: TLS: {reason}")]
    Tls { target: String, reason: String },
    #[error("{target}: HTTP: {reason}")]
    Http { target: String, reason: String },
}

/// A destination for alerts, driven by its own thread.
pub trait Deliver: Send + 'static {
    /// The `sink` label of its metrics.
    fn name(&self) -> &'static str;
    /// Delivers one alert, or fails (and is called again with the same alert later).
    fn deliver(&mut self, alert: &Alert) -> Result<(), DeliveryError>;
}

/// Counters of one sink, kept beside the Prometheus ones for summaries and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SinkReport {
    pub delivered: u64,
    pub failures: u64,
    pub dropped: u64,
}

struct SinkHandle {
    name: &'static str,
    tx: Sender<Arc<Alert>>,
    /// Raised by `close`: from then on retries are bounded by the grace period.
    closing: Arc<AtomicBool>,
    thread: JoinHandle<SinkReport>,
}

/// The fan-out to every sink.
pub struct AlertSinks {
    sinks: Vec<SinkHandle>,
    eve: Option<Sender<EveRecord>>,
    metrics: Option<Arc<Metrics>>,
    eve_dropped: u64,
    /// Handed to the analyzer by `Analyzer::set_outputs` (`outputs.nats`).
    state_changes: Option<crate::changes::ChangeSender>,
}

impl std::fmt::Debug for AlertSinks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSinks")
            .field(
                "sinks",
                &self.sinks.iter().map(|s| s.name).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl AlertSinks {
    pub fn new(metrics: Option<Arc<Metrics>>) -> AlertSinks {
        AlertSinks {
            sinks: Vec::new(),
            eve: None,
            metrics,
            eve_dropped: 0,
            state_changes: None,
        }
    }

    /// Also writes alerts as EVE records through the EVE writer's channel.
    pub fn set_eve(&mut self, eve: Sender<EveRecord>) {
        self.eve = Some(eve);
    }

    /// Starts a sink thread with a queue of `capacity` alerts.
    pub fn add(&mut self, sink: impl Deliver, capacity: usize) -> std::io::Result<()> {
        let name = sink.name();
        let (tx, rx) = bounded(capacity.max(1));
        let metrics = self.metrics.clone();
        let closing = Arc::new(AtomicBool::new(false));
        let closing_flag = Arc::clone(&closing);
        let thread = thread::Builder::new()
            .name(format!("otsensor-sink-{name}"))
            .spawn(move || run_sink(sink, rx, metrics, closing_flag))?;
        self.sinks.push(SinkHandle {
            name,
            tx,
            closing,
            thread,
        });
        Ok(())
    }

    /// Also hands the analyzer this sender of fleet state changes. Unlike the sinks it
    /// stays with the analyzer after the capture ends (operator actions still change
    /// alert states then).
    pub fn set_state_changes(&mut self, changes: crate::changes::ChangeSender) {
        self.state_changes = Some(changes);
    }

    /// The state-change sender, for the analyzer.
    pub fn take_state_changes(&mut self) -> Option<crate::changes::ChangeSender> {
        self.state_changes.take()
    }

    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty() && self.eve.is_none()
    }

    /// Queues an alert on every sink without waiting.
    pub fn send(&mut self, alert: &Arc<Alert>) {
        if let Some(metrics) = &self.metrics {
            metrics.alert_raised(&alert.signature, alert.severity.0);
        }
        if let Some(eve) = &self.eve {
            if eve.try_send(EveRecord::Alert(Arc::clone(alert))).is_err() {
                self.eve_dropped += 1;
                if let Some(metrics) = &self.metrics {
                    metrics.sink_dropped.with_label_values(&["eve"]).inc();
                }
            }
        }
        for sink in &self.sinks {
            match sink.tx.try_send(Arc::clone(alert)) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.sink_dropped.with_label_values(&[sink.name]).inc();
                    }
                }
            }
            if let Some(metrics) = &self.metrics {
                metrics
                    .sink_queue_depth
                    .with_label_values(&[sink.name])
                    .set(sink.tx.len() as i64);
            }
        }
    }

    /// Closes every queue and waits for the sinks to deliver what they hold (each
    /// gives up after [`SHUTDOWN_GRACE`]). Returns each sink's report.
    pub fn close(self) -> Vec<(&'static str, SinkReport)> {
        drop(self.eve);
        let mut reports = Vec::with_capacity(self.sinks.len());
        for sink in self.sinks {
            sink.closing.store(true, Ordering::Release);
            drop(sink.tx);
            let report = sink.thread.join().unwrap_or_default();
            reports.push((sink.name, report));
        }
        reports
    }
}

impl AlertOutlet for AlertSinks {
    fn send(&mut self, alert: &Arc<Alert>) {
        AlertSinks::send(self, alert);
    }
}

impl AlertSinks {
    /// The sinks an analyzer hands back (`Analyzer::take_alert_outlet`), to close them;
    /// `None` when it held other sinks or none.
    pub fn from_outlet(outlet: Box<dyn AlertOutlet>) -> Option<AlertSinks> {
        let outlet: Box<dyn std::any::Any> = outlet;
        outlet.downcast::<AlertSinks>().ok().map(|sinks| *sinks)
    }
}

fn run_sink(
    mut sink: impl Deliver,
    rx: Receiver<Arc<Alert>>,
    metrics: Option<Arc<Metrics>>,
    closing: Arc<AtomicBool>,
) -> SinkReport {
    let name = sink.name();
    let mut report = SinkReport::default();
    let count = |metric: &prometheus::IntCounterVec| metric.with_label_values(&[name]).inc();
    let mut closing_since: Option<Instant> = None;
    while let Ok(alert) = rx.recv() {
        let mut backoff = INITIAL_BACKOFF;
        loop {
            match sink.deliver(&alert) {
                Ok(()) => {
                    report.delivered += 1;
                    if let Some(m) = &metrics {
                        count(&m.sink_events);
                    }
                    break;
                }
                Err(_error) => {
                    report.failures += 1;
                    if let Some(m) = &metrics {
                        count(&m.sink_failures);
                    }
                    // Once the queue is closed (shutdown), retry only within the grace.
                    if closing.load(Ordering::Acquire) {
                        let since = *closing_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > SHUTDOWN_GRACE {
                            report.dropped += 1 + rx.len() as u64;
                            if let Some(m) = &metrics {
                                m.sink_dropped
                                    .with_label_values(&[name])
                                    .inc_by(1 + rx.len() as u64);
                            }
                            return report;
                        }
                    }
                    thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    if let Some(m) = &metrics {
                        count(&m.sink_retries);
                    }
                }
            }
        }
        if let Some(m) = &metrics {
            m.sink_queue_depth
                .with_label_values(&[name])
                .set(rx.len() as i64);
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Flaky {
        fail_first: u32,
        seen: Arc<Mutex<Vec<u64>>>,
    }

    impl Deliver for Flaky {
        fn name(&self) -> &'static str {
            "test"
        }
        fn deliver(&mut self, alert: &Alert) -> Result<(), DeliveryError> {
            if self.fail_first > 0 {
                self.fail_first -= 1;
                return Err(DeliveryError::Http {
                    target: "test".into(),
                    reason: "down".into(),
                });
            }
            self.seen
                .lock()
                .map_err(|_| DeliveryError::Http {
                    target: "test".into(),
                    reason: "poisoned".into(),
                })?
                .push(alert.id);
            Ok(())
        }
    }

    #[test]
    fn failed_deliveries_are_retried_in_order() {
        let metrics = Metrics::new().expect("metrics");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut sinks = AlertSinks::new(Some(Arc::clone(&metrics)));
        sinks
            .add(
                Flaky {
                    fail_first: 2,
                    seen: Arc::clone(&seen),
                },
                8,
            )
            .expect("spawn");
        let mut alert = crate::control::tests_support::sample_alert();
        for id in 1..=3 {
            alert.id = id;
            sinks.send(&Arc::new(alert.clone()));
        }
        let reports = sinks.close();
        assert_eq!(
            reports,
            vec![(
                "test",
                SinkReport {
                    delivered: 3,
                    failures: 2,
                    dropped: 0
                }
            )]
        );
        assert_eq!(*seen.lock().expect("lock"), vec![1, 2, 3]);
        assert_eq!(metrics.sink_failures.with_label_values(&["test"]).get(), 2);
        assert_eq!(metrics.sink_retries.with_label_values(&["test"]).get(), 2);
        assert_eq!(
            metrics
                .alerts
                .with_label_values(&["plc_stop", "high"])
                .get(),
            3
        );
    }
}
