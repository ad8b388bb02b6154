//! The policy half of the pre-filter's maps (port table, ethertypes, config entry) as
//! handles of their own, so that a config reload can rewrite them from another thread
//! while the capture owns the [`XdpFilter`]. Each map update is one syscall that the
//! kernel applies atomically per entry; the program stays attached throughout, so no
//! frame is lost — a frame that arrives mid-update meets each entry either old or new.

use std::os::fd::AsFd;

use aya::maps::{Array, HashMap, Map, MapData};

use super::{abi, map_error, Error, XdpFilter, XdpSettings};

/// Owned handles (duplicated file descriptors) on the policy maps of one loaded filter.
pub struct PolicyMaps {
    ports: Array<MapData, u32>,
    ethertypes: HashMap<MapData, u16, u32>,
    config: Array<MapData, abi::Config>,
    /// What the maps hold now.
    settings: XdpSettings,
}

impl std::fmt::Debug for PolicyMaps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyMaps")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A second handle on the map `name`: a duplicate of the loader's file descriptor.
fn duplicate(filter: &XdpFilter, name: &'static str) -> Result<Map, Error> {
    let map = filter.ebpf.map(name).ok_or(Error::MissingMap { name })?;
    let data = match map {
        Map::Array(data) | Map::HashMap(data) => data,
        _ => return Err(Error::MissingMap { name }),
    };
    let fd = data
        .fd()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|io| map_error(name)(aya::maps::MapError::from(io_syscall(io))))?;
    let data = MapData::from_fd(fd).map_err(map_error(name))?;
    Map::from_map_data(data).map_err(map_error(name))
}

fn io_syscall(io_error: std::io::Error) -> aya::sys::SyscallError {
    aya::sys::SyscallError {
        call: "dup",
        io_error,
    }
}

impl XdpFilter {
    /// Handles on the policy maps that another thread can own and rewrite (config
    /// reload). After [`PolicyMaps::apply`], this filter's own idea of its settings is
    /// stale: use one or the other to change policy, not both.
    pub fn policy_maps(&self) -> Result<PolicyMaps, Error> {
        Ok(PolicyMaps {
            ports: Array::try_from(duplicate(self, "port_table")?)
                .map_err(map_error("port_table"))?,
            ethertypes: HashMap::try_from(duplicate(self, "ethertypes")?)
                .map_err(map_error("ethertypes"))?,
            config: Array::try_from(duplicate(self, "config")?).map_err(map_error("config"))?,
            settings: self.settings.clone(),
        })
    }
}

impl PolicyMaps {
    /// The settings the maps hold.
    pub fn settings(&self) -> &XdpSettings {
        &self.settings
    }

    /// Rewrites ports, ethertypes, bulk action and first-packet count in place. New
    /// entries are written before stale ones are removed, so a port or ethertype in both
    /// the old and the new settings is never missing, even for a moment. The config
    /// entry keeps the fields policy does not own (no-socket action, verdict flag).
    pub fn apply(&mut self, settings: &XdpSettings) -> Result<(), Error> {
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
        let mut wanted: Vec<u16> = settings
            .tcp_ports
            .iter()
            .chain(&settings.udp_ports)
            .copied()
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        for &port in &wanted {
            self.ports
                .set(u32::from(port), bits_for(port, settings), 0)
                .map_err(map_error("port_table"))?;
        }
        let mut stale: Vec<u16> = self
            .settings
            .tcp_ports
            .iter()
            .chain(&self.settings.udp_ports)
            .copied()
            .filter(|port| !wanted.contains(port))
            .collect();
        stale.sort_unstable();
        stale.dedup();
        for port in stale {
            self.ports
                .set(u32::from(port), 0, 0)
                .map_err(map_error("port_table"))?;
        }

        // New before stale, unless both together would not fit the table: then the
        // stale ones go first (a frame of a removed EtherType may meet the old rule).
        let existing: Vec<u16> = self.ethertypes.keys().filter_map(Result::ok).collect();
        let stale: Vec<u16> = existing
            .iter()
            .copied()
            .filter(|e| !settings.ethertypes.contains(e))
            .collect();
        let fits = existing.len() + settings.ethertypes.len() - (existing.len() - stale.len())
            <= abi::MAX_ETHERTYPES as usize;
        if !fits {
            self.remove_ethertypes(&stale)?;
        }
        for &ethertype in &settings.ethertypes {
            self.ethertypes
                .insert(ethertype, 1, 0)
                .map_err(map_error("ethertypes"))?;
        }
        if fits {
            self.remove_ethertypes(&stale)?;
        }

        let mut config = self.config.get(&0, 0).map_err(map_error("config"))?;
        config.bulk_action = settings.bulk_action.abi();
        config.first_packets = settings.first_packets;
        self.config.set(0, config, 0).map_err(map_error("config"))?;
        self.settings = settings.clone();
        Ok(())
    }

    fn remove_ethertypes(&mut self, stale: &[u16]) -> Result<(), Error> {
        for ethertype in stale {
            match self.ethertypes.remove(ethertype) {
                Ok(()) | Err(aya::maps::MapError::KeyNotFound) => {}
                Err(e) => return Err(map_error("ethertypes")(e)),
            }
        }
        Ok(())
    }

    /// Whether the port table sends `port` to user space for TCP and UDP (as read back
    /// from the kernel): for tests and the reload report.
    pub fn port_bits(&self, port: u16) -> Result<(bool, bool), Error> {
        let bits = self
            .ports
            .get(&u32::from(port), 0)
            .map_err(map_error("port_table"))?;
        Ok((bits & abi::PORT_TCP != 0, bits & abi::PORT_UDP != 0))
    }

    /// The ethertypes in the kernel table, sorted.
    pub fn ethertypes(&self) -> Vec<u16> {
        let mut types: Vec<u16> = self.ethertypes.keys().filter_map(Result::ok).collect();
        types.sort_unstable();
        types
    }
}
