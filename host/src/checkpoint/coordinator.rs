//! Triggers checkpoints, collects what every participant reports, and
//! completes a checkpoint once all have.

use anyhow::{Result, anyhow};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::mpsc::WeakSender;

use super::{Manifest, OperatorEntry, SinkEntry, SourceState, WorkerEntry, store};
use crate::runtime::Envelope;

/// Who takes part in every checkpoint.
#[derive(Debug, Clone)]
pub struct Expected {
    /// Source names, in pipeline order.
    pub sources: Vec<String>,
    /// Per operator, in pipeline order: its id and parallelism.
    pub operators: Vec<(String, usize)>,
    /// Per sink: its output file (empty for stdout and blackhole).
    pub sinks: Vec<String>,
}

/// The checkpoint coordinator of one run.
pub struct Coordinator {
    dir: PathBuf,
    _folder: super::Folder,
    interval: Duration,
    expected: Expected,
    /// The newest checkpoint the sources were asked for.
    requested: AtomicU64,
    /// The newest complete checkpoint.
    completed: AtomicU64,
    progress: Mutex<Progress>,
    changed: Condvar,
    /// Set when the run is over: no more checkpoints.
    stopped: AtomicBool,
    sinks: Mutex<Vec<WeakSender<Envelope>>>,
    /// Per sink, the newest checkpoint whose output it committed.
    committed: Vec<AtomicU64>,
}

/// Where a savepoint goes, and who waits for it.
type SavepointRequest = (
    PathBuf,
    std::sync::mpsc::Sender<Result<(PathBuf, u64), String>>,
);

#[derive(Default)]
struct Progress {
    pending: Option<Pending>,
    /// Sources that ended, with their last state.
    finished: BTreeMap<usize, SourceState>,
    /// Savepoints asked for: where to copy the next checkpoint, and who waits.
    savepoints: Vec<SavepointRequest>,
    /// When the last checkpoint was triggered.
    last_trigger: Option<Instant>,
    /// Figures of the last complete checkpoint.
    last: Option<CheckpointStats>,
}

struct Pending {
    id: u64,
    started: Instant,
    /// Why a participant could not write its part, if one could not.
    failed: Option<String>,
    sources: BTreeMap<usize, SourceState>,
    /// By (operator, worker): what it wrote, and its version's component.
    workers: BTreeMap<(usize, usize), WorkerDone>,
    sinks: BTreeMap<usize, u64>,
}

type WorkerDone = (WorkerEntry, Arc<[u8]>);

/// Figures of a complete checkpoint, for `weir status`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CheckpointStats {
    /// Its number.
    pub id: u64,
    /// Milliseconds from trigger to completion.
    pub duration_ms: f64,
    /// Bytes of state files.
    pub state_bytes: u64,
    /// Its folder.
    pub path: String,
    /// When it completed, in milliseconds since the Unix epoch.
    #[serde(default)]
    pub completed_unix_ms: u64,
}

impl Coordinator {
    /// A coordinator writing to `folder` every `interval`, numbering on from
    /// `last_id` (the checkpoint the run was restored from, or 0).
    ///
    /// # Errors
    /// When the folder cannot be created.
    pub fn new(
        folder: super::Folder,
        interval: Duration,
        expected: Expected,
        last_id: u64,
    ) -> Result<Self> {
        Ok(Self {
            dir: folder.path.clone(),
            _folder: folder,
            interval,
            committed: expected
                .sinks
                .iter()
                .map(|_| AtomicU64::new(last_id))
                .collect(),
            expected,
            requested: AtomicU64::new(last_id),
            completed: AtomicU64::new(last_id),
            // The first checkpoint comes one interval after the start.
            progress: Mutex::new(Progress {
                last_trigger: Some(Instant::now()),
                ..Progress::default()
            }),
            changed: Condvar::new(),
            stopped: AtomicBool::new(false),
            sinks: Mutex::default(),
        })
    }

    /// The time between checkpoints.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The checkpoint folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The folder where sink `index` keeps its uncommitted output parts.
    pub fn sink_parts(&self, index: usize) -> PathBuf {
        self.dir.join("sinks").join(index.to_string())
    }

