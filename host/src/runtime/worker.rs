//! One parallel worker of an operator: its Wasm instance, the keyed state of
//! the keys it owns, and the handling of records the operator cannot take.

use anyhow::{Result, bail};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;
use tokio::sync::mpsc::Receiver;

use super::dead_letter::{DeadLetter, DeadLetters};
use super::keys::row_keys;
use super::message::{Envelope, Message};
use super::metrics::OperatorMetrics;
use super::route::Route;
use super::swap::{SwapOrder, SwapReply, VersionStats, migrate_states};
use crate::codec::row_to_json;
use crate::config::Limits;
use crate::wasm::{
    CallError, DecodedOutput, KeyGroupArg, MapStore, OperatorInstance, PreparedOperator, StateKind,
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
}

/// A worker: runs batches through its instance and routes what comes out.
pub struct Worker {
    setup: WorkerSetup,
    instance: OperatorInstance,
    /// Value state of the keys this worker owns (JSON, as the guest wrote it).
    values: HashMap<String, Vec<u8>>,
    maps: MapStore,
    /// When the last batch finished.
    last_batch_done: Option<Instant>,
    /// Set by a swap until the new version finishes its first batch: when
    /// the old version finished its last one.
    swapped_at: Option<Option<Instant>>,
}

impl Worker {
    /// Instantiates the operator for this worker.
    ///
    /// # Errors
    /// When instantiation or `init` fails, or a keyed operator has no `key_by`.
    pub fn new(setup: WorkerSetup) -> Result<Self> {
        let instance = new_instance(&setup)?;
        if instance.kind == StateKind::Keyed && setup.key_by.is_none() {
            bail!(
                "operator `{}` is a keyed operator: give it a `key_by` field in the pipeline file",
                setup.prepared.id
            );
        }
        Ok(Self {
            setup,
            instance,
            values: HashMap::new(),
            maps: MapStore::new(),
            last_batch_done: None,
            swapped_at: None,
        })
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
        while let Some(envelope) = input.blocking_recv() {
            match envelope {
                Envelope::Batch(message) => {
                    self.setup
                        .metrics
                        .records_in
                        .fetch_add(message.rows() as u64, Ordering::Relaxed);
                    self.process(&message)?;
                    let now = Instant::now();
                    if let Some(previous) = self.swapped_at.take() {
                        self.setup.stats.batch_done(previous, now);
                    }
                    self.last_batch_done = Some(now);
                }
                Envelope::Swap(order) => self.swap(*order),
            }
        }
        Ok(())
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
            match migrate_states(&mut instance, from, &self.values) {
                Ok(migrated) => {
                    let ready = SwapReply::Ready {
                        keys: migrated.len(),
                        took: started.elapsed(),
                    };
                    // The old version stays unless every worker is ready.
                    if reply.send(ready).is_err() || verdict.recv() != Ok(true) {
                        return;
                    }
                    // Same map, untouched since: same iteration order.
                    for (state, new) in self.values.values_mut().zip(migrated) {
                        *state = new;
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
            self.values.len()
        );
        self.instance = instance;
        self.setup.prepared = prepared;
        self.setup.stats = stats;
        self.swapped_at = Some(self.last_batch_done);
    }

    fn process(&mut self, message: &Message) -> Result<()> {
        match self.call(message) {
            Ok(output) => self.deliver(message, output),
            Err(CallError::Failed(reason)) => {
                let reason = format!("the operator failed the whole batch: {reason}");
                self.dead_letter_all(message, &reason)
            }
            Err(CallError::Trap(reason)) => {
                tracing::warn!(
                    operator = %self.label(),
                    "trapped on a batch of {} records: {reason}; restarting it",
                    message.rows()
                );
                self.instance = new_instance(&self.setup)?;
                if message.rows() <= 1 {
                    return self.dead_letter_all(message, &reason);
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

    fn call(&mut self, message: &Message) -> Result<DecodedOutput, CallError> {
        let Some(field) = &self.setup.key_by else {
            return self.instance.process(&message.batch, &[], &mut self.maps);
        };
        if self.instance.kind == StateKind::Stateless {
            return self.instance.process(&message.batch, &[], &mut self.maps);
        }
        let keys = row_keys(&message.batch, field);
        let mut index: HashMap<&str, usize> = HashMap::new();
        let mut groups: Vec<(&str, Vec<u32>)> = Vec::new();
        for (row, key) in keys.iter().enumerate() {
            match key.as_deref() {
                Some(key) => {
                    let g = *index.entry(key).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    groups[g].1.push(row as u32);
                }
                None => {
                    let reason = format!("missing key field `{field}`");
                    self.dead_letter_row(message, row, &reason)
                        .map_err(|e| CallError::Failed(e.to_string()))?;
                }
            }
        }
        let args: Vec<KeyGroupArg<'_>> = groups
            .iter()
            .map(|(key, rows)| KeyGroupArg {
                key,
                rows,
                state: self.values.get(*key).map(Vec::as_slice),
            })
            .collect();
        let output = self
            .instance
            .process(&message.batch, &args, &mut self.maps)?;
        for (group, state) in &output.state_updates {
            let Some((key, _)) = groups.get(*group as usize) else {
                return Err(CallError::Failed(format!(
                    "state update for unknown key group {group}"
                )));
            };
            let keys = &self.setup.metrics.state_keys;
            match state {
                Some(bytes) => {
                    if self
                        .values
                        .insert((*key).to_owned(), bytes.clone())
                        .is_none()
                    {
                        keys.fetch_add(1, Ordering::Relaxed);
                    }
                }
                None => {
                    if self.values.remove(*key).is_some() {
                        keys.fetch_sub(1, Ordering::Relaxed);
                    }
                }
            }
        }
        Ok(output)
    }

    fn deliver(&mut self, message: &Message, output: DecodedOutput) -> Result<()> {
        for (row, reason) in &output.rejected {
            self.dead_letter_row(message, *row as usize, reason)?;
        }
        for (name, batch, origins) in output.emitted {
            self.setup
                .metrics
                .records_out
                .fetch_add(origins.len() as u64, Ordering::Relaxed);
            let Some(route) = self.setup.outputs.get(&name) else {
                continue;
            };
            let derived = match batch {
                Some(batch) => message.derive(batch, &origins),
                // Every row kept, in order: pass the batch on without a copy.
                None if origins.iter().copied().eq(0..message.rows() as u32) => message.clone(),
                None => message.take(&origins)?,
            };
            route.send(derived)?;
        }
        Ok(())
    }

    fn dead_letter_all(&self, message: &Message, reason: &str) -> Result<()> {
        (0..message.rows()).try_for_each(|row| self.dead_letter_row(message, row, reason))
    }

    fn dead_letter_row(&self, message: &Message, row: usize, reason: &str) -> Result<()> {
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
