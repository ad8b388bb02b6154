//! A map with a hard cap and O(1) eviction, for the analyzer's state keyed by what the
//! wire says (sources, targets, (client, server) pairs): an attacker who forges keys
//! must not grow it past its cap, nor make a new key cost a pass over the whole map.
//!
//! Entries are evicted first in, first out, with a second chance for those that still
//! matter (an active scanner among a million one-shot spoofed sources): at most
//! [`SECOND_CHANCES`] entries are looked at per insertion, so the cost is bounded.

use std::collections::VecDeque;
use std::hash::Hash;

use foldhash::HashMap;

/// Entries that still matter are moved to the back at most this many times per
/// insertion; after that the oldest goes whatever its state.
const SECOND_CHANCES: usize = 8;

pub(in crate::analyze) struct BoundedMap<K, V> {
    map: HashMap<K, V>,
    /// Every key of `map` exactly once, oldest (or longest without a second chance)
    /// first.
    order: VecDeque<K>,
}

impl<K, V> Default for BoundedMap<K, V> {
    fn default() -> Self {
        BoundedMap {
            map: HashMap::default(),
            order: VecDeque::new(),
        }
    }
}

/// How [`BoundedMap::entry`] made room.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(in crate::analyze) enum Admitted {
    /// The key was there, or there was room.
    Fits,
    /// An entry was evicted to make room.
    Evicted,
}

impl<K: Copy + Eq + Hash, V: Default> BoundedMap<K, V> {
    #[cfg(test)]
    fn len(&self) -> usize {
        self.map.len()
    }

    #[cfg(test)]
    fn contains_key(&self, key: &K) -> bool {
        self.map.contains_key(key)
    }

    pub(in crate::analyze) fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        self.map.get_mut(key)
    }

    /// The entry for `key`, created when absent. At `cap` entries one is evicted first:
    /// the oldest for which `matters` is false among the next [`SECOND_CHANCES`] + 1,
    /// else the oldest (entries that matter are moved to the back).
    pub(in crate::analyze) fn entry(
        &mut self,
        key: K,
        cap: usize,
        matters: impl Fn(&V) -> bool,
    ) -> (&mut V, Admitted) {
        let mut admitted = Admitted::Fits;
        if !self.map.contains_key(&key) {
            if self.map.len() >= cap.max(1) {
                self.evict_one(&matters);
                admitted = Admitted::Evicted;
            }
            self.order.push_back(key);
        }
        (self.map.entry(key).or_default(), admitted)
    }

    fn evict_one(&mut self, matters: &impl Fn(&V) -> bool) {
        for chance in 0..=SECOND_CHANCES {
            let Some(oldest) = self.order.pop_front() else {
                return;
            };
            let keep = chance < SECOND_CHANCES && self.map.get(&oldest).is_some_and(matters);
            if keep {
                self.order.push_back(oldest);
            } else {
                self.map.remove(&oldest);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_at_its_cap_and_keeps_entries_that_matter() {
        let mut map: BoundedMap<u32, u32> = BoundedMap::default();
        // Key 0 matters (value 2), the others are one-shot.
        *map.entry(0, 100, |v| *v >= 2).0 = 2;
        let mut evicted = 0;
        for key in 1..100_000u32 {
            let (value, admitted) = map.entry(key, 100, |v| *v >= 2);
            *value = 1;
            evicted += u32::from(admitted == Admitted::Evicted);
            assert!(map.len() <= 100);
            assert_eq!(map.order.len(), map.len());
        }
        assert_eq!(evicted, 100_000 - 100);
        assert!(map.contains_key(&0), "the entry that matters was evicted");
        assert!(map.contains_key(&99_999));
        assert!(!map.contains_key(&1));
    }
}
