//! The YAML configuration file, validated into an immutable [`Policy`].
//!
//! One file, one struct per section, every field optional with a documented default
//! (`deploy/otsensor.yaml`, printed by `otsensor default-config`, is the reference and
//! is checked against [`Config::default`] by the tests). Loading refuses, with the
//! field path, the value, the reason and the line and column:
//! unknown fields (suggesting the closest valid name), values of the wrong type,
//! invalid CIDRs, ports, EtherTypes and durations, zero sizes, and YAML that exceeds
//! small parser budgets (alias bombs, deep nesting, oversized files).
//! [`Config::validate`] then checks what spans fields and builds the [`Policy`].

mod value;
/// Published policy snapshots and the workers' cheap view of them.
mod watch;

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_path_to_error::{Path as FieldPath, Segment};

pub use value::HumanDuration;
pub(crate) use watch::lock;
pub use watch::{PolicySnapshots, PolicyWatch};

/// The commented default configuration: what `otsensor default-config` prints and the
/// example shipped in `deploy/`. Tests prove it parses to [`Config::default`].
pub const DEFAULT_CONFIG_YAML: &str = include_str!("../../deploy/otsensor.yaml");

/// A configuration file is a page of YAML; anything near this size is a mistake or
/// an attack, and refusing it early bounds parser memory.
pub const MAX_CONFIG_BYTES: usize = 1024 * 1024;

/// The file's top level.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    #[serde(deserialize_with = "value::or_default")]
    pub pipeline: PipelineConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub flows: FlowsConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub networks: NetworksConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub inventory: InventoryConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub learning: LearningConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub capture: CaptureConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub outputs: OutputsConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub detection: DetectionConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub http: HttpConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub evidence: EvidenceConfig,
}

/// `evidence`: the packets behind alerts, kept per worker and written as pcapng.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EvidenceConfig {
    /// Keep recent packets and write an alert's packets to a file.
    pub enabled: bool,
    /// Where the files go; default `evidence/` beside the database (`--db`). With
    /// neither a directory nor a database, no evidence is kept.
    pub dir: Option<PathBuf>,
    /// Per worker: bytes of packet data kept (memory: this plus 48 bytes per packet slot).
    pub ring_bytes: u64,
    /// Per worker: packets kept at most.
    #[serde(deserialize_with = "value::count")]
    pub ring_packets: usize,
    /// Packet time before the alert's packet whose packets are written.
    pub before: HumanDuration,
    /// Packet time after it: the file is written once the owning worker's clock passes it.
    pub after: HumanDuration,
    /// At most this many packets per file (the oldest are left out first).
    #[serde(deserialize_with = "value::count")]
    pub max_packets: usize,
    /// At most this many bytes of packets per file.
    pub max_file_bytes: u64,
    /// The directory's size limit; the oldest files are deleted first.
    pub max_total_bytes: u64,
    /// The directory's file limit.
    #[serde(deserialize_with = "value::count")]
    pub max_files: usize,
    /// Files older than this are deleted.
    pub max_age: HumanDuration,
}

impl Default for EvidenceConfig {
    fn default() -> Self {
        let d = crate::evidence::EvidenceSettings::default();
        EvidenceConfig {
            enabled: d.enabled,
            dir: None,
            ring_bytes: d.ring_bytes as u64,
            ring_packets: d.ring_packets,
            before: HumanDuration::from_secs(d.before_ns / 1_000_000_000),
            after: HumanDuration::from_secs(d.after_ns / 1_000_000_000),
            max_packets: d.max_packets,
            max_file_bytes: d.max_file_bytes as u64,
            max_total_bytes: d.max_total_bytes,
            max_files: d.max_files,
            max_age: HumanDuration::from_secs(d.max_age.as_secs()),
        }
    }
}

impl EvidenceConfig {
    fn settings(&self) -> Result<crate::evidence::EvidenceSettings, Error> {
        const MIB: u64 = 1 << 20;
        if !(MIB..=64 * 1024 * MIB).contains(&self.ring_bytes) {
            return Err(invalid(
                "evidence.ring_bytes",
                self.ring_bytes,
                "must be between 1 MiB and 64 GiB",
            ));
        }
        if self.max_file_bytes < 4096 {
            return Err(invalid(
                "evidence.max_file_bytes",
                self.max_file_bytes,
                "must be at least 4096",
            ));
        }
        if self.max_total_bytes < self.max_file_bytes {
            return Err(invalid(
                "evidence.max_total_bytes",
                self.max_total_bytes,
                "must be at least evidence.max_file_bytes",
            ));
        }
        check_positive("evidence.max_age", self.max_age)?;
        Ok(crate::evidence::EvidenceSettings {
            enabled: self.enabled,
            dir: self.dir.clone(),
            ring_bytes: usize::try_from(self.ring_bytes).unwrap_or(usize::MAX),
            ring_packets: self.ring_packets,
            before_ns: self.before.as_nanos(),
            after_ns: self.after.as_nanos(),
            max_packets: self.max_packets,
            max_file_bytes: usize::try_from(self.max_file_bytes).unwrap_or(usize::MAX),
            max_total_bytes: self.max_total_bytes,
            max_files: self.max_files,
            max_age: self.max_age.as_duration(),
        })
    }
}

/// `pipeline`: threads and the queues between them.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// Worker threads (one per NIC queue when capturing live), 1 to 256.
    #[serde(deserialize_with = "value::workers")]
    pub workers: usize,
    /// Packets handed to a worker at a time.
    #[serde(deserialize_with = "value::count")]
    pub batch_packets: usize,
    /// Capacity of the workers → analyzer channel, in observations.
    #[serde(deserialize_with = "value::count")]
    pub observation_queue: usize,
    /// Capacity of each worker → worker hand-off ring, in packets.
    #[serde(deserialize_with = "value::count")]
    pub handoff_queue: usize,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            workers: 1,
            batch_packets: 256,
            observation_queue: 65_536,
            handoff_queue: 4096,
        }
    }
}

/// `flows`: the per-worker flow tables.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    /// Flows tracked across all workers; the oldest are evicted (and counted) beyond it.
    #[serde(deserialize_with = "value::count")]
    pub max_flows: usize,
    /// A flow with no packet for this long is closed.
    #[serde(deserialize_with = "value::positive_duration")]
    pub idle_timeout: HumanDuration,
    /// A TCP flow is kept this long after FIN or RST, for late packets.
    #[serde(deserialize_with = "value::positive_duration")]
    pub closed_timeout: HumanDuration,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            max_flows: 1_000_000,
            idle_timeout: HumanDuration::from_secs(600),
            closed_timeout: HumanDuration::from_secs(30),
        }
    }
}

