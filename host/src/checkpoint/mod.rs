//! Checkpoints: consistent snapshots of a running pipeline, so a crash loses
//! nothing and duplicates nothing.
//!
//! Every `checkpoint_interval` the [`Coordinator`] asks the sources for
//! checkpoint N. Each source sends barrier N after its last record before
//! that moment and reports its position. A stage with several inputs holds
//! back an input past its barrier until every input's barrier has arrived
//! (aligned, see [`crate::runtime`]'s barrier module); then a worker writes
//! its keyed state, values, maps and timers and forwards the barrier, and a
//! file sink closes its output part for the epoch. When every source, worker
//! and sink has reported, the checkpoint's manifest is written and its folder
//! renamed into place: only then do sinks commit the parts it covers (two
//! phases). A restart resumes from the newest whole checkpoint: states,
//! timers, source positions and the exact operator versions, whose
//! components are kept with it.

mod coordinator;
pub mod store;

pub use coordinator::{CheckpointStats, Coordinator, Expected};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::runtime::{KeyedValues, MapStates, MapStore, TimerQueue, Timers, ValueStates};

/// The default time between checkpoints.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// Where a source is, so a restart reads on from there.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Position {
    /// A file: bytes and lines read, and a CSV file's header.
    File {
        /// Bytes read.
        offset: u64,
        /// Lines read.
        line: u64,
        /// The header of a CSV file, once read.
        header: Option<Vec<String>>,
    },
    /// A generator: the number of events generated.
    Generator {
        /// Events generated.
        events: u64,
    },
    /// A NATS JetStream stream: the sequence of the last message read.
    Nats {
        /// The stream's name.
        stream: String,
        /// The stream sequence of the last message sent on (0: none yet).
        sequence: u64,
    },
    /// Kafka: the next offset of every partition read.
    Kafka {
        /// Per partition.
        partitions: Vec<crate::sources::kafka::PartitionOffset>,
    },
}

/// A source's part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceState {
    /// The source's name.
    pub name: String,
    /// Where it is.
    pub position: Position,
    /// Its event-time clock: the largest event time seen, the last
    /// watermark sent.
    pub clock: Option<(i64, i64)>,
}

/// A file in a checkpoint, with its size and checksum.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FileEntry {
    /// Its name in the checkpoint folder.
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// Its CRC-32.
    pub crc32: u32,
}

/// One worker's part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkerEntry {
    /// The operator version it ran.
    pub version: u32,
    /// SHA-256 of that version's component (`<hash>.wasm` in the folder).
    pub content_hash: String,
    /// The state layout version of its states.
    pub state_version: u32,
    /// Its state file.
    pub state: FileEntry,
}

/// One operator's part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorEntry {
    /// The operator id.
    pub id: String,
    /// Per worker.
    pub workers: Vec<WorkerEntry>,
}

/// One sink's part of a checkpoint.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SinkEntry {
    /// Its output file (empty for stdout and blackhole).
    pub path: String,
    /// Bytes of output up to the checkpoint.
    pub bytes: u64,
}

/// The layout of state files this weir writes and reads. 2: map states and
/// timers as flat sequences of entries, so a disk store writes them as it
/// scans.
pub const FORMAT: u32 = 2;

fn first_format() -> u32 {
    1
}

/// What a checkpoint holds (its `manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// The layout of its state files ([`FORMAT`]); 1 when missing, the
    /// layout before it was recorded.
    #[serde(default = "first_format")]
    pub format: u32,
    /// Its number.
    pub id: u64,
    /// When it completed (RFC 3339).
    pub completed_at: String,
    /// Per source, in pipeline order.
    pub sources: Vec<SourceState>,
    /// Per operator, in pipeline order.
    pub operators: Vec<OperatorEntry>,
    /// Per sink, in pipeline order.
    pub sinks: Vec<SinkEntry>,
}

impl Manifest {
    /// Every file it names, components included.
    pub fn files(&self) -> Vec<&FileEntry> {
        self.operators
            .iter()
            .flat_map(|o| &o.workers)
            .map(|w| &w.state)
            .collect()
    }

    /// The component files it names, with their hash.
    pub fn components(&self) -> Vec<&str> {
        let mut hashes: Vec<&str> = self
            .operators
            .iter()
            .flat_map(|o| &o.workers)
            .map(|w| w.content_hash.as_str())
            .collect();
        hashes.sort_unstable();
        hashes.dedup();
        hashes
    }
}

/// A worker's keyed state, as its state file holds it.
#[derive(Default, Serialize, Deserialize)]
pub struct WorkerState {
    /// The worker's watermark.
    pub watermark: i64,
    /// Value states by key.
    #[serde(with = "bytes_map")]
    pub values: KeyedValues,
    /// Map states by key.
    #[serde(with = "crate::runtime::flat_maps")]
    pub maps: MapStore,
    /// Event-time timers.
    pub event_timers: TimerQueue,
    /// Processing-time timers.
    pub processing_timers: TimerQueue,
}

