//! IEC 61850 GOOSE inspection: statistics keyed like tshark's summaries (APPID and
//! gocbRef), malformed APDUs, the `goose` EVE protocol event, and each publisher's
//! control block history ([`Publishers`]: stNum jumps and replays, simulation, confRev
//! changes). GOOSE is layer 2 multicast: there is no flow, the event's addresses are
//! unspecified and the publisher is its source MAC. Nothing here allocates per APDU.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::inspect::histogram::Histogram;
use crate::inspect::{EventBody, PduCtx};
use crate::observe::{GooseChange, ProtocolErrorKind, ShortText};
use otsensor_wire::goose::{Anomalies, Goose};
use otsensor_wire::layers::Mac;
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
    /// (publisher, gocbRef) histories the worker's [`Publishers`] table forgot to
    /// make room for another.
    pub publisher_evictions: u64,
}

impl Stats {
    pub fn merge(&mut self, other: &Stats) {
        self.appid.merge(&other.appid);
        self.gocb_ref.merge(&other.gocb_ref);
        self.simulation.merge(&other.simulation);
        self.anomalies.merge(&other.anomalies);
        self.publisher_evictions += other.publisher_evictions;
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
        if self.publisher_evictions > 0 {
            out.insert(
                "publisher_evictions".into(),
                serde_json::json!(self.publisher_evictions),
            );
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

/// (publisher, gocbRef) histories kept per worker. Frames without IP go to the worker
/// of their source MAC, so one publisher's frames all meet here.
pub const PUBLISHER_SLOTS: usize = 256;

/// The last publication of one control block by one publisher.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct History {
    publisher: Mac,
    gocb_key: u64,
    st_num: u64,
    sq_num: u64,
    conf_rev: Option<u64>,
    last_ns: u64,
    used: bool,
}

/// Each publisher's control blocks as last seen, in a table allocated once: at
/// [`PUBLISHER_SLOTS`] the least recently seen is forgotten (counted in
/// `Stats::publisher_evictions`).
#[derive(Clone, Debug)]
pub struct Publishers {
    slots: Box<[History]>,
}

impl Default for Publishers {
    fn default() -> Self {
        Publishers {
            slots: vec![History::default(); PUBLISHER_SLOTS].into_boxed_slice(),
        }
    }
}

/// What one publication changed against its control block's history.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Deviations {
    /// First publication seen (nothing to compare with).
    pub first: bool,
    /// stNum moved on by more than one: state changes were skipped or injected.
    pub st_num_jump: Option<(u64, u64)>,
    /// stNum went back (other than a publisher restart at 1), or sqNum went back
    /// within one stNum: an old frame sent again.
    pub replay: Option<(u64, u64)>,
    pub conf_rev_change: Option<(u64, u64)>,
    /// Evicted another history to make room.
    pub evicted: bool,
}

impl Publishers {
    /// Compares a publication with the history of (`publisher`, `gocb_key`) and
    /// records it.
    pub fn track(
        &mut self,
        publisher: Mac,
        gocb_key: u64,
        st_num: u64,
        sq_num: u64,
        conf_rev: Option<u64>,
        ts_ns: u64,
    ) -> Deviations {
        let mut deviations = Deviations::default();
        let found = self
            .slots
            .iter()
            .position(|h| h.used && h.publisher == publisher && h.gocb_key == gocb_key);
        let index = match found {
            Some(index) => {
                let last = self.slots[index];
                if st_num > last.st_num.saturating_add(1) {
                    deviations.st_num_jump = Some((last.st_num, st_num));
                }
                // A restarted publisher begins again at stNum 1 (8-1 §18.1.2.5).
                let restart = st_num == 1 && sq_num <= 1;
                let st_back = st_num < last.st_num && !restart;
                // sqNum wraps to 1 after its maximum (edition 2).
                let sq_back = st_num == last.st_num
                    && sq_num < last.sq_num
                    && last.sq_num < u64::from(u32::MAX);
                if st_back || sq_back {
                    deviations.replay = Some((last.st_num, st_num));
                }
                if let (Some(was), Some(now)) = (last.conf_rev, conf_rev) {
                    if was != now {
                        deviations.conf_rev_change = Some((was, now));
                    }
                }
                index
            }
            None => {
                deviations.first = true;
                match self.slots.iter().position(|h| !h.used) {
                    Some(free) => free,
                    None => {
                        deviations.evicted = true;
                        let mut oldest = 0;
                        for (i, h) in self.slots.iter().enumerate() {
                            if h.last_ns < self.slots[oldest].last_ns {
                                oldest = i;
                            }
                        }
                        oldest
                    }
                }
            }
        };
        self.slots[index] = History {
            publisher,
            gocb_key,
            st_num,
            sq_num,
            conf_rev,
            last_ns: ts_ns,
            used: true,
        };
        deviations
    }
}

fn gocb_key(gocb_ref: &[u8]) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(0x6005_E000).hash_one(gocb_ref)
}

