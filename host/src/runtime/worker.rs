//! One parallel worker of an operator: its Wasm instance, the keyed state of
//! the keys it owns, and the handling of records the operator cannot take.

use anyhow::{Context, Result};
use arrow::array::{Array, RecordBatch};
use arrow::datatypes::DataType;
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;
use tokio::sync::mpsc::Receiver;

use super::barrier::Aligner;
use super::dead_letter::{DeadLetter, DeadLetters};
use super::failures::{Failures, Verdict};
use super::keys::{KeyGroups, group_rows, row_keys};
use super::message::{Envelope, Message, RowTimes};
use super::metrics::{OperatorMetrics, WorkerMetrics};
use super::route::Route;
use super::state::{KeyedState, Owner, ValueStates};
use super::swap::{SwapOrder, SwapReply, VersionStats, migrate_states};
use super::tap::{TapSite, state_json as tap_state_json};
use crate::checkpoint::{Coordinator, WorkerEntry, WorkerState, WorkerStateRef, store};
use crate::codec::row_to_json;
use crate::config::{FailureAction, Limits};
use crate::wasm::{
    CallError, DecodedOutput, FiredTimer, KeyGroupArg, OperatorInstance, PreparedOperator,
    StateKind, TimeDomain,
};

/// Everything a worker needs besides its input.
pub struct WorkerSetup {
    /// The compiled operator.
    pub prepared: PreparedOperator,
    /// The operator's `config` as JSON.
    pub config_json: String,
    /// Limits of each instance.
    pub limits: Limits,
    /// The `key_by` field, if any.
    pub key_by: Option<String>,
    /// Counters shared by the operator's workers.
    pub metrics: Arc<OperatorMetrics>,
    /// Where refused records go.
    pub dead_letters: Arc<DeadLetters>,
    /// Where each named output goes.
    pub outputs: HashMap<String, Route>,
    /// Figures of the running version.
    pub stats: Arc<VersionStats>,
    /// How many senders feed this worker (sources, or upstream workers):
    /// its watermark is the smallest of theirs.
    pub inputs: usize,
    /// This worker's index among the operator's workers (its watermark
    /// input number downstream).
    pub index: usize,
    /// The operator's failures, shared by its workers, and its pause gate.
    pub failures: Arc<Failures>,
    /// The operator's index in the pipeline.
    pub operator: usize,
    /// The run's checkpoints, if it takes any.
    pub checkpoints: Option<Arc<Coordinator>>,
    /// Restored keyed state of the keys this worker owns.
    pub restore: Restored,
    /// Where keyed state lives: in memory (`None`), or in a database file
    /// at this path (`state_backend = "disk"`).
    pub state_file: Option<std::path::PathBuf>,
}

/// The keyed state a worker starts from.
pub enum Restored {
    /// Decoded (for the memory backend): one part per worker that saved
    /// it, with the state layout version it is in.
    Decoded(Vec<(WorkerState, u32)>),
    /// State files in checkpoint folder `dir`, each with its state layout
    /// version, which a disk store loads entry by entry: the keys `owner`
    /// owns.
    Files {
        /// The checkpoint folder.
        dir: std::path::PathBuf,
        /// The files and their layout versions.
        files: Vec<(crate::checkpoint::FileEntry, u32)>,
        /// Which of their keys this worker takes.
        owner: Owner,
    },
}

/// A worker: runs batches through its instance and routes what comes out.
pub struct Worker {
    setup: WorkerSetup,
    instance: OperatorInstance,
    /// Keyed state of the keys this worker owns: value and map states as
    /// the guest wrote them, and timers.
    state: KeyedState,
    /// When the last batch finished.
    last_batch_done: Option<Instant>,
    /// Set by a swap until the new version finishes its first batch: when
    /// the old version finished its last one.
    swapped_at: Option<Option<Instant>>,
    /// The watermark of each input (`None` while it is idle), and the
    /// smallest of them.
    input_watermarks: Vec<Option<i64>>,
    watermark: i64,
    /// The watermark before the last advance.
    previous_watermark: i64,
    /// Barrier alignment of the inputs.
    aligner: Aligner,
    /// Records emitted per output (shared with the other workers).
    output_counts: Vec<(String, Arc<AtomicU64>)>,
}