/// `networks`: which addresses belong to the plant.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworksConfig {
    /// Networks whose hosts are inventoried; traffic leaving them is "external".
    #[serde(
        deserialize_with = "value::cidr_list",
        serialize_with = "value::serialize_cidr_list"
    )]
    pub internal: Vec<IpNet>,
    /// External networks that internal hosts may talk to without an alert.
    #[serde(
        deserialize_with = "value::cidr_list",
        serialize_with = "value::serialize_cidr_list"
    )]
    pub external_allowlist: Vec<IpNet>,
}

/// RFC 1918 private, RFC 3927 link-local, RFC 4193 unique-local and RFC 4291 link-local.
const DEFAULT_INTERNAL_NETWORKS: [&str; 6] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "169.254.0.0/16",
    "fc00::/7",
    "fe80::/10",
];

impl Default for NetworksConfig {
    fn default() -> Self {
        let internal = DEFAULT_INTERNAL_NETWORKS
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        NetworksConfig {
            internal,
            external_allowlist: Vec::new(),
        }
    }
}

/// `inventory`: the device table.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Devices kept; beyond it new devices are counted, not stored.
    #[serde(deserialize_with = "value::count")]
    pub max_devices: usize,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            max_devices: 100_000,
        }
    }
}

/// `learning`: the baseline period.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LearningConfig {
    /// How long after first start the sensor learns normal traffic before baseline
    /// deviations alert; `0s` alerts from the start.
    pub duration: HumanDuration,
}

impl Default for LearningConfig {
    fn default() -> Self {
        LearningConfig {
            duration: HumanDuration::from_secs(7 * 24 * 3600),
        }
    }
}

/// How the XDP program is attached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    /// Driver (native) mode where the NIC driver supports it, generic otherwise.
    #[default]
    Auto,
    /// Native mode only; refuse to start on a NIC without driver support.
    Driver,
    /// Generic (skb) mode: works on any NIC, slower.
    Generic,
}

/// What the XDP program does with bulk (non-OT, mid-flow) frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BulkAction {
    /// Drop them in the kernel (counted); on a SPAN port nothing else needs them.
    #[default]
    Drop,
    /// Pass them to the kernel network stack (when the port also carries host traffic).
    Pass,
}

/// `capture`: the live AF_XDP source and its kernel pre-filter.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CaptureConfig {
    /// Network interface for `otsensor run`; none means it must be given on the command line.
    pub interface: Option<String>,
    pub xdp_mode: XdpMode,
    pub bulk_action: BulkAction,
    /// TCP ports always sent to user space in full.
    #[serde(deserialize_with = "value::port_list")]
    pub industrial_tcp_ports: Vec<u16>,
    /// UDP ports always sent to user space in full.
    #[serde(deserialize_with = "value::port_list")]
    pub industrial_udp_ports: Vec<u16>,
    /// EtherTypes (layer-2 industrial protocols) always sent to user space in full.
    #[serde(
        deserialize_with = "value::ethertype_list",
        serialize_with = "value::serialize_ethertype_list"
    )]
    pub industrial_ethertypes: Vec<u16>,
    /// Frames in each queue's UMEM (shared packet buffer).
    #[serde(deserialize_with = "value::count_u32")]
    pub umem_frames: u32,
    /// Entries in each AF_XDP ring; a power of two.
    #[serde(deserialize_with = "value::count_u32")]
    pub ring_size: u32,
    /// Packets of each non-industrial flow sent to user space before the rest is bulk.
    #[serde(deserialize_with = "value::count_u32")]
    pub first_packets_per_flow: u32,
    /// CPUs for the per-queue workers (queue N runs on `cpus[N % len]`); empty: each
    /// queue's IRQ affinity, else round-robin over the CPUs the process may use.
    pub cpus: Vec<u32>,
    /// SO_BUSY_POLL microseconds per receive call (with SO_PREFER_BUSY_POLL); 0: off.
    pub busy_poll_usecs: u32,
    /// SO_BUSY_POLL_BUDGET: packets the driver handles per busy poll.
    #[serde(deserialize_with = "value::count_u32")]
    pub busy_poll_budget: u32,
}

/// Well-known ports of the industrial protocols the sensor dissects (IANA registry).
const DEFAULT_INDUSTRIAL_TCP_PORTS: [u16; 9] = [
    502,   // Modbus/TCP
    20000, // DNP3
    44818, // EtherNet/IP explicit messaging
    102,   // ISO-TSAP: S7comm
    2404,  // IEC 60870-5-104
    4840,  // OPC UA
    1883,  // MQTT
    8883,  // MQTT over TLS
    47808, // BACnet/IP is UDP, but some gateways tunnel it over TCP
];
const DEFAULT_INDUSTRIAL_UDP_PORTS: [u16; 8] = [
    47808, // BACnet/IP
    44818, // EtherNet/IP list identity
    2222,  // EtherNet/IP implicit (I/O) messaging
    20000, // DNP3 over UDP (IEEE 1815 allows it)
    34964, // PROFINET IO context manager (DCE/RPC)
    // Identification protocols the inventory reads names from (low-rate; DHCP 67/68
    // always passes the XDP filter, LLDP by EtherType, CDP as an 802.3 frame).
    137,  // NetBIOS Name Service
    161,  // SNMP agent responses
    5353, // mDNS
];
/// EtherTypes (IEEE registry) of layer-2 industrial and discovery protocols.
const DEFAULT_INDUSTRIAL_ETHERTYPES: [u16; 3] = [
    0x8892, // PROFINET
    0x88B8, // IEC 61850 GOOSE
    0x88CC, // LLDP
];

impl Default for CaptureConfig {
    fn default() -> Self {
        CaptureConfig {
            interface: None,
            xdp_mode: XdpMode::Auto,
            bulk_action: BulkAction::Drop,
            industrial_tcp_ports: DEFAULT_INDUSTRIAL_TCP_PORTS.to_vec(),
            industrial_udp_ports: DEFAULT_INDUSTRIAL_UDP_PORTS.to_vec(),
            industrial_ethertypes: DEFAULT_INDUSTRIAL_ETHERTYPES.to_vec(),
            umem_frames: 4096,
            ring_size: 2048,
            first_packets_per_flow: 8,
            cpus: Vec::new(),
            busy_poll_usecs: 0,
            busy_poll_budget: 64,
        }
    }
}

