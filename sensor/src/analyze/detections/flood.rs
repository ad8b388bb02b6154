//! Denial-of-service floods: connection attempts (TCP SYN without ACK) against one
//! device's port, counted over `detection.flood.window` whatever their sources. One
//! alert per target, raised when a window reaches `detection.flood.attempts` and
//! repeated (folded into the same alert) for every window that does, so it is updated
//! while the flood lasts. Spoofed sources never raise alerts of their own; impossible
//! ones (multicast, broadcast, unspecified) are counted as bogons in the flood's alert.

use std::collections::HashSet;

use crate::analyze::bounded::Admitted;
use crate::analyze::detections::flows::is_bogon_source;
use crate::analyze::*;

/// Targets (device, port) tracked at once; beyond it the oldest is evicted (counted).
const MAX_FLOOD_TARGETS: usize = 4_096;
/// Distinct sources counted per target and window (beyond it: "at least").
const MAX_FLOOD_SOURCES: usize = 4_096;
/// Sources quoted in the alert.
const FLOOD_SAMPLE: usize = 8;

/// Attempts against one (device, port) in the current window.
#[derive(Default)]
pub(in crate::analyze) struct FloodState {
    window_start_ns: u64,
    attempts: u32,
    sources: HashSet<IpAddr>,
    sources_saturated: bool,
    bogons: u32,
}

impl Analyzer {
    pub(in crate::analyze) fn track_flood(&mut self, flow: &FlowStart) {
        let target = flow.server;
        let window = self.policy.flood_window_ns;
        // Targets hit once (a port sweep across devices) go first when full.
        let (_, admitted) = self
            .floods
            .entry(target, MAX_FLOOD_TARGETS, |state| state.attempts >= 2);
        if admitted == Admitted::Evicted {
            self.counters.flood_targets_over_capacity += 1;
            self.state_capped("flood_targets", flow.ts_ns, MAX_FLOOD_TARGETS);
        }
        let Some(state) = self.floods.get_mut(&target) else {
            return;
        };
        if flow.ts_ns >= state.window_start_ns.saturating_add(window) || state.attempts == 0 {
            *state = FloodState {
                window_start_ns: flow.ts_ns,
                sources: std::mem::take(&mut state.sources),
                ..FloodState::default()
            };
            state.sources.clear();
        }
        state.attempts += 1;
        let source = flow.client.0;
        if is_bogon_source(source) {
            state.bogons += 1;
        }
        if state.sources.len() < MAX_FLOOD_SOURCES {
            state.sources.insert(source);
        } else if !state.sources.contains(&source) {
            state.sources_saturated = true;
        }
        if state.attempts != self.policy.flood_attempts {
            return;
        }
        let (ip, port) = target;
        let elapsed_s = (flow.ts_ns - state.window_start_ns) as f64 / 1e9;
        let rate = f64::from(state.attempts) / elapsed_s.max(0.001);
        let mut sample: Vec<IpAddr> = state
            .sources
            .iter()
            .copied()
            .filter(|source| !is_bogon_source(*source))
            .collect();
        // In text order, as the context lists them.
        sample.sort_by_cached_key(ToString::to_string);
        sample.truncate(FLOOD_SAMPLE);
        let sources = state.sources.len();
        let at_least = if state.sources_saturated {
            "at least "
        } else {
            ""
        };
        let bogons = state.bogons;
        let message = format!(
            "flood: {} connection attempts to {ip}:{port} in {elapsed_s:.1} s ({rate:.0}/s) from {at_least}{sources} sources ({bogons} with impossible source addresses)",
            state.attempts
        );
        let context = Detail::Flood {
            attempts: state.attempts,
            window_s: window as f64 / 1e9,
            rate_per_s: rate.round(),
            sources,
            sources_saturated: state.sources_saturated,
            sample_sources: sample,
            bogon_attempts: bogons,
        };
        self.raise(
            "flood",
            flow.ts_ns,
            Subject {
                dst: Some(ip),
                dst_port: Some(port),
                proto: Some(flow.ip_protocol),
                app_proto: flow.app_proto,
                ..Subject::default()
            },
            message,
            context,
            Vec::new(),
        );
    }
}
