//! MQTT inspection: statistics keyed like tshark's summaries, PUBLISH and SUBSCRIBE as
//! commands keyed by topic (so a new topic is a new command to the baseline), refused
//! connections, and the `mqtt` EVE protocol event. Nothing here allocates per packet.
//!
//! Per flow it keeps the protocol level from the CONNECT (`AppState::flags` bits 0-3):
//! MQTT 5.0 puts properties in variable headers that 3.1.1 does not have.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inspect::histogram::Histogram;
use crate::inspect::{EventBody, PduCtx};
use crate::observe::{CommandKind, ProtocolErrorKind, ShortText};
use otsensor_wire::mqtt::{connack_is_auth_failure, Packet, PacketType};
use otsensor_wire::{Direction, Protocol};

/// `AppState::flags`: the protocol level from CONNECT (0 = not seen).
const LEVEL_MASK: u32 = 0x0F;

/// Per-worker MQTT statistics, keyed like the tshark-derived summaries
/// (`../shared/tools/ORACLE.md`: msgtype, connack_code) plus protocol levels.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub msgtype: Histogram,
    pub connack_code: Histogram,
    /// CONNECT protocol levels (3 = 3.1, 4 = 3.1.1, 5 = 5.0).
    pub version: Histogram,
    /// Packets with spec violations, per anomaly flag bit.
    pub anomalies: Histogram,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.msgtype.merge(&other.msgtype);
        self.connack_code.merge(&other.connack_code);
        self.version.merge(&other.version);
        self.anomalies.merge(&other.anomalies);
    }

    /// Non-empty histograms by their summary names.
    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        let mut put = |name: &str, histogram: &Histogram, map: BTreeMap<String, u64>| {
            if !histogram.is_empty() {
                out.insert(name.to_owned(), serde_json::json!(map));
            }
        };
        put("msgtype", &self.msgtype, self.msgtype.to_decimal_map());
        put(
            "connack_code",
            &self.connack_code,
            self.connack_code.to_decimal_map(),
        );
        put("version", &self.version, self.version.to_decimal_map());
        put(
            "anomalies",
            &self.anomalies,
            self.anomalies.to_map(|bit| {
                otsensor_wire::mqtt::Anomalies(1 << bit)
                    .labels()
                    .next()
                    .unwrap_or("unknown")
                    .to_owned()
            }),
        );
        serde_json::Value::Object(out)
    }
}

/// The `mqtt` EVE protocol event: one per control packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct MqttEvent {
    /// `mqtt.msgtype` (1 CONNECT ... 15 AUTH).
    pub msgtype: u8,
    pub msgtype_name: Option<&'static str>,
    /// CONNECT: 3, 4 or 5.
    pub protocol_version: Option<u8>,
    pub client_id: Option<ShortText>,
    pub connack_code: Option<u8>,
    /// PUBLISH topic (first 64 bytes).
    pub topic: Option<ShortText>,
    pub qos: Option<u8>,
    pub retain: Option<bool>,
    pub packet_id: Option<u16>,
}

/// A stable 32-bit key of a topic (FNV-1a), the command code of PUBLISH/SUBSCRIBE.
pub fn topic_key(topic: &[u8]) -> u32 {
    topic.iter().fold(0x811c_9dc5u32, |hash, &b| {
        (hash ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

/// Inspects one MQTT control packet: statistics, observations (PUBLISH/SUBSCRIBE by
/// topic from the client, refused connections, malformed packets) and the EVE event.
pub fn inspect(pdu: &[u8], ctx: &mut PduCtx<'_>) {
    let packet = match Packet::new_checked(pdu) {
        Ok(packet) => packet,
        Err(_) => {
            ctx.malformed(Protocol::Mqtt);
            return;
        }
    };
    ctx.count(Protocol::Mqtt);
    let stats = &mut ctx.stats.mqtt;
    stats.msgtype.add(u32::from(packet.raw_type()));
    let anomalies = packet.anomalies();
    for bit in 0..16 {
        if anomalies.0 & (1 << bit) != 0 {
            stats.anomalies.add(bit);
        }
    }
    let mut event = MqttEvent {
        msgtype: packet.raw_type(),
        msgtype_name: packet.packet_type().name(),
        protocol_version: None,
        client_id: None,
        connack_code: None,
        topic: None,
        qos: None,
        retain: None,
        packet_id: packet.packet_id(),
    };
    let level = (ctx.state.flags & LEVEL_MASK) as u8;
    match packet.packet_type() {
        PacketType::Connect => {
            if let Some(connect) = packet.connect() {
                ctx.stats.mqtt.version.add(u32::from(connect.level));
                ctx.state.flags =
                    (ctx.state.flags & !LEVEL_MASK) | (u32::from(connect.level) & LEVEL_MASK);
                event.protocol_version = Some(connect.level);
                event.client_id = Some(ShortText::from_bytes(connect.client_id));
            }
        }
        PacketType::Connack => {
            if let Some((_, code)) = packet.connack() {
                ctx.stats.mqtt.connack_code.add(u32::from(code));
                event.connack_code = Some(code);
                if code != 0 {
                    let kind = if connack_is_auth_failure(code) {
                        ProtocolErrorKind::AuthFailure
                    } else {
                        ProtocolErrorKind::Rejected
                    };
                    ctx.protocol_error(Protocol::Mqtt, kind, u32::from(code));
                }
            }
        }
        PacketType::Publish => {
            event.qos = Some(packet.qos());
            event.retain = Some(packet.retain());
            if let Some(topic) = packet.topic() {
                event.topic = Some(ShortText::from_bytes(topic));
                if ctx.direction == Direction::Request {
                    ctx.command(Protocol::Mqtt, CommandKind::Write, topic_key(topic));
                }
            }
        }
        PacketType::Subscribe if ctx.direction == Direction::Request => {
            for (filter, _) in packet.subscriptions(level).take(16) {
                ctx.command(Protocol::Mqtt, CommandKind::Read, topic_key(filter));
            }
        }
        PacketType::Suback => {
            // 0x80 (3.1.1) and 5.0 reason codes >= 0x80 refuse a subscription.
            if let Some(&code) = packet.suback_codes(level).iter().find(|&&c| c >= 0x80) {
                ctx.protocol_error(Protocol::Mqtt, ProtocolErrorKind::Rejected, u32::from(code));
            }
        }
        PacketType::Unknown(_) => {}
        _ => {}
    }
    if ctx.events_enabled() {
        ctx.event(EventBody::Mqtt(event));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_keys_are_stable_and_distinct() {
        assert_eq!(topic_key(b""), 0x811c_9dc5);
        assert_eq!(topic_key(b"a"), 0xe40c_292c);
        assert_ne!(topic_key(b"plant/a"), topic_key(b"plant/b"));
    }

    #[test]
    fn summary_uses_decimal_keys() {
        let mut stats = Stats::default();
        stats.msgtype.add(3);
        stats.connack_code.add(0);
        let summary = stats.summary();
        assert_eq!(summary["msgtype"]["3"], 1);
        assert_eq!(summary["connack_code"]["0"], 1);
    }
}
