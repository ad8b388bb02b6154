//! A fixed-capacity counting histogram for per-protocol statistics: open addressing
//! over a table allocated once, so counting a PDU never allocates. Keys beyond the
//! capacity are counted in `overflow` rather than lost silently.

use std::collections::BTreeMap;

const SLOTS: usize = 256;

/// Counts per `u32` key.
#[derive(Clone, Debug)]
pub struct Histogram {
    /// (key + 1, count); key + 1 == 0 marks an empty slot.
    slots: Box<[(u64, u64)]>,
    used: usize,
    /// Observations whose key found no free slot.
    pub overflow: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            slots: vec![(0, 0); SLOTS].into_boxed_slice(),
            used: 0,
            overflow: 0,
        }
    }
}

impl Histogram {
    /// Adds `n` to `key`'s count.
    pub fn add_n(&mut self, key: u32, n: u64) {
        let tag = u64::from(key) + 1;
        let mut index = (key.wrapping_mul(0x9E37_79B1) >> 24) as usize % SLOTS;
        for _ in 0..SLOTS {
            let slot = &mut self.slots[index];
            if slot.0 == tag {
                slot.1 += n;
                return;
            }
            if slot.0 == 0 {
                *slot = (tag, n);
                self.used += 1;
                return;
            }
            index = (index + 1) % SLOTS;
        }
        self.overflow += n;
    }

    pub fn add(&mut self, key: u32) {
        self.add_n(key, 1);
    }

    /// The count of one key.
    pub fn get(&self, key: u32) -> u64 {
        let tag = u64::from(key) + 1;
        self.slots
            .iter()
            .find(|(t, _)| *t == tag)
            .map_or(0, |(_, n)| *n)
    }

    pub fn is_empty(&self) -> bool {
        self.used == 0 && self.overflow == 0
    }

    /// (key, count) pairs in key order.
    pub fn entries(&self) -> Vec<(u32, u64)> {
        let mut entries: Vec<(u32, u64)> = self
            .slots
            .iter()
            .filter(|(t, _)| *t != 0)
            .map(|(t, n)| ((t - 1) as u32, *n))
            .collect();
        entries.sort_unstable();
        entries
    }

    /// Adds another histogram's counts (merging workers).
    pub fn merge(&mut self, other: &Histogram) {
        for (key, n) in other.entries() {
            self.add_n(key, n);
        }
        self.overflow += other.overflow;
    }

    /// The histogram as a map from formatted key to count (summaries, JSON).
    pub fn to_map(&self, format: impl Fn(u32) -> String) -> BTreeMap<String, u64> {
        self.entries()
            .into_iter()
            .map(|(key, n)| (format(key), n))
            .collect()
    }

    /// Keys as decimal numbers, the way tshark-derived summaries write them.
    pub fn to_decimal_map(&self) -> BTreeMap<String, u64> {
        self.to_map(|key| key.to_string())
    }
}

/// Packs two values into one key, formatted as `a/b` by [`pair`].
pub fn pair_key(a: u16, b: u16) -> u32 {
    (u32::from(a) << 16) | u32::from(b)
}

/// Formats a [`pair_key`] as `a/b`.
pub fn pair(key: u32) -> String {
    format!("{}/{}", key >> 16, key & 0xFFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_merges() {
        let mut a = Histogram::default();
        a.add(3);
        a.add(3);
        a.add(0);
        let mut b = Histogram::default();
        b.add(3);
        b.add(u32::MAX);
        a.merge(&b);
        assert_eq!(a.entries(), vec![(0, 1), (3, 3), (u32::MAX, 1)]);
        assert_eq!(a.get(3), 3);
        assert_eq!(a.to_map(pair).get("0/3"), Some(&3));
    }

    #[test]
    fn overflow_is_counted_not_lost() {
        let mut h = Histogram::default();
        for key in 0..300 {
            h.add(key);
        }
        let counted: u64 = h.entries().iter().map(|(_, n)| n).sum();
        assert_eq!(counted + h.overflow, 300);
        assert_eq!(h.overflow, 300 - SLOTS as u64);
    }
}
