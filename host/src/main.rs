//! The `weir` command line.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use weir::builder::{Language, build_operator};
use weir::config::Pipeline;
use weir::control::client::{AdminClient, DEFAULT_ADMIN};
use weir::control::{DeployReport, OperatorStatus, admin, watch};
use weir::operators::{component_files, prepare_all};
use weir::scaffold::new_project;
use weir::toolchain::Toolchain;
use weir::{WasmEngine, checkpoint, runtime};

/// mimalloc instead of the system allocator: a run allocates and frees
/// batch-sized buffers all the time, and glibc hands large ones back to the
/// kernel, which then zeroes fresh pages for the next batch.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Weir runs stream pipelines whose operators are sandboxed WebAssembly components.
#[derive(Parser)]
#[command(name = "weir", version, about)]
struct Cli {
    /// How log lines are written to stderr: `text` for people, `json` (one
    /// object per line, with the operator and other fields) for log collectors.
    #[arg(long, global = true, env = "WEIR_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline to the end of its input (building its operator projects if needed).
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
        /// Serve the admin API on this loopback address (overrides `admin`).
        #[arg(long)]
        admin: Option<SocketAddr>,
        /// Where checkpoints go (overrides `checkpoint_dir`; default `.weir/checkpoints` beside
        /// the pipeline file).
        #[arg(long)]
        checkpoint_dir: Option<PathBuf>,
        /// Time between checkpoints, e.g. `500ms` (overrides `checkpoint_interval`; default 10s).
        #[arg(long, value_parser = humantime::parse_duration)]
        checkpoint_interval: Option<std::time::Duration>,
        /// Start over: delete the checkpoints of an earlier run instead of resuming from them.
        #[arg(long, conflicts_with = "from_savepoint")]
        fresh: bool,
        /// Start from this savepoint (`weir savepoint`), also after the pipeline file changed.
        #[arg(long)]
        from_savepoint: Option<PathBuf>,
        /// Start even if the checkpoint holds state of operators the pipeline no longer has.
        #[arg(long)]
        allow_non_restored_state: bool,
    },
    /// Take a savepoint of a running pipeline: a checkpoint kept until deleted, which
    /// `weir run --from-savepoint` starts from.
    Savepoint {
        /// The folder to write it to (default: under the checkpoint folder's `savepoints`).
        path: Option<PathBuf>,
        /// The running pipeline's admin address.
        #[arg(long, env = "WEIR_ADMIN", default_value = DEFAULT_ADMIN)]
        admin: SocketAddr,
    },
    /// Deploy a component as the next version of an operator of a running pipeline.
    Deploy {
        /// The operator id.
        operator: String,
        /// The component file, or an operator project folder (Rust, Python, JavaScript) to build first.
        component: PathBuf,
        /// The running pipeline's admin address.
        #[arg(long, env = "WEIR_ADMIN", default_value = DEFAULT_ADMIN)]
        admin: SocketAddr,
    },
    /// Go back to an operator's previous version in a running pipeline.
    Rollback {
        /// The operator id.
        operator: String,
        /// The running pipeline's admin address.
        #[arg(long, env = "WEIR_ADMIN", default_value = DEFAULT_ADMIN)]
        admin: SocketAddr,
    },
    /// Let an operator that its `on_failure` policy paused go on.
    Resume {
        /// The operator id.
        operator: String,
        /// The running pipeline's admin address.
        #[arg(long, env = "WEIR_ADMIN", default_value = DEFAULT_ADMIN)]
        admin: SocketAddr,
    },
    /// Show what runs in a running pipeline: versions, records, state, refusals.
    Status {
        /// Print JSON instead of a table.
        #[arg(long, conflicts_with = "watch")]
        json: bool,
        /// Refresh every second: records/s per operator, versions, the last checkpoint.
        #[arg(long)]
        watch: bool,
        /// The running pipeline's admin address.
        #[arg(long, env = "WEIR_ADMIN", default_value = DEFAULT_ADMIN)]
        admin: SocketAddr,
    },
    /// Print a sample of the live records on an edge of a running pipeline (OPERATOR or
    /// OPERATOR.OUTPUT), or follow one key through every operator with `--key`.
    Tap {
        /// The edge: an operator's main output, or OPERATOR.OUTPUT for a side output.
        #[arg(required_unless_present = "key")]
        edge: Option<String>,
        /// Records per second to print at most (an edge; a followed key shows all its records).
        #[arg(long, default_value_t = weir::control::DEFAULT_TAP_RATE)]
        rate: f64,
        /// Follow the records of this key in and out of every operator, with the key's state
        /// before and after.
        #[arg(long, conflicts_with = "edge")]
        key: Option<String>,
        /// The field holding the key (default: each operator's `key_by`).
        #[arg(long, requires = "key")]
        field: Option<String>,
        /// Print JSON lines (one event each) instead of lines for people.
        #[arg(long)]
        json: bool,
        /// The running pipeline's admin address.
        #[arg(long, env = "WEIR_ADMIN", default_value = DEFAULT_ADMIN)]
        admin: SocketAddr,
    },
    /// Build a pipeline's operator projects (or one operator folder: Rust, Python or JavaScript) into
    /// components, and precompile them into the cache so runs and deploys start fast.
    Build {
        /// A pipeline file or an operator project folder.
        path: PathBuf,
    },
    /// Check the pipeline file and every operator component without running.
    Check {
        /// The pipeline file.
        pipeline: PathBuf,
    },
    /// Create an operator project with a sample pipeline, input and expected output.
    New {
        /// The project folder to create; its name names the operator.
        path: PathBuf,
        /// The operator's language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: Lang,
    },
    /// Work with dead letters.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// Manage the build tools of operator languages, which weir installs into its cache folder.
    Toolchain {
        #[command(subcommand)]
        action: ToolchainAction,
    },
}

