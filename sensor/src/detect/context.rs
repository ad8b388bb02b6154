//! An alert's context as typed data. The analyzer fills it from what it holds (no
//! JSON is built on its thread); each sink serialises it once, as one JSON object:
//! the signature's own fields ([`Detail`]) and, when known, `src_device`,
//! `dest_device` ([`DeviceContext`]) and `baseline` ([`LearnedFact`]). A context read
//! back from the store or a fleet message keeps the signature's fields as they were
//! written ([`Detail::Stored`]), so a round trip writes the same object.

use std::borrow::Cow;
use std::net::IpAddr;

use arrayvec::ArrayVec;
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use otsensor_wire::Protocol;

use crate::advisories::view::VulnerabilityView;
use crate::observe::{CommandKind, IdentityField, ProtocolErrorKind};

/// The context of an alert (see the module documentation).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AlertContext {
    #[serde(flatten)]
    pub detail: Detail,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_device: Option<DeviceContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_device: Option<DeviceContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<LearnedFact>,
}

impl AlertContext {
    pub fn of(detail: Detail) -> AlertContext {
        AlertContext {
            detail,
            ..AlertContext::default()
        }
    }

    /// Nothing to write: no fields, no devices, no learned fact.
    pub fn is_empty(&self) -> bool {
        self.detail.is_empty()
            && self.src_device.is_none()
            && self.dest_device.is_none()
            && self.baseline.is_none()
    }

    /// The context as one JSON object, as the sinks write it.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(|_| serde_json::json!({}))
    }
}

impl<'de> Deserialize<'de> for AlertContext {
    /// Any JSON value: the known keys of an object typed, the rest kept as the
    /// signature's fields; null is an empty context.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut map = match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::Object(map) => map,
            serde_json::Value::Null => return Ok(AlertContext::default()),
            // Not an object (never written so, but read leniently): kept under `value`.
            other => serde_json::Map::from_iter([("value".to_owned(), other)]),
        };
        // A key that no longer reads as its type (a row written by another version)
        // stays among the fields as written: the alert is never lost for it.
        fn typed<T: serde::de::DeserializeOwned>(
            map: &mut serde_json::Map<String, serde_json::Value>,
            key: &str,
        ) -> Option<T> {
            let value = map.remove(key).filter(|value| !value.is_null())?;
            match serde_json::from_value(value.clone()) {
                Ok(typed) => Some(typed),
                Err(_) => {
                    map.insert(key.to_owned(), value);
                    None
                }
            }
        }
        let src_device = typed(&mut map, "src_device");
        let dest_device = typed(&mut map, "dest_device");
        let baseline = typed(&mut map, "baseline");
        let detail = if map.is_empty() {
            Detail::None
        } else {
            Detail::Stored(map)
        };
        Ok(AlertContext {
            detail,
            src_device,
            dest_device,
            baseline,
        })
    }
}

/// A kind of scan (`kind` in the context).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ScanDetail {
    AddressScan {
        hosts: usize,
    },
    DiscoverySweep {
        hosts: usize,
        broadcast: bool,
    },
    ModbusUnitSweep {
        units: usize,
    },
    ObjectSweep {
        objects: usize,
        protocol: &'static str,
    },
}

/// What a GOOSE anomaly adds to the control block, publisher and VLAN.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum GooseDetail {
    None,
    NewPublisher { publishers: Vec<String> },
    Change { from: u32, to: u32 },
    Replay { last_st_num: u32, st_num: u32 },
}

