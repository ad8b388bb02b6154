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

    pub(in crate::analyze) fn learn(&mut self, item: BaselineItem, ts_ns: u64) {
        if self.baseline.insert(item) {
            self.pending.baseline.push((item, ts_ns));
        }
    }

    pub(in crate::analyze) fn is_baseline_device(&self, ip: IpAddr) -> bool {
        self.baseline
            .contains(&BaselineItem::Device(DeviceKey::Ip(ip)))
    }
}