#[derive(Subcommand)]
enum DlqAction {
    /// Feed an operator's dead letters to it again in a running pipeline (after deploying a
    /// fixed version, say); what it refuses again is dead-lettered again.
    Replay {
        /// The operator id; entries of other operators are left alone.
        operator: String,
        /// The dead-letter file.
        file: PathBuf,
        /// The running pipeline's admin address.
        #[arg(long, env = "WEIR_ADMIN", default_value = DEFAULT_ADMIN)]
        admin: SocketAddr,
    },
}

#[derive(Subcommand)]
enum ToolchainAction {
    /// Install them now rather than on the first build (all languages unless some are named).
    Install {
        /// The languages whose tools to install.
        #[arg(value_enum)]
        languages: Vec<Lang>,
    },
}

/// The languages `weir new` writes and `weir toolchain install` sets up.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
    C,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("WEIR_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        );
    match cli.log_format {
        LogFormat::Text => log.init(),
        LogFormat::Json => log.json().flatten_event(true).init(),
    }
    match run(cli) {
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
            admin,
            checkpoint_dir,
            checkpoint_interval,
            fresh,
            from_savepoint,
            allow_non_restored_state,
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
            let mut operators = prepare_all(&pipeline, &engine)?;
            let options = checkpoint::StartOptions {
                dir: checkpoint_dir,
                interval: checkpoint_interval,
                fresh,
                savepoint: from_savepoint,
                allow_non_restored_state,
            };
            let checkpointing = checkpoint::plan(&pipeline, &options, &engine, &mut operators)?;
            let running = runtime::start(&pipeline, &engine, operators, checkpointing)?;
            let _admin = match admin.or(pipeline.config.admin) {
                Some(address) => {
                    let server = admin::serve(running.control().clone(), address)?;
                    eprintln!("weir: admin API on http://{}", server.address);
                    Some(server)
                }
                None => None,
            };
            let _watcher = match pipeline.deploy_dir_path() {
                Some(dir) => {
                    let watcher = watch::watch(running.control().clone(), &dir)?;
                    eprintln!("weir: watching {} for new operator versions", dir.display());
                    Some(watcher)
                }
                None => None,
            };
            let summary = running.wait()?;
            eprintln!("{summary}");
            Ok(())
        }
        Command::Deploy {
            operator,
            component,
            admin,
        } => {
            let file = if component.is_dir() {
                build_operator(&component)?
            } else {
                component
            };
            let bytes = std::fs::read(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let report = AdminClient::new(admin).deploy(&operator, &bytes)?;
            print_report(&report);
            Ok(())
        }
        Command::Savepoint { path, admin } => {
            let path = match path {
                Some(p) => Some(std::env::current_dir()?.join(p)),
                None => None,
            };
            let saved = AdminClient::new(admin).savepoint(path.as_deref())?;
            println!("savepoint written to {}", saved.display());
            Ok(())
        }
        Command::Rollback { operator, admin } => {
            let report = AdminClient::new(admin).rollback(&operator)?;
            print_report(&report);
            Ok(())
        }
        Command::Resume { operator, admin } => {
            if AdminClient::new(admin).resume(&operator)? {
                println!("{operator}: resumed");
            } else {
                println!("{operator}: was not paused");
            }
            Ok(())
        }
        Command::Status {
            json: _,
            watch: true,
            admin,
        } => watch_status(&AdminClient::new(admin)),
        Command::Status { json, admin, .. } => {
            let client = AdminClient::new(admin);
            let status = client.status()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&status)?);
            } else {
                print!("{}", status_table(&status));
                match client.last_checkpoint()? {
                    Some(c) => println!(
                        "last checkpoint: {} in {:.1} ms, {} bytes of state ({})",
                        c.id, c.duration_ms, c.state_bytes, c.path
                    ),
                    None => println!("last checkpoint: none yet"),
                }
            }
            Ok(())
        }
        Command::Tap {
            edge,
            rate,
            key,
            field,
            json,
            admin,
        } => tap(
            &AdminClient::new(admin),
            &weir::control::TapRequest {
                rate: edge.is_some().then_some(rate),
                operator: edge,
                key,
                field,
            },
            json,
        ),
        Command::Build { path } => {
            let engine = WasmEngine::new()?;
            let components = if path.is_dir() {
                let name = path.file_name().map_or_else(
                    || "operator".to_owned(),
                    |n| n.to_string_lossy().into_owned(),
                );
                vec![(name, build_operator(&path)?)]
            } else {
                component_files(&Pipeline::load(&path)?)?
            };
            for (id, file) in components {
                let bytes = std::fs::read(&file)
                    .with_context(|| format!("cannot read `{}`", file.display()))?;
                let prepared = engine.prepare(&id, 1, &bytes)?;
                println!(
                    "{id}: {} ({} bytes, {})",
                    file.display(),
                    prepared.size,
                    if prepared.from_cache {
                        "precompiled code cached"
                    } else {
                        "precompiled"
                    }
                );
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
        Command::New { path, lang } => {
            let test = new_project(&path, lang.language())?;
            println!("created {}; in it:", path.display());
            if matches!(lang, Lang::Js | Lang::C) {
                println!("  {test}");
            }
            println!("  weir run pipeline.toml && diff expected.jsonl out/result.jsonl");
            if !matches!(lang, Lang::Js | Lang::C) {
                println!("  {test}");
            }
            Ok(())
        }
        Command::Dlq {
            action:
                DlqAction::Replay {
                    operator,
                    file,
                    admin,
                },
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let report = AdminClient::new(admin).replay(&operator, &text)?;
            println!(
                "{}: {} dead letters replayed ({} of other operators or sources left alone, {} \
                 unreadable)",
                report.operator, report.replayed, report.skipped, report.unreadable
            );
            Ok(())
        }
        Command::Toolchain {
            action: ToolchainAction::Install { languages },
        } => {
            let toolchains = if languages.is_empty() {
                Toolchain::ALL.to_vec()
            } else {
                languages.iter().map(|lang| lang.toolchain()).collect()
            };
            for toolchain in toolchains {
                println!("{}", toolchain.install()?);
            }
            Ok(())
        }
    }
}

