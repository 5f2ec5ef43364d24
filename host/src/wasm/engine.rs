//! The shared wasmtime engine, its linker and its epoch clock.

use anyhow::Result;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, OptLevel};

use super::bindings::OperatorComponent;
use super::host_state::HostState;

/// How often the epoch advances: the granularity of call timeouts.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(10);

/// One wasmtime engine for the whole process, with the host functions linked.
#[derive(Clone)]
pub struct WasmEngine {
    pub(crate) engine: Engine,
    pub(crate) linker: Arc<Linker<HostState>>,
    pub(crate) cache_dir: Option<PathBuf>,
    _ticker: Arc<EpochTicker>,
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
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .epoch_interruption(true)
            .cranelift_opt_level(OptLevel::Speed)
            .parallel_compilation(true);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        OperatorComponent::add_to_linker::<HostState, HasSelf<HostState>>(&mut linker, |s| s)?;
        let ticker = EpochTicker::start(engine.clone());
        Ok(Self {
            engine,
            linker: Arc::new(linker),
            cache_dir,
            _ticker: Arc::new(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

/// A thread that advances the engine's epoch every [`EPOCH_TICK`] until dropped.
struct EpochTicker {
    stop: Arc<AtomicBool>,
}

impl EpochTicker {
    fn start(engine: Engine) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        std::thread::Builder::new()
            .name("weir-epoch".into())
            .spawn(move || {
                while !flag.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    engine.increment_epoch();
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