/// Timers fired per guest call.
const TIMERS_PER_CALL: usize = 1024;

impl Worker {
    /// Instantiates the operator for this worker.
    ///
    /// # Errors
    /// When instantiation or `init` fails, or a keyed operator has no `key_by`.
    pub fn new(mut setup: WorkerSetup) -> Result<Self> {
        let instance = new_instance(&setup)?;
        let inputs = setup.inputs.max(1);
        let restore = std::mem::replace(&mut setup.restore, Restored::Decoded(Vec::new()));
        let state = match &setup.state_file {
            Some(path) => KeyedState::on_disk(path.clone())?,
            None => KeyedState::default(),
        };
        let mut worker = Self {
            input_watermarks: vec![Some(i64::MIN); inputs],
            watermark: i64::MIN,
            previous_watermark: i64::MIN,
            aligner: Aligner::new(inputs),
            setup,
            instance,
            state,
            last_batch_done: None,
            swapped_at: None,
            output_counts: Vec::new(),
        };
        match restore {
            Restored::Decoded(parts) => {
                for (part, state_version) in parts {
                    worker.restore(part, state_version)?;
                }
            }
            Restored::Files { dir, files, owner } => worker.load_files(&dir, &files, owner)?,
        }
        Ok(worker)
    }

    /// Loads restored state files into the disk store as they are read. A
    /// file in another state layout is decoded and migrated in memory, as
    /// for the memory backend (a savepoint of an older version, or a swap
    /// under way at the checkpoint).
    fn load_files(
        &mut self,
        dir: &std::path::Path,
        files: &[(crate::checkpoint::FileEntry, u32)],
        owner: Owner,
    ) -> Result<()> {
        let mut watermark = i64::MAX;
        for (entry, state_version) in files {
            let bytes = store::read_file(dir, entry)?;
            let undecodable = || {
                format!(
                    "checkpoint `{}`: the state file `{}` cannot be decoded",
                    dir.display(),
                    entry.file
                )
            };
            if *state_version == self.instance.state_version {
                let loaded = self
                    .state
                    .load_state_file(&bytes, owner)
                    .with_context(undecodable)?;
                self.setup
                    .metrics
                    .state_keys
                    .fetch_add(loaded.values as i64, Ordering::Relaxed);
                watermark = watermark.min(loaded.watermark);
                continue;
            }
            let state: WorkerState = postcard::from_bytes(&bytes).with_context(undecodable)?;
            watermark = watermark.min(state.watermark);
            let parts = crate::checkpoint::partition(vec![(state, *state_version)], owner.workers);
            for (mut part, state_version) in parts.into_iter().nth(owner.index).unwrap_or_default()
            {
                part.watermark = i64::MIN;
                self.restore(part, state_version)?;
            }
        }
        if watermark < i64::MAX {
            self.restore_watermark(watermark);
        }
        Ok(())
    }

    /// Takes in keyed state from a checkpoint, migrating it when it was
    /// saved in another state layout (a savepoint of an older version, or a
    /// swap that was under way).
    fn restore(&mut self, part: WorkerState, state_version: u32) -> Result<()> {
        let WorkerState {
            watermark,
            mut values,
            maps,
            event_timers,
            processing_timers,
        } = part;
        if state_version != self.instance.state_version && !values.is_empty() {
            let mut saved = ValueStates::Memory(values);
            let migrated =
                migrate_states(&mut self.instance, state_version, &saved).map_err(|reason| {
                    anyhow::anyhow!(
                        "operator `{}`: the restored state cannot be migrated from layout \
                         {state_version}: {reason}",
                        self.label()
                    )
                })?;
            saved.replace_in_order(migrated)?;
            values = match saved {
                ValueStates::Memory(values) => values,
                ValueStates::Disk(_) => Default::default(),
            };
        }
        self.setup
            .metrics
            .state_keys
            .fetch_add(values.len() as i64, Ordering::Relaxed);
        self.state.values.extend(values)?;
        self.state.maps.extend(maps)?;
        self.state.event_timers.extend(event_timers)?;
        self.state.processing_timers.extend(processing_timers)?;
        self.restore_watermark(watermark);
        Ok(())
    }