    /// Where the participants of checkpoint `id` write their files.
    pub fn pending_dir(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{}.tmp", store::checkpoint_name(id)))
    }

    /// The newest checkpoint asked for: a source that has not sent its
    /// barrier yet sends it now.
    pub fn requested(&self) -> u64 {
        self.requested.load(Ordering::Acquire)
    }

    /// The newest complete checkpoint: sinks commit what it covers.
    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// Figures of the last complete checkpoint.
    pub fn last(&self) -> Option<CheckpointStats> {
        self.lock().last.clone()
    }

    /// Whether every source has ended.
    pub fn sources_finished(&self) -> bool {
        self.lock().finished.len() == self.expected.sources.len()
    }

    /// The sinks' inputs, to wake them when a checkpoint completes.
    pub fn set_sinks(&self, sinks: Vec<WeakSender<Envelope>>) {
        if let Ok(mut s) = self.sinks.lock() {
            *s = sinks;
        }
    }

    fn lock(&self) -> MutexGuard<'_, Progress> {
        self.progress
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Source `input` sent barrier `id` after the records its state covers.
    pub fn source_done(&self, id: u64, input: usize, state: SourceState) {
        let mut progress = self.lock();
        if let Some(p) = progress.pending.as_mut().filter(|p| p.id == id) {
            p.sources.insert(input, state);
        }
        drop(progress);
        self.changed.notify_all();
    }

    /// Source `input` ended in `state`: later checkpoints take that.
    pub fn source_finished(&self, input: usize, state: SourceState) {
        let mut progress = self.lock();
        if let Some(p) = progress.pending.as_mut() {
            p.sources.entry(input).or_insert_with(|| state.clone());
        }
        progress.finished.insert(input, state);
        drop(progress);
        self.changed.notify_all();
    }

    /// Worker `worker` of operator `operator` wrote its state for `id`.
    pub fn worker_done(
        &self,
        id: u64,
        operator: usize,
        worker: usize,
        entry: WorkerEntry,
        component: Arc<[u8]>,
    ) {
        let mut progress = self.lock();
        if let Some(p) = progress.pending.as_mut().filter(|p| p.id == id) {
            p.workers.insert((operator, worker), (entry, component));
        }
        drop(progress);
        self.changed.notify_all();
    }

    /// Sink `sink` closed its output for `id` after `bytes` bytes in all.
    pub fn sink_done(&self, id: u64, sink: usize, bytes: u64) {
        let mut progress = self.lock();
        if let Some(p) = progress.pending.as_mut().filter(|p| p.id == id) {
            p.sinks.insert(sink, bytes);
        }
        drop(progress);
        self.changed.notify_all();
    }

    /// A participant could not write its part of checkpoint `id`: the
    /// checkpoint is abandoned (the run goes on; the next one may succeed).
    pub fn fail(&self, id: u64, reason: &str) {
        let mut progress = self.lock();
        if let Some(p) = progress.pending.as_mut().filter(|p| p.id == id) {
            p.failed.get_or_insert_with(|| reason.to_owned());
        }
        drop(progress);
        self.changed.notify_all();
    }

    /// Sink `sink` committed the output of checkpoints up to `id`.
    pub fn sink_committed(&self, sink: usize, id: u64) {
        if let Some(c) = self.committed.get(sink) {
            c.fetch_max(id, Ordering::AcqRel);
        }
    }

