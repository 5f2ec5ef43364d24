//! Turning the pipeline's `[[operator]]` entries into prepared components.

use anyhow::{Context, Result};
use std::path::PathBuf;

use crate::builder::build_operator;
use crate::config::{ModuleSource, Pipeline};
use crate::wasm::{PreparedOperator, WasmEngine};

/// The component file of every operator, building the operator projects that changed.
///
/// # Errors
/// When a crate fails to build.
pub fn component_files(pipeline: &Pipeline) -> Result<Vec<(String, PathBuf)>> {
    pipeline
        .config
        .operators
        .iter()
        .map(|op| {
            let path = match op.module_source(&pipeline.base_dir)? {
                ModuleSource::File(path) => path,
                ModuleSource::Crate(dir) => {
                    build_operator(&dir).with_context(|| format!("operator `{}`", op.id))?
                }
            };
            Ok((op.id.clone(), path))
        })
        .collect()
}

/// Reads, validates and compiles every operator, in pipeline order, before
/// any data flows.
///
/// # Errors
/// When a file is missing, is not a component, or does not implement the
/// operator world; the message names the operator and what is wrong.
pub fn prepare_all(pipeline: &Pipeline, engine: &WasmEngine) -> Result<Vec<PreparedOperator>> {
    component_files(pipeline)?
        .into_iter()
        .map(|(id, path)| {
            let bytes = std::fs::read(&path)
                .with_context(|| format!("operator `{id}`: cannot read `{}`", path.display()))?;
            engine
                .prepare(&id, 1, &bytes)
                .with_context(|| format!("component file `{}`", path.display()))
        })
        .collect()
}