/// Value states as a map of byte strings: written as blocks, not byte by
/// byte (a state file of a million keys wrote several times faster).
mod bytes_map {
    use super::KeyedValues;
    use serde::de::{MapAccess, Visitor};
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(values: &KeyedValues, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(values.iter().map(|(k, v)| (k, serde_bytes::Bytes::new(v))))
    }

    pub fn serialize_states<S: Serializer>(
        values: &&crate::runtime::ValueStates,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        values.serialize_map(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<KeyedValues, D::Error> {
        struct Values;
        impl<'de> Visitor<'de> for Values {
            type Value = KeyedValues;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of value states")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<KeyedValues, A::Error> {
                // A damaged length must not reserve memory it does not have.
                let mut values = KeyedValues::with_capacity_and_hasher(
                    map.size_hint().unwrap_or(0).min(1 << 16),
                    Default::default(),
                );
                while let Some((key, value)) = map.next_entry::<String, serde_bytes::ByteBuf>()? {
                    values.insert(key, value.into_vec());
                }
                Ok(values)
            }
        }
        d.deserialize_map(Values)
    }
}

/// A worker's keyed state borrowed for writing (the same layout as
/// [`WorkerState`]).
#[derive(Serialize)]
pub struct WorkerStateRef<'a> {
    /// The worker's watermark.
    pub watermark: i64,
    /// Value states by key.
    #[serde(serialize_with = "bytes_map::serialize_states")]
    pub values: &'a ValueStates,
    /// Map states by key.
    pub maps: &'a MapStates,
    /// Event-time timers.
    pub event_timers: &'a Timers,
    /// Processing-time timers.
    pub processing_timers: &'a Timers,
}

/// The state a run starts from: a checkpoint or savepoint, read and checked.
pub struct Restore {
    /// Its folder.
    pub dir: PathBuf,
    /// What it holds.
    pub manifest: Manifest,
    /// Restored from a savepoint: the pipeline file may have changed, so
    /// operators run the pipeline's own module with the saved state.
    pub savepoint: bool,
    /// The output parts it covers are in this run's checkpoint folder (a
    /// checkpoint, or one of its own checkpoints started from as a savepoint):
    /// they are committed, not dropped.
    pub parts_here: bool,
}

impl Restore {
    /// Reads the worker states of operator `id`, merged: the key's worker
    /// may differ when the parallelism changed. Also returns the state
    /// layout version of each key's state.
    ///
    /// # Errors
    /// When a state file cannot be read or decoded.
    pub fn operator_states(&self, id: &str) -> Result<Option<Vec<(WorkerState, u32)>>> {
        let Some(entry) = self.manifest.operators.iter().find(|o| o.id == id) else {
            return Ok(None);
        };
        let mut states = Vec::new();
        for worker in &entry.workers {
            let bytes = store::read_file(&self.dir, &worker.state)?;
            let state: WorkerState = postcard::from_bytes(&bytes).with_context(|| {
                format!(
                    "checkpoint `{}`: the state file `{}` cannot be decoded",
                    self.dir.display(),
                    worker.state.file
                )
            })?;
            states.push((state, worker.state_version));
        }
        Ok(Some(states))
    }

    /// The state files of operator `id`'s workers, each with the state
    /// layout version it is in, for a disk store to load them itself.
    pub fn state_files(&self, id: &str) -> Option<Vec<(FileEntry, u32)>> {
        let entry = self.manifest.operators.iter().find(|o| o.id == id)?;
        Some(
            entry
                .workers
                .iter()
                .map(|w| (w.state.clone(), w.state_version))
                .collect(),
        )
    }

    /// What the worker on the newest version of operator `id` saved: a
    /// swap that was under way completes on restore.
    pub fn operator_version(&self, id: &str) -> Option<&WorkerEntry> {
        let entry = self.manifest.operators.iter().find(|o| o.id == id)?;
        entry.workers.iter().max_by_key(|w| w.version)
    }

    /// The component with SHA-256 `hash` kept with the checkpoint.
    ///
    /// # Errors
    /// When it cannot be read.
    pub fn component(&self, hash: &str) -> Result<Vec<u8>> {
        let path = self.dir.join(format!("{hash}.wasm"));
        std::fs::read(&path).with_context(|| format!("cannot read `{}`", path.display()))
    }

    /// The saved state of source `name`.
    pub fn source(&self, name: &str) -> Option<&SourceState> {
        self.manifest.sources.iter().find(|s| s.name == name)
    }
}