    /// Takes a restored watermark, if it is later than the worker's.
    fn restore_watermark(&mut self, watermark: i64) {
        if watermark > self.watermark {
            self.watermark = watermark;
            self.previous_watermark = watermark;
            self.instance.set_watermark(watermark);
            for w in self.input_watermarks.iter_mut().flatten() {
                *w = (*w).max(watermark);
            }
        }
    }

    /// Whether the running instance is a keyed operator.
    pub fn is_keyed(&self) -> bool {
        self.instance.kind == StateKind::Keyed
    }

    /// The state layout version the running instance declared.
    pub fn state_version(&self) -> u32 {
        self.instance.state_version
    }

    /// Processes messages until the input closes.
    ///
    /// # Errors
    /// When the operator cannot be restarted after a trap, or an output or
    /// the dead-letter file cannot be written.
    pub fn run(mut self, mut input: Receiver<Envelope>) -> Result<()> {
        loop {
            // A paused operator takes nothing: its input backs up.
            self.setup.failures.wait_while_paused();
            let envelope = match self.aligner.released() {
                Some(envelope) => envelope,
                None => match input.blocking_recv() {
                    Some(envelope) => envelope,
                    None => break,
                },
            };
            let admitted = self.aligner.admit(envelope);
            if let Some(checkpoint) = self.aligner.take_aligned() {
                self.checkpoint(checkpoint)?;
            }
            let Some(envelope) = admitted else {
                continue;
            };
            self.handle(envelope)?;
            self.state
                .commit()
                .map_err(|e| anyhow::anyhow!("operator `{}`: {e:#}", self.label()))?;
        }
        Ok(())
    }

    fn handle(&mut self, envelope: Envelope) -> Result<()> {
        match envelope {
            Envelope::Batch { message, .. } => {
                let started = Instant::now();
                self.setup
                    .metrics
                    .records_in
                    .fetch_add(message.rows() as u64, Ordering::Relaxed);
                if let Some(w) = self.worker_metrics() {
                    w.records_in
                        .fetch_add(message.rows() as u64, Ordering::Relaxed);
                }
                // One atomic load per batch while nobody taps.
                let tapping = self.setup.metrics.taps.is_active();
                let followed = if tapping {
                    self.tap_input(&message)
                } else {
                    Vec::new()
                };
                self.process(&message)?;
                if !followed.is_empty() {
                    self.tap_state_after(&followed);
                }
                let now = Instant::now();
                if let Some(w) = self.worker_metrics() {
                    w.batch_seconds
                        .observe(now.duration_since(started).as_secs_f64());
                }
                if let Some(previous) = self.swapped_at.take() {
                    self.setup.stats.batch_done(previous, now);
                }
                self.last_batch_done = Some(now);
            }
            Envelope::Swap(order) => self.swap(*order),
            Envelope::Watermark { input, time } => self.advance(input, Some(time))?,
            Envelope::Idle { input } => self.advance(input, None)?,
            Envelope::Tick(now) => self.fire_timers(TimeDomain::ProcessingTime, now)?,
            Envelope::Barrier { .. } | Envelope::Committed(_) => {}
        }
        Ok(())
    }

