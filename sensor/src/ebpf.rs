//! The kernel fast path's user-space half: loads the XDP pre-filter embedded in the
//! binary (`sensor-ebpf/sensor.bpf.c`, built by `build.rs`), fills its tables from the
//! settings, attaches it (driver mode, generic as a logged and flagged fallback),
//! registers AF_XDP sockets, reads its per-CPU counters and per-flow accounting, and
//! writes flow verdicts. Measuring it with `BPF_PROG_TEST_RUN` is for tests and
//! benchmarks (feature `test-support`).
//!
//! [`abi`](crate::ebpf::abi) mirrors `sensor-ebpf/shared.h`, the only contract with the program; every
//! type there has its size asserted at compile time.
//!
//! Dropping an [`XdpFilter`](crate::ebpf::XdpFilter) detaches the program. Detach it *before* closing the AF_XDP
//! sockets so no frame is redirected to a socket that is going away.
#![allow(unsafe_code)]

use std::collections::HashMap as StdHashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::os::fd::AsRawFd;

use aya::maps::{Array, HashMap, MapData, PerCpuArray, XskMap};
use aya::programs::xdp::XdpLinkId;
use aya::programs::{ProgramError, Xdp, XdpMode};
use aya::{Ebpf, EbpfLoader};

/// The policy maps as handles of their own, for config reload from another thread.
mod policy_maps;
pub use policy_maps::PolicyMaps;
/// The rtnetlink client: an interface's XDP attachment, set and removed by fd.
mod netlink;
pub use netlink::{xdp_attachment, XdpAttachmentInfo};
/// For tests and benchmarks only (feature `test-support`): BPF_PROG_TEST_RUN, the empty
/// program as a cost floor, and a legacy netlink attachment that outlives its process.
#[cfg(feature = "test-support")]
mod test_support;
#[cfg(feature = "test-support")]
pub use test_support::{bench_pair, bench_prog_test_run, BenchResult};

/// The compiled program, embedded so the binary needs no file beside it. eBPF objects
/// are ELF64 with 8-byte aligned headers, hence the aligned include.
static PROGRAM_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sensor.bpf.o"));

/// Name of the pre-filter program in the object (`SEC("xdp") int otsensor_xdp`).
pub const PROGRAM_NAME: &str = "otsensor_xdp";
/// Name of the empty program compiled beside it: the floor for benchmarks, loaded only
/// with the `test-support` feature.
pub const EMPTY_PROGRAM_NAME: &str = "otsensor_empty";

/// The programs [`XdpFilter::load`] verifies and loads.
#[cfg(not(feature = "test-support"))]
const LOADED_PROGRAMS: &[&str] = &[PROGRAM_NAME];
#[cfg(feature = "test-support")]
const LOADED_PROGRAMS: &[&str] = &[PROGRAM_NAME, EMPTY_PROGRAM_NAME];

/// Mirrors of `sensor-ebpf/shared.h`. Change both files together.
pub mod abi {
    /// `OTS_MAX_QUEUES`: XSKMAP and per-queue counter size.
    pub const MAX_QUEUES: u32 = 256;
    /// `OTS_PORT_TABLE_SIZE`.
    pub const PORT_TABLE_SIZE: u32 = 65_536;
    /// `OTS_MAX_ETHERTYPES`.
    pub const MAX_ETHERTYPES: u32 = 64;
    /// `OTS_PORT_TCP`, `OTS_PORT_UDP`.
    pub const PORT_TCP: u32 = 1 << 0;
    pub const PORT_UDP: u32 = 1 << 1;
    /// `OTS_ACTION_DROP` (XDP_DROP), `OTS_ACTION_PASS` (XDP_PASS).
    pub const ACTION_DROP: u32 = 1;
    pub const ACTION_PASS: u32 = 2;
    /// `OTS_CONFIG_VERDICTS_IN_USE`.
    pub const CONFIG_VERDICTS_IN_USE: u32 = 1 << 0;
    /// `OTS_SERVER_*`.
    pub const SERVER_UNKNOWN: u8 = 0;
    pub const SERVER_LO: u8 = 1;
    pub const SERVER_HI: u8 = 2;
    /// `OTS_DIR_*`: index into `FlowState` arrays.
    pub const DIR_LO_TO_HI: usize = 0;
    pub const DIR_HI_TO_LO: usize = 1;
    /// `OTS_VERDICT_*` (the verdict map's values).
    pub const VERDICT_KEEP: u32 = 1;
    pub const VERDICT_SHED: u32 = 2;

