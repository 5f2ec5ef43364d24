//! The control plane of a running pipeline: deploy a new version of an
//! operator, roll back, pause and resume, replay dead letters, and report
//! what runs.
//!
//! [`Control`] is what the admin HTTP API ([`admin`]) and the deploy-folder
//! watcher ([`watch`]) call. A deploy validates, compiles and instantiates the
//! new version (one initialised instance per worker) while the old one keeps
//! processing; only then does it send a swap order down every worker's input
//! channel (see [`crate::runtime::SwapOrder`]). Anything that fails before the
//! handover refuses the version, and the running one is left untouched.

pub mod admin;
pub mod client;
mod dashboard;
mod metrics;
mod replay;
pub mod watch;

pub use replay::ReplayReport;

use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc::WeakSender;

use crate::checkpoint::Coordinator;
use crate::config::Limits;
use crate::runtime::{Envelope, Failures, OperatorMetrics, SwapOrder, SwapReply, VersionStats};
use crate::wasm::{OperatorInstance, PreparedOperator, StateKind, Tier, WasmEngine};

/// Why a deploy or rollback did not happen.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The pipeline has no operator with this id.
    #[error("no operator `{0}` in this pipeline (known: {1})")]
    UnknownOperator(String, String),
    /// The version was refused; the running version goes on unchanged.
    #[error("{0}")]
    Refused(String),
}

/// What a successful deploy or rollback did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeployReport {
    /// The operator id.
    pub operator: String,
    /// The new version's number.
    pub version: u32,
    /// The version it replaced.
    pub replaced: u32,
    /// The new version's state layout version.
    pub state_version: u32,
    /// Keys whose state was migrated (0 when the layout did not change).
    pub migrated_keys: usize,
    /// Longest migration time on a worker, in milliseconds.
    pub migration_ms: f64,
    /// Milliseconds spent compiling the component (or loading it from the cache).
    pub compile_ms: f64,
    /// Milliseconds from the request to every worker running the new version.
    pub deploy_ms: f64,
}

/// A refused deploy, kept for `weir status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Refusal {
    /// When it was refused (RFC 3339).
    pub at: String,
    /// Where the version came from (`api`, `deploy folder`, `rollback`).
    pub origin: String,
    /// Why.
    pub reason: String,
}

/// What `weir tap` asks for.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct TapRequest {
    /// `OPERATOR` or `OPERATOR.OUTPUT`: an edge to sample.
    pub operator: Option<String>,
    /// Records per second at most on an edge (default 10).
    pub rate: Option<f64>,
    /// A key to follow through every operator instead.
    pub key: Option<String>,
    /// The field holding the key (default: each operator's `key_by`).
    pub field: Option<String>,
}

/// Records per second an edge tap prints when not told.
pub const DEFAULT_TAP_RATE: f64 = 10.0;

/// One operator, as `weir status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OperatorStatus {
    /// The operator id.
    pub id: String,
    /// The streams it reads: sources' names, operators' ids, `id.output`
    /// for side outputs.
    #[serde(default)]
    pub inputs: Vec<String>,
    /// The running version's number (1 for the pipeline's own module).
    pub version: u32,
    /// SHA-256 of the running component.
    pub content_hash: String,
    /// Size of the running component in bytes.
    pub size: usize,
    /// The running version's state layout version.
    pub state_version: u32,
    /// When the running version was deployed (RFC 3339).
    pub deployed_at: String,
    /// How it was deployed (`pipeline`, `api`, `deploy folder`, `rollback to N`).
    pub origin: String,
    /// `optimized`, or `baseline` while a fresh deploy waits for its
    /// optimized code.
    pub tier: String,
    /// Parallel workers.
    pub parallelism: usize,
    /// Records given to the operator, all versions.
    pub records_in: u64,
    /// Records it emitted, all versions.
    pub records_out: u64,
    /// Keys with a value state.
    pub state_keys: i64,
    /// The version `weir rollback` would go back to.
    pub previous_version: Option<u32>,
    /// Longest gap between two batches on a worker around the swap to this
    /// version, in milliseconds (once it finished a batch).
    pub pause_ms: Option<f64>,
    /// Milliseconds from the deploy request to this version's first batch.
    pub first_batch_ms: Option<f64>,
    /// The last refused deploy, if any.
    pub last_refusal: Option<Refusal>,
    /// Whether it is paused by its `on_failure` policy (`weir resume` lets it go on).
    #[serde(default)]
    pub paused: bool,
    /// Its failures since the start of the run (records that trapped, ran
    /// out of time or memory, batches refused whole).
    #[serde(default)]
    pub failures: u64,
}

