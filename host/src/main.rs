//! The `weir` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

use weir::config::Pipeline;
use weir::operators::{component_files, prepare_all};
use weir::{WasmEngine, runtime};

/// Weir runs stream pipelines whose operators are sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline to the end of its input (building its Rust operators if needed).
    Run {
        /// The pipeline file.
        pipeline: PathBuf,
        /// Replace the path of the pipeline's single file source (`-`: stdin).
        #[arg(long, short)]
        input: Option<PathBuf>,
        /// Replace the path of the pipeline's single file sink (`-`: stdout).
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Replace the dead-letter file (`-`: stderr).
        #[arg(long)]
        dead_letter: Option<PathBuf>,
    },
    /// Build the pipeline's Rust operator crates into components.
    Build {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Check the pipeline file and every operator component without running.
    Check {
        /// The pipeline file.
        pipeline: PathBuf,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Run {
            pipeline,
            input,
            output,
            dead_letter,
        } => {
            let mut pipeline = Pipeline::load(&pipeline)?;
            if let Some(input) = input {
                pipeline.override_input(&input)?;
            }
            if let Some(output) = output {
                pipeline.override_output(&output)?;
            }
            if let Some(dead_letter) = dead_letter {
                pipeline.override_dead_letter(&dead_letter)?;
            }
            let engine = WasmEngine::new()?;
            let operators = prepare_all(&pipeline, &engine)?;
            let summary = runtime::run(&pipeline, operators)?;
            eprintln!("{summary}");
            Ok(())
        }
        Command::Build { pipeline } => {
            let pipeline = Pipeline::load(&pipeline)?;
            for (id, path) in component_files(&pipeline)? {
                println!("{id}: {}", path.display());
            }
            Ok(())
        }
        Command::Check { pipeline } => {
            let pipeline = Pipeline::load(&pipeline)?;
            let engine = WasmEngine::new()?;
            let operators =
                prepare_all(&pipeline, &engine).context("the pipeline is not runnable")?;
            for op in &operators {
                println!(
                    "{}: ok (component {} bytes, sha256 {}, {})",
                    op.id,
                    op.size,
                    &op.content_hash[..12],
                    if op.from_cache {
                        "compiled code cached"
                    } else {
                        "compiled"
                    }
                );
            }
            println!("{}: ok", pipeline.file.display());
            Ok(())
        }
    }
}
