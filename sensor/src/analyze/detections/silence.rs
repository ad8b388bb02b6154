//! Devices that go quiet: the learned quiet interval (`device_silent`, `device_back`).

use crate::analyze::*;

impl Analyzer {
    /// The quiet-device rule of `device_silent`: a device that sent regularly while
    /// learning (`QUIET_MIN_SIGHTINGS`) and has now been quiet for longer than its
    /// longest learned gap times `quiet_factor` (never less than `quiet_floor`).
    /// Checked once per `QUIET_CHECK_NS` of packet time; the alert carries the packet
    /// time the device became overdue, so it does not depend on when the check ran.
    pub(in crate::analyze) fn check_quiet(&mut self, now_ns: u64) {
        if now_ns < self.next_quiet_check_ns {
            return;
        }
        self.next_quiet_check_ns = now_ns.saturating_add(QUIET_CHECK_NS);
        if self.is_learning(now_ns) {
            return;
        }
        let factor = u64::from(self.policy.silent_quiet_factor);
        let floor = self.policy.silent_quiet_floor_ns;
        let overdue = |record: &mut DeviceRecord| -> Option<u64> {
            if record.silent.is_some()
                || record.learning_sightings < QUIET_MIN_SIGHTINGS
                || record.learned_gap_ns == 0
            {
                return None;
            }
            let limit = record.learned_gap_ns.saturating_mul(factor).max(floor);
            let due = record.last_seen_ns.saturating_add(limit);
            if now_ns <= due {
                return None;
            }
            record.silent = Some(due);
            Some(due)
        };
        let mut quiet: Vec<(DeviceKey, u64, u64)> = Vec::new();
        for (ip, record) in &mut self.by_ip {
            if let Some(due) = overdue(record) {
                quiet.push((DeviceKey::Ip(*ip), due, record.last_seen_ns));
            }
        }
        for (mac, record) in &mut self.by_mac {
            if self.macs_with_ip.contains(mac) {
                continue;
            }
            if let Some(due) = overdue(record) {
                quiet.push((DeviceKey::Mac(*mac), due, record.last_seen_ns));
            }
        }
        // Deterministic order: the same replay raises in the same order.
        quiet.sort_unstable_by_key(|(key, due, _)| (*due, *key));
        for (key, due, last_seen_ns) in quiet {
            self.raise(
                "device_silent",
                due,
                Subject::device(key),
                format!("{key} has been quiet for longer than its learned interval allows"),
                serde_json::json!({ "kind": "quiet", "last_seen_ns": last_seen_ns }),
                Vec::new(),
            );
        }
    }
}