/// Reads checkpoint or savepoint folder `dir`, checking every checksum.
///
/// # Errors
/// When it is missing, incomplete or damaged.
pub fn open(dir: &Path, savepoint: bool) -> Result<Restore> {
    let manifest = store::load(dir)
        .with_context(|| format!("`{}` is not a whole checkpoint", dir.display()))?;
    for hash in manifest.components() {
        let path = dir.join(format!("{hash}.wasm"));
        if !path.is_file() {
            return Err(anyhow!("`{}` is missing", path.display()));
        }
    }
    Ok(Restore {
        dir: dir.to_owned(),
        manifest,
        savepoint,
        parts_here: !savepoint,
    })
}

/// The newest whole checkpoint in `dir`; damaged newer ones are skipped with
/// a warning.
pub fn newest(dir: &Path) -> Option<Restore> {
    for (_, path) in store::list(dir) {
        match open(&path, false) {
            Ok(restore) => return Some(restore),
            Err(e) => eprintln!(
                "weir: warning: checkpoint `{}` is damaged or incomplete and is skipped: {e:#}",
                path.display()
            ),
        }
    }
    None
}

/// Splits restored keyed states by the worker that owns each key now (the
/// parallelism may have changed): per worker, one part per saved worker,
/// each with the state layout version it was saved in.
pub fn partition(states: Vec<(WorkerState, u32)>, workers: usize) -> Vec<Vec<(WorkerState, u32)>> {
    use crate::runtime::partition_of;
    let workers = workers.max(1);
    let watermark = states
        .iter()
        .map(|(s, _)| s.watermark)
        .min()
        .unwrap_or(i64::MIN);
    if workers == 1 {
        // One owner for every key: no need to split (nor to hash them again).
        let mut states = states;
        for (state, _) in &mut states {
            state.watermark = watermark;
        }
        return vec![states];
    }
    let mut out: Vec<Vec<(WorkerState, u32)>> = (0..workers).map(|_| Vec::new()).collect();
    for (state, state_version) in states {
        let mut parts: Vec<WorkerState> = (0..workers)
            .map(|_| WorkerState {
                watermark,
                ..WorkerState::default()
            })
            .collect();
        let owner = |key: &str| partition_of(key, workers);
        for (key, value) in state.values {
            parts[owner(&key)].values.insert(key, value);
        }
        for (key, maps) in state.maps {
            parts[owner(&key)].maps.insert(key, maps);
        }
        for (time, key) in state.event_timers.into_entries() {
            parts[owner(&key)].event_timers.insert(time, &key);
        }
        for (time, key) in state.processing_timers.into_entries() {
            parts[owner(&key)].processing_timers.insert(time, &key);
        }
        for (target, part) in out.iter_mut().zip(parts) {
            target.push((part, state_version));
        }
    }
    out
}

/// A checkpoint folder, locked for one run: two runs writing the same
/// checkpoints would resume from each other's.
pub struct Folder {
    /// The folder.
    pub path: PathBuf,
    /// Held while the run lasts.
    _lock: std::fs::File,
}

impl Folder {
    /// Creates and locks checkpoint folder `path`.
    ///
    /// # Errors
    /// When it cannot be created, or another run holds it.
    pub fn lock(path: &Path) -> Result<Self> {
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create checkpoint folder `{}`", path.display()))?;
        let file = std::fs::File::create(path.join("lock"))
            .with_context(|| format!("cannot create `{}`", path.join("lock").display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                path: path.to_owned(),
                _lock: file,
            }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another weir run is using checkpoint folder `{}`; give this one its own \
                 (`--checkpoint-dir`)",
                path.display()
            ),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(e).with_context(|| format!("cannot lock `{}`", path.display()))
            }
        }
    }
}

/// How a run takes checkpoints, and what it resumes from.
pub struct Checkpointing {
    /// The checkpoint folder, locked.
    pub folder: Folder,
    /// Time between checkpoints.
    pub interval: Duration,
    /// The checkpoint or savepoint to resume from, if any.
    pub restore: Option<Restore>,
}

/// How `weir run` was asked to start, as to checkpoints.
#[derive(Debug, Default, Clone)]
pub struct StartOptions {
    /// `--checkpoint-dir`.
    pub dir: Option<PathBuf>,
    /// `--checkpoint-interval`.
    pub interval: Option<Duration>,
    /// `--fresh`: ignore (and delete) the checkpoints of earlier runs.
    pub fresh: bool,
    /// `--from-savepoint`.
    pub savepoint: Option<PathBuf>,
    /// `--allow-non-restored-state`.
    pub allow_non_restored_state: bool,
}