/// `outputs`: where alerts and events go.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputsConfig {
    #[serde(deserialize_with = "value::or_default")]
    pub eve: EveOutputConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub syslog: SyslogOutputConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub webhook: WebhookOutputConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub nats: NatsOutputConfig,
}

/// `outputs.nats`: alerts, inventory changes, baseline state and heartbeats to NATS
/// JetStream for `otsensor hub` (see `docs/FLEET.md`).
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsOutputConfig {
    /// `nats://HOST:PORT` (or `tls://`) of the cluster's servers; empty for no fleet.
    pub url: Vec<String>,
    /// This sensor's name in the fleet (`A-Z a-z 0-9 _ -`, at most 64).
    pub sensor_id: Option<String>,
    /// The site (plant, substation, building) it watches; same characters.
    pub site: Option<String>,
    /// The JetStream stream (created by the hub).
    pub stream: String,
    /// First subject token: messages go to `PREFIX.fleet.SITE.SENSOR.KIND`.
    pub subject_prefix: String,
    /// NATS user name; with `password_file`.
    pub user: Option<String>,
    /// File holding the NATS password.
    pub password_file: Option<PathBuf>,
    /// PEM CA certificates of the servers (requires TLS).
    pub ca_file: Option<PathBuf>,
    /// This sensor's signing key (at least 32 characters), shared with the hub only.
    pub key_file: Option<PathBuf>,
    /// The on-disk outbox.
    pub spool_dir: PathBuf,
    /// Most bytes the outbox holds; heartbeats are dropped first, alerts last.
    pub spool_max_bytes: u64,
    /// How often a heartbeat with the sensor's health is sent.
    pub heartbeat_interval: HumanDuration,
}

impl Default for NatsOutputConfig {
    fn default() -> Self {
        NatsOutputConfig {
            url: Vec::new(),
            sensor_id: None,
            site: None,
            stream: "OTSENSOR".to_owned(),
            subject_prefix: "otsensor".to_owned(),
            user: None,
            password_file: None,
            ca_file: None,
            key_file: None,
            spool_dir: PathBuf::from("/var/lib/otsensor/spool"),
            spool_max_bytes: 256 * 1024 * 1024,
            heartbeat_interval: HumanDuration::from_secs(10),
        }
    }
}

impl NatsOutputConfig {
    /// The validated settings, or none when no URL is configured.
    fn settings(&self) -> Result<Option<crate::output::nats::NatsSettings>, Error> {
        if self.url.is_empty() {
            return Ok(None);
        }
        for (index, url) in self.url.iter().enumerate() {
            let ok = ["nats://", "tls://"].iter().any(|scheme| {
                url.strip_prefix(scheme)
                    .is_some_and(|rest| !rest.is_empty() && !rest.contains(['/', ' ', ',']))
            });
            if !ok {
                return Err(invalid(
                    &format!("outputs.nats.url[{index}]"),
                    format!("{url:?}"),
                    "is not a NATS server: give nats://HOST:PORT or tls://HOST:PORT",
                ));
            }
        }
        let name = |field: &str, value: &Option<String>| -> Result<String, Error> {
            match value {
                Some(v) if crate::fleet::valid_name(v) => Ok(v.clone()),
                Some(v) => Err(invalid(
                    field,
                    format!("{v:?}"),
                    "is not valid: 1 to 64 of A-Z a-z 0-9 _ -",
                )),
                None => Err(invalid(field, "null", "is required with outputs.nats.url")),
            }
        };
        let sensor_id = name("outputs.nats.sensor_id", &self.sensor_id)?;
        let site = name("outputs.nats.site", &self.site)?;
        let token = |field: &str, value: &str| -> Result<(), Error> {
            if crate::fleet::valid_name(value) {
                Ok(())
            } else {
                Err(invalid(
                    field,
                    format!("{value:?}"),
                    "is not valid: 1 to 64 of A-Z a-z 0-9 _ -",
                ))
            }
        };
        token("outputs.nats.stream", &self.stream)?;
        token("outputs.nats.subject_prefix", &self.subject_prefix)?;
        let Some(key_file) = self.key_file.clone() else {
            return Err(invalid(
                "outputs.nats.key_file",
                "null",
                "is required with outputs.nats.url: the hub only accepts signed messages",
            ));
        };
        if self.user.is_some() != self.password_file.is_some() {
            return Err(invalid(
                "outputs.nats.user",
                format!("{:?}", self.user),
                "and outputs.nats.password_file go together",
            ));
        }
        if self.spool_dir.as_os_str().is_empty() {
            return Err(invalid("outputs.nats.spool_dir", "\"\"", "is required"));
        }
        if self.spool_max_bytes < 64 * 1024 {
            return Err(invalid(
                "outputs.nats.spool_max_bytes",
                self.spool_max_bytes,
                "is too small: at least 65536",
            ));
        }
        let heartbeat = self.heartbeat_interval.as_duration();
        if heartbeat < std::time::Duration::from_millis(100) {
            return Err(invalid(
                "outputs.nats.heartbeat_interval",
                self.heartbeat_interval,
                "is too short: at least 100ms",
            ));
        }
        Ok(Some(crate::output::nats::NatsSettings {
            urls: self.url.clone(),
            sensor_id,
            site,
            stream: self.stream.clone(),
            subject_prefix: self.subject_prefix.clone(),
            user: self.user.clone(),
            password_file: self.password_file.clone(),
            ca_file: self.ca_file.clone(),
            key_file,
            spool_dir: self.spool_dir.clone(),
            spool_max_bytes: self.spool_max_bytes,
            heartbeat_interval: heartbeat,
        }))
    }
}

/// `outputs.syslog`: alerts as CEF in RFC 5424 syslog messages, to a SIEM.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyslogOutputConfig {
    /// `udp://HOST:PORT`, `tcp://HOST:PORT` or `tls://HOST:PORT`; none for no syslog.
    pub url: Option<String>,
    /// PEM CA certificates that sign the collector's certificate (`tls://` only).
    pub ca_file: Option<PathBuf>,
}

/// `outputs.webhook`: each alert's JSON POSTed to a URL.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhookOutputConfig {
    /// `https://HOST[:PORT]/PATH` (or `http://` on a trusted network); none for no webhook.
    pub url: Option<String>,
    /// Sent as `Authorization: Bearer <token>`.
    pub token: Option<ApiToken>,
    /// A file (mode 0600 or stricter) holding the token instead of `token`.
    pub token_file: Option<PathBuf>,
    /// PEM CA certificates that sign the receiver's certificate (`https://`); none
    /// trusts the bundled public (WebPKI) roots.
    pub ca_file: Option<PathBuf>,
}

