//! Event writers. EVE JSON lines use Suricata's field names so SIEM pipelines that
//! already read Suricata read otsensor. Alerts also go to syslog (CEF) and webhooks,
//! each behind its own bounded queue ([`sinks`]).

/// CEF formatting of alerts and their RFC 5424 syslog envelope.
pub mod cef;
pub mod eve;
/// The fleet output: state changes and heartbeats to NATS JetStream, hub commands back.
pub mod nats;
/// The alert fan-out: bounded queues, retries with back-off, counted drops.
pub mod sinks;
/// The fleet output's bounded on-disk outbox.
pub mod spool;
/// Syslog over UDP, TCP or TLS.
pub mod syslog;
/// HTTP POST of each alert's JSON.
pub mod webhook;
