//! A worker's keyed state: value states, map states and timers, in memory
//! (the default) or on disk (`state_backend = "disk"`, for state that
//! outgrows memory).
//!
//! The disk backend keeps all three in one embedded redb database per
//! worker ([`disk`]), which is only a working store: written without
//! syncing, created empty at the start of a run and filled from the
//! checkpoint restored, because the checkpoint, not the database, is what
//! survives a crash. A batch's value states are read into a small cache
//! before the guest call and written back in one transaction after it; map
//! writes are applied in one transaction per successful call; timers are
//! registered in one transaction per batch. Both backends write the same
//! checkpoint state file.

mod disk;
mod maps;
mod restore;
mod snapshot;
mod timers;
mod values;

pub use maps::{MapStates, MapStore, MapWrite, flat as flat_maps};
pub use restore::{Loaded, Owner};
pub use snapshot::DiskSnapshot;
pub use timers::{TimerQueue, Timers};
pub use values::{KeyedValues, ValueStates};

use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;

use disk::DiskFile;

use crate::wasm::TimeDomain;

/// The keyed state of the keys one worker owns.
#[derive(Default)]
pub struct KeyedState {
    /// Value states (window contents included).
    pub values: ValueStates,
    /// Map states.
    pub maps: MapStates,
    /// Event-time timers.
    pub event_timers: Timers,
    /// Processing-time timers.
    pub processing_timers: Timers,
    /// The database file of the disk backend.
    file: Option<Arc<DiskFile>>,
}

impl KeyedState {
    /// Empty state kept on disk, in a new database file at `path`.
    ///
    /// # Errors
    /// When the file cannot be created.
    pub fn on_disk(path: PathBuf) -> Result<Self> {
        let file = DiskFile::create(path)?;
        Ok(Self {
            values: ValueStates::on_disk(Arc::clone(&file)),
            maps: MapStates::on_disk(Arc::clone(&file)),
            event_timers: Timers::on_disk(Arc::clone(&file), disk::EVENT_TIMERS),
            processing_timers: Timers::on_disk(Arc::clone(&file), disk::PROCESSING_TIMERS),
            file: Some(file),
        })
    }

    /// On disk, a snapshot of the state for a checkpoint to stream out
    /// while the worker goes on (see [`DiskSnapshot`]); in memory, `None`:
    /// the worker encodes its state itself.
    ///
    /// # Errors
    /// When the store cannot be written or read.
    pub fn disk_snapshot(&mut self, watermark: i64) -> Result<Option<DiskSnapshot>> {
        self.commit()?;
        self.file
            .as_deref()
            .map(|file| DiskSnapshot::take(file, watermark))
            .transpose()
    }

    /// The timers of `domain`.
    pub fn timers(&mut self, domain: TimeDomain) -> &mut Timers {
        match domain {
            TimeDomain::EventTime => &mut self.event_timers,
            TimeDomain::ProcessingTime => &mut self.processing_timers,
        }
    }