/// The signature's own fields of an alert, one variant per shape.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Detail {
    #[default]
    None,
    Command {
        command: u32,
        kind: CommandKind,
        operation: String,
    },
    ProtocolError {
        error: ProtocolErrorKind,
        code: u32,
        operation: String,
    },
    Direction {
        direction: &'static str,
    },
    NewDevice {
        vlan: u16,
        mac: Option<String>,
    },
    IpConflict {
        macs: [String; 2],
        vlan: u16,
    },
    ModeChange {
        old: String,
        new: String,
    },
    IdentityChange {
        field: IdentityField,
        old: String,
        new: String,
    },
    InventoryFull {
        max_devices: usize,
    },
    Vulnerable {
        firmware: Option<String>,
        advisories: Vec<VulnerabilityView>,
    },
    Flood {
        attempts: u32,
        window_s: f64,
        rate_per_s: f64,
        sources: usize,
        sources_saturated: bool,
        sample_sources: Vec<IpAddr>,
        bogon_attempts: u32,
    },
    Goose {
        gocb_ref: String,
        anomaly: &'static str,
        vlan: u16,
        #[serde(flatten)]
        change: GooseDetail,
    },
    Scan(ScanDetail),
    Security {
        security_policy: &'static str,
        previously: &'static str,
    },
    Silence {
        kind: &'static str,
        last_seen_ns: u64,
    },
    OutputLoss {
        output: &'static str,
        dropped_alerts: u64,
        dropped_state: u64,
        dropped_heartbeats: u64,
        dropped_changes: u64,
        bound_bytes: u64,
    },
    StateCapped {
        map: &'static str,
        cap: usize,
        capped: Vec<&'static str>,
    },
    AlertTableFull {
        max_alerts: usize,
        max_stored_alerts: usize,
    },
    /// Fields read back from a stored or received alert, as written.
    Stored(serde_json::Map<String, serde_json::Value>),
}

impl Detail {
    pub fn is_empty(&self) -> bool {
        match self {
            Detail::None => true,
            Detail::Stored(map) => map.is_empty(),
            _ => false,
        }
    }
}

/// Which side of a protocol a device was seen on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceRole {
    pub protocol: Protocol,
    pub server: bool,
}

impl DeviceRole {
    fn side(self) -> &'static str {
        if self.server {
            "server"
        } else {
            "client"
        }
    }

    /// `modbus server` back into a role; None for a protocol no longer known.
    fn parse(text: &str) -> Option<DeviceRole> {
        let (name, side) = text.rsplit_once(' ')?;
        let protocol = Protocol::ALL.into_iter().find(|p| p.name() == name)?;
        let server = match side {
            "server" => true,
            "client" => false,
            _ => return None,
        };
        Some(DeviceRole { protocol, server })
    }
}

/// Client and server of every protocol: the most roles a device has.
pub const MAX_ROLES: usize = 2 * Protocol::COUNT;

/// A device as the inventory knows it when the alert is written: addresses, identity,
/// class guess and protocol roles. Written with `roles` as text (`modbus server`) and
/// all of it in one line as `summary` (used by CEF).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DeviceContext {
    pub ip: Option<IpAddr>,
    pub mac: Option<String>,
    pub name: Option<String>,
    pub vendor: Option<Cow<'static, str>>,
    pub product: Option<String>,
    pub model: Option<String>,
    pub firmware: Option<String>,
    pub class: Cow<'static, str>,
    pub roles: ArrayVec<DeviceRole, MAX_ROLES>,
}

impl DeviceContext {
    /// `plc "PLC-01" (Schneider Electric BMX P34 2020, firmware V2.1): modbus server`
    pub fn summary(&self) -> String {
        let mut summary = String::with_capacity(64);
        summary.push_str(&self.class);
        if let Some(name) = &self.name {
            summary.push_str(" \"");
            summary.push_str(name);
            summary.push('"');
        }
        let what = [
            self.vendor.as_deref(),
            self.product.as_deref().or(self.model.as_deref()),
        ];
        if what.iter().any(Option::is_some) || self.firmware.is_some() {
            summary.push_str(" (");
            let mut first = true;
            for part in what.into_iter().flatten() {
                if !first {
                    summary.push(' ');
                }
                summary.push_str(part);
                first = false;
            }
            if let Some(firmware) = &self.firmware {
                if !first {
                    summary.push_str(", ");
                }
                summary.push_str("firmware ");
                summary.push_str(firmware);
            }
            summary.push(')');
        }
        for (index, role) in self.roles.iter().enumerate() {
            summary.push_str(if index == 0 { ": " } else { ", " });
            summary.push_str(role.protocol.name());
            summary.push(' ');
            summary.push_str(role.side());
        }
        summary
    }
}