    /// `struct ots_config`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Config {
        pub bulk_action: u32,
        pub no_socket_action: u32,
        pub first_packets: u32,
        pub flags: u32,
    }

    /// `struct ots_flow_key`: both directions of a flow share one key (see
    /// [`super::FlowKey::new`] for the ordering rule).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct FlowKey {
        pub addr_lo: [u8; 16],
        pub addr_hi: [u8; 16],
        pub port_lo: u16,
        pub port_hi: u16,
        pub protocol: u8,
        pub pad: [u8; 3],
    }

    /// `struct ots_flow_state`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct FlowState {
        pub first_seen_ns: u64,
        pub last_seen_ns: u64,
        pub shed_packets: [u64; 2],
        pub shed_bytes: [u64; 2],
        pub packets_seen: u32,
        pub server_side: u8,
        pub pad: [u8; 3],
    }

    /// `struct ots_verdict`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct Verdict {
        pub verdict: u32,
        pub pad: u32,
    }

    /// `struct ots_counter_value`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct CounterValue {
        pub packets: u64,
        pub bytes: u64,
    }

    /// `struct ots_queue_counters`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct QueueCounters {
        pub redirected: u64,
        pub no_socket: u64,
    }

    /// `OTS_EVENT_*` kinds.
    pub const EVENT_PARSE_FAILED: u32 = 1;
    /// `OTS_EVENT_SNAP`.
    pub const EVENT_SNAP: usize = 64;
    /// `OTS_EVENTS_PER_SECOND` (per CPU).
    pub const EVENTS_PER_SECOND: u64 = 16;

    /// `struct ots_event` (read from the `events` ring buffer).
    #[repr(C)]
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct Event {
        pub kind: u32,
        pub code: i32,
        pub rx_queue: u32,
        pub frame_len: u32,
        pub snap_len: u32,
        pub pad: u32,
        pub snap: [u8; EVENT_SNAP],
    }

    /// `struct ots_event_budget`.
    #[repr(C)]
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct EventBudget {
        pub window_start_ns: u64,
        pub emitted: u64,
        pub suppressed: u64,
    }

    const _: () = assert!(core::mem::size_of::<Event>() == 88);
    const _: () = assert!(core::mem::size_of::<EventBudget>() == 24);
    // SAFETY: integer fields only, no implicit padding (asserted size), any bit pattern
    // is valid.
    unsafe impl aya::Pod for EventBudget {}

    // Sizes as clang lays the C structs out for the bpf target (see shared.h).
    const _: () = assert!(core::mem::size_of::<Config>() == 16);
    const _: () = assert!(core::mem::size_of::<FlowKey>() == 40);
    const _: () = assert!(core::mem::size_of::<FlowState>() == 56);
    const _: () = assert!(core::mem::size_of::<Verdict>() == 8);
    const _: () = assert!(core::mem::size_of::<CounterValue>() == 16);
    const _: () = assert!(core::mem::size_of::<QueueCounters>() == 16);
    const _: () = assert!(core::mem::align_of::<FlowKey>() == 2);
    const _: () = assert!(core::mem::align_of::<FlowState>() == 8);

    // SAFETY (all six): plain #[repr(C)] integer structs with no padding the compiler
    // could leave uninitialised (the explicit `pad` fields fill every gap, asserted by
    // the sizes above), so every bit pattern is valid and they can be copied to and
    // from kernel maps byte for byte.
    unsafe impl aya::Pod for Config {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FlowState {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Verdict {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CounterValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for QueueCounters {}
}

/// `enum ots_counter`: why a packet got its verdict, and the verdict. Every packet is
/// counted once among the reasons and once among the verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Counter {
    IndustrialPort = 0,
    IndustrialEthertype,
    TcpControl,
    FlowFirstPackets,
    FlowKeep,
    Arp,
    Dhcp,
    Icmp,
    Fragment,
    Malformed,
    Unparsed,
    Bulk,
    FlowShed,
    Redirected,
    NoSocket,
    Dropped,
    Passed,
}

impl Counter {
    /// `OTS_COUNTER_COUNT`.
    pub const COUNT: usize = 17;
    /// Every counter, in index order.
    pub const ALL: [Counter; Counter::COUNT] = [
        Counter::IndustrialPort,
        Counter::IndustrialEthertype,
        Counter::TcpControl,
        Counter::FlowFirstPackets,
        Counter::FlowKeep,
        Counter::Arp,
        Counter::Dhcp,
        Counter::Icmp,
        Counter::Fragment,
        Counter::Malformed,
        Counter::Unparsed,
        Counter::Bulk,
        Counter::FlowShed,
        Counter::Redirected,
        Counter::NoSocket,
        Counter::Dropped,
        Counter::Passed,
    ];
    /// The reasons (the first group); the rest are verdicts.
    pub const REASONS: &'static [Counter] = &[
        Counter::IndustrialPort,
        Counter::IndustrialEthertype,
        Counter::TcpControl,
        Counter::FlowFirstPackets,
        Counter::FlowKeep,
        Counter::Arp,
        Counter::Dhcp,
        Counter::Icmp,
        Counter::Fragment,
        Counter::Malformed,
        Counter::Unparsed,
        Counter::Bulk,
        Counter::FlowShed,
    ];
    /// The verdicts.
    pub const VERDICTS: &'static [Counter] = &[
        Counter::Redirected,
        Counter::NoSocket,
        Counter::Dropped,
        Counter::Passed,
    ];

    /// A stable snake_case label for metrics and summaries.
    pub fn label(self) -> &'static str {
        match self {
            Counter::IndustrialPort => "industrial_port",
            Counter::IndustrialEthertype => "industrial_ethertype",
            Counter::TcpControl => "tcp_control",
            Counter::FlowFirstPackets => "flow_first_packets",
            Counter::FlowKeep => "flow_keep",
            Counter::Arp => "arp",
            Counter::Dhcp => "dhcp",
            Counter::Icmp => "icmp",
            Counter::Fragment => "fragment",
            Counter::Malformed => "malformed",
            Counter::Unparsed => "unparsed",
            Counter::Bulk => "bulk",
            Counter::FlowShed => "flow_shed",
            Counter::Redirected => "redirected",
            Counter::NoSocket => "no_socket",
            Counter::Dropped => "dropped",
            Counter::Passed => "passed",
        }
    }
}

const _: () = assert!(Counter::Passed as usize + 1 == Counter::COUNT);

/// The kernel counters summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    values: [abi::CounterValue; Counter::COUNT],
}

impl KernelCounters {
    pub fn get(&self, counter: Counter) -> abi::CounterValue {
        self.values
            .get(counter as usize)
            .copied()
            .unwrap_or_default()
    }
    pub fn packets(&self, counter: Counter) -> u64 {
        self.get(counter).packets
    }
    pub fn bytes(&self, counter: Counter) -> u64 {
        self.get(counter).bytes
    }
    /// Every counter with its label, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (Counter, abi::CounterValue)> + '_ {
        Counter::ALL
            .iter()
            .map(|&counter| (counter, self.get(counter)))
    }
}

