//! The worker's side of a hot swap.
//!
//! A swap order travels in a worker's input channel like a barrier: batches
//! queued before it finish on the old version, batches after it go to the
//! new one, so no record is lost, duplicated or reordered within a key. The
//! new instance arrives already initialised; when the state layout changes,
//! the worker migrates its keys' states with it, reports, and waits for the
//! verdict of the other workers: one failed key refuses the version on
//! every worker, and the old state stays untouched.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::time::{Duration, Instant};

use crate::wasm::{CallError, MigrateError, OperatorInstance, PreparedOperator};

/// States migrated per guest call.
const MIGRATION_CHUNK: usize = 4096;

/// A new version for one worker.
pub struct SwapOrder {
    /// The compiled new version.
    pub prepared: PreparedOperator,
    /// This worker's instance of it, `init` already called.
    pub instance: OperatorInstance,
    /// `Some(v)` when the states must be migrated from layout `v`.
    pub migrate_from: Option<u32>,
    /// Where the worker reports that it is ready (or why not).
    pub reply: Sender<SwapReply>,
    /// Read when migrating: `true` commits, `false` (or a closed channel) aborts.
    pub verdict: Receiver<bool>,
    /// Figures of the new version, shared by its workers.
    pub stats: std::sync::Arc<VersionStats>,
}

/// A worker's answer to a [`SwapOrder`].
#[derive(Debug)]
pub enum SwapReply {
    /// Ready (migrated this many keys in this time).
    Ready {
        /// Keys migrated by this worker.
        keys: usize,
        /// Time the migration took on this worker.
        took: Duration,
    },
    /// The migration failed for a key.
    Refused(String),
}

/// What the workers observed of one version.
#[derive(Debug, Default)]
pub struct VersionStats {
    /// When the first batch processed by this version finished.
    pub first_batch_done: Mutex<Option<Instant>>,
    /// Longest gap, over the workers, between the last batch finished by the
    /// old version and the first finished by this one, in microseconds.
    pub pause_us: AtomicU64,
}

impl VersionStats {
    /// Records a batch finished by this version on a worker whose previous
    /// batch finished at `previous` (on the old version when `first` is set).
    pub fn batch_done(&self, previous: Option<Instant>, now: Instant) {
        if let Ok(mut first) = self.first_batch_done.lock() {
            first.get_or_insert(now);
        }
        if let Some(previous) = previous {
            let gap = now.saturating_duration_since(previous).as_micros() as u64;
            self.pause_us.fetch_max(gap, Ordering::Relaxed);
        }
    }
}

/// Migrates every state of a worker with the new instance, in chunks, and
/// returns the new states in the states' iteration order (they are not
/// touched, so the old version can go on with them if the swap is refused).
///
/// # Errors
/// The reason, naming the first key that could not be migrated.
pub fn migrate_states(
    instance: &mut OperatorInstance,
    from: u32,
    values: &super::state::ValueStates,
) -> Result<Vec<Vec<u8>>, String> {
    let mut migrated = Vec::with_capacity(values.len());
    values.for_each_chunk(MIGRATION_CHUNK, |chunk| {
        let states: Vec<&[u8]> = chunk.iter().map(|(_, v)| *v).collect();
        match instance.migrate(from, &states) {
            Ok(new) if new.len() == chunk.len() => {
                migrated.extend(new);
                Ok(())
            }
            Ok(new) => Err(format!(
                "`migrate` returned {} states for {} keys",
                new.len(),
                chunk.len()
            )),
            Err(MigrateError::Key { index, reason }) => {
                let key = chunk.get(index).map_or("?", |(k, _)| *k);
                Err(format!(
                    "migrating the state of key `{key}` failed: {reason}"
                ))
            }
            Err(MigrateError::Call(CallError::Trap(reason) | CallError::Failed(reason))) => {
                let first = chunk.first().map_or("?", |(k, _)| *k);
                Err(format!(
                    "migrating {} states (from key `{first}` on) failed: {reason}",
                    chunk.len()
                ))
            }
        }
    })?;
    Ok(migrated)
}