/// The control plane of a running pipeline.
pub struct Control {
    engine: WasmEngine,
    operators: Vec<OperatorControl>,
    /// One deploy at a time, so swaps never interleave.
    deploy_lock: Mutex<()>,
    /// The run's checkpoints, for savepoints.
    checkpoints: Option<Arc<Coordinator>>,
    /// The run's counters at its edges, for `/metrics`.
    run_metrics: Option<Arc<crate::runtime::RunMetrics>>,
    /// The pipeline's graph and recent dead letters, for the dashboard.
    view: Option<dashboard::View>,
}

/// What the control plane knows of one operator.
pub struct OperatorControl {
    id: String,
    inputs: Vec<String>,
    config_json: String,
    limits: Limits,
    key_by: Option<String>,
    /// Weak, so the control plane never keeps a finished pipeline open.
    workers: Vec<WeakSender<Envelope>>,
    metrics: Arc<OperatorMetrics>,
    failures: Arc<Failures>,
    versions: Mutex<Versions>,
}

/// Everything an operator control needs at the start of a run.
pub struct OperatorSetup {
    /// The operator id.
    pub id: String,
    /// What it reads, as `weir status` names it.
    pub inputs: Vec<String>,
    /// Its `config` as JSON.
    pub config_json: String,
    /// Limits of each instance.
    pub limits: Limits,
    /// The `key_by` field.
    pub key_by: Option<String>,
    /// The input channel of each worker.
    pub workers: Vec<WeakSender<Envelope>>,
    /// Counters shared by its workers.
    pub metrics: Arc<OperatorMetrics>,
    /// The version the run started with.
    pub prepared: PreparedOperator,
    /// The state layout version it declared.
    pub state_version: u32,
    /// Its figures.
    pub stats: Arc<VersionStats>,
    /// Its failures and pause gate, shared with its workers.
    pub failures: Arc<Failures>,
}

/// What a hand-over did.
struct HandOver {
    state_version: u32,
    migrated_keys: usize,
    migration: std::time::Duration,
}

struct Versions {
    history: Vec<Version>,
    active: usize,
    previous: Option<usize>,
    last_refusal: Option<Refusal>,
    /// The latest refusals, oldest first (the dashboard shows them).
    refusals: Vec<Refusal>,
}

/// Refusals kept per operator.
const KEPT_REFUSALS: usize = 20;

