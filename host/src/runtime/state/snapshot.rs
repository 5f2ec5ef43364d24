//! A consistent view of a worker's state on disk, to write a checkpoint from
//! while the worker goes on.
//!
//! The memory backend's state is encoded by the worker itself, since it must
//! not change meanwhile. The disk backend's is a read transaction of the
//! database: the checkpoint thread streams it to the state file, in the same
//! layout, while the worker writes new states beside it. So a checkpoint of
//! state larger than memory needs no copy of it in memory, and the worker
//! does not wait for it.

use anyhow::Result;
use redb::ReadOnlyTable;
use serde::ser::SerializeStruct;

use super::disk::{DiskFile, EVENT_TIMERS, MAPS, PROCESSING_TIMERS, VALUES, disk_error};
use super::{maps, timers, values};

type TimerTable = ReadOnlyTable<(i64, &'static str), ()>;

/// A worker's state on disk as it was when the snapshot was taken.
pub struct DiskSnapshot {
    watermark: i64,
    values: ReadOnlyTable<&'static str, &'static [u8]>,
    maps: ReadOnlyTable<&'static [u8], &'static [u8]>,
    event_timers: TimerTable,
    processing_timers: TimerTable,
}

impl DiskSnapshot {
    /// Takes a snapshot of `file`, with the worker's `watermark`.
    pub(super) fn take(file: &DiskFile, watermark: i64) -> Result<Self> {
        let txn = file.read()?;
        Ok(Self {
            watermark,
            values: txn.open_table(VALUES).map_err(disk_error)?,
            maps: txn.open_table(MAPS).map_err(disk_error)?,
            event_timers: txn.open_table(EVENT_TIMERS).map_err(disk_error)?,
            processing_timers: txn.open_table(PROCESSING_TIMERS).map_err(disk_error)?,
        })
    }
}

/// The layout of [`crate::checkpoint::WorkerState`].
impl serde::Serialize for DiskSnapshot {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut state = s.serialize_struct("WorkerState", 5)?;
        state.serialize_field("watermark", &self.watermark)?;
        state.serialize_field("values", &Values(&self.values))?;
        state.serialize_field("maps", &Maps(&self.maps))?;
        state.serialize_field("event_timers", &Timers(&self.event_timers))?;
        state.serialize_field("processing_timers", &Timers(&self.processing_timers))?;
        state.end()
    }
}

struct Values<'a>(&'a ReadOnlyTable<&'static str, &'static [u8]>);
struct Maps<'a>(&'a ReadOnlyTable<&'static [u8], &'static [u8]>);
struct Timers<'a>(&'a TimerTable);

impl serde::Serialize for Values<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        values::serialize_table(self.0, s)
    }
}

impl serde::Serialize for Maps<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        maps::serialize_table(self.0, s)
    }
}

impl serde::Serialize for Timers<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        timers::serialize_table(self.0, s)
    }
}