/// What the program does with bulk (and with packets for a queue without a socket).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShedAction {
    /// Drop in the kernel: the right choice on a SPAN port, where nobody else wants it.
    Drop,
    /// Hand to the host's network stack (the sensor shares a real interface).
    Pass,
}

impl ShedAction {
    fn abi(self) -> u32 {
        match self {
            ShedAction::Drop => abi::ACTION_DROP,
            ShedAction::Pass => abi::ACTION_PASS,
        }
    }
}

/// How to attach the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachMode {
    /// Driver (native) mode, falling back to generic mode with a warning and a flag.
    DriverOrGeneric,
    /// Driver mode only: fail if the driver has no XDP support.
    Driver,
    /// Generic (skb) mode: works on any interface, after the kernel built an skb.
    Generic,
}

/// The mode the program actually runs in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttachedMode {
    Driver,
    Generic,
}

/// What the program needs from the configuration. The lead maps `Policy` onto this.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct XdpSettings {
    /// TCP ports of industrial protocols: always sent to user space.
    pub tcp_ports: Vec<u16>,
    /// UDP ports of industrial protocols.
    pub udp_ports: Vec<u16>,
    /// Ethertypes of industrial protocols (host order).
    pub ethertypes: Vec<u16>,
    /// What happens to bulk.
    pub bulk_action: ShedAction,
    /// What happens to a packet for user space on a queue with no socket.
    pub no_socket_action: ShedAction,
    /// K: the first packets of each new flow sent to user space.
    pub first_packets: u32,
    /// Driver, generic, or driver with generic fallback.
    pub mode: AttachMode,
}

impl Default for XdpSettings {
    fn default() -> Self {
        XdpSettings {
            // Modbus/TCP 502, S7comm (ISO-TSAP) 102, IEC 60870-5-104 2404, OPC UA 4840,
            // MQTT 1883 and 8883, DNP3 20000, EtherNet/IP explicit messaging 44818.
            tcp_ports: vec![102, 502, 1883, 2404, 4840, 8883, 20000, 44818],
            // EtherNet/IP implicit I/O 2222 and list-identity 44818, DNP3 20000,
            // PROFINET IO-CM 34964, BACnet/IP 47808 (0xBAC0); identification protocols
            // NBNS 137, SNMP 161, mDNS 5353 (low-rate: names and models for the inventory).
            udp_ports: vec![137, 161, 2222, 5353, 20000, 34964, 44818, 47808],
            // PROFINET 0x8892, IEC 61850 GOOSE 0x88B8, LLDP 0x88CC.
            ethertypes: vec![0x8892, 0x88B8, 0x88CC],
            bulk_action: ShedAction::Drop,
            no_socket_action: ShedAction::Pass,
            first_packets: 8,
            mode: AttachMode::DriverOrGeneric,
        }
    }
}

/// Why the fast path could not be set up or read.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot load the XDP program into the kernel (are you root or do you hold CAP_BPF and CAP_NET_ADMIN?): {0}")]
    Load(#[source] Box<aya::EbpfError>),
    #[error("the embedded object has no program {name}")]
    MissingProgram { name: &'static str },
    #[error("the embedded object has no map {name}")]
    MissingMap { name: &'static str },
    #[error("program {name}: {source}")]
    Program {
        name: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("map {name}: {source}")]
    Map {
        name: &'static str,
        #[source]
        source: Box<aya::maps::MapError>,
    },
    #[error("interface {ifname}: no such interface")]
    NoSuchInterface { ifname: String },
    #[error("interface {ifname}: cannot attach in {mode:?} mode: {source}")]
    Attach {
        ifname: String,
        mode: AttachedMode,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("interface {ifname}: XDP program {prog_id} ({name}) is already attached and is not a stale otsensor program; remove it first (`ip link set dev {ifname} xdp off`)")]
    Occupied {
        ifname: String,
        prog_id: u32,
        name: String,
    },
    #[error("interface {ifname}: XDP program {prog_id} is attached through a bpf_link held by a running process (another otsensor?)")]
    HeldByLink { ifname: String, prog_id: u32 },
    #[error("queue {queue} is out of range (the program supports queues 0..{max})")]
    QueueOutOfRange { queue: u32, max: u32 },
    #[error("netlink: {0}")]
    Netlink(#[source] std::io::Error),
    #[error("frame of {len} bytes is too large to test (at most {max})")]
    FrameTooLarge { len: usize, max: usize },
}

fn map_error(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        name,
        source: Box::new(source),
    }
}

fn program_error(name: &'static str) -> impl FnOnce(ProgramError) -> Error {
    move |source| Error::Program {
        name,
        source: Box::new(source),
    }
}

/// Raises RLIMIT_MEMLOCK to infinity: kernels before 5.11 charge BPF maps and AF_XDP
/// UMEMs against it, and its default (8 MiB or less) is too small for either.
pub fn raise_memlock_rlimit() -> std::io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid, initialised rlimit that outlives the call.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// A flow as the kernel keys it: the 5-tuple with the lower endpoint first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey(pub abi::FlowKey);

impl FlowKey {
    /// Builds the key the program computes for a packet from `src:sport` to
    /// `dst:dport`: IPv4 as IPv4-mapped IPv6, and the endpoint whose (address bytes,
    /// port) compares lower first, so both directions give the same key.
    pub fn new(src: IpAddr, sport: u16, dst: IpAddr, dport: u16, protocol: u8) -> FlowKey {
        let src_bytes = mapped(src);
        let dst_bytes = mapped(dst);
        let src_is_lo = (src_bytes, sport) <= (dst_bytes, dport);
        let (addr_lo, port_lo, addr_hi, port_hi) = if src_is_lo {
            (src_bytes, sport, dst_bytes, dport)
        } else {
            (dst_bytes, dport, src_bytes, sport)
        };
        FlowKey(abi::FlowKey {
            addr_lo,
            addr_hi,
            port_lo,
            port_hi,
            protocol,
            pad: [0; 3],
        })
    }

    pub fn addr_lo(&self) -> IpAddr {
        unmapped(self.0.addr_lo)
    }
    pub fn addr_hi(&self) -> IpAddr {
        unmapped(self.0.addr_hi)
    }
}

fn mapped(addr: IpAddr) -> [u8; 16] {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn unmapped(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

/// A rare event the XDP program reported through its ring buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelEvent {
    pub kind: KernelEventKind,
    /// The kind's code (for a parse failure, the parser's negative `OTS_PARSE_*`).
    pub code: i32,
    pub rx_queue: u32,
    pub frame_len: u32,
    snap_len: u8,
    snap: [u8; abi::EVENT_SNAP],
}

/// What a kernel event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelEventKind {
    /// The parser gave up on a frame (truncated, malformed, too deep); it went to user
    /// space as `malformed` or `unparsed`.
    ParseFailed,
    /// A kind this build does not know (a newer program).
    Unknown(u32),
}

impl KernelEventKind {
    /// A stable label for metrics.
    pub fn label(self) -> &'static str {
        match self {
            KernelEventKind::ParseFailed => "parse_failed",
            KernelEventKind::Unknown(_) => "unknown",
        }
    }
}

impl KernelEvent {
    /// Reads a `struct ots_event` record; None when it is too short.
    fn parse(bytes: &[u8]) -> Option<KernelEvent> {
        let word = |at: usize| -> Option<[u8; 4]> { bytes.get(at..at + 4)?.try_into().ok() };
        let kind = u32::from_ne_bytes(word(0)?);
        let snap_len = u32::from_ne_bytes(word(16)?).min(abi::EVENT_SNAP as u32) as u8;
        let mut snap = [0u8; abi::EVENT_SNAP];
        snap.copy_from_slice(bytes.get(24..24 + abi::EVENT_SNAP)?);
        Some(KernelEvent {
            kind: match kind {
                abi::EVENT_PARSE_FAILED => KernelEventKind::ParseFailed,
                other => KernelEventKind::Unknown(other),
            },
            code: i32::from_ne_bytes(word(4)?),
            rx_queue: u32::from_ne_bytes(word(8)?),
            frame_len: u32::from_ne_bytes(word(12)?),
            snap_len,
            snap,
        })
    }

    /// The frame's first bytes (at most 64).
    pub fn snap(&self) -> &[u8] {
        self.snap.get(..usize::from(self.snap_len)).unwrap_or(&[])
    }

    /// The parser's reason in words.
    pub fn reason(&self) -> &'static str {
        match (self.kind, self.code) {
            (KernelEventKind::ParseFailed, -1) => "truncated header",
            (KernelEventKind::ParseFailed, -2) => "malformed header",
            (KernelEventKind::ParseFailed, -3) => "too many nested headers",
            _ => "unknown",
        }
    }
}