struct Version {
    prepared: PreparedOperator,
    state_version: u32,
    deployed_at: SystemTime,
    requested_at: Instant,
    origin: String,
    stats: Arc<VersionStats>,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn ms(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

impl Control {
    /// The control plane of a run whose operators were started as `operators`.
    pub fn new(
        engine: WasmEngine,
        operators: Vec<OperatorSetup>,
        checkpoints: Option<Arc<Coordinator>>,
    ) -> Self {
        let now = SystemTime::now();
        let operators = operators
            .into_iter()
            .map(|setup| OperatorControl {
                id: setup.id,
                inputs: setup.inputs,
                config_json: setup.config_json,
                limits: setup.limits,
                key_by: setup.key_by,
                workers: setup.workers,
                metrics: setup.metrics,
                failures: setup.failures,
                versions: Mutex::new(Versions {
                    history: vec![Version {
                        prepared: setup.prepared,
                        state_version: setup.state_version,
                        deployed_at: now,
                        requested_at: Instant::now(),
                        origin: "pipeline".to_owned(),
                        stats: setup.stats,
                    }],
                    active: 0,
                    previous: None,
                    last_refusal: None,
                    refusals: Vec::new(),
                }),
            })
            .collect();
        Self {
            engine,
            operators,
            deploy_lock: Mutex::new(()),
            checkpoints,
            run_metrics: None,
            view: None,
        }
    }

    /// The same, with what the dashboard shows besides the figures: the
    /// pipeline's graph and its recent dead letters.
    pub fn with_view(
        mut self,
        pipeline: &crate::config::Pipeline,
        dead_letters: Arc<crate::runtime::DeadLetters>,
    ) -> Self {
        self.view = Some(dashboard::View {
            topology: dashboard::Topology::of(pipeline),
            dead_letters,
        });
        self
    }

    /// What the dashboard shows, as of now (the body of each `/events` message).
    pub fn snapshot(&self) -> serde_json::Value {
        dashboard::snapshot(self)
    }

    /// Attaches a tap (`weir tap`); dropping it detaches it.
    ///
    /// # Errors
    /// When the operator does not exist, or a key tap finds no field to
    /// read the key from.
    pub fn tap(&self, request: &TapRequest) -> Result<crate::runtime::Tap, DeployError> {
        let filter = match &request.key {
            Some(key) => {
                let default_field = request
                    .field
                    .clone()
                    .or_else(|| self.operators.iter().find_map(|o| o.key_by.clone()))
                    .ok_or_else(|| {
                        DeployError::Refused(
                            "no operator of this pipeline has a `key_by`: say which field \
                             holds the key with `--field`"
                                .to_owned(),
                        )
                    })?;
                crate::runtime::TapFilter::Key {
                    key: key.clone(),
                    field: request.field.clone(),
                    default_field,
                }
            }
            None => {
                let target = request.operator.as_deref().unwrap_or_default();
                let (id, output) = target.split_once('.').unwrap_or((target, "out"));
                self.operator(id)?;
                crate::runtime::TapFilter::Edge {
                    operator: id.to_owned(),
                    output: output.to_owned(),
                    rate: request.rate.unwrap_or(DEFAULT_TAP_RATE).max(0.0),
                }
            }
        };
        let Some(run) = &self.run_metrics else {
            return Err(DeployError::Refused("this run has no taps".to_owned()));
        };
        Ok(run.taps.attach(filter))
    }

    /// The same, showing the run's source and sink counters in `/metrics`.
    pub fn with_run_metrics(mut self, metrics: Arc<crate::runtime::RunMetrics>) -> Self {
        self.run_metrics = Some(metrics);
        self
    }

    /// Every figure of the run in the Prometheus text format.
    pub fn metrics(&self) -> String {
        metrics::render(self)
    }

    /// Takes a checkpoint now and keeps a copy at `to` (default: under the
    /// checkpoint folder's `savepoints`) that `weir run --from-savepoint`
    /// starts from; waits for it and returns its folder.
    ///
    /// # Errors
    /// When the run takes no checkpoints, ends first, or the copy fails.
    pub fn savepoint(&self, to: Option<std::path::PathBuf>) -> Result<std::path::PathBuf, String> {
        let Some(checkpoints) = &self.checkpoints else {
            return Err(
                "this run takes no checkpoints (it reads standard input), so it \
                        cannot take a savepoint"
                    .to_owned(),
            );
        };
        let to = to.unwrap_or_else(|| {
            let stamp = humantime::format_rfc3339_seconds(SystemTime::now())
                .to_string()
                .replace(':', "-");
            checkpoints
                .dir()
                .join("savepoints")
                .join(format!("savepoint-{stamp}"))
        });
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| format!("cannot create `{}`: {e}", parent.display()))?;
        }
        checkpoints.savepoint(to).map_err(|e| format!("{e:#}"))
    }

