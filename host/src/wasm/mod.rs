//! Operator components: validate, compile (with an on-disk cache),
//! instantiate, and call them with column batches.
//!
//! The split follows wasmtime's own: [`WasmEngine::prepare`] does everything
//! that is slow or can fail on a bad module (validation, compilation, linking)
//! once, off the hot path, and returns a [`PreparedOperator`]; instantiating
//! one ([`OperatorInstance::new`]) is cheap, so every parallel worker and
//! every restart after a trap gets a fresh instance.

// Generated from `wit/`, whose doc comments are the documentation.
#[allow(missing_docs)]
pub(crate) mod bindings;
pub(crate) mod cache;
pub(crate) mod convert;
mod engine;
mod guest_output;
mod host_state;
mod instance;
mod prepare;

pub use bindings::types::{FiredTimer, TimeDomain, TimerRequest};
pub use convert::{DecodedOutput, KeyGroupArg};
pub use engine::{CpuLimit, WasmEngine};
pub use instance::{CallError, MigrateError, OperatorInstance};
pub use prepare::{PreparedOperator, StateKind, Tier};
