//! Devices that go quiet: the learned quiet interval (`device_silent`, `device_back`).

use crate::analyze::*;

/// Devices are re-reported (`DeviceSeen`) at most once a minute per worker, so a
/// device's rhythm is known to the minute: a shorter learned gap is sampling (several
/// workers reporting the same device), not rhythm.
pub(in crate::analyze) const SIGHTING_INTERVAL_NS: u64 = crate::worker::DEVICE_REFRESH_NS;

/// How long a device may stay quiet: its longest learned gap between sightings (at
/// least [`SIGHTING_INTERVAL_NS`]) times `factor`, never less than `floor`. A device
/// polled every few seconds gets `factor` minutes; one that talks every 15 minutes
/// gets `factor` × 15 minutes.
pub(in crate::analyze) fn quiet_limit_ns(learned_gap_ns: u64, factor: u64, floor: u64) -> u64 {
    learned_gap_ns
        .max(SIGHTING_INTERVAL_NS)
        .saturating_mul(factor)
        .max(floor)
}

impl Analyzer {
    /// The quiet-device rule of `device_silent`: a device that sent regularly while
    /// learning (`QUIET_MIN_SIGHTINGS`) and has now been quiet for longer than
    /// [`quiet_limit_ns`] of its learned rhythm. Checked once per `QUIET_CHECK_NS`,
    /// from observations (packet time) and, live, from [`Analyzer::tick`] (the wall
    /// clock, which is packet time there), so a network that goes completely quiet
    /// is still checked. The alert carries the packet time the device became
    /// overdue, so it does not depend on when the check ran.
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
            let limit = quiet_limit_ns(record.learned_gap_ns, factor, floor);
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
                Detail::Silence {
                    kind: "quiet",
                    last_seen_ns,
                },
                Vec::new(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, HumanDuration};

    const S: u64 = 1_000_000_000;

    fn analyzer(learning_s: u64) -> Analyzer {
        let mut config = Config::default();
        config.learning.duration = HumanDuration::from_secs(learning_s);
        let policy = config.validate().unwrap_or_else(|e| panic!("{e}"));
        Analyzer::new(Arc::new(policy), None)
    }

    fn seen(a: &mut Analyzer, ts_ns: u64, host: u8) {
        a.observe(Observation::DeviceSeen {
            ts_ns,
            mac: Some([0, 1, 2, 3, 4, host]),
            ip: Some(IpAddr::from([10, 0, 0, host])),
            vlan: 0,
        });
    }

    /// Sources of the `device_silent` alerts raised so far.
    fn silent(a: &Analyzer) -> Vec<u8> {
        let mut hosts: Vec<u8> = a
            .alerts
            .values()
            .filter(|alert| alert.signature == "device_silent")
            .filter_map(|alert| match alert.src {
                Some(IpAddr::V4(v4)) => Some(v4.octets()[3]),
                _ => None,
            })
            .collect();
        hosts.sort_unstable();
        hosts
    }

    #[test]
    fn the_limit_follows_the_learned_rhythm_known_to_the_minute() {
        let floor = 60 * S;
        // Polled every few seconds (sightings once a minute): four minutes.
        assert_eq!(quiet_limit_ns(61 * S, 4, floor), 244 * S);
        // Several workers reporting the same device seconds apart: still a minute.
        assert_eq!(quiet_limit_ns(2 * S, 4, floor), 240 * S);
        // Talks every 15 minutes: an hour.
        assert_eq!(quiet_limit_ns(900 * S, 4, floor), 3_600 * S);
        // The floor holds whatever the factor.
        assert_eq!(quiet_limit_ns(61 * S, 1, 300 * S), 300 * S);
    }

    #[test]
    fn a_device_polled_every_few_seconds_is_silent_after_five_minutes() {
        let mut a = analyzer(600);
        // Device 1 answers every few seconds: the workers report it every 61 s, through
        // learning and after, until 732 s; then nothing. Device 2 keeps talking.
        for t in (0..=732).step_by(61) {
            seen(&mut a, t * S, 1);
        }
        for t in (0..=732 + 300).step_by(30) {
            seen(&mut a, t * S, 2);
        }
        // 300 s after its last sighting (its last packet at most a minute later): due
        // at 732 + 244 s. The default floor of ten minutes never let this fire.
        assert_eq!(silent(&a), vec![1]);
    }

    #[test]
    fn a_rare_talker_is_judged_by_its_own_rhythm() {
        let mut a = analyzer(3_600);
        // Device 1 talks every 15 minutes while learning, then pauses 40 minutes: well
        // within four times its rhythm. Device 2 talks every 30 s all along.
        for t in [0, 900, 1_800, 2_700, 3_600, 6_000] {
            seen(&mut a, t * S, 1);
        }
        for t in (0..=6_000).step_by(30) {
            seen(&mut a, t * S, 2);
        }
        assert_eq!(silent(&a), Vec::<u8>::new());
        // Then more than an hour without it: silent.
        for t in (6_030..=9_700).step_by(30) {
            seen(&mut a, t * S, 2);
        }
        assert_eq!(silent(&a), vec![1]);
    }

    #[test]
    fn live_the_timer_reports_a_device_on_a_network_gone_quiet() {
        // Packet time is the wall clock: the device was polled until ten minutes ago,
        // and nothing at all arrived since.
        let now = crate::observe::realtime_ns();
        let start = now - 1_200 * S;
        let mut live = analyzer(300);
        let mut replay = analyzer(300);
        for a in [&mut live, &mut replay] {
            for t in (0..=600).step_by(61) {
                seen(a, start + t * S, 1);
            }
        }
        assert_eq!(silent(&live), Vec::<u8>::new());
        live.set_wall_clock(true);
        live.tick();
        replay.tick();
        assert_eq!(silent(&live), vec![1]);
        // A replay's clock is its packets: no packets, no time passes.
        assert_eq!(silent(&replay), Vec::<u8>::new());
        // The alert is stored by the same tick's commit path.
        let report = live.finish();
        assert_eq!(report.alerts_by_signature.get("device_silent"), Some(&1));
    }
}