    /// The last complete checkpoint, if the run takes checkpoints.
    pub fn last_checkpoint(&self) -> Option<crate::checkpoint::CheckpointStats> {
        self.checkpoints.as_ref().and_then(|c| c.last())
    }

    /// Whether the pipeline has an operator `id`.
    pub fn has_operator(&self, id: &str) -> bool {
        self.operators.iter().any(|o| o.id == id)
    }

    fn operator(&self, id: &str) -> Result<&OperatorControl, DeployError> {
        self.operators.iter().find(|o| o.id == id).ok_or_else(|| {
            let known: Vec<String> = self
                .operators
                .iter()
                .map(|o| format!("`{}`", o.id))
                .collect();
            DeployError::UnknownOperator(id.to_owned(), known.join(", "))
        })
    }

    fn lock(&self) -> MutexGuard<'_, ()> {
        self.deploy_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Deploys `bytes` as the next version of operator `id` while the
    /// pipeline runs. `origin` says where it came from, for `weir status`.
    ///
    /// # Errors
    /// [`DeployError::Refused`] with the reason when the component is not
    /// valid, its `init` fails, or its state migration fails for any key; the
    /// running version then goes on untouched.
    pub fn deploy(
        self: &Arc<Self>,
        id: &str,
        bytes: &[u8],
        origin: &str,
    ) -> Result<DeployReport, DeployError> {
        let requested = Instant::now();
        let operator = self.operator(id)?;
        let _one_at_a_time = self.lock();
        let version = operator.versions().history.len() as u32 + 1;
        let prepared = self
            .engine
            .prepare_for_deploy(id, version, bytes)
            .map_err(|e| operator.refuse(origin, format!("{e:#}")))?;
        let tier = prepared.tier;
        let report = operator.install(prepared, origin.to_owned(), requested)?;
        if tier == Tier::Baseline {
            self.tier_up_later(id, version, bytes.to_vec());
        }
        Ok(report)
    }

