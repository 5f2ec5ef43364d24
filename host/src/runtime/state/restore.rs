//! Loading a checkpoint's state file straight into a disk store, entry by
//! entry and a chunk per transaction, so restoring state larger than memory
//! needs no decoded copy of it in memory (the file itself is mapped, not
//! read).

use anyhow::Result;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use std::fmt;

use super::KeyedState;
use super::maps::flat::Entry;
use super::timers::Timers;

/// Entries written per transaction.
const CHUNK: usize = 4096;

/// The keys of a state file a worker takes: those it owns among `workers`
/// (all of them when `workers` is 1).
#[derive(Clone, Copy, Debug)]
pub struct Owner {
    /// The worker's index.
    pub index: usize,
    /// How many workers share the keys.
    pub workers: usize,
}

impl Owner {
    /// Every key.
    pub const ALL: Self = Self {
        index: 0,
        workers: 1,
    };

    fn owns(self, key: &str) -> bool {
        self.workers <= 1 || crate::runtime::partition_of(key, self.workers) == self.index
    }
}

/// What [`KeyedState::load_state_file`] loaded.
#[derive(Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The saved worker's watermark.
    pub watermark: i64,
    /// Value states loaded.
    pub values: usize,
}

impl KeyedState {
    /// Loads the keys `owner` owns from a checkpoint's state file `bytes`
    /// (in the layout of [`crate::checkpoint::WorkerState`]).
    ///
    /// # Errors
    /// When the file cannot be decoded or the store cannot be written.
    pub fn load_state_file(&mut self, bytes: &[u8], owner: Owner) -> Result<Loaded> {
        let mut de = postcard::Deserializer::from_bytes(bytes);
        Ok(FileLoader { state: self, owner }.deserialize(&mut de)?)
    }
}

struct FileLoader<'s> {
    state: &'s mut KeyedState,
    owner: Owner,
}

const FIELDS: [&str; 5] = [
    "watermark",
    "values",
    "maps",
    "event_timers",
    "processing_timers",
];

impl<'de> DeserializeSeed<'de> for FileLoader<'_> {
    type Value = Loaded;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Loaded, D::Error> {
        d.deserialize_struct("WorkerState", &FIELDS, self)
    }
}

impl<'de> Visitor<'de> for FileLoader<'_> {
    type Value = Loaded;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a worker's state file")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Loaded, A::Error> {
        let missing = |i| A::Error::invalid_length(i, &"a worker's state file");
        let Self { state, owner } = self;
        let watermark: i64 = seq.next_element()?.ok_or_else(|| missing(0))?;
        let values = seq
            .next_element_seed(ValuesLoader { state, owner })?
            .ok_or_else(|| missing(1))?;
        seq.next_element_seed(MapsLoader { state, owner })?
            .ok_or_else(|| missing(2))?;
        for (i, timers) in [&mut state.event_timers, &mut state.processing_timers]
            .into_iter()
            .enumerate()
        {
            seq.next_element_seed(TimersLoader { timers, owner })?
                .ok_or_else(|| missing(3 + i))?;
        }
        Ok(Loaded { watermark, values })
    }
}

struct ValuesLoader<'s> {
    state: &'s mut KeyedState,
    owner: Owner,
}

impl<'de> DeserializeSeed<'de> for ValuesLoader<'_> {
    type Value = usize;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<usize, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ValuesLoader<'_> {
    type Value = usize;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a map of value states")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<usize, A::Error> {
        let mut chunk: Vec<(&'de str, &'de [u8])> = Vec::with_capacity(CHUNK);
        let mut loaded = 0;
        let values = &mut self.state.values;
        loop {
            let entry = map.next_entry::<&'de str, &'de [u8]>()?;
            if let Some((key, value)) = entry
                && self.owner.owns(key)
            {
                chunk.push((key, value));
            }
            if chunk.len() == CHUNK || (entry.is_none() && !chunk.is_empty()) {
                loaded += chunk.len();
                values
                    .insert_all(chunk.drain(..))
                    .map_err(A::Error::custom)?;
            }
            if entry.is_none() {
                return Ok(loaded);
            }
        }
    }
}

struct MapsLoader<'s> {
    state: &'s mut KeyedState,
    owner: Owner,
}

impl<'de> DeserializeSeed<'de> for MapsLoader<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for MapsLoader<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of map entries")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut chunk: Vec<Entry<&'de str, &'de [u8]>> = Vec::with_capacity(CHUNK);
        let maps = &mut self.state.maps;
        loop {
            let entry = seq.next_element::<Entry<&'de str, &'de [u8]>>()?;
            let done = entry.is_none();
            if let Some(entry) = entry
                && self.owner.owns(entry.key)
            {
                chunk.push(entry);
            }
            if chunk.len() == CHUNK || (done && !chunk.is_empty()) {
                maps.apply(
                    chunk
                        .drain(..)
                        .map(|e| (e.key, e.name, e.entry, Some(e.value))),
                )
                .map_err(A::Error::custom)?;
            }
            if done {
                return Ok(());
            }
        }
    }
}

struct TimersLoader<'s> {
    timers: &'s mut Timers,
    owner: Owner,
}

impl<'de> DeserializeSeed<'de> for TimersLoader<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for TimersLoader<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence of timers")
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut pending = 0;
        while let Some((time, key)) = seq.next_element::<(i64, &'de str)>()? {
            if self.owner.owns(key) {
                self.timers.insert(time, key);
                pending += 1;
                if pending == CHUNK {
                    self.timers.commit().map_err(A::Error::custom)?;
                    pending = 0;
                }
            }
        }
        self.timers.commit().map_err(A::Error::custom)
    }
}