/// `outputs.eve`: EVE JSON lines.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct EveOutputConfig {
    pub enabled: bool,
    pub path: PathBuf,
    /// Also write one event per industrial protocol operation (verbose).
    pub protocol_events: bool,
}

impl Default for EveOutputConfig {
    fn default() -> Self {
        EveOutputConfig {
            enabled: true,
            path: PathBuf::from("/var/log/otsensor/eve.json"),
            protocol_events: false,
        }
    }
}

/// `detection`: thresholds of the stateful detections.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectionConfig {
    #[serde(deserialize_with = "value::or_default")]
    pub scan: ScanDetectionConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub silent_device: SilentDeviceConfig,
    #[serde(deserialize_with = "value::or_default")]
    pub flood: FloodDetectionConfig,
    /// Hosts allowed to program controllers: `plc_programming` from them does not
    /// alert (hosts that programmed during learning are allowed too).
    #[serde(
        deserialize_with = "value::cidr_list",
        serialize_with = "value::serialize_cidr_list"
    )]
    pub engineering_workstations: Vec<IpNet>,
}

/// `detection.scan`: one source probing many ports or hosts within `window`.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScanDetectionConfig {
    /// Distinct ports of one host probed by one source.
    #[serde(deserialize_with = "value::count_u32")]
    pub port_scan_ports: u32,
    /// Distinct hosts probed by one source.
    #[serde(deserialize_with = "value::count_u32")]
    pub address_scan_hosts: u32,
    /// Distinct hosts sent industrial discovery requests (e.g. EtherNet/IP List Identity),
    /// or distinct Modbus unit ids of one server addressed by one client.
    #[serde(deserialize_with = "value::count_u32")]
    pub discovery_sweep: u32,
    /// Distinct objects (Modbus function and address, S7 SZL ids) of one server
    /// addressed by one client: an ICS object sweep.
    #[serde(deserialize_with = "value::count_u32")]
    pub object_sweep: u32,
    #[serde(deserialize_with = "value::positive_duration")]
    pub window: HumanDuration,
}

impl Default for ScanDetectionConfig {
    fn default() -> Self {
        ScanDetectionConfig {
            port_scan_ports: 25,
            address_scan_hosts: 50,
            discovery_sweep: 10,
            object_sweep: 100,
            window: HumanDuration::from_secs(120),
        }
    }
}

/// `detection.flood`: half-open connection attempts against one device.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloodDetectionConfig {
    /// Connection attempts (TCP SYN without ACK) to one device within `window`, from
    /// any number of sources, that make a denial-of-service flood.
    #[serde(deserialize_with = "value::count_u32")]
    pub attempts: u32,
    #[serde(deserialize_with = "value::positive_duration")]
    pub window: HumanDuration,
}

impl Default for FloodDetectionConfig {
    fn default() -> Self {
        FloodDetectionConfig {
            attempts: 100,
            window: HumanDuration::from_secs(10),
        }
    }
}

/// `detection.silent_device`: a device that stops answering.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SilentDeviceConfig {
    /// Requests to a device left unanswered, in a row within `window`.
    #[serde(deserialize_with = "value::count_u32")]
    pub unanswered_requests: u32,
    #[serde(deserialize_with = "value::positive_duration")]
    pub window: HumanDuration,
    /// A device that sent regularly while learning and then stays quiet for longer
    /// than its longest learned gap (at least a minute: devices are re-reported once
    /// a minute) times this factor is silent...
    #[serde(deserialize_with = "value::count_u32")]
    pub quiet_factor: u32,
    /// ... but never before this long.
    #[serde(deserialize_with = "value::positive_duration")]
    pub quiet_floor: HumanDuration,
}

impl Default for SilentDeviceConfig {
    fn default() -> Self {
        SilentDeviceConfig {
            unanswered_requests: 8,
            window: HumanDuration::from_secs(300),
            quiet_factor: 4,
            quiet_floor: HumanDuration::from_secs(60),
        }
    }
}

/// `http`: metrics, API and dashboard.
#[derive(Clone, Debug, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve `/metrics`, the API and the dashboard during `otsensor run` (`--serve`
    /// turns it on for one run).
    pub enabled: bool,
    #[serde(deserialize_with = "value::socket_addr")]
    pub listen: SocketAddr,
    /// Bearer token required by state-changing API calls.
    pub api_token: Option<ApiToken>,
    /// A file (mode 0600 or stricter) holding the token instead of `api_token`; when
    /// missing, the sensor creates it (0600) with a random token. With neither, the
    /// sensor writes a random token to a private file and prints the file's path.
    pub api_token_file: Option<PathBuf>,
    /// Host names the sensor answers to besides its listen address and `localhost`
    /// (a request with any other `Host` or `Origin` is refused: DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Connections open at once; more wait in the kernel's backlog.
    pub max_connections: u32,
    /// Time a client has to send a request's headers.
    pub header_timeout: HumanDuration,
    /// A connection that moves no byte for this long is closed.
    pub idle_timeout: HumanDuration,
    /// Longest time to answer one request (503 after).
    pub request_timeout: HumanDuration,
    /// Largest request body accepted (the API takes none; 413 beyond).
    pub max_body_bytes: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 9750)),
            api_token: None,
            api_token_file: None,
            allowed_hosts: Vec::new(),
            max_connections: 2048,
            header_timeout: HumanDuration::from_secs(10),
            idle_timeout: HumanDuration::from_secs(30),
            request_timeout: HumanDuration::from_secs(15),
            max_body_bytes: 65_536,
        }
    }
}

/// Reads a secret from a file only its owner may read (`field` names the setting in
/// errors); surrounding whitespace is ignored. `Ok(None)` when the file does not exist.
pub fn read_secret_file(field: &str, path: &Path) -> Result<Option<ApiToken>, Error> {
    use std::os::unix::fs::PermissionsExt;
    let shown = format!("{:?}", path.display().to_string());
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(invalid(field, shown, &format!("cannot be read: {error}"))),
    };
    if metadata.permissions().mode() & 0o077 != 0 {
        return Err(invalid(
            field,
            shown,
            "is readable by group or others: `chmod 600` it (it holds a secret)",
        ));
    }
    if metadata.len() > 4096 {
        return Err(invalid(
            field,
            shown,
            "is too large for a token (over 4 KiB)",
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|error| invalid(field, &shown, &format!("cannot be read: {error}")))?;
    Ok(Some(ApiToken::new(text.trim())))
}

/// What one HTTP client may hold, and who may ask (`http.*`, used by `crate::http`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    /// Threads for blocking work (database reads, waiting on the analyzer).
    pub blocking_threads: usize,
    /// Host names (besides the listen address and `localhost`) the sensor answers to.
    pub allowed_hosts: Vec<String>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            max_connections: 2048,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(15),
            max_body_bytes: 64 * 1024,
            blocking_threads: 8,
            allowed_hosts: Vec::new(),
        }
    }
}