    /// Ends checkpointing: a pending checkpoint is abandoned.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.changed.notify_all();
    }

    /// Takes a checkpoint now and copies it to `to` once complete (a
    /// savepoint); waits for it, and for the sinks to commit the output it
    /// covers, so a run started from it finds that output in place.
    ///
    /// # Errors
    /// When the run ends first, or the copy fails.
    pub fn savepoint(&self, to: PathBuf) -> Result<PathBuf> {
        let (reply, answer) = std::sync::mpsc::channel();
        {
            let mut progress = self.lock();
            // The checkpoint thread has ended, or is about to: nobody would answer.
            if self.stopped.load(Ordering::Acquire)
                || progress.finished.len() == self.expected.sources.len()
            {
                return Err(anyhow!(
                    "the pipeline's input has ended: no more checkpoints, so no savepoint"
                ));
            }
            progress.savepoints.push((to, reply));
            // Trigger at once.
            progress.last_trigger = None;
        }
        self.changed.notify_all();
        let (path, id) = match answer.recv() {
            Ok(result) => result.map_err(|e| anyhow!(e))?,
            Err(_) => {
                return Err(anyhow!(
                    "the pipeline's input ended before the savepoint completed"
                ));
            }
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while self
            .committed
            .iter()
            .any(|c| c.load(Ordering::Acquire) < id)
        {
            if Instant::now() > deadline || self.stopped.load(Ordering::Acquire) {
                return Err(anyhow!(
                    "savepoint {id} was written to `{}`, but the sinks did not commit its output",
                    path.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        Ok(path)
    }

    /// Starts the thread that triggers a checkpoint every interval.
    pub fn spawn(self: &Arc<Self>) {
        let this = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("weir-checkpoints".into())
            .spawn(move || this.run());
        if let Err(e) = spawned {
            tracing::error!("no checkpoint thread, no checkpoints will be taken: {e}");
        }
    }

    fn run(&self) {
        loop {
            let Some(id) = self.wait_for_trigger() else {
                return;
            };
            match self.wait_for_acks(id) {
                Some(Pending {
                    failed: Some(reason),
                    ..
                }) => {
                    tracing::error!("checkpoint {id} failed: {reason}");
                    let _ = std::fs::remove_dir_all(self.pending_dir(id));
                    self.fail_savepoints(&reason);
                }
                Some(pending) => {
                    if let Err(e) = self.complete(pending) {
                        tracing::error!("checkpoint {id} failed: {e:#}");
                        self.fail_savepoints(&format!("{e:#}"));
                    }
                }
                None => return,
            }
        }
    }

    /// Waits until the next checkpoint is due, starts it and returns its id;
    /// `None` when the run is over.
    fn wait_for_trigger(&self) -> Option<u64> {
        let mut progress = self.lock();
        loop {
            if self.stopped.load(Ordering::Acquire)
                || progress.finished.len() == self.expected.sources.len()
            {
                let reason = "the pipeline's input ended before the savepoint completed";
                for (_, reply) in progress.savepoints.drain(..) {
                    let _ = reply.send(Err(reason.to_owned()));
                }
                return None;
            }
            let due = progress.last_trigger.map_or(Duration::ZERO, |t| {
                self.interval.saturating_sub(t.elapsed())
            });
            if due.is_zero() {
                break;
            }
            progress = self
                .changed
                .wait_timeout(progress, due.min(Duration::from_millis(100)))
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
        let id = self.requested() + 1;
        // A run killed while taking checkpoint `id` left its folder behind.
        let _ = std::fs::remove_dir_all(self.pending_dir(id));
        if let Err(e) = std::fs::create_dir_all(self.pending_dir(id)) {
            tracing::error!("cannot start checkpoint {id}: {e}");
            progress.last_trigger = Some(Instant::now());
            return Some(id);
        }
        progress.last_trigger = Some(Instant::now());
        progress.pending = Some(Pending {
            id,
            started: Instant::now(),
            failed: None,
            sources: progress.finished.clone(),
            workers: BTreeMap::new(),
            sinks: BTreeMap::new(),
        });
        self.requested.store(id, Ordering::Release);
        Some(id)
    }

    /// Waits until every participant reported on checkpoint `id`.
    fn wait_for_acks(&self, id: u64) -> Option<Pending> {
        let workers: usize = self.expected.operators.iter().map(|(_, n)| n).sum();
        let mut progress = self.lock();
        loop {
            if self.stopped.load(Ordering::Acquire) {
                progress.pending = None;
                let _ = std::fs::remove_dir_all(self.pending_dir(id));
                for (_, reply) in progress.savepoints.drain(..) {
                    let _ = reply.send(Err("the run ended before the savepoint completed".into()));
                }
                return None;
            }
            if progress
                .pending
                .as_ref()
                .is_some_and(|p| p.failed.is_some())
            {
                return progress.pending.take();
            }
            if let Some(p) = &progress.pending
                && p.sources.len() == self.expected.sources.len()
                && p.workers.len() == workers
                && p.sinks.len() == self.expected.sinks.len()
            {
                return progress.pending.take();
            }
            progress = self
                .changed
                .wait_timeout(progress, Duration::from_millis(100))
                .map_or_else(|e| e.into_inner().0, |(g, _)| g);
        }
    }

    fn complete(&self, pending: Pending) -> Result<()> {
        let id = pending.id;
        let tmp = self.pending_dir(id);
        let mut operators: Vec<OperatorEntry> = self
            .expected
            .operators
            .iter()
            .map(|(op, _)| OperatorEntry {
                id: op.clone(),
                workers: Vec::new(),
            })
            .collect();
        let mut components: HashMap<String, Arc<[u8]>> = HashMap::new();
        for ((op, _), (entry, bytes)) in pending.workers {
            components.insert(entry.content_hash.clone(), bytes);
            if let Some(o) = operators.get_mut(op) {
                o.workers.push(entry);
            }
        }
        for (hash, bytes) in &components {
            store::add_component(&self.dir, &tmp, hash, bytes)?;
        }
        let manifest = Manifest {
            format: super::FORMAT,
            id,
            completed_at: humantime::format_rfc3339_millis(SystemTime::now()).to_string(),
            sources: pending.sources.into_values().collect(),
            operators,
            sinks: self
                .expected
                .sinks
                .iter()
                .enumerate()
                .map(|(i, path)| SinkEntry {
                    path: path.clone(),
                    bytes: pending.sinks.get(&i).copied().unwrap_or(0),
                })
                .collect(),
        };
        let final_dir = self.dir.join(store::checkpoint_name(id));
        store::commit(&tmp, &final_dir, &manifest)?;
        self.completed.store(id, Ordering::Release);
        let stats = CheckpointStats {
            id,
            duration_ms: pending.started.elapsed().as_secs_f64() * 1e3,
            state_bytes: manifest.files().iter().map(|f| f.bytes).sum(),
            path: final_dir.display().to_string(),
            completed_unix_ms: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
        };
        tracing::info!(
            "checkpoint {id} complete in {:.1} ms ({} bytes of state)",
            stats.duration_ms,
            stats.state_bytes
        );
        // Wake the sinks to commit (a full channel means they will see it
        // after their next message anyway).
        if let Ok(sinks) = self.sinks.lock() {
            for sink in sinks.iter().filter_map(WeakSender::upgrade) {
                let _ = sink.try_send(Envelope::Committed(id));
            }
        }
        let savepoints = {
            let mut progress = self.lock();
            progress.last = Some(stats);
            std::mem::take(&mut progress.savepoints)
        };
        for (to, reply) in savepoints {
            let result = store::copy(&final_dir, &to)
                .map(|()| (to.clone(), id))
                .map_err(|e| format!("{e:#}"));
            let _ = reply.send(result);
        }
        store::prune(&self.dir, id);
        Ok(())
    }

    fn fail_savepoints(&self, reason: &str) {
        for (_, reply) in self.lock().savepoints.drain(..) {
            let _ = reply.send(Err(reason.to_owned()));
        }
    }

    /// After a run that read all its input: the output is committed, so
    /// the checkpoints are of no more use (savepoints are kept).
    pub fn clean_up(&self) {
        for (_, path) in store::list(&self.dir) {
            let _ = std::fs::remove_dir_all(path);
        }
        if let Ok(entries) = std::fs::read_dir(&self.dir) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.ends_with(".tmp") || name == "components" || name == "sinks" {
                    let _ = std::fs::remove_dir_all(entry.path());
                }
                if name == "lock" {
                    let _ = std::fs::remove_file(entry.path());
                }
            }
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}
