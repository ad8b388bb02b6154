//! `Observation`: the only message from workers to the analyzer. Small and bounded in
//! size; workers de-duplicate them so their rate follows network change, not packet rate.

use std::net::IpAddr;

use crate::dissect::Protocol;
use crate::flow::table::{DirectionCounts, EndReason};
use crate::layers::Mac;

/// A finished flow, oriented client (initiator) to server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FlowRecord {
    pub flow_id: u64,
    pub src_ip: IpAddr,
    pub src_port: u16,
    pub dest_ip: IpAddr,
    pub dest_port: u16,
    /// IP protocol number.
    pub protocol: u8,
    pub vlan: u16,
    pub first_ns: u64,
    pub last_ns: u64,
    pub to_server: DirectionCounts,
    pub to_client: DirectionCounts,
    pub reason: EndReason,
    pub app_proto: Option<Protocol>,
    pub tcp_flags_to_server: u8,
    pub tcp_flags_to_client: u8,
}

/// What a worker tells the analyzer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observation {
    /// A host sent a frame: by internal IP (with the MAC it came from), or by MAC alone
    /// for hosts seen only at layer 2 or only forwarding foreign addresses.
    DeviceSeen {
        ts_ns: u64,
        mac: Option<Mac>,
        ip: Option<IpAddr>,
        vlan: u16,
    },
    /// A flow ended (timeout, eviction or shutdown).
    FlowEnded(FlowRecord),
}

// Keep the message small: it is copied through a bounded, preallocated channel, and
// carried inline so that ending a flow allocates nothing.
const _: () = assert!(std::mem::size_of::<Observation>() <= 160);