    /// Writes what the last batch changed in value states and timers (disk
    /// only; map writes are applied after each call).
    ///
    /// # Errors
    /// When the store cannot be written.
    pub fn commit(&mut self) -> Result<()> {
        self.values.commit()?;
        self.event_timers.commit()?;
        self.processing_timers.commit()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same state in both backends.
    fn both() -> (tempfile::TempDir, [KeyedState; 2]) {
        let dir = tempfile::tempdir().unwrap();
        let disk = KeyedState::on_disk(dir.path().join("w.redb")).unwrap();
        (dir, [KeyedState::default(), disk])
    }

    #[test]
    fn memory_and_disk_map_states_read_write_and_checkpoint_alike() {
        let (_dir, stores) = both();
        let mut encoded = Vec::new();
        for mut state in stores {
            let maps = &mut state.maps;
            maps.apply([
                ("u1", "seen", &b"b"[..], Some(&b"2"[..])),
                ("u1", "seen", b"a", Some(b"1")),
                ("u1", "other", b"a", Some(b"9")),
                ("u10", "seen", b"a", Some(b"5")),
                ("u1", "seen", b"c", Some(b"3")),
            ])
            .unwrap();
            maps.apply([("u1", "seen", &b"c"[..], None), ("u2", "seen", b"x", None)])
                .unwrap();
            assert_eq!(maps.get("u1", "seen", b"b").unwrap(), Some(b"2".to_vec()));
            assert_eq!(maps.get("u1", "seen", b"c").unwrap(), None);
            assert_eq!(maps.get("u2", "seen", b"b").unwrap(), None);
            let entries: Vec<_> = maps.entries("u1", "seen").unwrap().into_iter().collect();
            assert_eq!(
                entries,
                [
                    (b"a".to_vec(), b"1".to_vec()),
                    (b"b".to_vec(), b"2".to_vec())
                ]
            );
            assert!(maps.entries("u", "seen").unwrap().is_empty());
            // A checkpoint of either reads back as the same maps.
            let bytes = postcard::to_stdvec(&*maps).unwrap();
            let mut de = postcard::Deserializer::from_bytes(&bytes);
            let restored: MapStore = flat_maps::deserialize(&mut de).unwrap();
            encoded.push(restored);
        }
        assert_eq!(encoded[0], encoded[1]);
        assert_eq!(encoded[0]["u1"]["seen"].len(), 2);
        assert_eq!(encoded[0]["u10"]["seen"][&b"a".to_vec()], b"5");

        // Restored into a new store of either kind, they read the same.
        let (_dir, stores) = both();
        for mut state in stores {
            state.maps.extend(encoded[0].clone()).unwrap();
            assert_eq!(
                state.maps.get("u1", "other", b"a").unwrap(),
                Some(b"9".to_vec())
            );
        }
    }

    #[test]
    fn memory_and_disk_timers_fire_alike_and_checkpoint_alike() {
        let (_dir, stores) = both();
        let mut fired = Vec::new();
        let mut saved = Vec::new();
        for mut state in stores {
            let timers = state.timers(TimeDomain::EventTime);
            for (time, key) in [(20, "b"), (10, "c"), (20, "a"), (10, "a"), (-5, "z")] {
                timers.insert(time, key);
            }
            timers.remove(10, "c");
            timers.insert(10, "c");
            timers.remove(10, "c");
            state.commit().unwrap();
            let timers = state.timers(TimeDomain::EventTime);
            let mut popped = timers.pop_due(10, 2).unwrap();
            timers.insert(30, "q");
            state.commit().unwrap();
            saved.push(postcard::to_stdvec(&state.event_timers).unwrap());
            popped.extend(state.event_timers.pop_due(i64::MAX, 10).unwrap());
            assert!(state.event_timers.pop_due(i64::MAX, 10).unwrap().is_empty());
            assert!(
                state
                    .processing_timers
                    .pop_due(i64::MAX, 10)
                    .unwrap()
                    .is_empty()
            );
            fired.push(popped);
        }
        let owned = |v: &[(i64, &str)]| -> Vec<(i64, String)> {
            v.iter().map(|(t, k)| (*t, (*k).to_owned())).collect()
        };
        assert_eq!(
            fired[0],
            owned(&[(-5, "z"), (10, "a"), (20, "a"), (20, "b"), (30, "q")])
        );
        assert_eq!(fired[0], fired[1]);
        // Both wrote the timers left after the first pop: 20 a, 20 b, 30 q.
        let read = |bytes: &[u8]| {
            let queue: TimerQueue = postcard::from_bytes(bytes).unwrap();
            let mut entries: Vec<_> = queue.into_entries().collect();
            entries.sort();
            entries
        };
        assert_eq!(read(&saved[0]), owned(&[(20, "a"), (20, "b"), (30, "q")]));
        assert_eq!(read(&saved[1]), read(&saved[0]));
    }

    #[test]
    fn a_disk_snapshot_writes_the_state_as_it_was_while_the_state_changes() {
        let dir = tempfile::tempdir().unwrap();
        let mut state = KeyedState::on_disk(dir.path().join("w.redb")).unwrap();
        state.values.load(["k"]).unwrap();
        state.values.set("k", Some(b"old".to_vec()));
        state
            .maps
            .apply([("k", "m", &b"e"[..], Some(&b"1"[..]))])
            .unwrap();
        state.event_timers.insert(7, "k");
        let snapshot = state.disk_snapshot(42).unwrap().expect("on disk");
        assert!(KeyedState::default().disk_snapshot(0).unwrap().is_none());

        // The worker goes on.
        state.values.load(["k", "k2"]).unwrap();
        state.values.set("k", Some(b"new".to_vec()));
        state.values.set("k2", Some(b"2".to_vec()));
        state.maps.apply([("k", "m", &b"e"[..], None)]).unwrap();
        state.event_timers.remove(7, "k");
        state.processing_timers.insert(8, "k2");
        state.commit().unwrap();

        let bytes = postcard::to_stdvec(&snapshot).unwrap();
        let saved: crate::checkpoint::WorkerState = postcard::from_bytes(&bytes).unwrap();
        assert_eq!(saved.watermark, 42);
        assert_eq!(saved.values.len(), 1);
        assert_eq!(saved.values["k"], b"old");
        assert_eq!(saved.maps["k"]["m"][&b"e".to_vec()], b"1");
        let timers = |queue: TimerQueue| queue.into_entries().collect::<Vec<_>>();
        assert_eq!(timers(saved.event_timers), [(7, "k".to_owned())]);
        assert!(timers(saved.processing_timers).is_empty());
    }

    #[test]
    fn a_state_file_loads_into_a_disk_store_whole_or_split_by_owner() {
        let mut memory = KeyedState::default();
        let keys: Vec<String> = (0..100).map(|i| format!("key-{i}")).collect();
        memory.values.load(keys.iter().map(String::as_str)).unwrap();
        for (i, key) in keys.iter().enumerate() {
            memory.values.set(key, Some(i.to_string().into_bytes()));
            memory
                .maps
                .apply([(key.as_str(), "m", &b"e"[..], Some(key.as_bytes()))])
                .unwrap();
            memory.event_timers.insert(i as i64, key);
        }
        let bytes = postcard::to_stdvec(&crate::checkpoint::WorkerStateRef {
            watermark: 5,
            values: &memory.values,
            maps: &memory.maps,
            event_timers: &memory.event_timers,
            processing_timers: &memory.processing_timers,
        })
        .unwrap();

        let dir = tempfile::tempdir().unwrap();
        let mut whole = KeyedState::on_disk(dir.path().join("whole.redb")).unwrap();
        let loaded = whole.load_state_file(&bytes, Owner::ALL).unwrap();
        assert_eq!(
            loaded,
            Loaded {
                watermark: 5,
                values: 100
            }
        );
        assert_eq!(whole.values.len(), 100);
        whole.values.load(["key-7"]).unwrap();
        assert_eq!(whole.values.get("key-7"), Some(&b"7"[..]));
        assert_eq!(
            whole.maps.get("key-7", "m", b"e").unwrap(),
            Some(b"key-7".to_vec())
        );
        let due = whole.event_timers.pop_due(1000, 1000).unwrap();
        assert_eq!(due.len(), 100);

        // Split over two workers: each key exactly once, with its owner.
        let mut seen = Vec::new();
        for index in 0..2 {
            let owner = Owner { index, workers: 2 };
            let path = dir.path().join(format!("{index}.redb"));
            let mut part = KeyedState::on_disk(path).unwrap();
            let loaded = part.load_state_file(&bytes, owner).unwrap();
            assert_eq!(loaded.values, part.values.len());
            for (_, key) in part.event_timers.pop_due(1000, 1000).unwrap() {
                assert_eq!(crate::runtime::partition_of(&key, 2), index);
                part.values.load([key.as_str()]).unwrap();
                assert!(part.values.get(&key).is_some());
                assert!(part.maps.get(&key, "m", b"e").unwrap().is_some());
                seen.push(key);
            }
        }
        seen.sort();
        let mut want = keys.clone();
        want.sort();
        assert_eq!(seen, want);

        // A damaged file is an error, not a panic.
        let mut damaged = KeyedState::on_disk(dir.path().join("d.redb")).unwrap();
        assert!(
            damaged
                .load_state_file(&bytes[..bytes.len() / 2], Owner::ALL)
                .is_err()
        );
    }
}
