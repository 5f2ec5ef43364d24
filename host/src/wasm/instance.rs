//! One running instance of an operator component.

use anyhow::{Result, anyhow};
use arrow::record_batch::RecordBatch;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use wasmtime::component::{Func, ResourceTable};
use wasmtime::{Store, StoreLimitsBuilder};
use wasmtime_wasi::WasiCtxBuilder;

use super::bindings::{OperatorComponent, types};
use super::convert::{self, BatchArg, DecodedOutput, KeyGroupArg, Scratch};
use super::engine::EPOCH_TICK;
use super::guest_output::{GuestOutput, Stream};
use super::host_state::HostState;
use super::host_state::MemoryLimiter;
use super::prepare::{PreparedOperator, StateKind};
use crate::config::{Capability, Limits};
use crate::runtime::{MapStates, RowTimes};

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

/// The guest's WASI world: no files, sockets, environment or arguments;
/// stdout and stderr go to the log; clocks and random numbers only when the
/// pipeline grants them (else a clock at 0 and a fixed random sequence).
fn sandbox(limits: &Limits, label: &Arc<str>, stderr: &GuestOutput) -> wasmtime_wasi::WasiCtx {
    let mut wasi = WasiCtxBuilder::new();
    wasi.stdout(GuestOutput::new(Arc::clone(label), Stream::Stdout))
        .stderr(stderr.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if !limits.allow.contains(&Capability::Clocks) {
        wasi.wall_clock(StoppedClock).monotonic_clock(StoppedClock);
    }
    if !limits.allow.contains(&Capability::Random) {
        use rand_wasi::SeedableRng;
        wasi.secure_random(rand_wasi::rngs::StdRng::seed_from_u64(0))
            .insecure_random(rand_wasi::rngs::StdRng::seed_from_u64(0))
            .insecure_random_seed(0);
    }
    wasi.build()
}

/// The clocks of a guest not granted the host's: always at 0.
struct StoppedClock;

impl wasmtime_wasi::HostWallClock for StoppedClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }
}

impl wasmtime_wasi::HostMonotonicClock for StoppedClock {
    fn resolution(&self) -> u64 {
        1
    }

    fn now(&self) -> u64 {
        0
    }
}

