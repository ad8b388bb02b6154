//! IEC 61850 GOOSE inspection: statistics keyed like tshark's summaries (APPID and
//! gocbRef), malformed APDUs, and the `goose` EVE protocol event. GOOSE is layer 2
//! multicast: there is no flow, the event's addresses are unspecified and the
//! publisher is its source MAC. Nothing here allocates per APDU.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inspect::histogram::Histogram;
use crate::inspect::{EventBody, PduCtx};
use crate::observe::{ProtocolErrorKind, ShortText};
use otsensor_wire::goose::{Anomalies, Goose};
use otsensor_wire::Protocol;

/// Distinct gocbRefs counted per worker; more are counted in `overflow`.
const TEXT_SLOTS: usize = 64;

/// Counts per short text, in a table allocated once (linear search: a segment has a
/// handful of GOOSE control blocks).
#[derive(Clone, Debug)]
pub struct TextCounts {
    entries: Box<[(ShortText, u64)]>,
    used: usize,
    pub overflow: u64,
}

impl Default for TextCounts {
    fn default() -> Self {
        TextCounts {
            entries: vec![(ShortText::from_bytes(b""), 0); TEXT_SLOTS].into_boxed_slice(),
            used: 0,
            overflow: 0,
        }
    }
}

impl TextCounts {
    pub fn add_n(&mut self, text: ShortText, n: u64) {
        if let Some(entry) = self.entries[..self.used].iter_mut().find(|e| e.0 == text) {
            entry.1 += n;
        } else if self.used < self.entries.len() {
            self.entries[self.used] = (text, n);
            self.used += 1;
        } else {
            self.overflow += n;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0 && self.overflow == 0
    }

    pub fn merge(&mut self, other: &TextCounts) {
        for (text, n) in &other.entries[..other.used] {
            self.add_n(*text, *n);
        }
        self.overflow += other.overflow;
    }

    pub fn to_map(&self) -> BTreeMap<String, u64> {
        self.entries[..self.used]
            .iter()
            .map(|(text, n)| (text.as_str().to_owned(), *n))
            .collect()
    }
}

/// Per-worker GOOSE statistics: appid and gocb_ref as tshark's summary, plus
/// simulation and anomaly counts.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub appid: Histogram,
    pub gocb_ref: TextCounts,
    /// APDUs with the simulation/test flag (PDU field or Reserved 1 bit), key 1.
    pub simulation: Histogram,
    pub anomalies: Histogram,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.appid.merge(&other.appid);
        self.gocb_ref.merge(&other.gocb_ref);
        self.simulation.merge(&other.simulation);
        self.anomalies.merge(&other.anomalies);
    }

    pub fn summary(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        if !self.appid.is_empty() {
            out.insert(
                "appid".into(),
                serde_json::json!(self.appid.to_decimal_map()),
            );
        }
        if !self.gocb_ref.is_empty() {
            out.insert("gocb_ref".into(), serde_json::json!(self.gocb_ref.to_map()));
        }
        if !self.simulation.is_empty() {
            out.insert(
                "simulation".into(),
                serde_json::json!(self.simulation.to_map(|_| "true".to_owned())),
            );
        }
        if !self.anomalies.is_empty() {
            let names = self.anomalies.to_map(|bit| {
                Anomalies(1 << bit)
                    .labels()
                    .next()
                    .unwrap_or("unknown")
                    .to_owned()
            });
            out.insert("anomalies".into(), serde_json::json!(names));
        }
        serde_json::Value::Object(out)
    }
}

/// The `goose` EVE protocol event: one per APDU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct GooseEvent {
    // INT32U fields (8-1 annex A) as u32: keeps the event, and so every EVE record, small.
    /// The publisher's MAC address (`aa:bb:..`), as GOOSE has no IP.
    pub src_mac: Option<MacText>,
    pub appid: u16,
    pub gocb_ref: Option<ShortText>,
    pub st_num: Option<u32>,
    pub sq_num: Option<u32>,
    /// The PDU's simulation (edition 1: test) field.
    pub simulation: Option<bool>,
    /// The simulation bit of Reserved 1 (edition 2).
    pub simulation_bit: bool,
    pub conf_rev: Option<u32>,
    pub nds_com: Option<bool>,
    pub num_dat_set_entries: Option<u32>,
    pub time_allowed_to_live: Option<u32>,
}