/// A conversation as the issue defines bulk accounting: client, server, protocol and
/// server port (client ports folded together).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConversationKey {
    pub client: IpAddr,
    pub server: IpAddr,
    pub protocol: u8,
    pub server_port: u16,
}

/// What the kernel shed of one conversation.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConversationTotals {
    /// Packets and bytes shed (dropped or passed) in the kernel, both directions.
    pub packets: u64,
    pub bytes: u64,
    pub packets_to_server: u64,
    pub bytes_to_server: u64,
    pub packets_to_client: u64,
    pub bytes_to_client: u64,
    /// Flows (client ports) folded into this conversation.
    pub flows: u32,
    /// Last packet, nanoseconds of CLOCK_MONOTONIC_COARSE (within a scheduler tick of
    /// CLOCK_MONOTONIC; see [`monotonic_to_realtime_ns`]).
    pub last_seen_monotonic_ns: u64,
}

/// Folds per-flow kernel state into per-conversation totals.
pub fn conversations(
    flows: &[(FlowKey, abi::FlowState)],
) -> StdHashMap<ConversationKey, ConversationTotals> {
    let mut out: StdHashMap<ConversationKey, ConversationTotals> = StdHashMap::new();
    for (key, state) in flows {
        let k = &key.0;
        let lo_serves = match state.server_side {
            abi::SERVER_LO => true,
            abi::SERVER_HI => false,
            // Unknown: the lower port serves (ephemeral ports are high).
            _ => k.port_lo <= k.port_hi,
        };
        let (client, server, server_port, to_server) = if lo_serves {
            (key.addr_hi(), key.addr_lo(), k.port_lo, abi::DIR_HI_TO_LO)
        } else {
            (key.addr_lo(), key.addr_hi(), k.port_hi, abi::DIR_LO_TO_HI)
        };
        let to_client = 1 - to_server;
        let entry = out
            .entry(ConversationKey {
                client,
                server,
                protocol: k.protocol,
                server_port,
            })
            .or_default();
        let packets_to_server = state.shed_packets.get(to_server).copied().unwrap_or(0);
        let packets_to_client = state.shed_packets.get(to_client).copied().unwrap_or(0);
        let bytes_to_server = state.shed_bytes.get(to_server).copied().unwrap_or(0);
        let bytes_to_client = state.shed_bytes.get(to_client).copied().unwrap_or(0);
        entry.packets_to_server += packets_to_server;
        entry.packets_to_client += packets_to_client;
        entry.bytes_to_server += bytes_to_server;
        entry.bytes_to_client += bytes_to_client;
        entry.packets += packets_to_server + packets_to_client;
        entry.bytes += bytes_to_server + bytes_to_client;
        entry.flows += 1;
        entry.last_seen_monotonic_ns = entry.last_seen_monotonic_ns.max(state.last_seen_ns);
    }
    out
}

fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec the call writes into; the clock ids used here
    // (REALTIME, MONOTONIC) always exist on Linux.
    let rc = unsafe { libc::clock_gettime(clock, &mut ts) };
    if rc != 0 {
        return 0;
    }
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Converts a kernel timestamp (`bpf_ktime_get_coarse_ns`, CLOCK_MONOTONIC_COARSE, at
/// most a tick behind CLOCK_MONOTONIC) to nanoseconds
/// since the Unix epoch, using the two clocks' current offset.
pub fn monotonic_to_realtime_ns(monotonic_ns: u64) -> u64 {
    let real = clock_ns(libc::CLOCK_REALTIME);
    let mono = clock_ns(libc::CLOCK_MONOTONIC);
    real.saturating_sub(mono.saturating_sub(monotonic_ns))
}

/// The user-space verdict for the rest of a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowVerdict {
    /// Send every packet to user space (an industrial protocol on an unexpected port).
    Keep,
    /// Shed the rest of the flow in the kernel.
    Shed,
}

/// The loaded pre-filter: owns the program, its maps and (once attached) its link.
pub struct XdpFilter {
    ebpf: Ebpf,
    settings: XdpSettings,
    attachment: Option<Attachment>,
    verdicts_in_use: bool,
}

impl std::fmt::Debug for XdpFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XdpFilter")
            .field("settings", &self.settings)
            .field("attachment", &self.attachment)
            .finish_non_exhaustive()
    }
}

#[derive(Debug)]
struct Attachment {
    ifname: String,
    ifindex: u32,
    mode: AttachedMode,
    fell_back: bool,
    link: AttachmentKind,
}

#[derive(Debug)]
enum AttachmentKind {
    /// A bpf_link: detached when its fd closes, so also when the process dies.
    Link(XdpLinkId),
    /// A netlink attachment: outlives the process unless detached (only
    /// `attach_legacy_netlink`, feature `test-support`, makes one).
    #[cfg_attr(not(feature = "test-support"), allow(dead_code))]
    Netlink { flags: u32 },
}

/// The outcome of [`XdpFilter::attach`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttachReport {
    pub mode: AttachedMode,
    /// Driver mode was asked for (or preferred) but failed, so generic mode is in use.
    pub fell_back_to_generic: bool,
    /// A stale otsensor program (from a crashed run) was found and removed first.
    pub replaced_stale_program: Option<u32>,
}

impl XdpFilter {
    /// Loads the embedded object, verifies the pre-filter (and, for benchmarks, the
    /// empty program), and fills the tables.
    pub fn load(settings: &XdpSettings) -> Result<XdpFilter, Error> {
        // Best effort: on 5.11+ kernels memory is charged to the cgroup instead.
        let _ = raise_memlock_rlimit();
        let mut ebpf = EbpfLoader::new()
            .load(PROGRAM_OBJECT)
            .map_err(|e| Error::Load(Box::new(e)))?;
        for &name in LOADED_PROGRAMS {
            let program: &mut Xdp = ebpf
                .program_mut(name)
                .ok_or(Error::MissingProgram { name })?
                .try_into()
                .map_err(program_error(name))?;
            program.load().map_err(program_error(name))?;
        }
        let mut filter = XdpFilter {
            ebpf,
            settings: settings.clone(),
            attachment: None,
            verdicts_in_use: false,
        };
        filter.apply_settings(settings)?;
        Ok(filter)
    }

    /// Rewrites the port and ethertype tables and the config entry.
    pub fn apply_settings(&mut self, settings: &XdpSettings) -> Result<(), Error> {
        // Only the ports named in the old or new settings can be non-zero: rewrite those
        // (a full 64K-entry sweep would cost 64K syscalls).
        let bits_for = |port: u16, s: &XdpSettings| {
            let mut bits = 0;
            if s.tcp_ports.contains(&port) {
                bits |= abi::PORT_TCP;
            }
            if s.udp_ports.contains(&port) {
                bits |= abi::PORT_UDP;
            }
            bits
        };
        let mut touched: Vec<u16> = self
            .settings
            .tcp_ports
            .iter()
            .chain(&self.settings.udp_ports)
            .chain(&settings.tcp_ports)
            .chain(&settings.udp_ports)
            .copied()
            .collect();
        touched.sort_unstable();
        touched.dedup();
        {
            let mut table: Array<&mut MapData, u32> = self.map_mut("port_table")?;
            for port in touched {
                table
                    .set(u32::from(port), bits_for(port, settings), 0)
                    .map_err(map_error("port_table"))?;
            }
        }
        {
            let mut table: HashMap<&mut MapData, u16, u32> = self.map_mut("ethertypes")?;
            let existing: Vec<u16> = table.keys().filter_map(Result::ok).collect();
            for ethertype in existing {
                if !settings.ethertypes.contains(&ethertype) {
                    table.remove(&ethertype).map_err(map_error("ethertypes"))?;
                }
            }
            for &ethertype in &settings.ethertypes {
                table
                    .insert(ethertype, 1, 0)
                    .map_err(map_error("ethertypes"))?;
            }
        }
        self.settings = settings.clone();
        self.write_config()
    }

    fn write_config(&mut self) -> Result<(), Error> {
        let config = abi::Config {
            bulk_action: self.settings.bulk_action.abi(),
            no_socket_action: self.settings.no_socket_action.abi(),
            first_packets: self.settings.first_packets,
            flags: if self.verdicts_in_use {
                abi::CONFIG_VERDICTS_IN_USE
            } else {
                0
            },
        };
        let mut array: Array<&mut MapData, abi::Config> = self.map_mut("config")?;
        array.set(0, config, 0).map_err(map_error("config"))
    }