    /// Every input delivered the barrier of checkpoint `id`: passes it on
    /// and writes this worker's state into the checkpoint.
    fn checkpoint(&mut self, id: u64) -> Result<()> {
        for route in self.setup.outputs.values() {
            route.send_barrier(id)?;
        }
        let Some(checkpoints) = &self.setup.checkpoints else {
            return Ok(());
        };
        let prepared = &self.setup.prepared;
        let path = checkpoints
            .pending_dir(id)
            .join(format!("{}-{}.state", prepared.id, self.setup.index));
        let label = self.label();
        // Writing and syncing happen beside the data, on another thread. On
        // disk it streams a snapshot of the store out; in memory the worker
        // encodes its state first, since it must not change meanwhile. A
        // state that cannot be saved abandons this checkpoint, not the run.
        let snapshot = match self.state.disk_snapshot(self.watermark) {
            Ok(snapshot) => snapshot,
            Err(e) => {
                checkpoints.fail(id, &format!("operator `{label}`: {e:#}"));
                return Ok(());
            }
        };
        let encoded = match &snapshot {
            Some(_) => Vec::new(),
            None => match postcard::to_stdvec(&WorkerStateRef {
                watermark: self.watermark,
                values: &self.state.values,
                maps: &self.state.maps,
                event_timers: &self.state.event_timers,
                processing_timers: &self.state.processing_timers,
            }) {
                Ok(encoded) => encoded,
                Err(e) => {
                    checkpoints.fail(id, &format!("operator `{label}`: {e}"));
                    return Ok(());
                }
            },
        };
        let write = move |out: &mut dyn std::io::Write| -> Result<()> {
            match &snapshot {
                Some(snapshot) => {
                    postcard::to_io(snapshot, out)?;
                }
                None => out.write_all(&encoded)?,
            }
            Ok(())
        };
        let entry = WorkerEntry {
            version: prepared.version,
            content_hash: prepared.content_hash.clone(),
            state_version: self.instance.state_version,
            state: crate::checkpoint::FileEntry {
                file: String::new(),
                bytes: 0,
                crc32: 0,
            },
        };
        let (coordinator, component) = (Arc::clone(checkpoints), Arc::clone(&prepared.bytes));
        let (operator, index) = (self.setup.operator, self.setup.index);
        let spawned = std::thread::Builder::new()
            .name(format!("checkpoint-{label}"))
            .spawn(move || match store::write_file(&path, write) {
                Ok(file) => coordinator.worker_done(
                    id,
                    operator,
                    index,
                    WorkerEntry {
                        state: file,
                        ..entry
                    },
                    component,
                ),
                Err(e) => coordinator.fail(id, &format!("operator `{label}`: {e:#}")),
            });
        if let Err(e) = spawned {
            checkpoints.fail(id, &format!("operator `{}`: {e}", self.label()));
        }
        Ok(())
    }

    /// Takes input `input`'s new watermark (`None`: it went idle); when the
    /// worker's own (the smallest over its active inputs) moves, fires the
    /// event-time timers it passed and tells downstream.
    fn advance(&mut self, input: usize, time: Option<i64>) -> Result<()> {
        if let Some(w) = self.input_watermarks.get_mut(input) {
            // An idle input that speaks again takes part from where it is.
            *w = time.map(|t| w.map_or(t, |old| old.max(t)));
        }
        let active = self.input_watermarks.iter().flatten().copied().min();
        // With every input idle, the watermark stays where it is, and the
        // operators downstream hear that this worker is idle too.
        let Some(watermark) = active else {
            for route in self.setup.outputs.values() {
                route.send_idle()?;
            }
            return Ok(());
        };
        if watermark <= self.watermark {
            return Ok(());
        }
        self.previous_watermark = self.watermark;
        self.watermark = watermark;
        if let Some(w) = self.worker_metrics() {
            w.watermark.store(watermark, Ordering::Relaxed);
        }
        self.instance.set_watermark(watermark);
        self.fire_timers(TimeDomain::EventTime, watermark)?;
        for route in self.setup.outputs.values() {
            route.send_watermark(watermark)?;
        }
        Ok(())
    }

    /// Calls the operator for every timer of `domain` at or before `now`
    /// (the watermark, or the wall clock), in time order, until none is left
    /// (a timer function may register more).
    fn fire_timers(&mut self, domain: TimeDomain, now: i64) -> Result<()> {
        loop {
            let due = self
                .state
                .timers(domain)
                .pop_due(now, TIMERS_PER_CALL)
                .map_err(|e| anyhow::anyhow!("operator `{}`: {e:#}", self.label()))?;
            if due.is_empty() {
                return Ok(());
            }
            self.fire(domain, &due)?;
        }
    }

