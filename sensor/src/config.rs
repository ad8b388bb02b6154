//! The YAML configuration file, validated into an immutable [`Policy`].
//!
//! (Skeleton: the config issue work replaces parsing and validation; the `Policy`
//! fields are what the pipeline reads.)

use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The file's top level.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub pipeline: PipelineConfig,
    pub flows: FlowsConfig,
    pub networks: NetworksConfig,
    pub inventory: InventoryConfig,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub workers: usize,
    pub batch_packets: usize,
    pub observation_queue: usize,
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

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowsConfig {
    pub max_flows: usize,
    pub idle_timeout_seconds: u64,
    pub closed_timeout_seconds: u64,
}

impl Default for FlowsConfig {
    fn default() -> Self {
        FlowsConfig {
            max_flows: 1_000_000,
            idle_timeout_seconds: 600,
            closed_timeout_seconds: 30,
        }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct NetworksConfig {
    pub internal: Vec<IpNet>,
}

impl Default for NetworksConfig {
    fn default() -> Self {
        let internal = [
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "169.254.0.0/16",
            "fc00::/7",
            "fe80::/10",
        ]
        .iter()
        .filter_map(|s| s.parse().ok())
        .collect();
        NetworksConfig { internal }
    }
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    pub max_devices: usize,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            max_devices: 100_000,
        }
    }
}

/// A refused configuration: which field, which value, and why.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Parse(String),
    #[error("{field}: {value:?} is invalid: {reason}")]
    Invalid {
        field: &'static str,
        value: String,
        reason: &'static str,
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
}

impl Policy {
    /// True when `ip` lies in one of `networks.internal`.
    pub fn is_internal(&self, ip: IpAddr) -> bool {
        self.internal_networks.iter().any(|net| net.contains(&ip))
    }
}

impl Config {
    pub fn from_yaml(text: &str) -> Result<Config, Error> {
        serde_saphyr::from_str(text).map_err(|e| Error::Parse(e.to_string()))
    }

    pub fn load(path: &Path) -> Result<Config, Error> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_yaml(&text)
    }

    pub fn validate(&self) -> Result<Policy, Error> {
        if self.pipeline.workers == 0 || self.pipeline.workers > 256 {
            return Err(Error::Invalid {
                field: "pipeline.workers",
                value: self.pipeline.workers.to_string(),
                reason: "must be between 1 and 256",
            });
        }
        Ok(Policy {
            workers: self.pipeline.workers,
            batch_packets: self.pipeline.batch_packets.max(1),
            observation_queue: self.pipeline.observation_queue.max(1),
            handoff_queue: self.pipeline.handoff_queue.max(1),
            max_flows: self.flows.max_flows.max(1),
            flow_idle_timeout_ns: self.flows.idle_timeout_seconds * 1_000_000_000,
            flow_closed_timeout_ns: self.flows.closed_timeout_seconds * 1_000_000_000,
            internal_networks: self.networks.internal.clone(),
            max_devices: self.inventory.max_devices,
        })
    }
}