/// Most core instances, and likewise tables and memories, an operator
/// component may create: a componentize-py component, the largest kind we
/// build, has a few dozen.
const MAX_CORE_INSTANCES: usize = 100;

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
        let stderr = GuestOutput::new(Arc::clone(&label), Stream::Stderr);
        let wasi = sandbox(limits, &label, &stderr);
        let state = HostState {
            wasi,
            table: ResourceTable::new(),
            limits: MemoryLimiter {
                limits: StoreLimitsBuilder::new()
                    .memory_size(limits.memory_mib.saturating_mul(1 << 20))
                    .table_elements(limits.max_table_elements)
                    .instances(MAX_CORE_INSTANCES)
                    .tables(MAX_CORE_INSTANCES)
                    .memories(MAX_CORE_INSTANCES)
                    .trap_on_grow_failure(true)
                    .build(),
                refused: None,
            },
            label: Arc::clone(&label),
            stderr,
            call_keys: Vec::new(),
            maps: MapStates::default(),
            pending: HashMap::new(),
            store_error: None,
            watermark: i64::MIN,
            event_times: None,
            counters,
        };
        let engine = prepared.pre.engine();
        let mut store = Store::new(engine, state);
        store.limiter(|s| &mut s.limits);
        // Only an engine measuring fuel's cost counts fuel (`CpuLimit::Fuel`);
        // it gets all there is. Elsewhere this is refused, harmlessly.
        let _ = store.set_fuel(u64::MAX);
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
    /// applied only when the call succeeds and refuses no row.
    ///
    /// # Errors
    /// [`CallError::Trap`] when the guest trapped (this instance is dead),
    /// [`CallError::Failed`] when it refused the batch or returned bad data.
    pub fn process(
        &mut self,
        batch: &RecordBatch,
        event_times: Option<&Arc<RowTimes>>,
        groups: &[KeyGroupArg<'_>],
        maps: &mut MapStates,
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
        maps: &mut MapStates,
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
    maps: &mut MapStates,
    timeout_ticks: u64,
) {
    let data = store.data_mut();
    data.call_keys.clear();
    data.call_keys
        .extend(groups.iter().map(|g| g.key.to_owned()));
    std::mem::swap(&mut data.maps, maps);
    data.limits.refused = None;
    store.set_epoch_deadline(timeout_ticks);
}

fn finish(
    store: &mut Store<HostState>,
    maps: &mut MapStates,
    result: wasmtime::Result<(Result<types::Output, String>,)>,
    input_rows: usize,
    limits: &Limits,
) -> Result<DecodedOutput, CallError> {
    let outcome = match result {
        Ok((Ok(output),)) => {
            let emitted: usize = output.emitted.iter().map(|e| e.origins.len()).sum();
            let allowed = limits
                .max_output_per_record
                .saturating_mul(input_rows.max(1));
            if emitted > allowed {
                // As a trap: the batch is split until the records that
                // flood are found, and the instance (its memory full of
                // what it built) is replaced.
                let inputs = if input_rows == 1 { "record" } else { "records" };
                Err(CallError::Trap(format!(
                    "the call emitted {emitted} records for {input_rows} input {inputs}, over \
                     the limit of {} per record (`max_output_per_record`)",
                    limits.max_output_per_record
                )))
            } else {
                convert::decode_output(output, input_rows).map_err(|e| {
                    CallError::Failed(format!("the operator returned invalid output: {e:#}"))
                })
            }
        }
        Ok((Err(reason),)) => Err(CallError::Failed(reason)),
        Err(e) => Err(CallError::Trap(trap_message(store, &e, limits))),
    };
    let data = store.data_mut();
    // The map state store failing fails the call: its writes are dropped,
    // and its records go to the dead-letter output.
    let failed_store = |e: String| CallError::Failed(format!("map states: {e}"));
    let outcome = match data.store_error.take() {
        Some(e) => Err(failed_store(e)),
        None => outcome,
    };
    let outcome = match outcome {
        // A refused row's writes are mixed in with its neighbours': none
        // apply, and the worker runs the call again without it.
        Ok(output) if !output.rejected.is_empty() => {
            data.pending.clear();
            Ok(output)
        }
        Ok(output) => data
            .commit_pending()
            .map(|()| output)
            .map_err(|e| failed_store(format!("{e:#}"))),
        Err(e) => {
            data.pending.clear();
            Err(e)
        }
    };
    std::mem::swap(&mut data.maps, maps);
    outcome
}

/// A trap explained: the trap, what it means for the limits, and the panic
/// message the guest printed, if any.
fn trap_message(store: &Store<HostState>, error: &wasmtime::Error, limits: &Limits) -> String {
    let refused = store.data().limits.refused;
    let mut message = match (refused, error.downcast_ref::<wasmtime::Trap>()) {
        (Some(asked), _) => format!(
            "the operator exceeded its memory limit (`limits.memory_mib` = {} MiB): it asked \
             for {} MiB",
            limits.memory_mib,
            asked.div_ceil(1 << 20)
        ),
        (None, Some(wasmtime::Trap::Interrupt)) => format!(
            "the call ran longer than the call timeout ({})",
            humantime::format_duration(limits.call_timeout)
        ),
        (None, Some(trap)) => format!("trap: {trap}"),
        (None, None) => format!("{error:#}"),
    };
    // The last lines hold the panic message.
    let tail = store.data().stderr.tail();
    let tail: Vec<&str> = tail
        .iter()
        .map(|line| line.trim())
        .filter(|line| !line.is_empty())
        .collect();
    if !tail.is_empty() {
        message.push_str(&format!(" (guest stderr: {})", tail.join(" | ")));
    }
    if let Some(backtrace) = error.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames = operator_frames(backtrace);
        if !frames.is_empty() {
            message.push_str(&format!(" (wasm backtrace: {})", frames.join(" < ")));
        }
    }
    message
}

/// The innermost frames of a trap's backtrace that are the operator's own:
/// the panic machinery, the allocator, the standard library and the SDK's
/// glue are left out, so a dead letter says where in the operator it failed.
fn operator_frames(backtrace: &wasmtime::WasmBacktrace) -> Vec<String> {
    const RUNTIME_PREFIXES: [&str; 8] = [
        "std::",
        "core::",
        "alloc::",
        "__rust",
        "rust_panic",
        "abort",
        "dlmalloc",
        "weir:",
    ];
    const GLUE: [&str; 3] = ["weir_guest", "__Weir", "wit_bindgen"];
    let mut frames: Vec<(String, usize)> = Vec::new();
    for frame in backtrace.frames() {
        let Some(name) = frame.func_name() else {
            continue;
        };
        let name = format!("{:#}", rustc_demangle::demangle(name));
        if RUNTIME_PREFIXES.iter().any(|p| name.starts_with(p))
            || GLUE.iter().any(|g| name.contains(g))
        {
            continue;
        }
        // Recursion shows once, with its depth.
        if let Some((last, count)) = frames.last_mut()
            && *last == name
        {
            *count += 1;
        } else if frames.len() == 5 {
            break;
        } else {
            frames.push((name, 1));
        }
    }
    frames
        .into_iter()
        .map(|(name, count)| match count {
            1 => name,
            n => format!("{name} (x{n} in the backtrace)"),
        })
        .collect()
}