    fn fire(&mut self, domain: TimeDomain, due: &[(i64, String)]) -> Result<()> {
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut keys: Vec<&str> = Vec::new();
        let fired: Vec<FiredTimer> = due
            .iter()
            .map(|(time, key)| FiredTimer {
                group: *index.entry(key).or_insert_with(|| {
                    keys.push(key);
                    keys.len() as u32 - 1
                }),
                domain,
                time: *time,
            })
            .collect();
        self.state.values.load(keys.iter().copied())?;
        let args: Vec<KeyGroupArg<'_>> = keys
            .iter()
            .map(|key| KeyGroupArg {
                key,
                rows: &[],
                state: self.state.values.get(key),
            })
            .collect();
        let started = Instant::now();
        let result = self.instance.on_timer(&fired, &args, &mut self.state.maps);
        if let Some(w) = self.worker_metrics() {
            w.wasm_seconds.observe(started.elapsed().as_secs_f64());
        }
        let mut output = match result {
            Ok(output) if output.rejected.is_empty() => output,
            // As for records: nothing of the call applied; the refused
            // timers go to the dead letters and the others fire again.
            Ok(output) => {
                let mut refused = vec![false; due.len()];
                for (index, reason) in &output.rejected {
                    if let Some(((time, key), slot)) = due
                        .get(*index as usize)
                        .zip(refused.get_mut(*index as usize))
                    {
                        *slot = true;
                        self.dead_letter_timer(*time, key, reason)?;
                    }
                }
                let rest: Vec<(i64, String)> = due
                    .iter()
                    .zip(&refused)
                    .filter(|(_, refused)| !**refused)
                    .map(|(timer, _)| timer.clone())
                    .collect();
                return if rest.is_empty() {
                    Ok(())
                } else {
                    self.fire(domain, &rest)
                };
            }
            Err(e) => {
                if let CallError::Trap(_) = &e {
                    self.restart()?;
                }
                // Bisect, as for records, so one bad key's timer does not
                // take the others with it: a timer function that refuses
                // fails its whole call, and no effect of it applies.
                if due.len() > 1 {
                    let (first, second) = due.split_at(due.len() / 2);
                    self.fire(domain, first)?;
                    return self.fire(domain, second);
                }
                let reason = format!("the timer function failed: {e}");
                for (time, key) in due {
                    self.dead_letter_timer(*time, key, &reason)?;
                }
                return self.failed(&reason);
            }
        };
        self.apply_keyed_effects(&keys, &mut output)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        // Records a timer emits have the timer's time as their event time.
        let origin = Message {
            batch: RecordBatch::new_empty(Arc::new(arrow::datatypes::Schema::empty())),
            source: Arc::from(format!("{}.timers", self.setup.prepared.id)),
            lines: vec![0; fired.len()].into(),
            // Downstream sees them before the watermark that fired them.
            times: Some(Arc::new(RowTimes {
                times: fired.iter().map(|t| t.time).collect(),
                watermarks: vec![self.previous_watermark; fired.len()],
            })),
        };
        self.deliver(&origin, output)
    }

    /// Hands over to a new version between two batches (see [`super::swap`]).
    fn swap(&mut self, order: SwapOrder) {
        let SwapOrder {
            prepared,
            mut instance,
            migrate_from,
            reply,
            verdict,
            stats,
        } = order;
        if let Some(from) = migrate_from {
            let started = Instant::now();
            match migrate_states(&mut instance, from, &self.state.values) {
                Ok(migrated) => {
                    let ready = SwapReply::Ready {
                        keys: migrated.len(),
                        took: started.elapsed(),
                    };
                    // The old version stays unless every worker is ready.
                    if reply.send(ready).is_err() || verdict.recv() != Ok(true) {
                        return;
                    }
                    // Same states, untouched since: same iteration order.
                    if let Err(e) = self.state.values.replace_in_order(migrated) {
                        tracing::error!(operator = %self.label(), "{e:#}");
                    }
                }
                Err(reason) => {
                    let _ = reply.send(SwapReply::Refused(reason));
                    return;
                }
            }
        } else {
            let ready = SwapReply::Ready {
                keys: 0,
                took: std::time::Duration::ZERO,
            };
            if reply.send(ready).is_err() {
                return;
            }
        }
        tracing::info!(
            operator = %self.label(),
            "now running version {} ({} keys)",
            prepared.version,
            self.state.values.len()
        );
        // The new version sees the watermark the old one saw.
        instance.set_watermark(self.watermark);
        self.instance = instance;
        self.setup.prepared = prepared;
        self.setup.stats = stats;
        self.swapped_at = Some(self.last_batch_done);
    }