/// A MAC address that serialises as `aa:bb:cc:dd:ee:ff` (6 bytes in the event).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MacText(pub [u8; 6]);

impl Serialize for MacText {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let m = self.0;
        serializer.collect_str(&format_args!(
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        ))
    }
}

/// Inspects one GOOSE APDU (the Ethernet payload after EtherType 0x88B8).
pub fn inspect(apdu: &[u8], ctx: &mut PduCtx<'_>) {
    let goose = match Goose::new_checked(apdu) {
        Ok(goose) => goose,
        Err(_) => {
            ctx.malformed(Protocol::Goose);
            return;
        }
    };
    ctx.count(Protocol::Goose);
    let pdu = goose.pdu();
    let anomalies = goose.anomalies();
    let stats = &mut ctx.stats.goose;
    stats.appid.add(u32::from(goose.appid()));
    if let Some(gocb_ref) = pdu.and_then(|p| p.gocb_ref) {
        stats.gocb_ref.add_n(ShortText::from_bytes(gocb_ref), 1);
    }
    let simulation = pdu.and_then(|p| p.simulation);
    if simulation == Some(true) || goose.simulation_bit() {
        stats.simulation.add(1);
    }
    for bit in 0..16 {
        if anomalies.0 & (1 << bit) != 0 {
            stats.anomalies.add(bit);
        }
    }
    if anomalies.contains(Anomalies::BAD_PDU) {
        ctx.protocol_error(
            Protocol::Goose,
            ProtocolErrorKind::Malformed,
            u32::from(goose.appid()),
        );
    }
    if ctx.events_enabled() {
        let text = |v: Option<&[u8]>| v.map(ShortText::from_bytes);
        ctx.event(EventBody::Goose(GooseEvent {
            src_mac: ctx.flow.client_mac.map(MacText),
            appid: goose.appid(),
            gocb_ref: text(pdu.and_then(|p| p.gocb_ref)),
            st_num: pdu
                .and_then(|p| p.st_num)
                .and_then(|v| u32::try_from(v).ok()),
            sq_num: pdu
                .and_then(|p| p.sq_num)
                .and_then(|v| u32::try_from(v).ok()),
            simulation,
            simulation_bit: goose.simulation_bit(),
            conf_rev: pdu
                .and_then(|p| p.conf_rev)
                .and_then(|v| u32::try_from(v).ok()),
            nds_com: pdu.and_then(|p| p.nds_com),
            num_dat_set_entries: pdu
                .and_then(|p| p.num_dat_set_entries)
                .and_then(|v| u32::try_from(v).ok()),
            time_allowed_to_live: pdu
                .and_then(|p| p.time_allowed_to_live)
                .and_then(|v| u32::try_from(v).ok()),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_counts_merge_and_overflow() {
        let mut a = TextCounts::default();
        a.add_n(ShortText::from_bytes(b"x"), 2);
        let mut b = TextCounts::default();
        b.add_n(ShortText::from_bytes(b"x"), 1);
        b.add_n(ShortText::from_bytes(b"y"), 1);
        a.merge(&b);
        assert_eq!(a.to_map().get("x"), Some(&3));
        assert_eq!(a.to_map().get("y"), Some(&1));
        for i in 0..100u32 {
            a.add_n(ShortText::from_bytes(i.to_string().as_bytes()), 1);
        }
        assert_eq!(a.to_map().len(), TEXT_SLOTS);
        assert_eq!(a.overflow, 100 - (TEXT_SLOTS as u64 - 2));
    }

    #[test]
    fn mac_text_is_colon_hex() {
        let text = serde_json::to_string(&MacText([0x01, 0x0c, 0xcd, 0x01, 0x00, 0xff]));
        assert_eq!(text.ok().as_deref(), Some("\"01:0c:cd:01:00:ff\""));
    }
}