/// A secret that `Debug` never prints, so logging a `Config` or `Policy` leaks nothing.
#[derive(Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct ApiToken(String);

/// Tokens shorter than this are guessable.
const MIN_API_TOKEN_CHARS: usize = 16;

impl ApiToken {
    pub fn new(token: impl Into<String>) -> ApiToken {
        ApiToken(token.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Compares in time independent of where the strings differ, so response timing
    /// does not reveal a prefix of the token.
    pub fn matches(&self, presented: &str) -> bool {
        let expected = self.0.as_bytes();
        let presented = presented.as_bytes();
        let mut difference = expected.len() ^ presented.len();
        for (index, byte) in expected.iter().enumerate() {
            let other = presented.get(index).copied().unwrap_or(0);
            difference |= usize::from(byte ^ other);
        }
        difference == 0
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(<redacted>)")
    }
}

/// Where in the file an error is, as the YAML parser reports it (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub line: u64,
    pub column: u64,
}

/// ` (line L, column C)` when known, nothing otherwise.
struct At(Option<Position>);

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(Position { line, column }) => write!(f, " (line {line}, column {column})"),
            None => Ok(()),
        }
    }
}

/// `; did you mean `x`?` or the list of valid names.
struct Hint<'a> {
    suggestion: Option<&'static str>,
    expected: &'a [&'static str],
}

impl fmt::Display for Hint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.suggestion {
            Some(name) => write!(f, "; did you mean `{name}`?"),
            None if self.expected.is_empty() => Ok(()),
            None => write!(f, "; expected one of: {}", self.expected.join(", ")),
        }
    }
}

/// `in `flows`` or `at the top level`.
struct Section<'a>(&'a str);

impl fmt::Display for Section<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            f.write_str("at the top level")
        } else {
            write!(f, "in `{}`", self.0)
        }
    }
}

/// A refused configuration: which field, which value, why, and where.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // The causes below are part of the message, not `source()`, so that printing the
    // error chain (anyhow's `{:#}`) does not repeat them.
    #[error("{path}: cannot read: {io}")]
    Read { path: String, io: std::io::Error },
    /// An error inside a named file.
    #[error("{path}: {error}")]
    File { path: String, error: Box<Error> },
    #[error("configuration is {bytes} bytes; the limit is {limit} bytes")]
    TooLarge { bytes: usize, limit: usize },
    /// The text is not YAML, or exceeds the parser's budgets; no field to blame.
    #[error("{message}{}", At(*.position))]
    Syntax {
        message: String,
        position: Option<Position>,
    },
    #[error(
        "unknown field `{field}` {}{}{}",
        Section(section),
        Hint { suggestion: *suggestion, expected },
        At(*.position)
    )]
    UnknownField {
        /// Dotted path of the section holding the field; empty at the top level.
        section: String,
        field: String,
        suggestion: Option<&'static str>,
        expected: Vec<&'static str>,
        position: Option<Position>,
    },
    /// A value refused while reading the file (wrong type, bad CIDR, zero size, ...).
    #[error("{field}: {message}{}", At(*.position))]
    Value {
        /// Dotted path such as `networks.internal[1]`.
        field: String,
        message: String,
        position: Option<Position>,
    },
    /// A value refused by [`Config::validate`] (cross-field rules, or a `Config` built in code).
    #[error("{field}: {value} {reason}")]
    Invalid {
        field: String,
        value: String,
        reason: String,
    },
}

/// The validated, immutable settings every thread reads; a reload swaps it whole.
#[derive(Clone, Debug)]
pub struct Policy {
    pub workers: usize,
    pub batch_packets: usize,
    pub observation_queue: usize,
    pub handoff_queue: usize,
    pub max_flows: usize,
    pub flow_idle_timeout_ns: u64,
    pub flow_closed_timeout_ns: u64,
    pub internal_networks: Vec<IpNet>,
    pub max_devices: usize,
    /// `networks.external_allowlist`.
    pub external_allowlist: Vec<IpNet>,
    /// `learning.duration`; 0 means no learning period.
    pub learning_duration_ns: u64,
    pub capture_interface: Option<String>,
    pub xdp_mode: XdpMode,
    pub bulk_action: BulkAction,
    /// Sorted and de-duplicated, for [`Policy::is_industrial_tcp_port`].
    pub industrial_tcp_ports: Vec<u16>,
    /// Sorted and de-duplicated.
    pub industrial_udp_ports: Vec<u16>,
    /// Sorted and de-duplicated.
    pub industrial_ethertypes: Vec<u16>,
    pub umem_frames: u32,
    pub ring_size: u32,
    pub first_packets_per_flow: u32,
    /// CPUs for the per-queue workers; empty: IRQ affinity, else round-robin.
    pub capture_cpus: Vec<usize>,
    /// Busy polling of the AF_XDP sockets (0: off) and its budget.
    pub busy_poll_usecs: u32,
    pub busy_poll_budget: u32,
    pub eve_enabled: bool,
    pub eve_path: PathBuf,
    pub eve_protocol_events: bool,
    pub port_scan_ports: u32,
    pub address_scan_hosts: u32,
    pub discovery_sweep: u32,
    pub object_sweep: u32,
    pub scan_window_ns: u64,
    pub silent_unanswered_requests: u32,
    pub silent_window_ns: u64,
    pub http_enabled: bool,
    pub silent_quiet_factor: u32,
    pub silent_quiet_floor_ns: u64,
    /// `detection.flood.attempts` and `window`.
    pub flood_attempts: u32,
    pub flood_window_ns: u64,
    /// `detection.engineering_workstations`.
    pub engineering_workstations: Vec<IpNet>,
    pub http_listen: SocketAddr,
    /// `http.api_token`, or the content of `http.api_token_file` when it exists.
    pub http_api_token: Option<ApiToken>,
    /// Where a generated token goes when `http.api_token_file` does not exist yet.
    pub http_api_token_file: Option<PathBuf>,
    pub http_limits: HttpLimits,
    pub syslog_url: Option<String>,
    pub syslog_ca_file: Option<PathBuf>,
    pub webhook_url: Option<String>,
    /// `outputs.webhook.token` or the content of `outputs.webhook.token_file`.
    pub webhook_token: Option<ApiToken>,
    pub webhook_ca_file: Option<PathBuf>,
    /// `outputs.nats`, validated; none without a URL.
    pub nats: Option<crate::output::nats::NatsSettings>,
    /// `evidence`, validated.
    pub evidence: crate::evidence::EvidenceSettings,
}