    fn process(&mut self, message: &Message) -> Result<()> {
        if let Some(keyed) = self.without_missing_keys(message)? {
            return match keyed {
                Some(keyed) => self.process(&keyed),
                None => Ok(()),
            };
        }
        match self.call(message) {
            Ok(output)
                if output.rejected.is_empty() || self.instance.kind == StateKind::Stateless =>
            {
                self.deliver(message, output)
            }
            // A keyed call's effects are per key, not per row: a refused
            // row's state, map and timer changes cannot be told from its
            // neighbours'. Nothing of the call applied; the refused rows go
            // to the dead letters and the others run again without them, so
            // the result is that of an input without the refused rows.
            Ok(output) => {
                let mut refused = vec![false; message.rows()];
                for (row, reason) in &output.rejected {
                    if let Some(slot) = refused.get_mut(*row as usize) {
                        *slot = true;
                    }
                    self.dead_letter_row(message, *row as usize, reason)?;
                }
                let keep: Vec<u32> = (0..message.rows() as u32)
                    .filter(|&row| !refused[row as usize])
                    .collect();
                if keep.is_empty() {
                    return Ok(());
                }
                self.process(&message.take(&keep)?)
            }
            Err(CallError::Failed(reason)) => {
                let reason = format!("the operator failed the whole batch: {reason}");
                self.dead_letter_all(message, &reason)?;
                self.failed(&reason)
            }
            Err(CallError::Trap(reason)) => {
                tracing::warn!(
                    operator = %self.label(),
                    "trapped on a batch of {} records: {reason}; restarting it",
                    message.rows()
                );
                self.restart()?;
                if message.rows() <= 1 {
                    self.dead_letter_all(message, &reason)?;
                    return self.failed(&reason);
                }
                // Bisect to find the records that trap; the others go on.
                let half = message.rows() / 2;
                let first: Vec<u32> = (0..half as u32).collect();
                let second: Vec<u32> = (half as u32..message.rows() as u32).collect();
                self.process(&message.take(&first)?)?;
                self.process(&message.take(&second)?)
            }
        }
    }

    /// Dead-letters the rows of a keyed operator's batch that lack the
    /// `key_by` field, once, before any call (a call may be run again).
    /// `None` when every row has its key; else the other rows, if any.
    fn without_missing_keys(&self, message: &Message) -> Result<Option<Option<Message>>> {
        let Some(field) = self.setup.key_by.as_deref() else {
            return Ok(None);
        };
        if self.instance.kind == StateKind::Stateless {
            return Ok(None);
        }
        let keyable = message.batch.column_by_name(field).is_some_and(|c| {
            c.null_count() == 0
                && matches!(
                    c.data_type(),
                    DataType::Utf8 | DataType::Int64 | DataType::Float64 | DataType::Boolean
                )
        });
        if keyable {
            return Ok(None);
        }
        let reason = format!("missing key field `{field}`");
        let mut keep = Vec::with_capacity(message.rows());
        for (row, key) in row_keys(&message.batch, field).iter().enumerate() {
            match key {
                Some(_) => keep.push(row as u32),
                None => self.dead_letter_row(message, row, &reason)?,
            }
        }
        if keep.is_empty() {
            return Ok(Some(None));
        }
        Ok(Some(Some(message.take(&keep)?)))
    }

    fn call(&mut self, message: &Message) -> Result<DecodedOutput, CallError> {
        let times = message.times.as_ref();
        if self.instance.kind == StateKind::Stateless {
            let started = Instant::now();
            let output = self
                .instance
                .process(&message.batch, times, &[], &mut self.state.maps);
            if let Some(w) = self.worker_metrics() {
                w.wasm_seconds.observe(started.elapsed().as_secs_f64());
            }
            return output;
        }
        // Without `key_by` a keyed operator is global: one key, "".
        let KeyGroups { groups, missing } = match &self.setup.key_by {
            Some(field) => group_rows(&message.batch, field),
            None => KeyGroups {
                groups: vec![(Cow::Borrowed(""), (0..message.rows() as u32).collect())],
                missing: Vec::new(),
            },
        };
        if !missing.is_empty() {
            return Err(CallError::Failed(
                "rows without a key reached the call".to_owned(),
            ));
        }
        self.state
            .values
            .load(groups.iter().map(|(k, _)| k.as_ref()))
            .map_err(|e| CallError::Failed(format!("{e:#}")))?;
        let args: Vec<KeyGroupArg<'_>> = groups
            .iter()
            .map(|(key, rows)| KeyGroupArg {
                key,
                rows,
                state: self.state.values.get(key.as_ref()),
            })
            .collect();
        let started = Instant::now();
        let output = self
            .instance
            .process(&message.batch, times, &args, &mut self.state.maps);
        if let Some(w) = self.worker_metrics() {
            w.wasm_seconds.observe(started.elapsed().as_secs_f64());
        }
        let mut output = output?;
        if output.rejected.is_empty() {
            let keys: Vec<&str> = groups.iter().map(|(k, _)| k.as_ref()).collect();
            self.apply_keyed_effects(&keys, &mut output)
                .map_err(CallError::Failed)?;
        }
        Ok(output)
    }