/// Decides how a run checkpoints and what it resumes from, and swaps in
/// the operator versions a checkpoint ran (`prepared` is in pipeline order).
/// Prints what it resumes from.
///
/// # Errors
/// When the savepoint cannot be read, holds state of operators the pipeline
/// no longer has (without `--allow-non-restored-state`), or a checkpointed
/// version cannot be prepared.
pub fn plan(
    pipeline: &crate::config::Pipeline,
    options: &StartOptions,
    engine: &crate::WasmEngine,
    prepared: &mut [crate::PreparedOperator],
) -> Result<Option<Checkpointing>> {
    if !pipeline.sources_replayable() {
        if options.savepoint.is_some() {
            bail!("a pipeline that reads standard input cannot start from a savepoint");
        }
        tracing::info!(
            "the pipeline reads standard input, which cannot be read again: no checkpoints"
        );
        return Ok(None);
    }
    let dir = match &options.dir {
        Some(dir) => std::env::current_dir()
            .context("cannot read the current directory")?
            .join(dir),
        None => pipeline.checkpoint_dir_path(),
    };
    let folder = Folder::lock(&dir)?;
    let interval = options
        .interval
        .or(pipeline.config.checkpoint_interval)
        .unwrap_or(DEFAULT_INTERVAL);
    if interval.is_zero() {
        bail!("the checkpoint interval must be more than 0");
    }
    let restore = if let Some(savepoint) = &options.savepoint {
        let mut restore = open(savepoint, true)?;
        restore.parts_here = match (savepoint.canonicalize(), dir.canonicalize()) {
            (Ok(savepoint), Ok(dir)) => savepoint.starts_with(dir),
            _ => false,
        };
        Some(restore)
    } else if options.fresh {
        discard_checkpoints(&dir, None);
        None
    } else {
        let restore = newest(&dir);
        if let Some(r) = &restore {
            eprintln!(
                "weir: resuming from checkpoint {} (`{}`, taken {}); `--fresh` starts over",
                r.manifest.id,
                r.dir.display(),
                r.manifest.completed_at
            );
        }
        restore
    };
    if let Some(restore) = &restore {
        // Refuse before anything is deleted.
        check_operators(pipeline, restore, options.allow_non_restored_state)?;
        if restore.savepoint {
            eprintln!(
                "weir: starting from savepoint `{}` (checkpoint {})",
                restore.dir.display(),
                restore.manifest.id
            );
            // A checkpoint of this folder can be started from as a savepoint
            // (to run the pipeline's own modules on its state): keep that one.
            discard_checkpoints(&dir, Some(&restore.dir));
        } else {
            for operator in prepared.iter_mut() {
                let Some(saved) = restore.operator_version(&operator.id) else {
                    continue;
                };
                if (saved.version, saved.content_hash.as_str())
                    == (operator.version, operator.content_hash.as_str())
                {
                    continue;
                }
                let bytes = restore.component(&saved.content_hash)?;
                let version = saved.version;
                let resumed = engine.prepare(&operator.id, version, &bytes)?;
                if resumed.content_hash != saved.content_hash {
                    bail!(
                        "`{}` is damaged: its hash is {}",
                        restore
                            .dir
                            .join(format!("{}.wasm", saved.content_hash))
                            .display(),
                        resumed.content_hash
                    );
                }
                *operator = resumed;
                eprintln!(
                    "weir: operator `{}` resumes at version {version}, as checkpointed",
                    operator.id
                );
            }
        }
    }
    Ok(Some(Checkpointing {
        folder,
        interval,
        restore,
    }))
}

/// Refuses state the pipeline would drop: operators it no longer has.
fn check_operators(
    pipeline: &crate::config::Pipeline,
    restore: &Restore,
    allow_non_restored_state: bool,
) -> Result<()> {
    let dropped: Vec<&str> = restore
        .manifest
        .operators
        .iter()
        .filter(|o| !pipeline.config.operators.iter().any(|p| p.id == o.id))
        .map(|o| o.id.as_str())
        .collect();
    if dropped.is_empty() {
        return Ok(());
    }
    if allow_non_restored_state {
        eprintln!(
            "weir: warning: the state of operator(s) {} is dropped: the pipeline no longer has them",
            dropped.join(", ")
        );
        return Ok(());
    }
    bail!(
        "`{}` holds state of operator(s) {} that the pipeline no longer has; \
         `--allow-non-restored-state` drops it",
        restore.dir.display(),
        dropped
            .iter()
            .map(|id| format!("`{id}`"))
            .collect::<Vec<_>>()
            .join(", ")
    )
}

/// Deletes the checkpoints of earlier runs (not savepoints).
fn discard_checkpoints(dir: &Path, keep: Option<&Path>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let keep = keep.and_then(|k| k.canonicalize().ok());
    for entry in entries.flatten() {
        let kept = keep.is_some() && entry.path().canonicalize().ok() == keep;
        if entry.file_name().to_string_lossy().starts_with("chk-") && !kept {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}