impl Policy {
    /// True when `ip` lies in one of `networks.internal`.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        self.internal_networks.iter().any(|net| net.contains(&ip))
    }

    /// True when `ip` lies in one of `detection.engineering_workstations`.
    pub fn is_engineering_workstation(&self, ip: IpAddr) -> bool {
        self.engineering_workstations
            .iter()
            .any(|net| net.contains(&ip))
    }

    /// True when `ip` lies in one of `networks.external_allowlist`.
    pub fn is_external_allowed(&self, ip: IpAddr) -> bool {
        self.external_allowlist.iter().any(|net| net.contains(&ip))
    }

    pub fn is_industrial_tcp_port(&self, port: u16) -> bool {
        self.industrial_tcp_ports.binary_search(&port).is_ok()
    }

    pub fn is_industrial_udp_port(&self, port: u16) -> bool {
        self.industrial_udp_ports.binary_search(&port).is_ok()
    }

    pub fn is_industrial_ethertype(&self, ethertype: u16) -> bool {
        self.industrial_ethertypes.binary_search(&ethertype).is_ok()
    }
}

const MAX_ALIASES: usize = 100;
const MAX_DEPTH: usize = 16;

/// Parser limits for a configuration file: generous for any real config (a few
/// hundred nodes, depth 4), tight enough that alias bombs and deep nesting stop at once.
fn parse_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 100_000,
            max_nodes: 50_000,
            max_aliases: MAX_ALIASES,
            max_anchors: 100,
            max_depth: MAX_DEPTH,
            flow_nesting_limit: 16,
            max_documents: 1,
            max_total_scalar_bytes: MAX_CONFIG_BYTES,
            max_merge_keys: 100,
        },
        alias_limits: serde_saphyr::alias_limits! {
            max_total_replayed_events: 10_000,
            max_replay_stack_depth: 8,
            max_alias_expansions_per_anchor: 100,
        },
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::Error,
        // `yes`/`no`/`on`/`off` as booleans surprise people (the YAML 1.1 "Norway problem").
        strict_booleans: true,
        // We render our own one-line messages with the field path and position.
        with_snippet: false,
    }
}