    /// Applies a keyed call's state updates (moving them out of `output`)
    /// and timer requests; `keys` are the call's key groups.
    fn apply_keyed_effects(
        &mut self,
        keys: &[&str],
        output: &mut DecodedOutput,
    ) -> Result<(), String> {
        let key_of = |group: u32| {
            keys.get(group as usize)
                .copied()
                .ok_or_else(|| format!("the operator named an unknown key group {group}"))
        };
        let count = &self.setup.metrics.state_keys;
        for (group, state) in std::mem::take(&mut output.state_updates) {
            let key = key_of(group)?;
            match self.state.values.set(key, state) {
                0 => {}
                delta => {
                    count.fetch_add(delta, Ordering::Relaxed);
                }
            }
        }
        for timer in &output.timers {
            let key = key_of(timer.group)?;
            let timers = self.state.timers(timer.domain);
            if timer.delete {
                timers.remove(timer.time, key);
            } else {
                timers.insert(timer.time, key);
            }
        }
        Ok(())
    }

    fn deliver(&mut self, message: &Message, output: DecodedOutput) -> Result<()> {
        for (row, reason) in &output.rejected {
            self.dead_letter_row(message, *row as usize, reason)?;
        }
        let tapping = self.setup.metrics.taps.is_active();
        for (name, batch, origins) in output.emitted {
            self.output_counter(&name)
                .fetch_add(origins.len() as u64, Ordering::Relaxed);
            self.setup
                .metrics
                .records_out
                .fetch_add(origins.len() as u64, Ordering::Relaxed);
            if let Some(w) = self.worker_metrics() {
                w.records_out
                    .fetch_add(origins.len() as u64, Ordering::Relaxed);
            }
            let Some(route) = self.setup.outputs.get(&name) else {
                continue;
            };
            let derived = match batch {
                Some(batch) => message.derive(batch, &origins),
                // Every row kept, in order: pass the batch on without a copy.
                None if origins.iter().copied().eq(0..message.rows() as u32) => message.clone(),
                None => message.take(&origins)?,
            };
            if tapping {
                let site = self.tap_site();
                let taps = &self.setup.metrics.taps;
                taps.output(&site, &name, &message.batch, &derived.batch, &origins);
            }
            route.send(derived)?;
        }
        Ok(())
    }

    /// This worker's counter of records emitted on `output`.
    fn output_counter(&mut self, output: &str) -> &AtomicU64 {
        let index = match self.output_counts.iter().position(|(n, _)| n == output) {
            Some(index) => index,
            None => {
                let counter = self.setup.metrics.output(output);
                self.output_counts.push((output.to_owned(), counter));
                self.output_counts.len() - 1
            }
        };
        &self.output_counts[index].1
    }