impl Serialize for DeviceContext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        struct Roles<'a>(&'a [DeviceRole]);
        impl Serialize for Roles<'_> {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_seq(
                    self.0
                        .iter()
                        .map(|role| format!("{} {}", role.protocol.name(), role.side())),
                )
            }
        }
        let mut map = serializer.serialize_map(None)?;
        if let Some(ip) = &self.ip {
            map.serialize_entry("ip", ip)?;
        }
        for (key, value) in [
            ("mac", self.mac.as_deref()),
            ("name", self.name.as_deref()),
            ("vendor", self.vendor.as_deref()),
            ("product", self.product.as_deref()),
            ("model", self.model.as_deref()),
            ("firmware", self.firmware.as_deref()),
        ] {
            if let Some(value) = value {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry("class", &self.class)?;
        map.serialize_entry("roles", &Roles(&self.roles))?;
        map.serialize_entry("summary", &self.summary())?;
        map.end()
    }
}

impl<'de> Deserialize<'de> for DeviceContext {
    /// As written; `summary` is derived, so not read.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        struct Written {
            ip: Option<IpAddr>,
            mac: Option<String>,
            name: Option<String>,
            vendor: Option<String>,
            product: Option<String>,
            model: Option<String>,
            firmware: Option<String>,
            #[serde(default)]
            class: String,
            #[serde(default)]
            roles: Vec<String>,
        }
        let written = Written::deserialize(deserializer)?;
        Ok(DeviceContext {
            ip: written.ip,
            mac: written.mac,
            name: written.name,
            vendor: written.vendor.map(Cow::Owned),
            product: written.product,
            model: written.model,
            firmware: written.firmware,
            class: Cow::Owned(written.class),
            roles: written
                .roles
                .iter()
                .filter_map(|role| DeviceRole::parse(role))
                .take(MAX_ROLES)
                .collect(),
        })
    }
}

/// The learned fact an alert deviates from: `fact` in words and, by signature, the
/// learned peers (at most [`LearnedFact::LISTED`], `more` counts the rest) and the
/// figures behind it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LearnedFact {
    pub fact: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned: Option<Vec<IpAddr>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub more: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub servers_of_client: Option<Box<LearnedFact>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_learned: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub configured_workstation_networks: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowlist_networks: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discoverer: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learning_sightings: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub learned_interval_s: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served: Option<Vec<String>>,
}

impl LearnedFact {
    /// Learned peers listed in `learned`; more are counted in `more`.
    pub const LISTED: usize = 4;

