//! The fleet protocol between sensors and `otsensor hub` over NATS (see `docs/FLEET.md`).
//!
//! Every message is one JSON [`Envelope`] (version [`VERSION`]) on the subject
//! `{prefix}.fleet.{site}.{sensor_id}.{kind}`, with two headers: `Nats-Msg-Id`
//! (`{sensor_id}:{seq}`, so JetStream drops a re-send inside its duplicate window) and
//! [`SIGNATURE_HEADER`], an HMAC-SHA256 of the payload under the sensor's key, which
//! only that sensor and the hub hold. Commands from the hub go to
//! `{prefix}.cmd.{sensor_id}` as NATS requests, signed with the same key.
//!
//! **Nothing from the bus is trusted before [`SensorKey::verify`] and [`Envelope::parse`]
//! accepted it:** the payload size is capped, the version, identifiers and kind are
//! checked, and the subject must name the sensor the payload claims to come from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ring::hmac;
use serde::{Deserialize, Serialize};

use crate::control::{BaselineView, HealthView};
use crate::detect::{Alert, AlertStatus};
use crate::observe::IdentityField;

/// Version of the envelope; a hub refuses versions it does not know.
pub const VERSION: u32 = 1;
/// Largest payload either side accepts.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// The signature header: hex HMAC-SHA256 of the payload.
pub const SIGNATURE_HEADER: &str = "Otsensor-Signature";
/// Longest sensor id or site name.
pub const MAX_NAME: usize = 64;
/// A command older or newer than this (wall clock) is refused: no replays.
pub const COMMAND_MAX_SKEW_NS: u64 = 60_000_000_000;
/// Identity history entries a device message carries (the newest).
pub const DEVICE_HISTORY: usize = 8;

/// Why a message or a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("payload of {0} bytes is over the limit")]
    TooLarge(usize),
    #[error("no or malformed signature")]
    BadSignature,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("unsupported version {0}")]
    Version(u32),
    #[error("subject {subject:?} does not match the message's sensor {sensor_id:?}")]
    SubjectMismatch { subject: String, sensor_id: String },
    #[error("unknown sensor {0:?}")]
    UnknownSensor(String),
    #[error("key file {path}: {reason}")]
    Key { path: String, reason: String },
}

impl Error {
    /// The `reason` label of the rejection counters.
    pub fn label(&self) -> &'static str {
        match self {
            Error::TooLarge(_) => "too_large",
            Error::BadSignature => "bad_signature",
            Error::Malformed(_) => "malformed",
            Error::Version(_) => "version",
            Error::SubjectMismatch { .. } => "subject_mismatch",
            Error::UnknownSensor(_) => "unknown_sensor",
            Error::Key { .. } => "key",
        }
    }
}

/// True for names that can be one NATS subject token and a label: 1 to 64 of
/// `A-Z a-z 0-9 _ -`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A sensor's HMAC key (shared with the hub only).
#[derive(Clone)]
pub struct SensorKey(hmac::Key);

impl fmt::Debug for SensorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SensorKey(<redacted>)")
    }
}

/// Shortest key accepted, in bytes of key text.
pub const MIN_KEY_CHARS: usize = 32;

impl SensorKey {
    pub fn new(secret: &[u8]) -> SensorKey {
        SensorKey(hmac::Key::new(hmac::HMAC_SHA256, secret))
    }

    /// Reads a key file: its text, trimmed, at least [`MIN_KEY_CHARS`] characters.
    pub fn load(path: &Path) -> Result<SensorKey, Error> {
        let fail = |reason: String| Error::Key {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| fail(e.to_string()))?;
        let secret = text.trim();
        if secret.len() < MIN_KEY_CHARS {
            return Err(fail(format!(
                "is too short ({} characters, need {MIN_KEY_CHARS})",
                secret.len()
            )));
        }
        Ok(SensorKey::new(secret.as_bytes()))
    }