    fn tap_site(&self) -> TapSite<'_> {
        TapSite {
            operator: &self.setup.prepared.id,
            version: self.setup.prepared.version,
            worker: self.setup.index,
            key_by: self.setup.key_by.as_deref(),
        }
    }

    /// Shows key taps their key's records in `message`, with the key's
    /// state before them; returns the keys whose state to show after.
    fn tap_input(&mut self, message: &Message) -> Vec<String> {
        let taps = Arc::clone(&self.setup.metrics.taps);
        let site = TapSite {
            operator: &self.setup.prepared.id,
            version: self.setup.prepared.version,
            worker: self.setup.index,
            key_by: self.setup.key_by.as_deref(),
        };
        let stateful = self.instance.kind != StateKind::Stateless;
        let key_by = self.setup.key_by.as_deref();
        let state = &mut self.state;
        let mut followed = Vec::new();
        taps.input(&site, &message.batch, |key, field| {
            if !stateful || key_by != Some(field) {
                return None;
            }
            if !followed.iter().any(|k| k == key) {
                followed.push(key.to_owned());
            }
            // The disk store reads a batch's states before its call.
            state.values.load([key]).ok()?;
            Some(tap_state_json(state.values.get(key)))
        });
        followed
    }

    fn tap_state_after(&self, keys: &[String]) {
        let site = self.tap_site();
        for key in keys {
            let state = tap_state_json(self.state.values.get(key));
            self.setup.metrics.taps.state_after(&site, key, state);
        }
    }

    fn dead_letter_timer(&self, time: i64, key: &str, reason: &str) -> Result<()> {
        if let Some(w) = self.worker_metrics() {
            w.dead_letters.fetch_add(1, Ordering::Relaxed);
        }
        let raw = serde_json::json!({ "timer": time, "key": key }).to_string();
        self.setup.dead_letters.send(&DeadLetter {
            source: "timers",
            line: 0,
            raw: &raw,
            reason,
            operator: Some(&self.setup.prepared.id),
            version: Some(self.setup.prepared.version),
        })
    }

    fn dead_letter_all(&self, message: &Message, reason: &str) -> Result<()> {
        (0..message.rows()).try_for_each(|row| self.dead_letter_row(message, row, reason))
    }

    fn dead_letter_row(&self, message: &Message, row: usize, reason: &str) -> Result<()> {
        if let Some(w) = self.worker_metrics() {
            w.dead_letters.fetch_add(1, Ordering::Relaxed);
        }
        let raw = row_to_json(&message.batch, row);
        self.setup.dead_letters.send(&DeadLetter {
            source: &message.source,
            line: message.lines.get(row).copied().unwrap_or(0),
            raw: &raw,
            reason,
            operator: Some(&self.setup.prepared.id),
            version: Some(self.setup.prepared.version),
        })
    }

    /// Counts a failure (its records are dead-lettered already) and acts
    /// on the operator's `on_failure` policy when it is one too many.
    fn failed(&self, reason: &str) -> Result<()> {
        let failures = &self.setup.failures;
        let Verdict::Over(count) = failures.record(Instant::now()) else {
            return Ok(());
        };
        let policy = failures.policy();
        let (label, max) = (self.label(), policy.max_failures);
        let span = humantime::format_duration(policy.within);
        match policy.then {
            // Once per crossing, not at every failure past it.
            FailureAction::Continue if count == max + 1 => tracing::warn!(
                operator = %label,
                "{count} failures within {span}, more than `on_failure.max_failures` ({max}); \
                 going on (`then = \"continue\"`)"
            ),
            FailureAction::Continue => {}
            // Logged by the worker that paused it, once.
            FailureAction::Pause => {
                if failures.pause() {
                    tracing::error!(
                        operator = %label,
                        "paused after {count} failures within {span}, more than \
                         `on_failure.max_failures` ({max}): its input waits; `weir resume {}` \
                         lets it go on. The last failure: {reason}",
                        self.setup.prepared.id
                    );
                }
            }
            FailureAction::Stop => anyhow::bail!(
                "operator `{label}` failed {count} times within {span}, more than its \
                 `on_failure.max_failures` ({max}), so the pipeline stops; the last failure: \
                 {reason}"
            ),
        }
        Ok(())
    }

    /// Replaces a trapped instance with a fresh one of the same version,
    /// which sees the current watermark.
    fn restart(&mut self) -> Result<()> {
        self.instance = new_instance(&self.setup)?;
        self.instance.set_watermark(self.watermark);
        Ok(())
    }

    fn worker_metrics(&self) -> Option<&WorkerMetrics> {
        self.setup.metrics.workers.get(self.setup.index)
    }

    fn label(&self) -> String {
        format!(
            "{}@v{}",
            self.setup.prepared.id, self.setup.prepared.version
        )
    }
}

fn new_instance(setup: &WorkerSetup) -> Result<OperatorInstance> {
    OperatorInstance::new(
        &setup.prepared,
        &setup.config_json,
        &setup.limits,
        Arc::clone(&setup.metrics.counters),
    )
}
