//! The shared wasmtime engine, its linker and its epoch clock.

use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel, Strategy};

use super::bindings::OperatorComponent;
use super::host_state::HostState;

/// How often the epoch advances: the granularity of call timeouts.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// The wasmtime engines of the process, with the host functions linked: the
/// optimizing one (Cranelift) that runs operators, and a baseline one (Winch)
/// that compiles several times faster, so a deploy of a never-seen component
/// starts at once and moves to optimized code when it is ready.
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<HostState>>,
    pub(crate) baseline: Option<(Engine, Arc<Linker<HostState>>)>,
    pub(crate) cache_dir: Option<PathBuf>,
    _ticker: Arc<EpochTicker>,
}

/// How a call that runs too long is stopped.
///
/// Weir uses [`CpuLimit::Epoch`]: a timer thread advances the engine's epoch
/// and generated code checks it at function entries and loop back-edges.
/// The others exist to measure what that costs (`cargo bench --bench
/// operators`, group "q1 cpu limit"): fuel counts every operation instead,
/// and `Off` stops nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuLimit {
    /// Epoch interruption: `call_timeout` is enforced (the default).
    Epoch,
    /// Fuel metering with unbounded fuel: the cost of counting, for comparison.
    Fuel,
    /// No check at all: a looping guest is never stopped. Benchmarks only.
    Off,
}

fn engine_with(
    strategy: Strategy,
    cpu_limit: CpuLimit,
) -> Result<(Engine, Arc<Linker<HostState>>)> {
    let mut config = Config::new();
    config
        .strategy(strategy)
        .wasm_component_model(true)
        .epoch_interruption(cpu_limit == CpuLimit::Epoch)
        .consume_fuel(cpu_limit == CpuLimit::Fuel)
        .cranelift_opt_level(OptLevel::Speed)
        .parallel_compilation(true);
    let engine = Engine::new(&config)?;
    let mut linker = Linker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
    OperatorComponent::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
    Ok((engine, Arc::new(linker)))
}

impl WasmEngine {
    /// An engine with Cranelift, epoch interruption (so a looping guest can
    /// be stopped) and the compiled-code cache in its default folder.
    ///
    /// # Errors
    /// When wasmtime cannot be configured on this machine.
    pub fn new() -> Result<Self> {
        Self::with_cache_dir(super::cache::default_dir())
    }

    /// Like [`WasmEngine::new`] with an explicit cache folder (`None`: no cache).
    ///
    /// # Errors
    /// When wasmtime cannot be configured on this machine.
    pub fn with_cache_dir(cache_dir: Option<PathBuf>) -> Result<Self> {
        Self::with_cpu_limit(cache_dir, CpuLimit::Epoch)
    }

    /// Like [`WasmEngine::with_cache_dir`] with another way of stopping long
    /// calls, to measure what [`CpuLimit::Epoch`] costs.
    ///
    /// # Errors
    /// When wasmtime cannot be configured on this machine.
    pub fn with_cpu_limit(cache_dir: Option<PathBuf>, cpu_limit: CpuLimit) -> Result<Self> {
        let (engine, linker) = engine_with(Strategy::Cranelift, cpu_limit)?;
        // Winch exists for x86-64 and aarch64 only; elsewhere every deploy
        // compiles optimized code.
        let baseline = engine_with(Strategy::Winch, cpu_limit)
            .map_err(|e| tracing::debug!("no baseline compiler: {e}"))
            .ok();
        let mut engines = vec![engine.clone()];
        engines.extend(baseline.as_ref().map(|(e, _)| e.clone()));
        let ticker = EpochTicker::start(engines);
        Ok(Self {
            engine,
            linker,
            baseline,
            cache_dir,
            _ticker: Arc::new(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// A thread that advances the engines' epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engines: Vec<Engine>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engines.iter().for_each(Engine::increment_epoch);
                }
            })
            .map(|_| ())
            .unwrap_or_else(|e| tracing::warn!("no epoch thread, call timeouts are off: {e}"));
        Self { stop }
    }
}

impl Drop for EpochTicker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}