    /// `what: a, b` (or `none` when no peer was learned) with the peers listed (sorted
    /// by the caller; at most [`LearnedFact::LISTED`]). Only the text used is formatted.
    pub fn peers(
        what: impl std::fmt::Display,
        none: impl std::fmt::Display,
        mut learned: Vec<IpAddr>,
    ) -> LearnedFact {
        use std::fmt::Write;
        let more = learned.len().saturating_sub(Self::LISTED);
        learned.truncate(Self::LISTED);
        let fact = if learned.is_empty() {
            none.to_string()
        } else {
            // Room for the usual `what` (a sentence naming an address) and the list.
            let mut text = String::with_capacity(96 + 24 * learned.len());
            let _ = write!(text, "{what}");
            for (index, peer) in learned.iter().enumerate() {
                text.push_str(if index == 0 { ": " } else { ", " });
                let _ = write!(text, "{peer}");
            }
            if more > 0 {
                let _ = write!(text, " and {more} more");
            }
            text
        };
        LearnedFact {
            fact,
            learned: Some(learned),
            more: Some(more),
            ..LearnedFact::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device() -> DeviceContext {
        let mut roles = ArrayVec::new();
        roles.push(DeviceRole {
            protocol: Protocol::Modbus,
            server: true,
        });
        roles.push(DeviceRole {
            protocol: Protocol::S7comm,
            server: false,
        });
        DeviceContext {
            ip: Some(IpAddr::from([10, 0, 0, 20])),
            mac: Some("00:80:f4:01:02:03".to_owned()),
            name: Some("PLC-01".to_owned()),
            vendor: Some(Cow::Borrowed("Schneider Electric")),
            product: Some("BMX P34 2020".to_owned()),
            model: None,
            firmware: Some("V2.1".to_owned()),
            class: Cow::Borrowed("plc"),
            roles,
        }
    }

    #[test]
    fn a_device_is_written_with_its_roles_and_summary() {
        let json = serde_json::to_value(device()).expect("serialises");
        assert_eq!(json["ip"], "10.0.0.20");
        assert_eq!(
            json["roles"],
            serde_json::json!(["modbus server", "s7comm client"])
        );
        assert_eq!(
            json["summary"],
            "plc \"PLC-01\" (Schneider Electric BMX P34 2020, firmware V2.1): modbus server, s7comm client"
        );
        assert!(json.get("model").is_none(), "{json}");
    }

    #[test]
    fn a_context_is_one_object_and_reads_back_to_the_same_object() {
        let context = AlertContext {
            detail: Detail::Scan(ScanDetail::DiscoverySweep {
                hosts: 12,
                broadcast: true,
            }),
            src_device: Some(device()),
            dest_device: None,
            baseline: Some(LearnedFact::peers(
                "learned clients of 10.0.0.20 on tcp/502",
                "none".to_owned(),
                (1..=6).map(|i| IpAddr::from([10, 0, 0, i])).collect(),
            )),
        };
        let json = context.to_json();
        assert_eq!(json["kind"], "discovery_sweep");
        assert_eq!(json["hosts"], 12);
        assert_eq!(json["src_device"]["name"], "PLC-01");
        assert_eq!(json["baseline"]["more"], 2);
        assert_eq!(
            json["baseline"]["fact"],
            "learned clients of 10.0.0.20 on tcp/502: 10.0.0.1, 10.0.0.2, 10.0.0.3, 10.0.0.4 and 2 more"
        );
        let back: AlertContext = serde_json::from_value(json.clone()).expect("reads back");
        assert!(matches!(back.detail, Detail::Stored(_)));
        assert_eq!(back.src_device, context.src_device);
        assert_eq!(back.to_json(), json);
    }

    #[test]
    fn a_device_that_does_not_read_back_is_kept_as_written() {
        let json = serde_json::json!({
            "operation": "write",
            "src_device": {"ip": "not an address", "class": "plc"},
            "baseline": {"fact": "seen", "learned": ["10.0.0.5"]},
        });
        let back: AlertContext = serde_json::from_value(json.clone()).expect("reads back");
        assert!(back.src_device.is_none());
        assert!(back.baseline.is_some());
        assert_eq!(back.to_json()["src_device"], json["src_device"]);
        assert_eq!(back.to_json()["operation"], "write");
    }

    #[test]
    fn an_empty_context_is_an_empty_object_and_null_reads_as_empty() {
        assert_eq!(AlertContext::default().to_json(), serde_json::json!({}));
        let back: AlertContext = serde_json::from_str("null").expect("null reads");
        assert!(back.is_empty());
        let back: AlertContext = serde_json::from_str("7").expect("a number reads");
        assert_eq!(back.to_json(), serde_json::json!({"value": 7}));
    }

    #[test]
    fn goose_fields_are_flat() {
        let json = AlertContext::of(Detail::Goose {
            gocb_ref: "IED1/LLN0$GO$gcb1".to_owned(),
            anomaly: "st_num_jump",
            vlan: 10,
            change: GooseDetail::Change { from: 3, to: 9 },
        })
        .to_json();
        assert_eq!(
            json,
            serde_json::json!({"gocb_ref": "IED1/LLN0$GO$gcb1", "anomaly": "st_num_jump", "vlan": 10, "from": 3, "to": 9})
        );
    }
}
