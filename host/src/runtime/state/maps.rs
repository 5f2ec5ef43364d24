//! Map states: named maps of entries per key, read and written by the guest
//! during a call through the host functions `map-get`, `map-set` and
//! `map-entries`.

use anyhow::Result;
use redb::{ReadableDatabase, ReadableTable, ReadableTableMetadata};
use serde::ser::{Error as _, SerializeSeq};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::disk::{DiskFile, MAPS, disk_error, map_entry_key, map_prefix, split_map_entry_key};

/// Map states of the keys of one worker in memory: key → map name → entry →
/// value.
pub type MapStore = HashMap<String, HashMap<String, BTreeMap<Vec<u8>, Vec<u8>>>>;

/// A worker's map states.
pub enum MapStates {
    /// All in nested maps.
    Memory(MapStore),
    /// In the worker's database file.
    Disk(DiskMaps),
}

impl Default for MapStates {
    fn default() -> Self {
        Self::Memory(MapStore::new())
    }
}

/// Map states on disk.
pub struct DiskMaps {
    file: Arc<DiskFile>,
    /// A snapshot read by the calls since the last write: one read
    /// transaction for all the `map-get`s of a call, not one each.
    reader: Option<redb::ReadOnlyTable<&'static [u8], &'static [u8]>>,
}

impl DiskMaps {
    fn reader(&mut self) -> Result<&redb::ReadOnlyTable<&'static [u8], &'static [u8]>> {
        if self.reader.is_none() {
            let txn = self.file.read()?;
            self.reader = Some(txn.open_table(MAPS).map_err(disk_error)?);
        }
        self.reader
            .as_ref()
            .ok_or_else(|| disk_error("the reader was not opened"))
    }
}

/// A change to one map entry: key, map name, entry, new value (`None`
/// deletes it).
pub type MapWrite<'a> = (&'a str, &'a str, &'a [u8], Option<&'a [u8]>);

impl MapStates {
    /// Empty map states kept in `file`.
    pub(super) fn on_disk(file: Arc<DiskFile>) -> Self {
        Self::Disk(DiskMaps { file, reader: None })
    }

    /// Entry `entry` of map `name` of `key`.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn get(&mut self, key: &str, name: &str, entry: &[u8]) -> Result<Option<Vec<u8>>> {
        match self {
            Self::Memory(maps) => Ok(maps
                .get(key)
                .and_then(|m| m.get(name))
                .and_then(|m| m.get(entry))
                .cloned()),
            Self::Disk(disk) => {
                let table = disk.reader()?;
                let value = table
                    .get(map_entry_key(key, name, entry).as_slice())
                    .map_err(disk_error)?;
                Ok(value.map(|v| v.value().to_vec()))
            }
        }
    }

    /// Every entry of map `name` of `key`, ordered by entry.
    ///
    /// # Errors
    /// When the store cannot be read.
    pub fn entries(&mut self, key: &str, name: &str) -> Result<BTreeMap<Vec<u8>, Vec<u8>>> {
        match self {
            Self::Memory(maps) => Ok(maps
                .get(key)
                .and_then(|m| m.get(name))
                .cloned()
                .unwrap_or_default()),
            Self::Disk(disk) => {
                let prefix = map_prefix(key, name);
                let table = disk.reader()?;
                let mut entries = BTreeMap::new();
                for item in table.range(prefix.as_slice()..).map_err(disk_error)? {
                    let (k, v) = item.map_err(disk_error)?;
                    let Some(entry) = k.value().strip_prefix(prefix.as_slice()) else {
                        break;
                    };
                    entries.insert(entry.to_vec(), v.value().to_vec());
                }
                Ok(entries)
            }
        }
    }

    /// Applies the writes of a successful call, in one transaction on disk.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn apply<'a>(&mut self, writes: impl IntoIterator<Item = MapWrite<'a>>) -> Result<()> {
        match self {
            Self::Memory(maps) => {
                for (key, name, entry, value) in writes {
                    match value {
                        Some(value) => {
                            let map = maps
                                .entry(key.to_owned())
                                .or_default()
                                .entry(name.to_owned())
                                .or_default();
                            map.insert(entry.to_vec(), value.to_vec());
                        }
                        None => {
                            let Some(names) = maps.get_mut(key) else {
                                continue;
                            };
                            if let Some(map) = names.get_mut(name) {
                                map.remove(entry);
                                if map.is_empty() {
                                    names.remove(name);
                                }
                            }
                            if names.is_empty() {
                                maps.remove(key);
                            }
                        }
                    }
                }
                Ok(())
            }
            Self::Disk(disk) => {
                let mut writes = writes.into_iter().peekable();
                if writes.peek().is_none() {
                    return Ok(());
                }
                disk.reader = None;
                let txn = disk.file.write()?;
                {
                    let mut table = txn.open_table(MAPS).map_err(disk_error)?;
                    for (key, name, entry, value) in writes {
                        let table_key = map_entry_key(key, name, entry);
                        match value {
                            Some(value) => table.insert(table_key.as_slice(), value),
                            None => table.remove(table_key.as_slice()),
                        }
                        .map_err(disk_error)?;
                    }
                }
                txn.commit().map_err(disk_error)
            }
        }
    }

    /// Adds restored map states.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn extend(&mut self, restored: MapStore) -> Result<()> {
        if let Self::Memory(maps) = self {
            maps.extend(restored);
            return Ok(());
        }
        let writes = restored.iter().flat_map(|(key, names)| {
            names.iter().flat_map(move |(name, map)| {
                map.iter().map(move |(entry, value)| {
                    (key.as_str(), name.as_str(), &entry[..], Some(&value[..]))
                })
            })
        });
        self.apply(writes)
    }
}

