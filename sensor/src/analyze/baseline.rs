//! Learning: the baseline of facts seen during `learning.duration`.

use super::*;

impl Analyzer {
    /// True while `ts_ns` lies in the learning period.
    pub fn is_learning(&self, ts_ns: u64) -> bool {
        if self.learning_ended || self.policy.learning_duration_ns == 0 {
            return false;
        }
        let started = self.learning_started_ns.unwrap_or(ts_ns);
        ts_ns < started.saturating_add(self.policy.learning_duration_ns)
    }

    /// Adds a fact to the baseline (and to the store at the next commit). At
    /// `max_baseline` facts nothing more is learned but devices (bounded by
    /// `inventory.max_devices`): what is not learned alerts after learning, which is
    /// the safe side; counted, and `state_capped` raised.
    pub(in crate::analyze) fn learn(&mut self, item: BaselineItem, ts_ns: u64) {
        if self.baseline.contains(&item) {
            return;
        }
        if self.baseline.len() >= self.max_baseline && !matches!(item, BaselineItem::Device(_)) {
            self.counters.baseline_over_capacity += 1;
            let cap = self.max_baseline;
            self.state_capped("baseline", ts_ns, cap);
            return;
        }
        self.baseline.insert(item);
        self.pending.baseline.push((item, ts_ns));
    }

    pub(in crate::analyze) fn is_baseline_device(&self, ip: IpAddr) -> bool {
        self.baseline
            .contains(&BaselineItem::Device(DeviceKey::Ip(ip)))
    }
}