    fn map_mut<'a, T>(&'a mut self, name: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a mut aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map_mut(name).ok_or(Error::MissingMap { name })?;
        T::try_from(map).map_err(map_error(name))
    }

    fn map<'a, T>(&'a self, name: &'static str) -> Result<T, Error>
    where
        T: TryFrom<&'a aya::maps::Map, Error = aya::maps::MapError>,
    {
        let map = self.ebpf.map(name).ok_or(Error::MissingMap { name })?;
        T::try_from(map).map_err(map_error(name))
    }

    fn program_mut(&mut self, name: &'static str) -> Result<&mut Xdp, Error> {
        self.ebpf
            .program_mut(name)
            .ok_or(Error::MissingProgram { name })?
            .try_into()
            .map_err(program_error(name))
    }

    /// Attaches the pre-filter to `ifname`. A stale otsensor program left attached by a
    /// crashed run (a netlink attachment outlives its process) is detached first; any
    /// other program on the interface is an error, never silently replaced.
    pub fn attach(&mut self, ifname: &str) -> Result<AttachReport, Error> {
        let ifindex = if_index(ifname)?;
        let replaced = remove_stale_attachment(ifname, ifindex)?;
        let requested = self.settings.mode;
        let first = match requested {
            AttachMode::Generic => AttachedMode::Generic,
            AttachMode::Driver | AttachMode::DriverOrGeneric => AttachedMode::Driver,
        };
        let program = self.program_mut(PROGRAM_NAME)?;
        let (link, mode, fell_back) = match program.attach_to_if_index(ifindex, xdp_mode(first)) {
            Ok(link) => (link, first, false),
            Err(error) if requested == AttachMode::DriverOrGeneric => {
                let error = error_chain(&error);
                eprintln!(
                    "otsensor: warning: interface {ifname}: driver-mode XDP failed ({error}); \
                     falling back to generic mode (slower: the kernel builds an skb for every frame)"
                );
                let link = program
                    .attach_to_if_index(ifindex, XdpMode::Skb)
                    .map_err(|source| Error::Attach {
                        ifname: ifname.to_string(),
                        mode: AttachedMode::Generic,
                        source: Box::new(source),
                    })?;
                (link, AttachedMode::Generic, true)
            }
            Err(source) => {
                return Err(Error::Attach {
                    ifname: ifname.to_string(),
                    mode: first,
                    source: Box::new(source),
                })
            }
        };
        self.attachment = Some(Attachment {
            ifname: ifname.to_string(),
            ifindex,
            mode,
            fell_back,
            link: AttachmentKind::Link(link),
        });
        Ok(AttachReport {
            mode,
            fell_back_to_generic: fell_back,
            replaced_stale_program: replaced,
        })
    }

    /// The attached mode, if attached.
    pub fn attached_mode(&self) -> Option<AttachedMode> {
        self.attachment.as_ref().map(|a| a.mode)
    }

    /// Whether driver mode failed and generic mode is in use (export as a metric).
    pub fn fell_back_to_generic(&self) -> bool {
        self.attachment.as_ref().is_some_and(|a| a.fell_back)
    }

    /// The interface the program is attached to.
    pub fn attached_interface(&self) -> Option<&str> {
        self.attachment.as_ref().map(|a| a.ifname.as_str())
    }

    /// The interface index the program is attached to.
    pub fn attached_ifindex(&self) -> Option<u32> {
        self.attachment.as_ref().map(|a| a.ifindex)
    }

    /// Detaches the program from the interface. Call before closing the AF_XDP sockets.
    pub fn detach(&mut self) -> Result<(), Error> {
        match self.attachment.take().map(|a| (a.ifindex, a.link)) {
            Some((_, AttachmentKind::Link(link))) => {
                let program = self.program_mut(PROGRAM_NAME)?;
                program.detach(link).map_err(program_error(PROGRAM_NAME))?;
            }
            Some((ifindex, AttachmentKind::Netlink { flags })) => {
                netlink::set_xdp(ifindex, -1, flags)?;
            }
            None => {}
        }
        Ok(())
    }

    /// Registers the AF_XDP socket bound to `queue`: the program redirects frames that
    /// arrive on RX queue `queue` to the socket at key `queue` (XSKMAP).
    pub fn register_socket(&mut self, queue: u32, socket: &impl AsRawFd) -> Result<(), Error> {
        if queue >= abi::MAX_QUEUES {
            return Err(Error::QueueOutOfRange {
                queue,
                max: abi::MAX_QUEUES,
            });
        }
        let mut map: XskMap<&mut MapData> = self.map_mut("xsks")?;
        map.set(queue, socket.as_raw_fd(), 0)
            .map_err(map_error("xsks"))
    }

    /// Removes the socket registered for `queue` (its frames then count as "no socket").
    pub fn unregister_socket(&mut self, queue: u32) -> Result<(), Error> {
        let mut map: XskMap<&mut MapData> = self.map_mut("xsks")?;
        map.unset(queue).map_err(map_error("xsks"))
    }

    /// The per-CPU reason and verdict counters, summed.
    pub fn counters(&self) -> Result<KernelCounters, Error> {
        let array: PerCpuArray<&MapData, abi::CounterValue> = self.map("counters")?;
        let mut out = KernelCounters::default();
        for (index, slot) in out.values.iter_mut().enumerate() {
            let per_cpu = array
                .get(&(index as u32), 0)
                .map_err(map_error("counters"))?;
            for value in per_cpu.iter() {
                slot.packets = slot.packets.wrapping_add(value.packets);
                slot.bytes = slot.bytes.wrapping_add(value.bytes);
            }
        }
        Ok(out)
    }

    /// Per-RX-queue counters summed over CPUs, for queues `0..queues`.
    pub fn queue_counters(&self, queues: u32) -> Result<Vec<abi::QueueCounters>, Error> {
        let array: PerCpuArray<&MapData, abi::QueueCounters> = self.map("queue_counters")?;
        (0..queues.min(abi::MAX_QUEUES))
            .map(|queue| {
                let per_cpu = array.get(&queue, 0).map_err(map_error("queue_counters"))?;
                Ok(per_cpu
                    .iter()
                    .fold(abi::QueueCounters::default(), |acc, v| abi::QueueCounters {
                        redirected: acc.redirected.wrapping_add(v.redirected),
                        no_socket: acc.no_socket.wrapping_add(v.no_socket),
                    }))
            })
            .collect()
    }

    /// Every flow the program tracks, with its shed accounting.
    pub fn flows(&self) -> Result<Vec<(FlowKey, abi::FlowState)>, Error> {
        let map: HashMap<&MapData, abi::FlowKey, abi::FlowState> = self.map("flows")?;
        let mut out = Vec::new();
        // An entry evicted between the key walk and its lookup is simply gone.
        for (key, state) in map.iter().flatten() {
            out.push((FlowKey(key), state));
        }
        Ok(out)
    }

    /// The flows folded into conversations (client, server, protocol, server port).
    pub fn conversations(&self) -> Result<StdHashMap<ConversationKey, ConversationTotals>, Error> {
        Ok(conversations(&self.flows()?))
    }

    /// Takes every event waiting in the kernel's `events` ring buffer, oldest first.
    pub fn drain_events(&self, out: &mut impl FnMut(KernelEvent)) -> Result<usize, Error> {
        let map = self
            .ebpf
            .map("events")
            .ok_or(Error::MissingMap { name: "events" })?;
        let mut ring: aya::maps::RingBuf<&MapData> =
            aya::maps::RingBuf::try_from(map).map_err(map_error("events"))?;
        let mut taken = 0;
        while let Some(item) = ring.next() {
            taken += 1;
            if let Some(event) = KernelEvent::parse(&item) {
                out(event);
            }
        }
        Ok(taken)
    }

    /// Events the kernel's rate limit (or a full ring) refused, summed over CPUs.
    pub fn suppressed_events(&self) -> Result<u64, Error> {
        let budget: PerCpuArray<&MapData, abi::EventBudget> = self.map("event_budget")?;
        let values = budget.get(&0, 0).map_err(map_error("event_budget"))?;
        Ok(values.iter().map(|b| b.suppressed).sum())
    }

    /// Tells the program what to do with the rest of a flow.
    pub fn set_verdict(&mut self, key: &FlowKey, verdict: FlowVerdict) -> Result<(), Error> {
        let value = abi::Verdict {
            verdict: match verdict {
                FlowVerdict::Keep => abi::VERDICT_KEEP,
                FlowVerdict::Shed => abi::VERDICT_SHED,
            },
            pad: 0,
        };
        {
            let mut map: HashMap<&mut MapData, abi::FlowKey, abi::Verdict> =
                self.map_mut("verdicts")?;
            map.insert(key.0, value, 0).map_err(map_error("verdicts"))?;
        }
        if !self.verdicts_in_use {
            self.verdicts_in_use = true;
            self.write_config()?;
        }
        Ok(())
    }

    /// Forgets the verdict for a flow (it falls back to the first-K rule).
    pub fn clear_verdict(&mut self, key: &FlowKey) -> Result<(), Error> {
        let mut map: HashMap<&mut MapData, abi::FlowKey, abi::Verdict> =
            self.map_mut("verdicts")?;
        match map.remove(&key.0) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_error("verdicts")(e)),
        }
    }
}