fn short(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

/// Inspects one GOOSE APDU like [`inspect`] and compares it with its publisher's
/// history of the control block: reports the publisher (once per refresh interval)
/// and every deviation (stNum jump, replay, confRev change, simulation) to the
/// analyzer.
pub fn inspect_tracked(apdu: &[u8], ctx: &mut PduCtx<'_>, publishers: &mut Publishers) {
    inspect(apdu, ctx);
    let Ok(goose) = Goose::new_checked(apdu) else {
        return;
    };
    let (Some(publisher), Some(pdu)) = (ctx.flow.client_mac, goose.pdu()) else {
        return;
    };
    let (Some(gocb_ref), Some(st_num), Some(sq_num)) = (pdu.gocb_ref, pdu.st_num, pdu.sq_num)
    else {
        return;
    };
    let key = gocb_key(gocb_ref);
    let deviations = publishers.track(publisher, key, st_num, sq_num, pdu.conf_rev, ctx.ts_ns);
    if deviations.evicted {
        ctx.stats.goose.publisher_evictions += 1;
    }
    let gocb_ref = ShortText::from_bytes(gocb_ref);
    let mut changes = [None; 5];
    changes[0] = Some(GooseChange::Published);
    changes[1] = deviations
        .st_num_jump
        .map(|(from, to)| GooseChange::StNumJump {
            from: short(from),
            to: short(to),
        });
    changes[2] = deviations.replay.map(|(last, now)| GooseChange::Replay {
        last_st_num: short(last),
        st_num: short(now),
    });
    changes[3] = deviations
        .conf_rev_change
        .map(|(from, to)| GooseChange::ConfRevChange {
            from: short(from),
            to: short(to),
        });
    if pdu.simulation == Some(true) || goose.simulation_bit() {
        changes[4] = Some(GooseChange::Simulation);
    }
    for change in changes.into_iter().flatten() {
        ctx.goose_change(publisher, key, gocb_ref, change);
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
    fn publisher_histories_find_jumps_replays_and_conf_rev_changes() {
        const IED: Mac = [0x00, 0x0a, 0xdc, 0, 1, 1];
        const OTHER: Mac = [0x00, 0x0a, 0xdc, 0, 1, 2];
        let mut table = Publishers::default();
        let first = table.track(IED, 7, 10, 5, Some(1), 1);
        assert!(first.first && first.st_num_jump.is_none() && first.replay.is_none());
        // Retransmission, then a state change: nothing.
        assert_eq!(
            table.track(IED, 7, 10, 6, Some(1), 2),
            Deviations::default()
        );
        assert_eq!(
            table.track(IED, 7, 11, 0, Some(1), 3),
            Deviations::default()
        );
        // Another publisher of the same block has a history of its own.
        assert!(table.track(OTHER, 7, 1, 0, Some(1), 4).first);
        let jump = table.track(IED, 7, 15, 0, Some(1), 5);
        assert_eq!(jump.st_num_jump, Some((11, 15)));
        let replay = table.track(IED, 7, 11, 9, Some(1), 6);
        assert_eq!(replay.replay, Some((15, 11)));
        // sqNum back within one stNum is a replay too; a restart at stNum 1 is not.
        assert!(table.track(IED, 7, 11, 3, Some(1), 7).replay.is_some());
        assert_eq!(table.track(IED, 7, 1, 0, Some(1), 8), Deviations::default());
        let changed = table.track(IED, 7, 1, 1, Some(2), 9);
        assert_eq!(changed.conf_rev_change, Some((1, 2)));
        // Full: the least recently seen history goes, counted.
        for key in 100..100 + PUBLISHER_SLOTS as u64 - 2 {
            assert!(!table.track(IED, key, 1, 0, None, 10 + key).evicted);
        }
        assert!(table.track(IED, 9_999, 1, 0, None, 10_000).evicted);
        // OTHER (seen at 4) was the oldest: it starts afresh.
        assert!(table.track(OTHER, 7, 1, 1, Some(1), 10_001).first);
    }

    #[test]
    fn mac_text_is_colon_hex() {
        let text = serde_json::to_string(&MacText([0x01, 0x0c, 0xcd, 0x01, 0x00, 0xff]));
        assert_eq!(text.ok().as_deref(), Some("\"01:0c:cd:01:00:ff\""));
    }
}