impl Lang {
    fn language(self) -> Language {
        match self {
            Lang::Rust => Language::Rust,
            Lang::Python => Language::Python,
            Lang::Js => Language::JavaScript,
            Lang::C => Language::C,
        }
    }

    fn toolchain(self) -> Toolchain {
        match self {
            Lang::Rust => Toolchain::Rust,
            Lang::Python => Toolchain::Python,
            Lang::Js => Toolchain::JavaScript,
            Lang::C => Toolchain::C,
        }
    }
}

fn print_report(report: &DeployReport) {
    println!(
        "{}: version {} replaced version {} in {:.1} ms (state version {}, {} keys migrated in \
         {:.1} ms, compiled in {:.1} ms)",
        report.operator,
        report.version,
        report.replaced,
        report.deploy_ms,
        report.state_version,
        report.migrated_keys,
        report.migration_ms,
        report.compile_ms
    );
}

/// `weir status` for people: one line per operator, refusals below.
/// `weir status --watch`: the status table with each operator's rates,
/// redrawn every second (on a terminal; appended otherwise) until the
/// pipeline goes away.
fn watch_status(client: &AdminClient) -> Result<()> {
    use std::io::IsTerminal;
    let terminal = std::io::stdout().is_terminal();
    let mut previous: Option<(std::time::Instant, Vec<OperatorStatus>)> = None;
    loop {
        let status = match client.status() {
            Ok(status) => status,
            // It ran: it ended. It never answered: say why.
            Err(_) if previous.is_some() => {
                println!("the pipeline stopped answering");
                return Ok(());
            }
            Err(e) => return Err(e),
        };
        let now = std::time::Instant::now();
        let mut screen = status_table(&status);
        if let Some((then, before)) = &previous {
            let seconds = now.duration_since(*then).as_secs_f64().max(1e-3);
            screen.push('\n');
            for op in &status {
                let Some(old) = before.iter().find(|o| o.id == op.id) else {
                    continue;
                };
                let rate = |new: u64, old: u64| new.saturating_sub(old) as f64 / seconds;
                screen.push_str(&format!(
                    "{}: {} records/s in, {} records/s out\n",
                    op.id,
                    weir::runtime::human(rate(op.records_in, old.records_in)),
                    weir::runtime::human(rate(op.records_out, old.records_out)),
                ));
            }
        }
        match client.last_checkpoint()? {
            Some(c) => screen.push_str(&format!(
                "last checkpoint: {} in {:.1} ms, {} bytes of state\n",
                c.id, c.duration_ms, c.state_bytes
            )),
            None => screen.push_str("last checkpoint: none yet\n"),
        }
        if terminal {
            print!("\x1b[2J\x1b[H{screen}");
        } else {
            println!("{screen}");
        }
        std::io::Write::flush(&mut std::io::stdout())?;
        previous = Some((now, status));
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// `weir tap`: prints what the tap sees until the pipeline ends.
fn tap(client: &AdminClient, request: &weir::control::TapRequest, json: bool) -> Result<()> {
    use std::io::{BufRead, Write};
    let reader = client.tap(request)?;
    match (&request.key, &request.operator) {
        (Some(key), _) => eprintln!("weir: following key {key:?} through every operator"),
        (None, Some(edge)) => eprintln!(
            "weir: tapping {edge} ({} records/s at most)",
            request.rate.unwrap_or(weir::control::DEFAULT_TAP_RATE)
        ),
        (None, None) => {}
    }
    let mut out = std::io::stdout().lock();
    for line in reader.lines() {
        let Ok(line) = line else { break };
        if line.trim().is_empty() {
            continue; // keep-alive
        }
        let printed = if json {
            writeln!(out, "{line}")
        } else {
            let event: serde_json::Value =
                serde_json::from_str(&line).context("the tap sent something that is not JSON")?;
            writeln!(out, "{}", tap_line(&event))
        };
        match printed {
            Ok(()) => {}
            // Read by `head` or the like, which has seen enough.
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    eprintln!("weir: the pipeline ended");
    Ok(())
}

/// One tap event for people: `counter@v2 #0 out  {...}  (state before: 3)`.
fn tap_line(event: &serde_json::Value) -> String {
    let mut line = String::new();
    if let Some(dropped) = event["dropped"].as_u64() {
        line.push_str(&format!(
            "({dropped} events dropped: the reader was too slow)\n"
        ));
    }
    let stage = event["stage"].as_str().unwrap_or("?");
    let stage = match (stage, event["output"].as_str()) {
        ("out", Some(output)) if output != "out" => format!("out.{output}"),
        _ => stage.to_owned(),
    };
    line.push_str(&format!(
        "{}@v{} #{} {stage:<5}",
        event["operator"].as_str().unwrap_or("?"),
        event["version"],
        event["worker"]
    ));
    if !event["record"].is_null() {
        line.push_str(&format!(" {}", event["record"]));
    }
    match stage.as_str() {
        "in" if event.get("state").is_some() => {
            line.push_str(&format!("  state before: {}", event["state"]));
        }
        "state" => line.push_str(&format!(" after: {}", event["state"])),
        _ => {}
    }
    line
}

fn status_table(operators: &[OperatorStatus]) -> String {
    let mut rows = vec![
        [
            "OPERATOR", "FROM", "VERSION", "STATE", "HASH", "DEPLOYED", "ORIGIN", "IN", "OUT",
            "KEYS", "FAILURES",
        ]
        .map(str::to_owned),
    ];
    for op in operators {
        rows.push([
            op.id.clone(),
            op.inputs.join(","),
            op.version.to_string(),
            op.state_version.to_string(),
            op.content_hash.chars().take(12).collect(),
            op.deployed_at.clone(),
            op.origin.clone(),
            op.records_in.to_string(),
            op.records_out.to_string(),
            op.state_keys.to_string(),
            if op.paused {
                format!("{} (paused)", op.failures)
            } else {
                op.failures.to_string()
            },
        ]);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    for op in operators {
        if let Some(refusal) = &op.last_refusal {
            out.push_str(&format!(
                "{}: last refused at {} ({}): {}\n",
                op.id, refusal.at, refusal.origin, refusal.reason
            ));
        }
    }
    out
}