/// Map entries as one flat sequence of (key, map name, entry, value): a
/// disk store writes it as it scans, without counting maps first.
impl serde::Serialize for MapStates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Memory(maps) => flat::serialize(maps, s),
            Self::Disk(disk) => {
                let read = || -> Result<_, redb::Error> {
                    Ok(disk.file.db.begin_read()?.open_table(MAPS)?)
                };
                serialize_table(&read().map_err(S::Error::custom)?, s)
            }
        }
    }
}

/// Writes the map entries of `table` as [`MapStates`] does.
pub(super) fn serialize_table<S: serde::Serializer>(
    table: &redb::ReadOnlyTable<&'static [u8], &'static [u8]>,
    s: S,
) -> Result<S::Ok, S::Error> {
    let len = table.len().map_err(S::Error::custom)?;
    let mut seq = s.serialize_seq(Some(len as usize))?;
    for item in table.iter().map_err(S::Error::custom)? {
        let (k, v) = item.map_err(S::Error::custom)?;
        let (key, name, entry) = split_map_entry_key(k.value())
            .ok_or_else(|| S::Error::custom("a map entry's table key is damaged"))?;
        seq.serialize_element(&flat::Entry {
            key,
            name,
            entry: serde_bytes::Bytes::new(entry),
            value: serde_bytes::Bytes::new(v.value()),
        })?;
    }
    seq.end()
}

/// [`MapStore`] in a checkpoint's state file: the flat sequence
/// [`MapStates`] writes.
pub mod flat {
    use super::MapStore;
    use serde::de::{SeqAccess, Visitor};
    use serde::{Deserializer, Serializer};

    /// One map entry.
    #[derive(serde::Serialize, serde::Deserialize)]
    pub(in crate::runtime::state) struct Entry<K, B> {
        pub(in crate::runtime::state) key: K,
        pub(in crate::runtime::state) name: K,
        pub(in crate::runtime::state) entry: B,
        pub(in crate::runtime::state) value: B,
    }

    /// Writes `maps` as a flat sequence of entries.
    ///
    /// # Errors
    /// The serializer's.
    pub fn serialize<S: Serializer>(maps: &MapStore, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let len = maps
            .values()
            .flat_map(|names| names.values())
            .map(|map| map.len())
            .sum();
        let mut seq = s.serialize_seq(Some(len))?;
        for (key, names) in maps {
            for (name, map) in names {
                for (entry, value) in map {
                    seq.serialize_element(&Entry {
                        key: key.as_str(),
                        name: name.as_str(),
                        entry: serde_bytes::Bytes::new(entry),
                        value: serde_bytes::Bytes::new(value),
                    })?;
                }
            }
        }
        seq.end()
    }

    /// Reads a flat sequence of entries.
    ///
    /// # Errors
    /// When the input is not one.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<MapStore, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = MapStore;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a sequence of map entries")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MapStore, A::Error> {
                let mut maps = MapStore::new();
                while let Some(e) = seq.next_element::<Entry<String, serde_bytes::ByteBuf>>()? {
                    maps.entry(e.key)
                        .or_default()
                        .entry(e.name)
                        .or_default()
                        .insert(e.entry.into_vec(), e.value.into_vec());
                }
                Ok(maps)
            }
        }
        d.deserialize_seq(Entries)
    }
}
