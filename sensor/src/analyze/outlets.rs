//! What the analyzer needs from the layers above it, as interfaces it defines: where
//! its flow records and alerts go. The output layer implements them (the EVE writer's
//! queue, the alert fan-out); tests use a channel. The metrics are the other way
//! round: they read [`AnalyzerStats`](super::AnalyzerStats), the analyzer names none.

use std::any::Any;
use std::sync::Arc;

use crate::detect::Alert;
use crate::observe::FlowRecord;

/// The EVE writer's side: flow records and alerts, delivered without loss (the
/// analyzer waits rather than drops).
pub trait EventOutlet: Send {
    /// A finished flow.
    fn flow(&mut self, record: FlowRecord);
    /// An alert written to the sinks (shared with them: built once, serialised by
    /// each).
    fn alert(&mut self, alert: Arc<Alert>);
}

/// The alert sinks (syslog/CEF, webhook, the alert metrics): each alert written is
/// handed over once, without waiting. `Any`, so whoever set it up can take it back
/// whole to close it ([`super::Analyzer::take_alert_outlet`]).
pub trait AlertOutlet: Any + Send {
    fn send(&mut self, alert: &Arc<Alert>);
}

/// No alert sinks.
#[derive(Debug, Default)]
pub struct NoAlertOutlet;

impl AlertOutlet for NoAlertOutlet {
    fn send(&mut self, _alert: &Arc<Alert>) {}
}