    /// Compiles optimized code for a version that started on baseline code,
    /// and swaps it in (same version, same state) if that version still runs.
    fn tier_up_later(self: &Arc<Self>, id: &str, version: u32, bytes: Vec<u8>) {
        let control = Arc::clone(self);
        let id = id.to_owned();
        let spawned = std::thread::Builder::new()
            .name(format!("tier-up-{id}"))
            .spawn(move || {
                let optimized = match control.engine.prepare(&id, version, &bytes) {
                    Ok(optimized) => optimized,
                    Err(e) => {
                        tracing::warn!(operator = %id, "no optimized code for version {version}: {e:#}");
                        return;
                    }
                };
                let Ok(operator) = control.operator(&id) else {
                    return;
                };
                let _one_at_a_time = control.lock();
                if let Err(reason) = operator.tier_up(optimized) {
                    tracing::warn!(operator = %id, "version {version} stays on baseline code: {reason}");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!("cannot start the optimizing compiler thread: {e}");
        }
    }

    /// Goes back to the version that ran before the current one, as a new
    /// version number, migrating the state only if that version declares how.
    ///
    /// # Errors
    /// [`DeployError::Refused`] when there is no previous version, or it
    /// cannot read the current state layout.
    pub fn rollback(&self, id: &str) -> Result<DeployReport, DeployError> {
        let requested = Instant::now();
        let operator = self.operator(id)?;
        let _one_at_a_time = self.lock();
        let (mut prepared, target) = {
            let versions = operator.versions();
            let Some(previous) = versions.previous else {
                drop(versions);
                return Err(operator.refuse(
                    "rollback",
                    "there is no previous version to roll back to".to_owned(),
                ));
            };
            let target = &versions.history[previous];
            (target.prepared.clone(), target.prepared.version)
        };
        prepared.version = operator.versions().history.len() as u32 + 1;
        operator
            .install(prepared, format!("rollback to version {target}"), requested)
            .map_err(|e| match e {
                DeployError::Refused(reason) => {
                    DeployError::Refused(format!("rolling back to version {target}: {reason}"))
                }
                other => other,
            })
    }

    /// Lets an operator that its `on_failure` policy paused go on; false
    /// when it was not paused.
    ///
    /// # Errors
    /// [`DeployError::UnknownOperator`] when there is no operator `id`.
    pub fn resume(&self, id: &str) -> Result<bool, DeployError> {
        let resumed = self.operator(id)?.failures.resume();
        if resumed {
            tracing::warn!(operator = %id, "resumed");
        }
        Ok(resumed)
    }

    /// Every operator's status, in pipeline order.
    pub fn status(&self) -> Vec<OperatorStatus> {
        self.operators.iter().map(OperatorControl::status).collect()
    }
}

impl OperatorControl {
    fn versions(&self) -> MutexGuard<'_, Versions> {
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records and logs a refusal, and returns it as an error.
    fn refuse(&self, origin: &str, reason: String) -> DeployError {
        tracing::warn!(operator = %self.id, "refused a new version ({origin}): {reason}");
        let refusal = Refusal {
            at: rfc3339(SystemTime::now()),
            origin: origin.to_owned(),
            reason: reason.clone(),
        };
        let mut versions = self.versions();
        if versions.refusals.len() == KEPT_REFUSALS {
            versions.refusals.remove(0);
        }
        versions.refusals.push(refusal.clone());
        versions.last_refusal = Some(refusal);
        DeployError::Refused(reason)
    }

    fn install(
        &self,
        prepared: PreparedOperator,
        origin: String,
        requested: Instant,
    ) -> Result<DeployReport, DeployError> {
        let (replaced, old_state_version) = {
            let versions = self.versions();
            let active = &versions.history[versions.active];
            (active.prepared.version, active.state_version)
        };
        let stats = Arc::new(VersionStats::default());
        let handed = self
            .hand_over(&prepared, &stats, old_state_version)
            .map_err(|reason| self.refuse(&origin, reason))?;
        let version = prepared.version;
        let compile_ms = ms(prepared.compile_time);
        let mut versions = self.versions();
        versions.history.push(Version {
            prepared,
            state_version: handed.state_version,
            deployed_at: SystemTime::now(),
            requested_at: requested,
            origin: origin.clone(),
            stats,
        });
        versions.previous = Some(versions.active);
        versions.active = versions.history.len() - 1;
        let report = DeployReport {
            operator: self.id.clone(),
            version,
            replaced,
            state_version: handed.state_version,
            migrated_keys: handed.migrated_keys,
            migration_ms: ms(handed.migration),
            compile_ms,
            deploy_ms: ms(requested.elapsed()),
        };
        tracing::info!(operator = %self.id, "deployed version {version} ({origin}): {report:?}");
        Ok(report)
    }

    /// Replaces the running version's baseline code with optimized code of
    /// the same component: a swap with no migration and no new version.
    fn tier_up(&self, optimized: PreparedOperator) -> Result<(), String> {
        let (stats, state_version) = {
            let versions = self.versions();
            let active = &versions.history[versions.active];
            if active.prepared.version != optimized.version
                || active.prepared.content_hash != optimized.content_hash
            {
                return Ok(()); // replaced meanwhile: nothing to improve
            }
            (Arc::clone(&active.stats), active.state_version)
        };
        self.hand_over(&optimized, &stats, state_version)?;
        let mut versions = self.versions();
        let active = versions.active;
        versions.history[active].prepared = optimized;
        tracing::info!(operator = %self.id, "now on optimized code");
        Ok(())
    }

    /// Instantiates `prepared` once per worker (running `init`), then hands
    /// every worker over to it, migrating state from `old_state_version` if
    /// its layout differs. Nothing changes unless every worker succeeds.
    fn hand_over(
        &self,
        prepared: &PreparedOperator,
        stats: &Arc<VersionStats>,
        old_state_version: u32,
    ) -> Result<HandOver, String> {
        let label = format!("{}@v{}", prepared.id, prepared.version);
        // Everything that can fail on a bad version happens before the handover.
        let mut instances = Vec::with_capacity(self.workers.len());
        for _ in &self.workers {
            let instance = OperatorInstance::new(
                prepared,
                &self.config_json,
                &self.limits,
                Arc::clone(&self.metrics.counters),
            )
            .map_err(|e| format!("{e:#}"))?;
            instances.push(instance);
        }
        let Some(first) = instances.first() else {
            return Err("the operator has no workers".to_owned());
        };
        let (kind, state_version) = (first.kind, first.state_version);
        if kind == StateKind::Keyed && self.key_by.is_none() && self.workers.len() > 1 {
            return Err(format!(
                "`{label}` is a keyed operator, but this operator has no `key_by` and {} workers",
                self.workers.len()
            ));
        }
        let migrate_from = (state_version != old_state_version).then_some(old_state_version);

        let mut replies = Vec::with_capacity(self.workers.len());
        let mut verdicts = Vec::with_capacity(self.workers.len());
        for (worker, instance) in self.workers.iter().zip(instances) {
            let (reply, reply_rx) = std::sync::mpsc::channel();
            let (verdict_tx, verdict) = std::sync::mpsc::channel();
            let order = SwapOrder {
                prepared: prepared.clone(),
                instance,
                migrate_from,
                reply,
                verdict,
                stats: Arc::clone(stats),
            };
            let sent = worker
                .upgrade()
                .is_some_and(|w| w.blocking_send(Envelope::Swap(Box::new(order))).is_ok());
            if !sent {
                return Err("the pipeline has finished".to_owned());
            }
            replies.push(reply_rx);
            verdicts.push(verdict_tx);
        }
        let mut handed = HandOver {
            state_version,
            migrated_keys: 0,
            migration: std::time::Duration::ZERO,
        };
        let mut refusal = None;
        for reply in replies {
            match reply.recv() {
                Ok(SwapReply::Ready { keys, took }) => {
                    handed.migrated_keys += keys;
                    handed.migration = handed.migration.max(took);
                }
                Ok(SwapReply::Refused(reason)) => {
                    refusal.get_or_insert(reason);
                }
                Err(_) => {
                    refusal.get_or_insert("a worker stopped during the swap".to_owned());
                }
            }
        }
        let commit = refusal.is_none();
        for verdict in verdicts {
            let _ = verdict.send(commit);
        }
        match refusal {
            Some(reason) => Err(format!("`{label}` cannot take over the state: {reason}")),
            None => Ok(handed),
        }
    }

    fn status(&self) -> OperatorStatus {
        let versions = self.versions();
        let active = &versions.history[versions.active];
        let first_batch = active.stats.first_batch_done.lock().ok().and_then(|t| *t);
        let swapped = versions.active > 0;
        OperatorStatus {
            id: self.id.clone(),
            inputs: self.inputs.clone(),
            version: active.prepared.version,
            content_hash: active.prepared.content_hash.clone(),
            size: active.prepared.size,
            state_version: active.state_version,
            deployed_at: rfc3339(active.deployed_at),
            origin: active.origin.clone(),
            tier: match active.prepared.tier {
                Tier::Optimized => "optimized",
                Tier::Baseline => "baseline",
            }
            .to_owned(),
            parallelism: self.workers.len(),
            records_in: self.metrics.records_in.load(Ordering::Relaxed),
            records_out: self.metrics.records_out.load(Ordering::Relaxed),
            state_keys: self.metrics.state_keys.load(Ordering::Relaxed),
            previous_version: versions
                .previous
                .map(|p| versions.history[p].prepared.version),
            pause_ms: (swapped && first_batch.is_some())
                .then(|| active.stats.pause_us.load(Ordering::Relaxed) as f64 / 1e3),
            first_batch_ms: first_batch
                .filter(|_| swapped)
                .map(|t| ms(t.saturating_duration_since(active.requested_at))),
            last_refusal: versions.last_refusal.clone(),
            paused: self.failures.is_paused(),
            failures: self.failures.total(),
        }
    }
}
