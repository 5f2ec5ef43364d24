//! Value states: one byte string per key, the state a keyed operator's
//! `process` gets and returns.

use anyhow::Result;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use std::collections::HashMap;
use std::sync::Arc;

use super::disk::{DiskFile, VALUES, disk_error};

/// Value states by key, in memory.
pub type KeyedValues = HashMap<String, Vec<u8>, foldhash::fast::RandomState>;

/// A worker's value states.
pub enum ValueStates {
    /// All in a hash map.
    Memory(KeyedValues),
    /// In the worker's database file, with the states of the current batch
    /// cached.
    Disk(DiskStates),
}

/// Value states on disk.
pub struct DiskStates {
    file: Arc<DiskFile>,
    /// States read for the current batch (`None`: the key has none).
    cache: HashMap<String, Option<Vec<u8>>, foldhash::fast::RandomState>,
    /// Keys whose state the current batch changed.
    dirty: Vec<String>,
    len: usize,
}

impl Default for ValueStates {
    fn default() -> Self {
        Self::Memory(KeyedValues::default())
    }
}

impl ValueStates {
    /// Empty states kept in `file`.
    pub(super) fn on_disk(file: Arc<DiskFile>) -> Self {
        Self::Disk(DiskStates {
            file,
            cache: HashMap::default(),
            dirty: Vec::new(),
            len: 0,
        })
    }

