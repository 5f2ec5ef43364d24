//! One running instance of an operator component.

use anyhow::{Result, anyhow};
use arrow::record_batch::RecordBatch;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::{Func, ResourceTable};
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;

use super::bindings::{OperatorComponent, types};
use super::convert::{self, BatchArg, DecodedOutput, KeyGroupArg, Scratch};
use super::engine::EPOCH_TICK;
use super::host_state::{HostState, MapStore};
use super::prepare::{PreparedOperator, StateKind};
use crate::config::Limits;
use crate::runtime::RowTimes;

/// Why a call did not produce an output.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The guest trapped (panic, out of bounds, memory limit, timeout): the
    /// instance is dead and must be replaced.
    #[error("{0}")]
    Trap(String),
    /// The guest returned an error for the whole call, or returned data the
    /// host refuses; the instance can go on.
    #[error("{0}")]
    Failed(String),
}

/// Why a migration call did not convert every state.
#[derive(Debug)]
pub enum MigrateError {
    /// The guest could not convert the state at `index` of the call.
    Key {
        /// Index of the state in the call.
        index: usize,
        /// The guest's reason.
        reason: String,
    },
    /// The call itself failed or trapped.
    Call(CallError),
}

/// A live instance of an operator with its own store, memory and limits.
pub struct OperatorInstance {
    store: Store<HostState>,
    process: Func,
    on_timer: Func,
    migrate: Func,
    /// What `init` declared.
    pub kind: StateKind,
    /// The state layout version `init` declared.
    pub state_version: u32,
    timeout_ticks: u64,
    scratch: Scratch,
    limits: Limits,
}

const STDERR_CAPACITY: usize = 64 * 1024;

