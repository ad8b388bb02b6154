//! The stateful detections, one module per family. Each is an `impl Analyzer` block over
//! the analyzer's state; `docs/DETECTIONS.md` has every rule.

/// Industrial commands and protocol errors.
pub(crate) mod commands;
/// Denial-of-service floods of connection attempts.
pub(crate) mod flood;
/// New conversations, internet connections, remote access.
pub(crate) mod flows;
/// IEC 61850 GOOSE publishers and publication anomalies.
pub(crate) mod goose;
/// Port/host scans, discovery bursts, Modbus unit-id sweeps.
pub(crate) mod scan;
/// Sessions without security on servers that used secured channels.
pub(crate) mod security;
/// Devices that go quiet.
pub(crate) mod silence;