    /// Reads the states of `keys` ahead of a call (disk only).
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn load<'k>(&mut self, keys: impl IntoIterator<Item = &'k str>) -> Result<()> {
        let Self::Disk(disk) = self else {
            return Ok(());
        };
        let txn = disk.file.read()?;
        let table = txn.open_table(VALUES).map_err(disk_error)?;
        for key in keys {
            if disk.cache.contains_key(key) {
                continue;
            }
            let value = table
                .get(key)
                .map_err(disk_error)?
                .map(|v| v.value().to_vec());
            disk.cache.insert(key.to_owned(), value);
        }
        Ok(())
    }

    /// The state of `key` (on disk: loaded by [`Self::load`]).
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        match self {
            Self::Memory(values) => values.get(key).map(Vec::as_slice),
            Self::Disk(disk) => disk.cache.get(key).and_then(|v| v.as_deref()),
        }
    }

    /// Sets (`Some`) or deletes (`None`) the state of `key`; returns the
    /// change in the number of keys with a state.
    pub fn set(&mut self, key: &str, value: Option<Vec<u8>>) -> i64 {
        match self {
            Self::Memory(values) => match (value, values.get_mut(key)) {
                (Some(bytes), Some(old)) => {
                    *old = bytes;
                    0
                }
                (Some(bytes), None) => {
                    values.insert(key.to_owned(), bytes);
                    1
                }
                (None, Some(_)) => {
                    values.remove(key);
                    -1
                }
                (None, None) => 0,
            },
            Self::Disk(disk) => {
                let had = disk.cache.get(key).is_some_and(Option::is_some);
                let has = value.is_some();
                disk.cache.insert(key.to_owned(), value);
                disk.dirty.push(key.to_owned());
                let delta = i64::from(has) - i64::from(had);
                disk.len = disk.len.saturating_add_signed(delta as isize);
                delta
            }
        }
    }

    /// Writes the batch's changes (disk only) and forgets the cache.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn commit(&mut self) -> Result<()> {
        let Self::Disk(disk) = self else {
            return Ok(());
        };
        if !disk.dirty.is_empty() {
            let txn = disk.file.write()?;
            {
                let mut table = txn.open_table(VALUES).map_err(disk_error)?;
                for key in disk.dirty.drain(..) {
                    match disk.cache.get(&key) {
                        Some(Some(value)) => {
                            table
                                .insert(key.as_str(), value.as_slice())
                                .map_err(disk_error)?;
                        }
                        _ => {
                            table.remove(key.as_str()).map_err(disk_error)?;
                        }
                    }
                }
            }
            txn.commit().map_err(disk_error)?;
        }
        disk.cache.clear();
        Ok(())
    }

    /// The number of keys with a state.
    pub fn len(&self) -> usize {
        match self {
            Self::Memory(values) => values.len(),
            Self::Disk(disk) => disk.len,
        }
    }

    /// Whether no key has a state.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every state, `chunk` at a time, in an order that stays
    /// the same while nothing is set (see [`Self::replace_in_order`]).
    ///
    /// # Errors
    /// What `f` returns, or when the store cannot be read.
    pub fn for_each_chunk(
        &self,
        chunk: usize,
        mut f: impl FnMut(&[(&str, &[u8])]) -> Result<(), String>,
    ) -> Result<(), String> {
        match self {
            Self::Memory(values) => {
                let entries: Vec<(&str, &[u8])> = values
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect();
                entries.chunks(chunk.max(1)).try_for_each(f)
            }
            Self::Disk(disk) => {
                let read = || -> Result<_, redb::Error> {
                    let txn = disk.file.db.begin_read()?;
                    Ok(txn.open_table(VALUES)?)
                };
                let table = read().map_err(|e| disk_error(e).to_string())?;
                let mut owned: Vec<(String, Vec<u8>)> = Vec::with_capacity(chunk);
                let mut flush = |owned: &mut Vec<(String, Vec<u8>)>| {
                    let entries: Vec<(&str, &[u8])> = owned
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_slice()))
                        .collect();
                    let result = f(&entries);
                    owned.clear();
                    result
                };
                for entry in table.iter().map_err(|e| disk_error(e).to_string())? {
                    let (k, v) = entry.map_err(|e| disk_error(e).to_string())?;
                    owned.push((k.value().to_owned(), v.value().to_vec()));
                    if owned.len() == chunk.max(1) {
                        flush(&mut owned)?;
                    }
                }
                if owned.is_empty() {
                    Ok(())
                } else {
                    flush(&mut owned)
                }
            }
        }
    }

    /// Replaces every state with `new`, given in [`Self::for_each_chunk`]'s
    /// order (a migration).
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn replace_in_order(&mut self, new: Vec<Vec<u8>>) -> Result<()> {
        match self {
            Self::Memory(values) => {
                for (state, new) in values.values_mut().zip(new) {
                    *state = new;
                }
                Ok(())
            }
            Self::Disk(disk) => {
                let keys: Vec<String> = {
                    let txn = disk.file.read()?;
                    let table = txn.open_table(VALUES).map_err(disk_error)?;
                    let mut keys = Vec::with_capacity(disk.len);
                    for entry in table.iter().map_err(disk_error)? {
                        keys.push(entry.map_err(disk_error)?.0.value().to_owned());
                    }
                    keys
                };
                let txn = disk.file.write()?;
                {
                    let mut table = txn.open_table(VALUES).map_err(disk_error)?;
                    for (key, value) in keys.iter().zip(new) {
                        table
                            .insert(key.as_str(), value.as_slice())
                            .map_err(disk_error)?;
                    }
                }
                txn.commit().map_err(disk_error)
            }
        }
    }

    /// Adds restored states, in one transaction on disk; returns how many.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn insert_all<'a>(
        &mut self,
        entries: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<usize> {
        match self {
            Self::Memory(values) => {
                let before = values.len();
                values.extend(entries.into_iter().map(|(k, v)| (k.to_owned(), v.to_vec())));
                Ok(values.len() - before)
            }
            Self::Disk(disk) => {
                let txn = disk.file.write()?;
                let mut added = 0;
                {
                    let mut table = txn.open_table(VALUES).map_err(disk_error)?;
                    for (key, value) in entries {
                        let old = table.insert(key, value).map_err(disk_error)?;
                        added += usize::from(old.is_none());
                    }
                }
                txn.commit().map_err(disk_error)?;
                disk.len += added;
                Ok(added)
            }
        }
    }

    /// Adds restored states.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn extend(&mut self, restored: KeyedValues) -> Result<()> {
        match self {
            Self::Memory(values) if values.is_empty() => {
                *values = restored;
                Ok(())
            }
            Self::Memory(values) => {
                values.extend(restored);
                Ok(())
            }
            Self::Disk(disk) => {
                let txn = disk.file.write()?;
                {
                    let mut table = txn.open_table(VALUES).map_err(disk_error)?;
                    for (key, value) in &restored {
                        table
                            .insert(key.as_str(), value.as_slice())
                            .map_err(disk_error)?;
                    }
                    disk.len = table.len().map_err(disk_error)? as usize;
                }
                txn.commit().map_err(disk_error)
            }
        }
    }

    /// Writes every state as a map of byte strings (a checkpoint's state
    /// file), in the layout [`crate::checkpoint::WorkerState`] reads.
    pub(crate) fn serialize_map<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::Error;
        match self {
            Self::Memory(values) => {
                s.collect_map(values.iter().map(|(k, v)| (k, serde_bytes::Bytes::new(v))))
            }
            Self::Disk(disk) => {
                let read = || -> Result<_, redb::Error> {
                    Ok(disk.file.db.begin_read()?.open_table(VALUES)?)
                };
                serialize_table(&read().map_err(S::Error::custom)?, s)
            }
        }
    }
}

