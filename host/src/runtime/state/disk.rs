//! The disk backend's database file: one per worker, holding its value
//! states, map states and timers in separate tables.

use anyhow::{Context, Result};
use redb::{ReadableDatabase, TableDefinition};
use std::path::PathBuf;
use std::sync::Arc;

/// Value states: key → state.
pub(super) const VALUES: TableDefinition<&str, &[u8]> = TableDefinition::new("values");
/// Map states: (key, map name, entry) encoded by [`map_entry_key`] → value.
pub(super) const MAPS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("maps");
/// Timers of each time domain: (time, key), in firing order.
pub(super) const EVENT_TIMERS: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("event_timers");
pub(super) const PROCESSING_TIMERS: TableDefinition<(i64, &str), ()> =
    TableDefinition::new("processing_timers");

/// A worker's state database, deleted when the worker is done with it.
///
/// It is only a working store: written without syncing and created empty
/// at every start, because the checkpoint, not this file, is what survives
/// a crash.
pub struct DiskFile {
    pub(super) db: redb::Database,
    path: PathBuf,
}

impl DiskFile {
    /// Creates an empty database at `path` (replacing a leftover one).
    pub(super) fn create(path: PathBuf) -> Result<Arc<Self>> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create `{}`", parent.display()))?;
        }
        let _ = std::fs::remove_file(&path);
        // redb's default page cache (1 GiB at most per worker): 64 MiB cut a
        // run's peak memory with 10 M keys from 1,351 to 195 MiB when few
        // keys were hot, but a third of the throughput when 1 M were
        // (`host/benches/recovery/`).
        let db = redb::Database::create(&path)
            .with_context(|| format!("cannot create the state store `{}`", path.display()))?;
        let file = Arc::new(Self { db, path });
        let txn = file.write()?;
        txn.open_table(VALUES).map_err(disk_error)?;
        txn.open_table(MAPS).map_err(disk_error)?;
        txn.open_table(EVENT_TIMERS).map_err(disk_error)?;
        txn.open_table(PROCESSING_TIMERS).map_err(disk_error)?;
        txn.commit().map_err(disk_error)?;
        Ok(file)
    }

    /// A write transaction that does not sync: the checkpoint is what
    /// survives a crash, not this file.
    pub(super) fn write(&self) -> Result<redb::WriteTransaction> {
        let mut txn = self.db.begin_write().map_err(disk_error)?;
        txn.set_durability(redb::Durability::None)
            .map_err(disk_error)?;
        Ok(txn)
    }

    /// A read transaction.
    pub(super) fn read(&self) -> Result<redb::ReadTransaction> {
        self.db.begin_read().map_err(disk_error)
    }
}

impl Drop for DiskFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The error of a failed store operation, saying which store failed.
pub(super) fn disk_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow::anyhow!("the disk state store failed: {e}")
}

/// The table key of map entry `entry` of map `name` of `key`: the key and
/// the name, each after its length, then the entry. All entries of one map
/// are thus adjacent and ordered by entry, as a `BTreeMap` orders them.
pub(super) fn map_entry_key(key: &str, name: &str, entry: &[u8]) -> Vec<u8> {
    let mut out = map_prefix(key, name);
    out.extend_from_slice(entry);
    out
}

/// The start of the table keys of map `name` of `key`.
pub(super) fn map_prefix(key: &str, name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + key.len() + name.len());
    for part in [key, name] {
        out.extend_from_slice(&(part.len() as u32).to_be_bytes());
        out.extend_from_slice(part.as_bytes());
    }
    out
}

/// Splits a table key of [`MAPS`] into key, map name and entry.
pub(super) fn split_map_entry_key(bytes: &[u8]) -> Option<(&str, &str, &[u8])> {
    let (key, rest) = length_prefixed(bytes)?;
    let (name, entry) = length_prefixed(rest)?;
    Some((key, name, entry))
}

fn length_prefixed(bytes: &[u8]) -> Option<(&str, &[u8])> {
    let (len, rest) = bytes.split_first_chunk::<4>()?;
    let len = u32::from_be_bytes(*len) as usize;
    if rest.len() < len {
        return None;
    }
    let (text, rest) = rest.split_at(len);
    Some((std::str::from_utf8(text).ok()?, rest))
}