impl Config {
    /// Parses YAML text; an empty document (or only comments) means all defaults.
    pub fn from_yaml(text: &str) -> Result<Config, Error> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(Error::TooLarge {
                bytes: text.len(),
                limit: MAX_CONFIG_BYTES,
            });
        }
        let mut track = serde_path_to_error::Track::new();
        let parsed = serde_saphyr::with_deserializer_from_str_with_options(
            text,
            parse_options(),
            |deserializer| {
                let tracked = serde_path_to_error::Deserializer::new(deserializer, &mut track);
                Option::<Config>::deserialize(tracked)
            },
        );
        match parsed {
            Ok(config) => Ok(config.unwrap_or_default()),
            Err(error) => Err(describe(&error, &track.path())),
        }
    }

    pub fn load(path: &Path) -> Result<Config, Error> {
        let display = path.display().to_string();
        let text = read_bounded(path).map_err(|io| Error::Read {
            path: display.clone(),
            io,
        })?;
        Self::from_yaml(&text).map_err(|error| Error::File {
            path: display,
            error: Box::new(error),
        })
    }

    /// Checks every rule (again: a `Config` may have been built or changed in code)
    /// and builds the [`Policy`].
    pub fn validate(&self) -> Result<Policy, Error> {
        let pipeline = &self.pipeline;
        check(
            "pipeline.workers",
            pipeline.workers,
            value::check_workers(pipeline.workers),
        )?;
        check_count("pipeline.batch_packets", pipeline.batch_packets)?;
        check_count("pipeline.observation_queue", pipeline.observation_queue)?;
        check_count("pipeline.handoff_queue", pipeline.handoff_queue)?;
        check_count("flows.max_flows", self.flows.max_flows)?;
        check_positive("flows.idle_timeout", self.flows.idle_timeout)?;
        check_positive("flows.closed_timeout", self.flows.closed_timeout)?;
        if self.networks.internal.is_empty() {
            return Err(invalid(
                "networks.internal",
                "[]",
                "is not valid: list at least one internal network",
            ));
        }
        check_count("inventory.max_devices", self.inventory.max_devices)?;

        let capture = &self.capture;
        if let Some(interface) = &capture.interface {
            check(
                "capture.interface",
                format!("{interface:?}"),
                check_interface_name(interface),
            )?;
        }
        check_ports(
            "capture.industrial_tcp_ports",
            &capture.industrial_tcp_ports,
        )?;
        check_ports(
            "capture.industrial_udp_ports",
            &capture.industrial_udp_ports,
        )?;
        for (index, ethertype) in capture.industrial_ethertypes.iter().enumerate() {
            check(
                &format!("capture.industrial_ethertypes[{index}]"),
                format!("{ethertype:#06x}"),
                value::check_ethertype(u64::from(*ethertype)),
            )?;
        }
        check_count("capture.ring_size", capture.ring_size)?;
        if !capture.ring_size.is_power_of_two() {
            return Err(invalid(
                "capture.ring_size",
                capture.ring_size,
                "is not valid: AF_XDP rings must be a power of two (e.g. 2048)",
            ));
        }
        check_count("capture.umem_frames", capture.umem_frames)?;
        if capture.umem_frames < capture.ring_size {
            return Err(invalid(
                "capture.umem_frames",
                capture.umem_frames,
                "is too small: must be at least capture.ring_size, or the fill ring cannot be filled",
            ));
        }
        check_count(
            "capture.first_packets_per_flow",
            capture.first_packets_per_flow,
        )?;
        let online = std::thread::available_parallelism().map_or(1, usize::from);
        for (index, cpu) in capture.cpus.iter().enumerate() {
            if *cpu as usize >= 1024 {
                return Err(invalid(
                    &format!("capture.cpus[{index}]"),
                    cpu,
                    &format!("is not a CPU number (this machine has {online} online)"),
                ));
            }
        }
        check_count("capture.busy_poll_budget", capture.busy_poll_budget)?;

        let eve = &self.outputs.eve;
        if eve.enabled && eve.path.as_os_str().is_empty() {
            return Err(invalid(
                "outputs.eve.path",
                "\"\"",
                "is not valid: give a file path, or set outputs.eve.enabled to false",
            ));
        }

        let syslog = &self.outputs.syslog;
        if let Some(url) = &syslog.url {
            crate::output::syslog::SyslogTarget::parse(url, syslog.ca_file.clone())
                .map_err(|reason| invalid("outputs.syslog.url", format!("{url:?}"), &reason))?;
        }
        let webhook = &self.outputs.webhook;
        if let Some(url) = &webhook.url {
            crate::output::webhook::check_url(url)
                .map_err(|reason| invalid("outputs.webhook.url", format!("{url:?}"), reason))?;
        }
        let webhook_token = match (&webhook.token, &webhook.token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "outputs.webhook.token_file",
                    "<redacted>",
                    "is not valid together with outputs.webhook.token: give one of them",
                ))
            }
            (Some(token), None) => Some(token.clone()),
            (None, Some(path)) => Some(
                read_secret_file("outputs.webhook.token_file", path)?.ok_or_else(|| {
                    invalid(
                        "outputs.webhook.token_file",
                        format!("{:?}", path.display().to_string()),
                        "does not exist",
                    )
                })?,
            ),
            (None, None) => None,
        };

        let scan = &self.detection.scan;
        check_count("detection.scan.port_scan_ports", scan.port_scan_ports)?;
        check_count("detection.scan.address_scan_hosts", scan.address_scan_hosts)?;
        check_count("detection.scan.discovery_sweep", scan.discovery_sweep)?;
        check_count("detection.scan.object_sweep", scan.object_sweep)?;
        check_positive("detection.scan.window", scan.window)?;
        let silent = &self.detection.silent_device;
        check_count(
            "detection.silent_device.unanswered_requests",
            silent.unanswered_requests,
        )?;
        check_positive("detection.silent_device.window", silent.window)?;
        check_count("detection.silent_device.quiet_factor", silent.quiet_factor)?;
        check_positive("detection.silent_device.quiet_floor", silent.quiet_floor)?;
        let flood = &self.detection.flood;
        check_count("detection.flood.attempts", flood.attempts)?;
        check_positive("detection.flood.window", flood.window)?;

        if self.http.listen.port() == 0 {
            return Err(invalid(
                "http.listen",
                format!("{:?}", self.http.listen.to_string()),
                "is not valid: give a fixed port (Prometheus and operators need to find it)",
            ));
        }
        let http = &self.http;
        if let Some(token) = &http.api_token {
            check_api_token(token)?;
        }
        let http_api_token = match (&http.api_token, &http.api_token_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "http.api_token_file",
                    format!("{:?}", "<redacted>"),
                    "is not valid together with http.api_token: give one of them",
                ))
            }
            (Some(token), None) => Some(token.clone()),
            (None, Some(path)) => match read_secret_file("http.api_token_file", path)? {
                Some(token) => {
                    check_api_token(&token).map_err(|_| {
                        invalid(
                            "http.api_token_file",
                            format!("{:?}", path.display().to_string()),
                            "holds a token shorter than 16 characters or with spaces",
                        )
                    })?;
                    Some(token)
                }
                None => None,
            },
            (None, None) => None,
        };
        for (index, host) in http.allowed_hosts.iter().enumerate() {
            if host.is_empty()
                || !host
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
            {
                return Err(invalid(
                    &format!("http.allowed_hosts[{index}]"),
                    format!("{host:?}"),
                    "is not a host name (letters, digits, '-' and '.'; no port)",
                ));
            }
        }
        check_count("http.max_connections", http.max_connections)?;
        check_count("http.max_body_bytes", http.max_body_bytes)?;
        check_positive("http.header_timeout", http.header_timeout)?;
        check_positive("http.idle_timeout", http.idle_timeout)?;
        check_positive("http.request_timeout", http.request_timeout)?;

        Ok(Policy {
            workers: pipeline.workers,
            batch_packets: pipeline.batch_packets,
            observation_queue: pipeline.observation_queue,
            handoff_queue: pipeline.handoff_queue,
            max_flows: self.flows.max_flows,
            flow_idle_timeout_ns: self.flows.idle_timeout.as_nanos(),
            flow_closed_timeout_ns: self.flows.closed_timeout.as_nanos(),
            internal_networks: self.networks.internal.iter().map(IpNet::trunc).collect(),
            max_devices: self.inventory.max_devices,
            external_allowlist: self
                .networks
                .external_allowlist
                .iter()
                .map(IpNet::trunc)
                .collect(),
            learning_duration_ns: self.learning.duration.as_nanos(),
            capture_interface: capture.interface.clone(),
            xdp_mode: capture.xdp_mode,
            bulk_action: capture.bulk_action,
            industrial_tcp_ports: sorted_unique(&capture.industrial_tcp_ports),
            industrial_udp_ports: sorted_unique(&capture.industrial_udp_ports),
            industrial_ethertypes: sorted_unique(&capture.industrial_ethertypes),
            umem_frames: capture.umem_frames,
            ring_size: capture.ring_size,
            first_packets_per_flow: capture.first_packets_per_flow,
            capture_cpus: capture.cpus.iter().map(|&cpu| cpu as usize).collect(),
            busy_poll_usecs: capture.busy_poll_usecs,
            busy_poll_budget: capture.busy_poll_budget,
            eve_enabled: eve.enabled,
            eve_path: eve.path.clone(),
            eve_protocol_events: eve.protocol_events,
            port_scan_ports: scan.port_scan_ports,
            address_scan_hosts: scan.address_scan_hosts,
            discovery_sweep: scan.discovery_sweep,
            object_sweep: scan.object_sweep,
            scan_window_ns: scan.window.as_nanos(),
            silent_unanswered_requests: silent.unanswered_requests,
            silent_window_ns: silent.window.as_nanos(),
            http_enabled: self.http.enabled,
            silent_quiet_factor: silent.quiet_factor,
            silent_quiet_floor_ns: silent.quiet_floor.as_nanos(),
            flood_attempts: flood.attempts,
            flood_window_ns: flood.window.as_nanos(),
            engineering_workstations: self
                .detection
                .engineering_workstations
                .iter()
                .map(IpNet::trunc)
                .collect(),
            http_listen: self.http.listen,
            http_api_token,
            http_api_token_file: http.api_token_file.clone(),
            http_limits: HttpLimits {
                max_connections: usize::try_from(http.max_connections).unwrap_or(usize::MAX),
                header_timeout: http.header_timeout.as_duration(),
                idle_timeout: http.idle_timeout.as_duration(),
                request_timeout: http.request_timeout.as_duration(),
                max_body_bytes: usize::try_from(http.max_body_bytes).unwrap_or(usize::MAX),
                allowed_hosts: http.allowed_hosts.clone(),
                ..HttpLimits::default()
            },
            syslog_url: syslog.url.clone(),
            syslog_ca_file: syslog.ca_file.clone(),
            webhook_url: webhook.url.clone(),
            webhook_token,
            webhook_ca_file: webhook.ca_file.clone(),
            nats: self.outputs.nats.settings()?,
            evidence: self.evidence.settings()?,
        })
    }
}