impl OperatorInstance {
    /// Instantiates the operator and calls its `init` with `config` (JSON).
    ///
    /// # Errors
    /// When instantiation fails or `init` traps or returns an error.
    pub fn new(
        prepared: &PreparedOperator,
        config: &str,
        limits: &Limits,
        counters: Arc<Mutex<HashMap<String, i64>>>,
    ) -> Result<Self> {
        let label: Arc<str> = format!("{}@v{}", prepared.id, prepared.version).into();
        let stderr = MemoryOutputPipe::new(STDERR_CAPACITY);
        // No files, sockets, environment or arguments: the guest sees an
        // empty world except for a captured stderr (for panic messages).
        let wasi = WasiCtxBuilder::new().stderr(stderr.clone()).build();
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory_mib.saturating_mul(1 << 20))
                .trap_on_grow_failure(true)
                .build(),
            label: Arc::clone(&label),
            stderr,
            call_keys: Vec::new(),
            maps: MapStore::new(),
            pending: HashMap::new(),
            watermark: i64::MIN,
            event_times: None,
            counters,
        };
        let engine = prepared.pre.engine();
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        let timeout_ticks =
            (limits.call_timeout.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(timeout_ticks);
        let instance = prepared
            .pre
            .instance_pre()
            .instantiate(&mut store)
            .map_err(|e| anyhow!("operator `{label}`: instantiation failed: {e:#}"))?;
        let bindings = OperatorComponent::new(&mut store, &instance)
            .map_err(|e| anyhow!("operator `{label}`: {e:#}"))?;
        let func = |store: &mut Store<HostState>, index| {
            instance
                .get_func(&mut *store, index)
                .ok_or_else(|| anyhow!("operator `{label}`: missing export"))
        };
        let process = func(&mut store, &prepared.exports.process)?;
        let on_timer = func(&mut store, &prepared.exports.on_timer)?;
        let migrate = func(&mut store, &prepared.exports.migrate)?;
        let info = bindings
            .weir_operator_operator()
            .call_init(&mut store, config)
            .map_err(|e| {
                anyhow!(
                    "operator `{label}`: `init` trapped: {}",
                    trap_message(&store, &e, limits)
                )
            })?
            .map_err(|e| anyhow!("operator `{label}`: `init` refused the config: {e}"))?;
        let kind = match info.kind {
            types::OperatorKind::Stateless => StateKind::Stateless,
            types::OperatorKind::Keyed => StateKind::Keyed,
        };
        Ok(Self {
            store,
            process,
            on_timer,
            migrate,
            kind,
            state_version: info.state_version,
            timeout_ticks,
            scratch: Scratch::default(),
            limits: limits.clone(),
        })
    }

    /// Processes one batch. For a keyed operator `groups` lists the batch's
    /// keys and `maps` holds the worker's map states; writes to them are
    /// applied only when the call succeeds.
    ///
    /// # Errors
    /// [`CallError::Trap`] when the guest trapped (this instance is dead),
    /// [`CallError::Failed`] when it refused the batch or returned bad data.
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        event_times: Option<&Arc<RowTimes>>,
        groups: &[KeyGroupArg<'_>],
        maps: &mut MapStore,
    ) -> Result<DecodedOutput, CallError> {
        self.store.data_mut().event_times = event_times.cloned();
        let arg = convert::batch_arg(batch, &mut self.scratch)
            .map_err(|e| CallError::Failed(e.to_string()))?;
        let typed = self
            .process
            .typed::<(BatchArg<'_>, &[KeyGroupArg<'_>]), (Result<types::Output, String>,)>(
                &self.store,
            )
            .map_err(|e| CallError::Failed(format!("`process` has the wrong type: {e}")))?;
        begin_call(&mut self.store, groups, maps, self.timeout_ticks);
        let result = typed.call(&mut self.store, (arg, groups));
        finish(
            &mut self.store,
            maps,
            result,
            batch.num_rows(),
            &self.limits,
        )
    }

    /// Runs the operator's timer function for fired timers.
    ///
    /// # Errors
    /// As [`OperatorInstance::process`].
    pub fn on_timer(
        &mut self,
        fired: &[types::FiredTimer],
        groups: &[KeyGroupArg<'_>],
        maps: &mut MapStore,
    ) -> Result<DecodedOutput, CallError> {
        let typed = self
            .on_timer
            .typed::<(&[types::FiredTimer], &[KeyGroupArg<'_>]), (Result<types::Output, String>,)>(
                &self.store,
            )
            .map_err(|e| CallError::Failed(format!("`on-timer` has the wrong type: {e}")))?;
        let watermark = self.store.data().watermark;
        self.store.data_mut().event_times = Some(Arc::new(RowTimes {
            times: fired.iter().map(|t| t.time).collect(),
            watermarks: vec![watermark; fired.len()],
        }));
        begin_call(&mut self.store, groups, maps, self.timeout_ticks);
        let result = typed.call(&mut self.store, (fired, groups));
        finish(&mut self.store, maps, result, fired.len(), &self.limits)
    }

    /// Converts many keys' states from layout `from_version` to this
    /// version's, in order.
    ///
    /// # Errors
    /// [`MigrateError::Key`] names the state the guest could not convert.
    pub fn migrate(
        &mut self,
        from_version: u32,
        states: &[&[u8]],
    ) -> Result<Vec<Vec<u8>>, MigrateError> {
        let typed = self
            .migrate
            .typed::<(u32, &[&[u8]]), (Result<Vec<Vec<u8>>, types::MigrationError>,)>(&self.store)
            .map_err(|e| {
                MigrateError::Call(CallError::Failed(format!(
                    "`migrate` has the wrong type: {e}"
                )))
            })?;
        self.store.set_epoch_deadline(self.timeout_ticks);
        match typed.call(&mut self.store, (from_version, states)) {
            Ok((Ok(new_states),)) => Ok(new_states),
            Ok((Err(e),)) => Err(MigrateError::Key {
                index: e.index as usize,
                reason: e.reason,
            }),
            Err(e) => Err(MigrateError::Call(CallError::Trap(trap_message(
                &self.store,
                &e,
                &self.limits,
            )))),
        }
    }

    /// Sets the event-time watermark the guest sees through `current-time`.
    pub fn set_watermark(&mut self, watermark: i64) {
        self.store.data_mut().watermark = watermark;
    }
}

fn begin_call(
    store: &mut Store<HostState>,
    groups: &[KeyGroupArg<'_>],
    maps: &mut MapStore,
    timeout_ticks: u64,
) {
    let data = store.data_mut();
    data.call_keys.clear();
    data.call_keys
        .extend(groups.iter().map(|g| g.key.to_owned()));
    std::mem::swap(&mut data.maps, maps);
    store.set_epoch_deadline(timeout_ticks);
}

fn finish(
    store: &mut Store<HostState>,
    maps: &mut MapStore,
    result: wasmtime::Result<(Result<types::Output, String>,)>,
    input_rows: usize,
    limits: &Limits,
) -> Result<DecodedOutput, CallError> {
    let outcome = match result {
        Ok((Ok(output),)) => convert::decode_output(output, input_rows)
            .map_err(|e| CallError::Failed(format!("the operator returned invalid output: {e:#}"))),
        Ok((Err(reason),)) => Err(CallError::Failed(reason)),
        Err(e) => Err(CallError::Trap(trap_message(store, &e, limits))),
    };
    let data = store.data_mut();
    if outcome.is_ok() {
        data.commit_pending();
    } else {
        data.pending.clear();
    }
    std::mem::swap(&mut data.maps, maps);
    outcome
}

/// A trap explained: the trap, what it means for the limits, and the panic
/// message the guest printed, if any.
fn trap_message(store: &Store<HostState>, error: &wasmtime::Error, limits: &Limits) -> String {
    let mut message = match error.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::Interrupt) => format!(
            "the call ran longer than the call timeout ({})",
            humantime::format_duration(limits.call_timeout)
        ),
        Some(trap) => format!("trap: {trap}"),
        None => format!("{error:#}"),
    };
    let stderr = store.data().stderr.contents();
    let stderr = String::from_utf8_lossy(&stderr);
    let stderr = stderr.trim();
    if !stderr.is_empty() {
        // The last lines hold the panic message.
        let tail: Vec<&str> = stderr.lines().rev().take(3).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        message.push_str(&format!(" (guest stderr: {})", tail.join(" | ")));
    }
    message
}