/// Writes the value states of `table` as [`ValueStates::serialize_map`] does.
pub(super) fn serialize_table<S: serde::Serializer>(
    table: &redb::ReadOnlyTable<&'static str, &'static [u8]>,
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error, SerializeMap};
    let len = table.len().map_err(S::Error::custom)?;
    let mut map = s.serialize_map(Some(len as usize))?;
    for entry in table.iter().map_err(S::Error::custom)? {
        let (k, v) = entry.map_err(S::Error::custom)?;
        map.serialize_entry(k.value(), serde_bytes::Bytes::new(v.value()))?;
    }
    map.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both() -> (tempfile::TempDir, [ValueStates; 2]) {
        let dir = tempfile::tempdir().unwrap();
        let disk = ValueStates::on_disk(DiskFile::create(dir.path().join("w.redb")).unwrap());
        (dir, [ValueStates::Memory(KeyedValues::default()), disk])
    }

    #[test]
    fn memory_and_disk_states_read_write_count_and_migrate_alike() {
        let (_dir, stores) = both();
        for mut states in stores {
            states.load(["a", "b"]).unwrap();
            assert_eq!(states.set("a", Some(b"1".to_vec())), 1);
            assert_eq!(states.set("b", Some(b"2".to_vec())), 1);
            assert_eq!(states.set("b", None), -1);
            states.commit().unwrap();
            states.load(["a", "b", "c"]).unwrap();
            assert_eq!(states.get("a"), Some(&b"1"[..]));
            assert_eq!(states.get("b"), None);
            assert_eq!(states.set("a", Some(b"10".to_vec())), 0);
            assert_eq!(states.set("c", Some(b"3".to_vec())), 1);
            states.commit().unwrap();
            assert_eq!(states.len(), 2);

            let mut seen = Vec::new();
            states
                .for_each_chunk(1, |chunk| {
                    seen.extend(chunk.iter().map(|(k, v)| (k.to_string(), v.to_vec())));
                    Ok(())
                })
                .unwrap();
            seen.sort();
            assert_eq!(
                seen,
                [("a".into(), b"10".to_vec()), ("c".into(), b"3".to_vec())]
            );

            // A migration: every state doubled, in the order they were read.
            let mut order = Vec::new();
            states
                .for_each_chunk(8, |chunk| {
                    order.extend(chunk.iter().map(|(_, v)| [*v, *v].concat()));
                    Ok(())
                })
                .unwrap();
            states.replace_in_order(order).unwrap();
            states.load(["a", "c"]).unwrap();
            assert_eq!(states.get("a"), Some(&b"1010"[..]));
            assert_eq!(states.get("c"), Some(&b"33"[..]));
        }
    }
}