    /// Hex HMAC-SHA256 of `payload`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let tag = hmac::sign(&self.0, payload);
        tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Checks a hex signature in constant time.
    pub fn verify(&self, payload: &[u8], signature: Option<&str>) -> Result<(), Error> {
        let signature = signature.ok_or(Error::BadSignature)?;
        let bytes = unhex(signature).ok_or(Error::BadSignature)?;
        hmac::verify(&self.0, payload, &bytes).map_err(|_| Error::BadSignature)
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// What a message carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Alert,
    Device,
    Baseline,
    Heartbeat,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Alert, Kind::Device, Kind::Baseline, Kind::Heartbeat];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Alert => "alert",
            Kind::Device => "device",
            Kind::Baseline => "baseline",
            Kind::Heartbeat => "heartbeat",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }
}

/// A device as the fleet sees it: the sensor's `/api/devices` entry plus identity.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FleetDevice {
    /// IP address, or MAC for layer-2-only devices (the sensor's device id).
    pub id: String,
    pub ip: Option<std::net::IpAddr>,
    pub mac: Option<String>,
    pub vlan: u16,
    pub class: String,
    pub vendor: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub protocols: Vec<String>,
    pub first_seen_ns: u64,
    pub last_seen_ns: u64,
    pub packets: u64,
    pub bytes: u64,
    pub identity: BTreeMap<IdentityField, String>,
    /// The newest identity changes (at most [`DEVICE_HISTORY`]).
    pub identity_history: Vec<IdentityEntry>,
    /// The sensor no longer counts it as a device (a MAC-only device later seen with
    /// an IP: the IP device represents it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed: bool,
}

/// One identity change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentityEntry {
    pub field: IdentityField,
    pub old: String,
    pub new: String,
    pub ts_ns: u64,
}

/// The outbox counters a heartbeat reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpoolHealth {
    pub messages: u64,
    pub bytes: u64,
    pub dropped_heartbeats: u64,
    pub dropped_state: u64,
    pub dropped_alerts: u64,
    /// State changes the analyzer could not queue (channel full).
    pub changes_dropped: u64,
}

/// The sensor's health, every `heartbeat_interval`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub version: String,
    pub uptime_s: f64,
    pub packets: u64,
    pub bytes: u64,
    pub health: Option<HealthView>,
    pub baseline: Option<BaselineView>,
    pub spool: SpoolHealth,
}

/// The body of a message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data", rename_all = "snake_case")]
pub enum Body {
    Alert(Box<Alert>),
    Device(Box<FleetDevice>),
    Baseline(BaselineView),
    Heartbeat(Box<Heartbeat>),
}

impl Body {
    pub fn kind(&self) -> Kind {
        match self {
            Body::Alert(_) => Kind::Alert,
            Body::Device(_) => Kind::Device,
            Body::Baseline(_) => Kind::Baseline,
            Body::Heartbeat(_) => Kind::Heartbeat,
        }
    }
}

/// One message from a sensor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Envelope {
    pub v: u32,
    pub sensor_id: String,
    pub site: String,
    /// Per sensor, strictly increasing (see `docs/FLEET.md`, idempotency).
    pub seq: u64,
    /// Wall clock when the analyzer emitted the change, ns since the epoch.
    pub emitted_ns: u64,
    #[serde(flatten)]
    pub body: Body,
}

impl Envelope {
    /// The subject this message is published on.
    pub fn subject(&self, prefix: &str) -> String {
        format!(
            "{prefix}.fleet.{}.{}.{}",
            self.site,
            self.sensor_id,
            self.body.kind().name()
        )
    }

    /// The JetStream de-duplication id.
    pub fn msg_id(&self) -> String {
        format!("{}:{}", self.sensor_id, self.seq)
    }

    /// Parses and checks a payload received on `subject` (signature checked apart).
    pub fn parse(subject: &str, payload: &[u8]) -> Result<Envelope, Error> {
        if payload.len() > MAX_PAYLOAD {
            return Err(Error::TooLarge(payload.len()));
        }
        let envelope: Envelope =
            serde_json::from_slice(payload).map_err(|e| Error::Malformed(e.to_string()))?;
        if envelope.v != VERSION {
            return Err(Error::Version(envelope.v));
        }
        if !valid_name(&envelope.sensor_id) || !valid_name(&envelope.site) {
            return Err(Error::Malformed("bad sensor_id or site".into()));
        }
        let tokens: Vec<&str> = subject.rsplitn(4, '.').collect();
        // rsplitn: [kind, sensor, site, prefix.fleet]
        let matches = tokens.len() == 4
            && tokens[0] == envelope.body.kind().name()
            && tokens[1] == envelope.sensor_id
            && tokens[2] == envelope.site;
        if !matches {
            return Err(Error::SubjectMismatch {
                subject: subject.to_owned(),
                sensor_id: envelope.sensor_id,
            });
        }
        Ok(envelope)
    }