impl Drop for XdpFilter {
    fn drop(&mut self) {
        // Dropping `ebpf` would detach too; doing it first keeps the order explicit.
        let _ = self.detach();
    }
}

/// An error with its sources, `a: b: c` (aya's messages leave the OS error to `source`).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn xdp_mode(mode: AttachedMode) -> XdpMode {
    match mode {
        AttachedMode::Driver => XdpMode::Driver,
        AttachedMode::Generic => XdpMode::Skb,
    }
}

/// The interface index of `ifname`.
pub fn if_index(ifname: &str) -> Result<u32, Error> {
    let missing = || Error::NoSuchInterface {
        ifname: ifname.to_string(),
    };
    let name = std::ffi::CString::new(ifname).map_err(|_| missing())?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        Err(missing())
    } else {
        Ok(index)
    }
}

/// `otsensor detach`: removes a stale otsensor XDP program (one no running process holds)
/// from `ifname`; returns its id, or None when the interface had no program. A program
/// held by a running sensor, or any other program, is an error and left in place.
pub fn detach_stale(ifname: &str) -> Result<Option<u32>, Error> {
    remove_stale_attachment(ifname, if_index(ifname)?)
}

/// If `ifindex` carries an otsensor program that no running process holds (a netlink
/// attachment left by a crash), detaches it and returns its id. A bpf_link dies with its
/// process, so a program still held by a link belongs to a live run: that is an error.
fn remove_stale_attachment(ifname: &str, ifindex: u32) -> Result<Option<u32>, Error> {
    let Some(info) = xdp_attachment(ifindex)? else {
        return Ok(None);
    };
    let name = aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .find(|p| p.id() == info.prog_id)
        .and_then(|p| p.name_as_str().map(str::to_string))
        .unwrap_or_default();
    if name != PROGRAM_NAME {
        return Err(Error::Occupied {
            ifname: ifname.to_string(),
            prog_id: info.prog_id,
            name,
        });
    }
    let held_by_link = aya::programs::loaded_links()
        .filter_map(Result::ok)
        .any(|link| link.program_id() == info.prog_id);
    if held_by_link {
        return Err(Error::HeldByLink {
            ifname: ifname.to_string(),
            prog_id: info.prog_id,
        });
    }
    eprintln!(
        "otsensor: warning: interface {ifname}: removing stale otsensor XDP program {} left by an earlier run",
        info.prog_id
    );
    netlink::detach(ifindex, info.attached)?;
    Ok(Some(info.prog_id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    #[test]
    fn flow_key_is_the_same_in_both_directions() {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let forward = FlowKey::new(a, 40000, b, 80, 6);
        let reverse = FlowKey::new(b, 80, a, 40000, 6);
        assert_eq!(forward, reverse);
        assert_eq!(forward.addr_lo(), b);
        assert_eq!(forward.0.port_lo, 80);
        assert_eq!(forward.0.port_hi, 40000);
        assert_eq!(
            &forward.0.addr_lo[..12],
            &[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff]
        );
    }

    #[test]
    fn same_address_orders_by_port() {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let key = FlowKey::new(a, 5000, a, 4000, 17);
        assert_eq!(key.0.port_lo, 4000);
        assert_eq!(key.0.port_hi, 5000);
    }

    #[test]
    fn conversations_fold_client_ports_and_orient_by_server() {
        let client = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let server = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let mut flows = Vec::new();
        for (i, sport) in [40000u16, 40001].iter().enumerate() {
            let key = FlowKey::new(client, *sport, server, 445, 6);
            // server 10.0.0.1 < client 10.0.0.9: the server is `lo`.
            let mut state = abi::FlowState {
                server_side: abi::SERVER_LO,
                last_seen_ns: 100 + i as u64,
                ..Default::default()
            };
            state.shed_packets[abi::DIR_HI_TO_LO] = 3;
            state.shed_bytes[abi::DIR_HI_TO_LO] = 300;
            state.shed_packets[abi::DIR_LO_TO_HI] = 2;
            state.shed_bytes[abi::DIR_LO_TO_HI] = 2000;
            flows.push((key, state));
        }
        let conversations = conversations(&flows);
        assert_eq!(conversations.len(), 1);
        let (key, totals) = conversations.iter().next().expect("one conversation");
        assert_eq!(key.client, client);
        assert_eq!(key.server, server);
        assert_eq!(key.server_port, 445);
        assert_eq!(totals.packets_to_server, 6);
        assert_eq!(totals.bytes_to_server, 600);
        assert_eq!(totals.packets_to_client, 4);
        assert_eq!(totals.bytes_to_client, 4000);
        assert_eq!(totals.packets, 10);
        assert_eq!(totals.flows, 2);
        assert_eq!(totals.last_seen_monotonic_ns, 101);
    }

    /// The C header is the contract: its counter enum and constants must match `abi`.
    #[test]
    fn shared_h_matches_the_rust_mirror() {
        let header = include_str!(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../sensor-ebpf/shared.h"
        ));
        let body = header
            .split("enum ots_counter {")
            .nth(1)
            .and_then(|rest| rest.split("};").next())
            .expect("enum ots_counter in shared.h");
        let names: Vec<String> = body
            .lines()
            .map(|line| line.split("/*").next().unwrap_or("").trim())
            .filter(|line| line.starts_with("OTS_") && !line.starts_with("OTS_COUNTER_COUNT"))
            .map(|line| {
                let name = line.split([',', ' ', '=']).next().unwrap_or("");
                name.trim_start_matches("OTS_REASON_")
                    .trim_start_matches("OTS_VERDICT_")
                    .to_ascii_lowercase()
            })
            .collect();
        let labels: Vec<&str> = Counter::ALL.iter().map(|c| c.label()).collect();
        assert_eq!(names, labels);

        let define = |name: &str| -> u64 {
            let line = header
                .lines()
                .find(|l| l.starts_with(&format!("#define {name} ")))
                .unwrap_or_else(|| panic!("#define {name}"));
            let value = line[format!("#define {name} ").len()..]
                .split("/*")
                .next()
                .unwrap_or("")
                .trim();
            let value = value.trim_start_matches('(').trim_end_matches(')');
            if let Some(shift) = value.strip_prefix("1u << ") {
                1 << shift.parse::<u64>().expect("shift")
            } else {
                value.parse().expect("number")
            }
        };
        assert_eq!(define("OTS_MAX_QUEUES"), u64::from(abi::MAX_QUEUES));
        assert_eq!(
            define("OTS_PORT_TABLE_SIZE"),
            u64::from(abi::PORT_TABLE_SIZE)
        );
        assert_eq!(define("OTS_MAX_ETHERTYPES"), u64::from(abi::MAX_ETHERTYPES));
        assert_eq!(define("OTS_PORT_TCP"), u64::from(abi::PORT_TCP));
        assert_eq!(define("OTS_PORT_UDP"), u64::from(abi::PORT_UDP));
        assert_eq!(define("OTS_ACTION_DROP"), u64::from(abi::ACTION_DROP));
        assert_eq!(define("OTS_ACTION_PASS"), u64::from(abi::ACTION_PASS));
        assert_eq!(
            define("OTS_CONFIG_VERDICTS_IN_USE"),
            u64::from(abi::CONFIG_VERDICTS_IN_USE)
        );
        assert_eq!(define("OTS_SERVER_LO"), u64::from(abi::SERVER_LO));
        assert_eq!(define("OTS_SERVER_HI"), u64::from(abi::SERVER_HI));
        assert_eq!(define("OTS_DIR_HI_TO_LO"), abi::DIR_HI_TO_LO as u64);
        assert_eq!(define("OTS_VERDICT_KEEP"), u64::from(abi::VERDICT_KEEP));
        assert_eq!(define("OTS_VERDICT_SHED"), u64::from(abi::VERDICT_SHED));
    }

    #[test]
    fn counter_labels_are_unique() {
        let mut labels: Vec<_> = Counter::ALL.iter().map(|c| c.label()).collect();
        labels.sort_unstable();
        labels.dedup();
        assert_eq!(labels.len(), Counter::COUNT);
        assert_eq!(
            Counter::REASONS.len() + Counter::VERDICTS.len(),
            Counter::COUNT
        );
    }
}