/// Reads at most one byte past the limit, so a huge file (or `/dev/zero`) is refused
/// without being read whole.
fn read_bounded(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    let limit = u64::try_from(MAX_CONFIG_BYTES).unwrap_or(u64::MAX);
    file.take(limit.saturating_add(1))
        .read_to_string(&mut text)?;
    Ok(text)
}

fn invalid(field: &str, value: impl fmt::Display, reason: &str) -> Error {
    Error::Invalid {
        field: field.to_string(),
        value: value.to_string(),
        reason: reason.to_string(),
    }
}

fn check(field: &str, value: impl fmt::Display, verdict: Result<(), &str>) -> Result<(), Error> {
    verdict.map_err(|reason| invalid(field, value, reason))
}

fn check_count<T: Copy + fmt::Display + TryInto<u64>>(field: &str, value: T) -> Result<(), Error> {
    let wide = value.try_into().unwrap_or(u64::MAX);
    check(field, value, value::check_count(wide))
}

fn check_positive(field: &str, duration: HumanDuration) -> Result<(), Error> {
    check(
        field,
        format!("{:?}", duration.to_string()),
        value::check_positive_duration(duration),
    )
}

fn check_ports(field: &str, ports: &[u16]) -> Result<(), Error> {
    for (index, port) in ports.iter().enumerate() {
        check(
            &format!("{field}[{index}]"),
            port,
            value::check_port(u64::from(*port)),
        )?;
    }
    Ok(())
}

/// Linux interface names: 1 to 15 bytes (IFNAMSIZ less the NUL), no `/` or spaces.
fn check_interface_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() || name.len() > 15 {
        return Err("is not a valid interface name: must be 1 to 15 characters");
    }
    if name
        .bytes()
        .any(|b| b == b'/' || b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err("is not a valid interface name: must not contain '/' or spaces");
    }
    Ok(())
}

fn check_api_token(token: &ApiToken) -> Result<(), Error> {
    let text = token.expose();
    // The value is never echoed: it is a secret, and error messages end up in logs.
    if text.chars().count() < MIN_API_TOKEN_CHARS {
        return Err(invalid(
            "http.api_token",
            "<redacted>",
            "is too short: use at least 16 characters (e.g. `openssl rand -hex 16`)",
        ));
    }
    if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(invalid(
            "http.api_token",
            "<redacted>",
            "is not valid: must not contain spaces or control characters",
        ));
    }
    Ok(())
}

fn sorted_unique(values: &[u16]) -> Vec<u16> {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    sorted
}

/// Turns a parser error and the path the tracker reached into one of our errors.
fn describe(error: &serde_saphyr::Error, path: &FieldPath) -> Error {
    use serde_saphyr::MessageFormatter;
    let error = error.without_snippet();
    let position = error
        .location()
        .filter(|location| location.line() > 0)
        .map(|location| Position {
            line: location.line(),
            column: location.column(),
        });
    let field = field_path(path.iter());
    match error {
        serde_saphyr::Error::SerdeUnknownField {
            field: name,
            expected,
            ..
        } => {
            // The tracker's path may or may not already end in the unknown key.
            let mut segments: Vec<&Segment> = path.iter().collect();
            if matches!(segments.last(), Some(Segment::Map { key }) if key == name) {
                segments.pop();
            }
            Error::UnknownField {
                section: field_path(segments.into_iter()),
                field: sanitize(name),
                suggestion: closest(name, expected),
                expected: expected.clone(),
                position,
            }
        }
        serde_saphyr::Error::SerdeUnknownVariant {
            variant, expected, ..
        } => Error::Value {
            field,
            message: format!(
                "{:?} is not valid: expected one of {}{}",
                sanitize(variant),
                expected.join(", "),
                Hint {
                    suggestion: closest(variant, expected),
                    expected: &[],
                }
            ),
            position,
        },
        serde_saphyr::Error::Budget { breach, .. } => {
            use serde_saphyr::budget::BudgetBreach;
            let message = match breach {
                BudgetBreach::Aliases { aliases } => format!(
                    "too many aliases ({aliases}; a configuration may use at most {MAX_ALIASES})"
                ),
                BudgetBreach::Depth { depth } => {
                    format!("nested too deeply ({depth} levels; at most {MAX_DEPTH})")
                }
                BudgetBreach::Documents { .. } => {
                    "more than one YAML document (`---`); put everything in one".to_string()
                }
                other => format!("exceeds the parser's safety limits: {other:?}"),
            };
            if field.is_empty() {
                Error::Syntax { message, position }
            } else {
                Error::Value {
                    field,
                    message,
                    position,
                }
            }
        }
        other => {
            let message = sanitize(&serde_saphyr::UserMessageFormatter.format_message(other));
            if field.is_empty() {
                Error::Syntax { message, position }
            } else {
                Error::Value {
                    field,
                    message,
                    position,
                }
            }
        }
    }
}

/// `networks.internal[1]`; empty for the document root.
fn field_path<'a>(segments: impl Iterator<Item = &'a Segment>) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&sanitize(key));
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&sanitize(variant));
            }
            // Where the tracker cannot name a step (a duplicate key), stop at the
            // last named one rather than print a placeholder.
            Segment::Unknown => break,
        }
    }
    out
}

/// File text echoed into a message must not carry terminal control sequences.
fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
        .collect()
}

/// The valid name closest to a misspelt one, if any is close enough to be a likely typo
/// (a dropped, doubled or swapped letter, or a shared prefix such as an old
/// `idle_timeout_seconds` for `idle_timeout`).
fn closest(word: &str, candidates: &[&'static str]) -> Option<&'static str> {
    candidates
        .iter()
        .map(|candidate| {
            let edits = strsim::damerau_levenshtein(word, candidate);
            let similarity = strsim::jaro_winkler(word, candidate);
            (*candidate, edits, similarity)
        })
        .filter(|(_, edits, similarity)| *edits <= 2 || *similarity >= 0.85)
        .min_by(|a, b| a.1.cmp(&b.1).then(b.2.total_cmp(&a.2)))
        .map(|(candidate, _, _)| candidate)
}

#[cfg(test)]
mod tests;