    /// The sensor a subject claims (to pick the key before parsing).
    pub fn sensor_of_subject(subject: &str) -> Option<&str> {
        let mut tokens = subject.rsplit('.');
        tokens.next()?;
        tokens.next()
    }
}

/// What an operator asks a sensor to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    SetAlertStatus { alert_id: u64, status: AlertStatus },
}

/// A command from the hub (a NATS request, signed with the sensor's key).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    pub v: u32,
    pub sensor_id: String,
    /// Wall clock of the hub when sent; refused outside [`COMMAND_MAX_SKEW_NS`].
    pub issued_ns: u64,
    /// Random, never reused: the sensor refuses a nonce it has seen.
    pub nonce: String,
    #[serde(flatten)]
    pub action: Action,
}

/// The sensor's answer to a command (signed too).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommandReply {
    pub ok: bool,
    pub error: Option<String>,
    pub alert: Option<Box<Alert>>,
}

/// The command subject of a sensor.
pub fn command_subject(prefix: &str, sensor_id: &str) -> String {
    format!("{prefix}.cmd.{sensor_id}")
}

/// Wall clock, ns since the epoch.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn heartbeat(seq: u64) -> Envelope {
        Envelope {
            v: VERSION,
            sensor_id: "s1".into(),
            site: "plant-a".into(),
            seq,
            emitted_ns: 1,
            body: Body::Baseline(BaselineView {
                learning: true,
                progress: 0.5,
                started: None,
                ends: None,
                entries: 3,
            }),
        }
    }

    #[test]
    fn envelopes_round_trip_and_name_their_subject() {
        let e = heartbeat(7);
        let subject = e.subject("otsensor");
        assert_eq!(subject, "otsensor.fleet.plant-a.s1.baseline");
        let payload = serde_json::to_vec(&e).expect("json");
        assert_eq!(Envelope::parse(&subject, &payload), Ok(e.clone()));
        assert_eq!(Envelope::sensor_of_subject(&subject), Some("s1"));
        assert_eq!(e.msg_id(), "s1:7");
    }

    #[test]
    fn forged_malformed_and_misrouted_messages_are_refused() {
        let key = SensorKey::new(b"0123456789abcdef0123456789abcdef");
        let other = SensorKey::new(b"fedcba9876543210fedcba9876543210");
        let e = heartbeat(1);
        let payload = serde_json::to_vec(&e).expect("json");
        let signature = key.sign(&payload);
        assert_eq!(key.verify(&payload, Some(&signature)), Ok(()));
        assert_eq!(
            other.verify(&payload, Some(&signature)),
            Err(Error::BadSignature)
        );
        assert_eq!(key.verify(&payload, None), Err(Error::BadSignature));
        assert_eq!(key.verify(&payload, Some("zz")), Err(Error::BadSignature));
        let mut tampered = payload.clone();
        tampered[10] ^= 1;
        assert_eq!(
            key.verify(&tampered, Some(&signature)),
            Err(Error::BadSignature)
        );
        assert!(matches!(
            Envelope::parse("otsensor.fleet.plant-a.s2.baseline", &payload),
            Err(Error::SubjectMismatch { .. })
        ));
        assert!(matches!(
            Envelope::parse("x", b"{not json"),
            Err(Error::Malformed(_))
        ));
        let v2 = String::from_utf8(payload)
            .expect("utf8")
            .replace("\"v\":1", "\"v\":2");
        assert_eq!(
            Envelope::parse("otsensor.fleet.plant-a.s1.baseline", v2.as_bytes()),
            Err(Error::Version(2))
        );
        assert_eq!(
            Envelope::parse("x", &vec![b' '; MAX_PAYLOAD + 1]),
            Err(Error::TooLarge(MAX_PAYLOAD + 1))
        );
        assert!(valid_name("plant_a-1") && !valid_name("a.b") && !valid_name(""));
    }
}
