//! Weir: a stream processor whose operators are sandboxed WebAssembly
//! components.
//!
//! A pipeline file ([`config::Pipeline`]) declares sources, a chain of
//! operators and sinks. Each operator is a component implementing the
//! `weir:operator` WIT world; [`WasmEngine::prepare`] validates and compiles it
//! once, and [`runtime::run`] runs the pipeline with one instance per worker,
//! batches of Arrow records crossing the Wasm boundary as columns.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let pipeline = weir::config::Pipeline::load("examples/etl-cleanse/pipeline.toml".as_ref())?;
//! let engine = weir::WasmEngine::new()?;
//! let operators = weir::operators::prepare_all(&pipeline, &engine)?;
//! let summary = weir::runtime::run(&pipeline, &engine, operators)?;
//! println!("{summary}");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

pub mod builder;
pub mod checkpoint;
pub mod codec;
pub mod config;
pub mod control;
#[doc(hidden)]
pub mod fuzzing;
pub mod graph;
pub mod operators;
pub mod runtime;
pub mod scaffold;
pub mod sinks;
pub mod sources;
pub mod toolchain;
pub mod wasm;

pub use wasm::{OperatorInstance, PreparedOperator, WasmEngine};
