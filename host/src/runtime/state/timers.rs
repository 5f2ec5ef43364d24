//! A worker's timers of one time domain.

use anyhow::Result;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata, TableDefinition};
use serde::de::{SeqAccess, Visitor};
use serde::ser::{Error as _, SerializeSeq};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::disk::{DiskFile, disk_error};

type Keys = HashSet<String, foldhash::fast::RandomState>;

/// Timers by time, at most one per time and key, as Flink keeps them.
///
/// Keys are grouped under their time rather than ordered as `(time, key)`
/// pairs: a window operator registers one timer per key at the same window
/// end, and ordering those by key on every insert compared key strings
/// over and over. They are put in key order only when they fire.
#[derive(Default)]
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

impl TimerQueue {
    fn len(&self) -> usize {
        self.by_time.values().map(HashSet::len).sum()
    }
}

/// Timers as one flat sequence of (time, key), in time order.
impl serde::Serialize for TimerQueue {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(self.len()))?;
        for (time, keys) in &self.by_time {
            for key in keys {
                seq.serialize_element(&(time, key))?;
            }
        }
        seq.end()
    }
}

impl<'de> serde::Deserialize<'de> for TimerQueue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = TimerQueue;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of timers")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<TimerQueue, A::Error> {
                let mut timers = TimerQueue::default();
                while let Some((time, key)) = seq.next_element::<(i64, String)>()? {
                    timers.by_time.entry(time).or_default().insert(key);
                }
                Ok(timers)
            }
        }
        d.deserialize_seq(Entries)
    }
}

/// A worker's timers of one time domain, in memory or on disk.
pub enum Timers {
    /// In a [`TimerQueue`].
    Memory(TimerQueue),
    /// In a table of the worker's database file, keyed by (time, key).
    Disk(DiskTimers),
}

impl Default for Timers {
    fn default() -> Self {
        Self::Memory(TimerQueue::default())
    }
}

/// Timers on disk.
pub struct DiskTimers {
    file: Arc<DiskFile>,
    table: TableDefinition<'static, (i64, &'static str), ()>,
    /// Registrations (`true`) and deletions of the current batch, in order.
    pending: Vec<(i64, String, bool)>,
}

impl Timers {
    /// Empty timers kept in `table` of `file`.
    pub(super) fn on_disk(
        file: Arc<DiskFile>,
        table: TableDefinition<'static, (i64, &'static str), ()>,
    ) -> Self {
        Self::Disk(DiskTimers {
            file,
            table,
            pending: Vec::new(),
        })
    }

    /// Registers a timer (again: no effect).
    pub fn insert(&mut self, time: i64, key: &str) {
        match self {
            Self::Memory(queue) => queue.insert(time, key),
            Self::Disk(disk) => disk.pending.push((time, key.to_owned(), true)),
        }
    }

    /// Deletes a timer, if it is registered.
    pub fn remove(&mut self, time: i64, key: &str) {
        match self {
            Self::Memory(queue) => queue.remove(time, key),
            Self::Disk(disk) => disk.pending.push((time, key.to_owned(), false)),
        }
    }

    /// Writes the registrations and deletions of the batch (disk only).
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn commit(&mut self) -> Result<()> {
        let Self::Disk(disk) = self else {
            return Ok(());
        };
        if disk.pending.is_empty() {
            return Ok(());
        }
        let txn = disk.file.write()?;
        {
            let mut table = txn.open_table(disk.table).map_err(disk_error)?;
            for (time, key, register) in disk.pending.drain(..) {
                if register {
                    table.insert((time, key.as_str()), ()).map_err(disk_error)?;
                } else {
                    table.remove((time, key.as_str())).map_err(disk_error)?;
                }
            }
        }
        txn.commit().map_err(disk_error)
    }

    /// Takes up to `max` timers at or before `now`: in time order, and in
    /// key order within a time.
    ///
    /// # Errors
    /// When the store cannot be read or written.
    pub fn pop_due(&mut self, now: i64, max: usize) -> Result<Vec<(i64, String)>> {
        self.commit()?;
        match self {
            Self::Memory(queue) => Ok(queue.pop_due(now, max)),
            Self::Disk(disk) => disk.pop_due(now, max),
        }
    }

    /// Adds restored timers.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn extend(&mut self, restored: TimerQueue) -> Result<()> {
        for (time, key) in restored.into_entries() {
            self.insert(time, &key);
        }
        self.commit()
    }
}

impl DiskTimers {
    fn pop_due(&mut self, now: i64, max: usize) -> Result<Vec<(i64, String)>> {
        // Read first: most calls (one per watermark) find nothing due.
        let mut due = Vec::new();
        {
            let txn = self.file.read()?;
            let table = txn.open_table(self.table).map_err(disk_error)?;
            for item in table.iter().map_err(disk_error)? {
                let (entry, _) = item.map_err(disk_error)?;
                let (time, key) = entry.value();
                if time > now || due.len() == max {
                    break;
                }
                due.push((time, key.to_owned()));
            }
        }
        if due.is_empty() {
            return Ok(due);
        }
        let txn = self.file.write()?;
        {
            let mut table = txn.open_table(self.table).map_err(disk_error)?;
            for (time, key) in &due {
                table.remove((*time, key.as_str())).map_err(disk_error)?;
            }
        }
        txn.commit().map_err(disk_error)?;
        Ok(due)
    }
}

/// The same flat sequence as [`TimerQueue`]'s.
impl serde::Serialize for Timers {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Memory(queue) => queue.serialize(s),
            Self::Disk(disk) => {
                let read = || -> Result<_, redb::Error> {
                    Ok(disk.file.db.begin_read()?.open_table(disk.table)?)
                };
                serialize_table(&read().map_err(S::Error::custom)?, s)
            }
        }
    }
}

/// Writes the timers of `table` as [`TimerQueue`] does.
pub(super) fn serialize_table<S: serde::Serializer>(
    table: &redb::ReadOnlyTable<(i64, &'static str), ()>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let len = table.len().map_err(S::Error::custom)?;
    let mut seq = s.serialize_seq(Some(len as usize))?;
    for item in table.iter().map_err(S::Error::custom)? {
        let (entry, _) = item.map_err(S::Error::custom)?;
        seq.serialize_element(&entry.value())?;
    }
    seq.end()
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
