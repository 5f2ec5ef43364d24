//! Validation and compilation of an operator component, before any data flows.

use anyhow::{Context, Result, anyhow, bail};
use sha2::{Digest, Sha256};
use std::time::Duration;
use wasmtime::component::{Component, ComponentExportIndex, InstancePre, Linker};

use super::bindings::OperatorComponentPre;
use super::engine::WasmEngine;
use super::host_state::HostState;

/// The name of the interface an operator component exports.
pub const OPERATOR_INTERFACE: &str = "weir:operator/operator@0.1.0";

/// Whether an operator keeps keyed state (declared by the component's `init`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// map, filter, filter_map, flat_map.
    Stateless,
    /// A keyed process function.
    Keyed,
}

/// Which compiler made a prepared operator's code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tier {
    /// Cranelift: the code operators run on.
    Optimized,
    /// Winch: compiled several times faster, runs slower; a deploy starts on
    /// it when no optimized code is cached, and moves on when that is ready.
    Baseline,
}

/// A component that was validated, compiled and linked: instantiating it is
/// cheap, so one serves every worker and every restart.
#[derive(Clone)]
pub struct PreparedOperator {
    /// The operator id from the pipeline file.
    pub id: String,
    /// Deploy number of this version (1 for the first).
    pub version: u32,
    /// SHA-256 of the component bytes, hex.
    pub content_hash: String,
    /// Size of the component file.
    pub size: usize,
    /// The component itself, kept with every checkpoint that runs it.
    pub bytes: std::sync::Arc<[u8]>,
    /// Whether compilation was skipped thanks to the cache.
    pub from_cache: bool,
    /// Time spent compiling or loading from the cache.
    pub compile_time: Duration,
    /// Which compiler made the code.
    pub tier: Tier,
    pub(crate) pre: OperatorComponentPre<HostState>,
    pub(crate) exports: ExportIndices,
}

#[derive(Clone)]
pub(crate) struct ExportIndices {
    pub(crate) process: ComponentExportIndex,
    pub(crate) on_timer: ComponentExportIndex,
    pub(crate) migrate: ComponentExportIndex,
}

/// What the first bytes of a file say it is.
fn check_is_component(bytes: &[u8]) -> Result<()> {
    match bytes.get(0..8) {
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => bail!(
            "it is a core WebAssembly module, not a component; build it for the \
             `wasm32-wasip2` target (or run `wasm-tools component new`)"
        ),
        Some([0, b'a', b's', b'm', _, _, 1, 0]) => Ok(()),
        _ => bail!("it is not a WebAssembly file (no `\\0asm` header)"),
    }
}

impl WasmEngine {
    /// Validates, compiles (or loads from the cache) and links a component
    /// for operator `id`.
    ///
    /// # Errors
    /// When the bytes are not a component, the component does not implement
    /// the `weir:operator` world, or it imports something the host does not
    /// provide; the message says which.
    pub fn prepare(&self, id: &str, version: u32, bytes: &[u8]) -> Result<PreparedOperator> {
        let context = || format!("operator `{id}` (version {version})");
        check_is_component(bytes).with_context(context)?;
        let content_hash = hex::encode(Sha256::digest(bytes));
        let started = std::time::Instant::now();
        let (component, from_cache) = super::cache::load_or_compile(
            &self.engine,
            self.cache_dir.as_deref(),
            &content_hash,
            bytes,
        )
        .map_err(|e| anyhow!("{}: invalid component: {e:#}", context()))?;
        let compiled = Compiled {
            content_hash,
            size: bytes.len(),
            bytes: bytes.into(),
            from_cache,
            compile_time: started.elapsed(),
            tier: Tier::Optimized,
        };
        link(&self.linker, &component, id, version, compiled)
    }

    /// Like [`WasmEngine::prepare`], for a deploy into a running pipeline:
    /// optimized code when the cache has it (`weir build` fills it), else
    /// baseline code, compiled several times faster, to run until
    /// [`WasmEngine::prepare`] has the optimized code ready.
    ///
    /// # Errors
    /// As [`WasmEngine::prepare`].
    pub fn prepare_for_deploy(
        &self,
        id: &str,
        version: u32,
        bytes: &[u8],
    ) -> Result<PreparedOperator> {
        let Some((baseline, linker)) = &self.baseline else {
            return self.prepare(id, version, bytes);
        };
        check_is_component(bytes)
            .with_context(|| format!("operator `{id}` (version {version})"))?;
        let content_hash = hex::encode(Sha256::digest(bytes));
        if super::cache::load_cached(&self.engine, self.cache_dir.as_deref(), &content_hash)
            .is_some()
        {
            return self.prepare(id, version, bytes);
        }
        let started = std::time::Instant::now();
        match Component::from_binary(baseline, bytes) {
            Ok(component) => {
                let compiled = Compiled {
                    content_hash,
                    size: bytes.len(),
                    bytes: bytes.into(),
                    from_cache: false,
                    compile_time: started.elapsed(),
                    tier: Tier::Baseline,
                };
                link(linker, &component, id, version, compiled)
            }
            // Anything the baseline compiler cannot take, the optimizing one
            // compiles (or explains).
            Err(_) => self.prepare(id, version, bytes),
        }
    }
}

/// What compiling produced, before linking.
struct Compiled {
    content_hash: String,
    size: usize,
    bytes: std::sync::Arc<[u8]>,
    from_cache: bool,
    compile_time: Duration,
    tier: Tier,
}

fn link(
    linker: &Linker<HostState>,
    component: &Component,
    id: &str,
    version: u32,
    compiled: Compiled,
) -> Result<PreparedOperator> {
    let context = || format!("operator `{id}` (version {version})");
    let exports = export_indices(component).with_context(context)?;
    let instance_pre: InstancePre<HostState> = linker
        .instantiate_pre(component)
        .map_err(|e| anyhow!("{}: cannot link the component: {e:#}", context()))?;
    let pre = OperatorComponentPre::new(instance_pre).map_err(|e| {
        anyhow!(
            "{}: the component does not implement the `weir:operator/operator-component` \
             world: {e:#}",
            context()
        )
    })?;
    Ok(PreparedOperator {
        id: id.to_owned(),
        version,
        content_hash: compiled.content_hash,
        size: compiled.size,
        bytes: compiled.bytes,
        from_cache: compiled.from_cache,
        compile_time: compiled.compile_time,
        tier: compiled.tier,
        pre,
        exports,
    })
}

fn export_indices(component: &Component) -> Result<ExportIndices> {
    let interface = component
        .get_export_index(None, OPERATOR_INTERFACE)
        .ok_or_else(|| {
            anyhow!(
                "the component does not export `{OPERATOR_INTERFACE}`: it is not a Weir operator \
                 (is it built with the `weir-guest` SDK of this version?)"
            )
        })?;
    let function = |name: &str| {
        component
            .get_export_index(Some(&interface), name)
            .ok_or_else(|| anyhow!("`{OPERATOR_INTERFACE}` has no function `{name}`"))
    };
    Ok(ExportIndices {
        process: function("process")?,
        on_timer: function("on-timer")?,
        migrate: function("migrate")?,
    })
}
