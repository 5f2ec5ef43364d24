//! A worker's timers of one time domain.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};

type Keys = HashSet<String, foldhash::fast::RandomState>;

/// Timers by time, at most one per time and key, as Flink keeps them.
///
/// Keys are grouped under their time rather than ordered as `(time, key)`
/// pairs: a window operator registers one timer per key at the same window
/// end, and ordering those by key on every insert compared key strings
/// over and over. They are put in key order only when they fire.
#[derive(Default, Serialize, Deserialize)]
pub struct TimerQueue {
    by_time: BTreeMap<i64, Keys>,
}

impl TimerQueue {
    /// Registers a timer (again: no effect).
    pub fn insert(&mut self, time: i64, key: &str) {
        let keys = self.by_time.entry(time).or_default();
        if !keys.contains(key) {
            keys.insert(key.to_owned());
        }
    }

    /// Deletes a timer, if it is registered.
    pub fn remove(&mut self, time: i64, key: &str) {
        if let Some(keys) = self.by_time.get_mut(&time) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_time.remove(&time);
            }
        }
    }

    /// Every timer, for a checkpoint being restored.
    pub fn into_entries(self) -> impl Iterator<Item = (i64, String)> {
        self.by_time
            .into_iter()
            .flat_map(|(time, keys)| keys.into_iter().map(move |key| (time, key)))
    }

    /// Takes up to `max` timers at or before `now`: in time order, and in
    /// key order within a time.
    pub fn pop_due(&mut self, now: i64, max: usize) -> Vec<(i64, String)> {
        let mut due = Vec::new();
        while due.len() < max {
            let Some(mut entry) = self.by_time.first_entry() else {
                break;
            };
            let time = *entry.key();
            if time > now {
                break;
            }
            let mut keys: Vec<String> = entry.get_mut().drain().collect();
            keys.sort_unstable();
            let rest = keys.split_off(keys.len().min(max - due.len()));
            if rest.is_empty() {
                entry.remove();
            } else {
                entry.get_mut().extend(rest);
            }
            due.extend(keys.into_iter().map(|key| (time, key)));
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::TimerQueue;

    #[test]
    fn timers_fire_once_in_time_then_key_order_in_chunks() {
        let mut timers = TimerQueue::default();
        for (time, key) in [
            (20, "b"),
            (10, "c"),
            (20, "a"),
            (10, "a"),
            (30, "z"),
            (20, "b"),
        ] {
            timers.insert(time, key);
        }
        timers.remove(10, "c");
        timers.remove(99, "nope");
        let owned = |v: &[(i64, &str)]| -> Vec<(i64, String)> {
            v.iter().map(|(t, k)| (*t, (*k).to_owned())).collect()
        };
        assert_eq!(timers.pop_due(20, 2), owned(&[(10, "a"), (20, "a")]));
        timers.insert(15, "q");
        assert_eq!(timers.pop_due(20, 10), owned(&[(15, "q"), (20, "b")]));
        assert_eq!(timers.pop_due(20, 10), owned(&[]));
        assert_eq!(timers.pop_due(i64::MAX, 10), owned(&[(30, "z")]));
    }
}
