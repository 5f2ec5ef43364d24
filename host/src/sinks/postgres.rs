//! PostgreSQL: records upserted by key into a table (`mode = "upsert"`, a
//! report table holding each key's latest row), or appended to it
//! (`mode = "append"`).
//!
//! # Checkpoints: exactly-once
//!
//! PostgreSQL is the second phase of a two-phase commit whose first phase is
//! a file (PostgreSQL's own prepared transactions are off by default):
//!
//! 1. Records between two barriers are validated against the table as they
//!    come and appended to a pending part file `part-<epoch>` in the sink's
//!    folder of the checkpoint directory. At barrier k the part is synced:
//!    the epoch's output is durable before checkpoint k can complete, so a
//!    crash right after completion loses nothing although the source resumes
//!    after k.
//! 2. Once checkpoint k is complete, every pending part up to k is applied
//!    in ONE transaction that also sets this sink's row of the progress
//!    table `weir_progress(sink, checkpoint)` to k; parts at or below the
//!    row's checkpoint are skipped, so applying again (after a crash between
//!    the commit and the parts' deletion, or a connection lost during the
//!    commit) applies nothing twice. Then the parts are deleted.
//!
//! A restart from checkpoint k applies the parts up to k that are not
//! applied yet and drops later ones, whose records are produced again. A
//! fresh start (no checkpoint) drops every part and sets the progress row
//! to 0; the table keeps its rows. The progress row's key is the sink's
//! part folder, unique per pipeline checkpoint folder and sink. At the end
//! of an input read whole, the last records are applied with the progress
//! row set to "finished", so a crash before the checkpoints are cleaned up
//! applies nothing again. Without checkpoints (standard input) every batch
//! is written when it comes, in its own transaction.
//!
//! Rows are written batched: `COPY` (text format), straight into the table
//! when appending, and into a temporary table when upserting, from which one
//! `INSERT ... SELECT DISTINCT ON (key) ... ON CONFLICT (key) DO UPDATE`
//! takes each key's latest row. A record without a key goes to the dead
//! letters; so does a record PostgreSQL refuses (a value that does not parse
//! as its column's type, a constraint it breaks): the transaction is then
//! done again with each batch in a savepoint, halving a refused batch until
//! the refused records are found. Their dead letters are written after the
//! commit (again after a crash before the parts' deletion).
//!
//! A server down at start is retried with backoff for `retry_for`, then the
//! run stops with an error naming the server and the sink; a connection lost
//! mid-run is reopened the same way and the open transaction done again.

use anyhow::{Context, Result, anyhow, bail};
use arrow::array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::{DataType, Field};
use arrow::record_batch::RecordBatch;
use futures_util::SinkExt;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient, NoTls};

use super::Sink;
use crate::checkpoint::Coordinator;
use crate::codec::{is_json_field, row_to_json};
use crate::runtime::{DeadLetter, DeadLetters, Message};

/// `type = "postgres"`: a table in a PostgreSQL database.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// What the sink receives (see [`crate::config::SinkConfig::from`]).
    #[serde(default)]
    pub from: Option<crate::config::Inputs>,
    /// The server's host name or address (default `127.0.0.1`).
    #[serde(default = "default_host")]
    pub host: String,
    /// The server's port (default 5432).
    #[serde(default = "default_port")]
    pub port: u16,
    /// The user (default `postgres`).
    #[serde(default = "default_user")]
    pub user: String,
    /// The database (default: the user's name).
    #[serde(default)]
    pub dbname: Option<String>,
    /// The environment variable holding the password, if the server asks
    /// for one. A password is never written in the pipeline file.
    #[serde(default)]
    pub password_env: Option<String>,
    /// The table, optionally `schema.table`.
    pub table: String,
    /// `upsert` (each key's latest row) or `append`.
    pub mode: WriteMode,
    /// The key columns of an upsert; the table's primary key (or another
    /// unique index) must be exactly these.
    #[serde(default)]
    pub key: Vec<String>,
    /// Creates the table from the first records' columns when it is missing
    /// (the key columns as primary key).
    #[serde(default)]
    pub create_table: bool,
    /// The connection's `application_name`, seen in `pg_stat_activity`.
    #[serde(default = "default_application_name")]
    pub application_name: String,
    /// How long a server that cannot be reached is retried before the run
    /// stops (default 30 s).
    #[serde(
        default = "default_retry_for",
        with = "crate::config::humantime_serde_compat"
    )]
    pub retry_for: Duration,
}

/// How records change the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WriteMode {
    /// A record replaces the row of its key (or is inserted).
    Upsert,
    /// Every record is inserted.
    Append,
}

fn default_host() -> String {
    "127.0.0.1".into()
}
fn default_port() -> u16 {
    5432
}
fn default_user() -> String {
    "postgres".into()
}
fn default_application_name() -> String {
    "weir".into()
}
fn default_retry_for() -> Duration {
    Duration::from_secs(30)
}

impl PostgresSinkConfig {
    /// `postgres://host:port/dbname/table`, for logs and checkpoint manifests.
    pub fn describe(&self) -> String {
        format!(
            "postgres://{}:{}/{}/{}",
            self.host,
            self.port,
            self.dbname.as_deref().unwrap_or(&self.user),
            self.table
        )
    }
}

/// The progress row of a run whose input was written to its end.
const FINISHED: i64 = i64::MAX;

/// Consecutive lost connections after which the run stops.
const MAX_LOST: u32 = 10;

/// A table in a PostgreSQL database.
pub(super) struct PostgresSink {
    config: PostgresSinkConfig,
    /// `sink `postgres` (table `t` at host:port)`, for errors.
    label: String,
    /// The table name, quoted for SQL.
    table_sql: String,
    db: Db,
    /// Its columns once it exists.
    table: Option<Vec<Column>>,
    /// With checkpoints: the pending parts.
    parts: Option<Parts>,
    /// This sink's output is all applied (a crash after the end): the
    /// records of the replay are dropped.
    done: bool,
    dead_letters: Arc<DeadLetters>,
}

/// A column of the table.
#[derive(Debug, Clone)]
struct Column {
    name: String,
    /// As `format_type` gives it (`bigint`, `character varying(20)`).
    type_name: String,
    /// `pg_type.typcategory`: `N` numeric, `S` string, `B` boolean ...
    category: char,
    /// `json` or `jsonb`.
    json: bool,
}

/// The pending part files of a run with checkpoints.
struct Parts {
    dir: PathBuf,
    /// The progress table's key for this sink.
    progress_key: String,
    /// The epoch of the open part: after the last barrier.
    epoch: u64,
    /// The open part, created by the first record of the epoch.
    open: Option<BufWriter<File>>,
}

/// One batch of a part file.
#[derive(Serialize, Deserialize)]
struct StoredBatch {
    source: String,
    lines: Vec<u64>,
    /// The records as an Arrow IPC stream.
    #[serde(with = "serde_bytes")]
    ipc: Vec<u8>,
}

/// A batch to apply, with what dead letters need.
struct Pending {
    epoch: u64,
    source: String,
    lines: Vec<u64>,
    batch: RecordBatch,
}

fn part_path(dir: &Path, epoch: u64) -> PathBuf {
    dir.join(format!("part-{epoch:06}"))
}

/// The part files in `dir`, in epoch order.
fn list_parts(dir: &Path) -> Result<Vec<(u64, PathBuf)>> {
    let mut parts = Vec::new();
    for entry in
        std::fs::read_dir(dir).with_context(|| format!("cannot read `{}`", dir.display()))?
    {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(epoch) = name.strip_prefix("part-").and_then(|e| e.parse().ok()) {
            parts.push((epoch, entry.path()));
        }
    }
    parts.sort();
    Ok(parts)
}

fn remove(path: &Path) -> Result<()> {
    std::fs::remove_file(path).with_context(|| format!("cannot delete `{}`", path.display()))
}

/// Reads the batches of part `path`.
fn read_part(epoch: u64, path: &Path) -> Result<Vec<Pending>> {
    let context = || format!("cannot read pending part `{}`", path.display());
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .with_context(context)?;
    let mut rest = bytes.as_slice();
    let mut batches = Vec::new();
    while !rest.is_empty() {
        let (len, tail) = rest
            .split_at_checked(4)
            .ok_or_else(|| anyhow!("torn frame"))?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        let (frame, tail) = tail
            .split_at_checked(len)
            .ok_or_else(|| anyhow!("torn frame"))
            .with_context(context)?;
        rest = tail;
        let stored: StoredBatch = postcard::from_bytes(frame).with_context(context)?;
        let mut reader = arrow::ipc::reader::StreamReader::try_new(stored.ipc.as_slice(), None)
            .with_context(context)?;
        let batch = reader
            .next()
            .ok_or_else(|| anyhow!("empty batch"))
            .with_context(context)?
            .with_context(context)?;
        batches.push(Pending {
            epoch,
            source: stored.source,
            lines: stored.lines,
            batch,
        });
    }
    Ok(batches)
}

fn encode_stored(message: &Message, batch: &RecordBatch, lines: Vec<u64>) -> Result<Vec<u8>> {
    let mut ipc = Vec::new();
    let mut writer = arrow::ipc::writer::StreamWriter::try_new(&mut ipc, &batch.schema())?;
    writer.write(batch)?;
    writer.finish()?;
    drop(writer);
    let stored = StoredBatch {
        source: message.source.to_string(),
        lines,
        ipc,
    };
    let frame = postcard::to_allocvec(&stored)?;
    let mut out = Vec::with_capacity(frame.len() + 4);
    out.extend_from_slice(&u32::try_from(frame.len())?.to_le_bytes());
    out.extend_from_slice(&frame);
    Ok(out)
}

/// Quotes an SQL identifier.
fn quote(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes `schema.table` or `table`.
fn quote_table(table: &str) -> String {
    table.split('.').map(quote).collect::<Vec<_>>().join(".")
}

impl PostgresSink {
    /// Connects (retrying while the server is down), checks or creates what
    /// it needs, and finishes what a crashed run left pending.
    ///
    /// # Errors
    /// When the server cannot be reached, the config does not fit the
    /// table, or pending parts cannot be applied.
    pub(super) fn open(
        config: &PostgresSinkConfig,
        checkpoints: Option<&Coordinator>,
        index: usize,
        restore: Option<(u64, u64)>,
        dead_letters: Arc<DeadLetters>,
    ) -> Result<Self> {
        let address = format!("{}:{}", config.host, config.port);
        let label = format!("sink `postgres` (table `{}` at {address})", config.table);
        match config.mode {
            WriteMode::Upsert if config.key.is_empty() => {
                bail!("{label}: `mode = \"upsert\"` needs `key = [...]`, the key columns")
            }
            WriteMode::Append if !config.key.is_empty() => {
                bail!("{label}: `key` is for `mode = \"upsert\"`; appending needs none")
            }
            _ => {}
        }
        let mut pg = tokio_postgres::Config::new();
        pg.host(&config.host)
            .port(config.port)
            .user(&config.user)
            .dbname(config.dbname.as_deref().unwrap_or(&config.user))
            .application_name(&config.application_name)
            .connect_timeout(Duration::from_secs(5));
        if let Some(var) = &config.password_env {
            let password = std::env::var(var).with_context(|| {
                format!("{label}: environment variable `{var}` (`password_env`) is not set")
            })?;
            pg.password(password);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the PostgreSQL client's runtime")?;
        let mut sink = Self {
            label: label.clone(),
            table_sql: quote_table(&config.table),
            db: Db {
                runtime,
                config: pg,
                client: None,
                address,
                label,
                retry_for: config.retry_for,
            },
            table: None,
            parts: None,
            done: false,
            config: config.clone(),
            dead_letters,
        };
        sink.table = sink.load_table()?;
        match sink.table.clone() {
            None if !config.create_table => bail!(
                "{}: table `{}` does not exist; create it, or set `create_table = true`",
                sink.label,
                config.table
            ),
            Some(columns) => sink.check_key(&columns)?,
            None => {}
        }
        if let Some(checkpoints) = checkpoints {
            sink.open_parts(&checkpoints.sink_parts(index), restore)?;
        }
        Ok(sink)
    }

    /// Takes over the part folder: applies or drops what a crashed run left.
    fn open_parts(&mut self, dir: &Path, restore: Option<(u64, u64)>) -> Result<()> {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create folder `{}`", dir.display()))?;
        let progress_key = dir.display().to_string();
        self.db.run("create the progress table", async |client| {
            create_progress_table(client).await
        })?;
        let id = restore.map_or(0, |(id, _)| id);
        let parts = Parts {
            dir: dir.to_owned(),
            progress_key,
            epoch: id + 1,
            open: None,
        };
        let mut keep = Vec::new();
        for (epoch, path) in list_parts(dir)? {
            if epoch <= id {
                keep.push((epoch, path));
            } else {
                remove(&path)?;
            }
        }
        if id == 0 {
            // A fresh start: checkpoint numbers start again.
            let key = parts.progress_key.clone();
            self.db.run("reset the progress row", async |client| {
                set_progress(client, &key, 0).await
            })?;
        } else {
            let key = parts.progress_key.clone();
            let applied = self.db.run("read the progress row", async |client| {
                progress(client, &key).await
            })?;
            if applied == FINISHED {
                tracing::info!(
                    "{}: the output was applied to its end before a crash; the replay is dropped",
                    self.label
                );
                self.done = true;
            } else if applied > i64::try_from(id).unwrap_or(i64::MAX) {
                tracing::warn!(
                    "{}: the table holds output up to checkpoint {applied}, after checkpoint \
                     {id} that the run resumes from: an appended table may hold records twice",
                    self.label
                );
            }
            self.apply_parts(&keep, &parts.progress_key, id)?;
        }
        self.parts = Some(parts);
        Ok(())
    }

    /// Applies the batches of `parts` not applied yet, with the progress
    /// row set to `upto`, then deletes the parts.
    fn apply_parts(&mut self, parts: &[(u64, PathBuf)], key: &str, upto: u64) -> Result<()> {
        if parts.is_empty() {
            return Ok(());
        }
        let mut batches = Vec::new();
        for (epoch, path) in parts {
            batches.extend(read_part(*epoch, path)?);
        }
        let upto = i64::try_from(upto).unwrap_or(FINISHED);
        self.apply(&batches, Some((key, upto)))?;
        for (_, path) in parts {
            remove(path)?;
        }
        Ok(())
    }

    /// Writes `batches` in one transaction (with the progress row set, and
    /// batches at or below it skipped), then their refused records to the
    /// dead letters.
    fn apply(&mut self, batches: &[Pending], progress: Option<(&str, i64)>) -> Result<()> {
        let columns = match (self.table.clone(), batches.first()) {
            (Some(columns), _) => columns,
            // Dropped since the records were checked: made again.
            (None, Some(first)) => self.table_for(&first.batch.clone())?,
            (None, None) => return Ok(()),
        };
        // Only each key's latest row matters to an upsert: the others are
        // not sent (the `DISTINCT ON` stays for keys equal only in SQL).
        let deduplicated;
        let batches = match self.config.mode {
            WriteMode::Upsert => {
                deduplicated = latest_per_key(batches, &self.config.key, &columns)?;
                deduplicated.as_slice()
            }
            WriteMode::Append => batches,
        };
        let plan = Plan {
            table: &self.table_sql,
            mode: self.config.mode,
            key: &self.config.key,
            columns: &columns,
        };
        let result = self.db.run("write the records", async |client| {
            plan.write(client, batches, progress, false).await
        });
        let refused = match result {
            Ok(refused) => refused,
            Err(e) if e.downcast_ref::<Refused>().is_some() => self
                .db
                .run("write the records one batch at a time", async |client| {
                    plan.write(client, batches, progress, true).await
                })?,
            Err(e) => return Err(e),
        };
        for (batch, row, reason) in refused {
            let pending = &batches[batch];
            let raw = row_to_json(&pending.batch, row);
            self.dead_letters.send(&DeadLetter {
                source: &pending.source,
                line: pending.lines.get(row).copied().unwrap_or(0),
                raw: &raw,
                reason: &format!("{}: {reason}", self.label),
                operator: None,
                version: None,
            })?;
        }
        Ok(())
    }

    /// The table's columns, or `None` when it does not exist.
    fn load_table(&mut self) -> Result<Option<Vec<Column>>> {
        let name = self.table_sql.clone();
        let rows = self.db.run("read the table's columns", async |client| {
            client
                .query(
                    "SELECT a.attname::text, format_type(a.atttypid, a.atttypmod), \
                     t.typcategory::text, t.typname::text \
                     FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid \
                     WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 \
                     AND NOT a.attisdropped ORDER BY a.attnum",
                    &[&name],
                )
                .await
        })?;
        if rows.is_empty() {
            return Ok(None);
        }
        Ok(Some(
            rows.iter()
                .map(|row| {
                    let type_name: String = row.get(3);
                    Column {
                        name: row.get(0),
                        type_name: row.get(1),
                        category: row.get::<_, String>(2).chars().next().unwrap_or('X'),
                        json: type_name == "json" || type_name == "jsonb",
                    }
                })
                .collect(),
        ))
    }

    /// Checks that an upsert's key is a unique index of the table.
    fn check_key(&mut self, columns: &[Column]) -> Result<()> {
        if self.config.mode != WriteMode::Upsert {
            return Ok(());
        }
        for key in &self.config.key {
            if !columns.iter().any(|c| &c.name == key) {
                bail!(
                    "{}: key column `{key}` is not a column of table `{}`",
                    self.label,
                    self.config.table
                );
            }
        }
        let name = self.table_sql.clone();
        let indexes = self
            .db
            .run("read the table's unique indexes", async |client| {
                client
                    .query(
                        "SELECT array_agg(a.attname::text) FROM pg_index i \
                     JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey) \
                     WHERE i.indrelid = to_regclass($1) AND i.indisunique \
                     GROUP BY i.indexrelid",
                        &[&name],
                    )
                    .await
            })?;
        let mut want = self.config.key.clone();
        want.sort();
        let found = indexes.iter().any(|row| {
            let mut names: Vec<String> = row.get(0);
            names.sort();
            names == want
        });
        if !found {
            bail!(
                "{}: an upsert needs a primary key or unique index on exactly ({}) in table `{}`",
                self.label,
                self.config.key.join(", "),
                self.config.table
            );
        }
        Ok(())
    }

    /// The table's columns, creating the table from `batch` when missing
    /// (`create_table`); checks that every field of `batch` has a column
    /// that takes its values.
    fn table_for(&mut self, batch: &RecordBatch) -> Result<Vec<Column>> {
        if self.table.is_none() {
            self.create_table(batch)?;
        }
        let Some(columns) = &self.table else {
            bail!(
                "{}: table `{}` does not exist",
                self.label,
                self.config.table
            );
        };
        for field in batch.schema().fields() {
            let Some(column) = columns.iter().find(|c| c.name == *field.name()) else {
                bail!(
                    "{}: the records have a field `{}`, but table `{}` has no such column \
                     (its columns: {})",
                    self.label,
                    field.name(),
                    self.config.table,
                    columns
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            };
            if let Some(kind) = misfit(field, column) {
                bail!(
                    "{}: field `{}` holds {kind}, which do not fit column `{}` of type {} in \
                     table `{}`",
                    self.label,
                    field.name(),
                    column.name,
                    column.type_name,
                    self.config.table
                );
            }
        }
        Ok(columns.clone())
    }

    fn create_table(&mut self, batch: &RecordBatch) -> Result<()> {
        let schema = batch.schema();
        let mut definitions: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", quote(f.name()), sql_type(f)))
            .collect();
        if !self.config.key.is_empty() {
            for key in &self.config.key {
                if schema.field_with_name(key).is_err() {
                    bail!(
                        "{}: cannot create table `{}`: the first records have no key field `{key}`",
                        self.label,
                        self.config.table
                    );
                }
            }
            definitions.push(format!(
                "PRIMARY KEY ({})",
                self.config
                    .key
                    .iter()
                    .map(|k| quote(k))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} ({})",
            self.table_sql,
            definitions.join(", ")
        );
        self.db.run("create the table", async |client| {
            client.batch_execute(&sql).await
        })?;
        tracing::info!("{}: created table `{}`", self.label, self.config.table);
        self.table = self.load_table()?;
        if let Some(columns) = self.table.clone() {
            self.check_key(&columns)?;
        }
        Ok(())
    }

    /// Drops the records an upsert cannot write (no key) to the dead
    /// letters; returns the rest with their line numbers.
    fn keyed_rows(&self, message: &Message) -> Result<(RecordBatch, Vec<u64>)> {
        let batch = &message.batch;
        if self.config.mode != WriteMode::Upsert {
            return Ok((batch.clone(), message.lines.to_vec()));
        }
        let keys: Vec<(&String, Option<&ArrayRef>)> = self
            .config
            .key
            .iter()
            .map(|k| (k, batch.column_by_name(k)))
            .collect();
        let keep: BooleanArray = (0..batch.num_rows())
            .map(|row| Some(keys.iter().all(|(_, c)| c.is_some_and(|c| c.is_valid(row)))))
            .collect();
        if keep.true_count() == batch.num_rows() {
            return Ok((batch.clone(), message.lines.to_vec()));
        }
        let mut lines = Vec::with_capacity(keep.true_count());
        for row in 0..batch.num_rows() {
            let line = message.lines.get(row).copied().unwrap_or(0);
            if keep.value(row) {
                lines.push(line);
                continue;
            }
            let missing = keys
                .iter()
                .find(|(_, c)| !c.is_some_and(|c| c.is_valid(row)))
                .map_or("", |(k, _)| k.as_str());
            self.dead_letters.send(&DeadLetter {
                source: &message.source,
                line,
                raw: &row_to_json(batch, row),
                reason: &format!(
                    "{}: the record has no key field `{missing}`, which an upsert needs",
                    self.label
                ),
                operator: None,
                version: None,
            })?;
        }
        Ok((filter_record_batch(batch, &keep)?, lines))
    }
}

/// `batches` with only the last row of each key, compared as the text
/// `COPY` sends.
fn latest_per_key(batches: &[Pending], key: &[String], columns: &[Column]) -> Result<Vec<Pending>> {
    let mut seen: HashSet<Vec<u8>> = HashSet::new();
    let mut kept = Vec::with_capacity(batches.len());
    for pending in batches.iter().rev() {
        let batch = &pending.batch;
        let schema = batch.schema();
        let encoders: Vec<Encoder> = key
            .iter()
            .filter_map(|k| {
                let (i, field) = schema.column_with_name(k)?;
                let json = columns.iter().any(|c| c.name == *k && c.json);
                Some(Encoder::new(field, batch.column(i), json))
            })
            .collect();
        let mut keep = vec![false; batch.num_rows()];
        for row in (0..batch.num_rows()).rev() {
            let mut text = Vec::new();
            for encoder in &encoders {
                encoder.write(row, &mut text);
                text.push(b'\t');
            }
            keep[row] = seen.insert(text);
        }
        if !keep.contains(&true) {
            continue;
        }
        let lines = pending
            .lines
            .iter()
            .zip(&keep)
            .filter_map(|(line, keep)| keep.then_some(*line))
            .collect();
        kept.push(Pending {
            epoch: pending.epoch,
            source: pending.source.clone(),
            lines,
            batch: filter_record_batch(batch, &BooleanArray::from(keep))?,
        });
    }
    kept.reverse();
    Ok(kept)
}

/// Why values of arrow field `field` cannot go to `column`, if they cannot:
/// numbers go to numeric, text and JSON columns, booleans to boolean, text
/// and JSON ones; text and JSON go anywhere PostgreSQL parses them (a value
/// it refuses sends its record to the dead letters).
fn misfit(field: &Field, column: &Column) -> Option<&'static str> {
    let text_or_json = column.category == 'S' || column.json;
    match field.data_type() {
        DataType::Int64 | DataType::Float64 if !(column.category == 'N' || text_or_json) => {
            Some("numbers")
        }
        DataType::Boolean if !(column.category == 'B' || text_or_json) => Some("booleans"),
        _ => None,
    }
}

/// The column type `create_table` gives a field.
fn sql_type(field: &Field) -> &'static str {
    if is_json_field(field) {
        return "jsonb";
    }
    match field.data_type() {
        DataType::Int64 => "bigint",
        DataType::Float64 => "double precision",
        DataType::Boolean => "boolean",
        _ => "text",
    }
}

/// Marks a write that PostgreSQL refused because of the records (a data
/// exception or a broken constraint): worth doing again batch by batch.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Whether PostgreSQL refused the records themselves (SQLSTATE classes 22,
/// data exception, and 23, integrity constraint violation).
fn refuses_records(e: &tokio_postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| c.code().starts_with("22") || c.code().starts_with("23"))
}

/// Whether `e` means the connection is gone: closed, or ended by the
/// server (class 08, and 57P01-57P03: terminated by an administrator, a
/// shutdown, or a server that cannot take connections yet).
fn connection_lost(e: &tokio_postgres::Error) -> bool {
    e.is_closed()
        || e.code().is_some_and(|c| {
            c.code().starts_with("08")
                || *c == SqlState::ADMIN_SHUTDOWN
                || *c == SqlState::CRASH_SHUTDOWN
                || *c == SqlState::CANNOT_CONNECT_NOW
        })
}

/// `e` with PostgreSQL's own message, detail and hint.
fn describe(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => {
            let mut text = format!("{} ({})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; {detail}"));
            }
            if let Some(hint) = db.hint() {
                text.push_str(&format!("; hint: {hint}"));
            }
            text
        }
        None => match std::error::Error::source(e) {
            Some(source) => format!("{e}: {source}"),
            None => e.to_string(),
        },
    }
}

async fn create_progress_table(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let created = client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS weir_progress (\
             sink text PRIMARY KEY, checkpoint bigint NOT NULL, \
             updated_at timestamptz NOT NULL DEFAULT now())",
        )
        .await;
    match created {
        // Another run created it at the same moment.
        Err(e)
            if e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || e.code() == Some(&SqlState::DUPLICATE_TABLE) =>
        {
            Ok(())
        }
        other => other,
    }
}

async fn progress(client: &impl GenericClient, key: &str) -> Result<i64, tokio_postgres::Error> {
    let row = client
        .query_opt(
            "SELECT checkpoint FROM weir_progress WHERE sink = $1 FOR UPDATE",
            &[&key],
        )
        .await?;
    Ok(row.map_or(0, |r| r.get(0)))
}

async fn set_progress(
    client: &impl GenericClient,
    key: &str,
    checkpoint: i64,
) -> Result<(), tokio_postgres::Error> {
    client
        .execute(
            "INSERT INTO weir_progress (sink, checkpoint) VALUES ($1, $2) \
             ON CONFLICT (sink) DO UPDATE SET checkpoint = EXCLUDED.checkpoint, updated_at = now()",
            &[&key, &checkpoint],
        )
        .await
        .map(|_| ())
}

/// How batches become rows of the table.
struct Plan<'a> {
    table: &'a str,
    mode: WriteMode,
    key: &'a [String],
    columns: &'a [Column],
}

/// The records PostgreSQL refused: (batch, row, why).
type RefusedRows = Vec<(usize, usize, String)>;

impl Plan<'_> {
    /// Writes `batches` in one transaction; with `progress = (key, upto)`,
    /// only batches above the progress row, which is then set to `upto`.
    /// `careful` writes each batch in a savepoint and finds the records
    /// PostgreSQL refuses; otherwise a refusal is a [`Refused`] error.
    async fn write(
        &self,
        client: &mut Client,
        batches: &[Pending],
        progress: Option<(&str, i64)>,
        careful: bool,
    ) -> Result<RefusedRows, tokio_postgres::Error> {
        let tx = client.transaction().await?;
        let applied = match progress {
            Some((key, _)) => self::progress(&tx, key).await?,
            None => 0,
        };
        let todo: Vec<usize> = (0..batches.len())
            .filter(|&i| i64::try_from(batches[i].epoch).unwrap_or(FINISHED) > applied)
            .collect();
        let mut refused = Vec::new();
        if !todo.is_empty() {
            let target = match self.mode {
                WriteMode::Append => self.table.to_owned(),
                WriteMode::Upsert => {
                    let mut names: Vec<&str> = Vec::new();
                    for &i in &todo {
                        for field in batches[i].batch.schema_ref().fields() {
                            if !names.contains(&field.name().as_str()) {
                                names.push(field.name());
                            }
                        }
                    }
                    let list = names
                        .iter()
                        .map(|n| quote(n))
                        .collect::<Vec<_>>()
                        .join(", ");
                    tx.batch_execute(&format!(
                        "CREATE TEMP TABLE weir_stage ON COMMIT DROP AS SELECT {list} FROM {} \
                         WITH NO DATA; ALTER TABLE weir_stage ADD COLUMN weir_seq bigint \
                         GENERATED ALWAYS AS IDENTITY",
                        self.table
                    ))
                    .await?;
                    "weir_stage".to_owned()
                }
            };
            let mut tx = tx;
            for &i in &todo {
                let batch = &batches[i].batch;
                if !careful {
                    copy(&tx, &target, batch, self.columns).await?;
                    continue;
                }
                // Halve refused ranges until the refused records are found.
                let mut ranges = vec![(0, batch.num_rows())];
                while let Some((start, len)) = ranges.pop() {
                    if len == 0 {
                        continue;
                    }
                    let part = batch.slice(start, len);
                    let savepoint = tx.savepoint("weir_batch").await?;
                    match copy(&savepoint, &target, &part, self.columns).await {
                        Ok(()) => savepoint.commit().await?,
                        Err(e) if refuses_records(&e) => {
                            savepoint.rollback().await?;
                            if len == 1 {
                                refused.push((i, start, describe(&e)));
                            } else {
                                ranges.push((start + len / 2, len - len / 2));
                                ranges.push((start, len / 2));
                            }
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
            if self.mode == WriteMode::Upsert {
                tx.batch_execute(&self.upsert_from_stage(batches, &todo))
                    .await?;
            }
            if let Some((key, upto)) = progress {
                set_progress(&tx, key, upto).await?;
            }
            tx.commit().await?;
        } else if let Some((key, upto)) = progress {
            set_progress(&tx, key, upto.max(applied)).await?;
            tx.commit().await?;
        }
        Ok(refused)
    }

    /// `INSERT ... SELECT` each key's latest staged row `ON CONFLICT` update.
    fn upsert_from_stage(&self, batches: &[Pending], todo: &[usize]) -> String {
        let mut names: Vec<&str> = Vec::new();
        for &i in todo {
            for field in batches[i].batch.schema_ref().fields() {
                if !names.contains(&field.name().as_str()) {
                    names.push(field.name());
                }
            }
        }
        let list = names
            .iter()
            .map(|n| quote(n))
            .collect::<Vec<_>>()
            .join(", ");
        let keys = self
            .key
            .iter()
            .map(|k| quote(k))
            .collect::<Vec<_>>()
            .join(", ");
        let updates: Vec<String> = names
            .iter()
            .filter(|n| !self.key.iter().any(|k| k == *n))
            .map(|n| format!("{0} = EXCLUDED.{0}", quote(n)))
            .collect();
        let action = if updates.is_empty() {
            "NOTHING".to_owned()
        } else {
            format!("UPDATE SET {}", updates.join(", "))
        };
        format!(
            "INSERT INTO {} ({list}) SELECT DISTINCT ON ({keys}) {list} FROM weir_stage \
             ORDER BY {keys}, weir_seq DESC ON CONFLICT ({keys}) DO {action}",
            self.table
        )
    }
}

/// `COPY`s `batch` into `target` in text format.
async fn copy(
    client: &impl GenericClient,
    target: &str,
    batch: &RecordBatch,
    columns: &[Column],
) -> Result<(), tokio_postgres::Error> {
    let schema = batch.schema();
    let list = schema
        .fields()
        .iter()
        .map(|f| quote(f.name()))
        .collect::<Vec<_>>()
        .join(", ");
    let encoders: Vec<Encoder> = schema
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(field, array)| {
            let json_column = columns
                .iter()
                .find(|c| c.name == *field.name())
                .is_some_and(|c| c.json);
            Encoder::new(field, array, json_column)
        })
        .collect();
    let mut text = Vec::with_capacity(batch.num_rows() * 16 * encoders.len().max(1));
    for row in 0..batch.num_rows() {
        for (i, encoder) in encoders.iter().enumerate() {
            if i > 0 {
                text.push(b'\t');
            }
            encoder.write(row, &mut text);
        }
        text.push(b'\n');
    }
    let sink = client
        .client()
        .copy_in::<_, bytes::Bytes>(&format!("COPY {target} ({list}) FROM STDIN"))
        .await?;
    futures_util::pin_mut!(sink);
    sink.send(bytes::Bytes::from(text)).await?;
    sink.finish().await.map(|_| ())
}

/// Writes one column's values in `COPY`'s text format.
enum Encoder<'a> {
    Int(&'a Int64Array),
    Float(&'a Float64Array),
    Bool(&'a BooleanArray),
    /// Text; as a JSON string literal into a JSON column.
    Text(&'a StringArray, bool),
    /// JSON documents; a JSON string is unquoted into a non-JSON column.
    Json(&'a StringArray, bool),
    /// Any other type, as Arrow displays it.
    Other(&'a ArrayRef),
}

impl<'a> Encoder<'a> {
    fn new(field: &Field, array: &'a ArrayRef, json_column: bool) -> Self {
        let any = array.as_any();
        if let Some(a) = any.downcast_ref::<StringArray>() {
            return if is_json_field(field) {
                Encoder::Json(a, json_column)
            } else {
                Encoder::Text(a, json_column)
            };
        }
        if let Some(a) = any.downcast_ref::<Int64Array>() {
            return Encoder::Int(a);
        }
        if let Some(a) = any.downcast_ref::<Float64Array>() {
            return Encoder::Float(a);
        }
        if let Some(a) = any.downcast_ref::<BooleanArray>() {
            return Encoder::Bool(a);
        }
        Encoder::Other(array)
    }

    fn write(&self, row: usize, out: &mut Vec<u8>) {
        let valid = match self {
            Encoder::Int(a) => a.is_valid(row),
            Encoder::Float(a) => a.is_valid(row),
            Encoder::Bool(a) => a.is_valid(row),
            Encoder::Text(a, _) | Encoder::Json(a, _) => a.is_valid(row),
            Encoder::Other(a) => a.is_valid(row),
        };
        if !valid {
            out.extend_from_slice(b"\\N");
            return;
        }
        match self {
            Encoder::Int(a) => out.extend_from_slice(a.value(row).to_string().as_bytes()),
            Encoder::Float(a) => {
                let v = a.value(row);
                if v.is_finite() {
                    out.extend_from_slice(v.to_string().as_bytes());
                } else if v.is_nan() {
                    out.extend_from_slice(b"NaN");
                } else if v > 0.0 {
                    out.extend_from_slice(b"Infinity");
                } else {
                    out.extend_from_slice(b"-Infinity");
                }
            }
            Encoder::Bool(a) => {
                out.extend_from_slice(if a.value(row) { b"true" } else { b"false" })
            }
            Encoder::Text(a, false) => escape(a.value(row), out),
            Encoder::Text(a, true) => {
                let quoted = serde_json::Value::String(a.value(row).to_owned()).to_string();
                escape(&quoted, out);
            }
            Encoder::Json(a, true) => escape(a.value(row), out),
            Encoder::Json(a, false) => {
                let value = a.value(row);
                match serde_json::from_str::<String>(value) {
                    Ok(text) => escape(&text, out),
                    Err(_) => escape(value, out),
                }
            }
            Encoder::Other(a) => {
                let options = arrow::util::display::FormatOptions::default();
                let text = arrow::util::display::ArrayFormatter::try_new(a.as_ref(), &options)
                    .map(|f| f.value(row).to_string())
                    .unwrap_or_default();
                escape(&text, out);
            }
        }
    }
}

/// Escapes `text` for `COPY`'s text format.
fn escape(text: &str, out: &mut Vec<u8>) {
    for &b in text.as_bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => out.push(b),
        }
    }
}

/// The connection, reopened when lost.
struct Db {
    runtime: tokio::runtime::Runtime,
    config: tokio_postgres::Config,
    client: Option<Client>,
    /// `host:port`.
    address: String,
    label: String,
    retry_for: Duration,
}

impl Db {
    /// Connects, retrying with backoff for `retry_for`.
    fn connect(&mut self) -> Result<()> {
        let started = Instant::now();
        let mut wait = Duration::from_millis(100);
        loop {
            match self.runtime.block_on(self.config.connect(NoTls)) {
                Ok((client, connection)) => {
                    let label = self.label.clone();
                    self.runtime.spawn(async move {
                        if let Err(e) = connection.await {
                            tracing::debug!("{label}: connection ended: {e}");
                        }
                    });
                    self.client = Some(client);
                    return Ok(());
                }
                Err(e) if started.elapsed() + wait <= self.retry_for => {
                    tracing::warn!(
                        "{}: cannot connect to PostgreSQL at {} ({}); retrying in {wait:?}",
                        self.label,
                        self.address,
                        describe(&e)
                    );
                    std::thread::sleep(wait);
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(e) => bail!(
                    "{}: cannot connect to PostgreSQL at {} (tried for {:?}): {}",
                    self.label,
                    self.address,
                    started.elapsed(),
                    describe(&e)
                ),
            }
        }
    }

    /// Runs `op` (to `what`), reconnecting and running it again when the
    /// connection is lost. A [`Refused`] error when PostgreSQL refused the
    /// records.
    fn run<T>(
        &mut self,
        what: &str,
        op: impl AsyncFn(&mut Client) -> Result<T, tokio_postgres::Error>,
    ) -> Result<T> {
        let mut lost = 0;
        loop {
            let client = match self.client.as_mut() {
                Some(client) if !client.is_closed() => client,
                _ => {
                    self.connect()?;
                    continue;
                }
            };
            match self.runtime.block_on(op(client)) {
                Ok(value) => return Ok(value),
                Err(e) if (connection_lost(&e) || client.is_closed()) && lost < MAX_LOST => {
                    lost += 1;
                    tracing::warn!(
                        "{}: connection to {} lost ({}); reconnecting",
                        self.label,
                        self.address,
                        describe(&e)
                    );
                    self.client = None;
                }
                Err(e) if refuses_records(&e) => {
                    return Err(anyhow::Error::new(Refused(describe(&e))))
                        .with_context(|| format!("{}: cannot {what}", self.label));
                }
                Err(e) => bail!("{}: cannot {what}: {}", self.label, describe(&e)),
            }
        }
    }
}

impl Sink for PostgresSink {
    fn write(&mut self, message: &Message) -> Result<()> {
        if self.done || message.batch.num_rows() == 0 {
            return Ok(());
        }
        let (batch, lines) = self.keyed_rows(message)?;
        if batch.num_rows() == 0 {
            return Ok(());
        }
        self.table_for(&batch)?;
        match &mut self.parts {
            Some(parts) => {
                let frame = encode_stored(message, &batch, lines)
                    .with_context(|| format!("{}: cannot encode a batch", self.label))?;
                let open = match &mut parts.open {
                    Some(open) => open,
                    None => {
                        let path = part_path(&parts.dir, parts.epoch);
                        let file = File::create(&path)
                            .with_context(|| format!("cannot create `{}`", path.display()))?;
                        parts.open.insert(BufWriter::with_capacity(1 << 20, file))
                    }
                };
                open.write_all(&frame)
                    .with_context(|| format!("{}: cannot write a pending part", self.label))
            }
            None => {
                let pending = Pending {
                    epoch: 1,
                    source: message.source.to_string(),
                    lines,
                    batch,
                };
                self.apply(std::slice::from_ref(&pending), None)
            }
        }
    }

    fn barrier(&mut self, id: u64) -> Result<u64> {
        if let Some(parts) = &mut self.parts {
            if let Some(mut open) = parts.open.take() {
                open.flush()?;
                open.get_ref()
                    .sync_data()
                    .with_context(|| format!("{}: cannot sync a pending part", self.label))?;
            }
            parts.epoch = id + 1;
        }
        Ok(id)
    }

    fn commit(&mut self, upto: u64) -> Result<()> {
        let Some(parts) = &self.parts else {
            return Ok(());
        };
        let ready: Vec<(u64, PathBuf)> = list_parts(&parts.dir)?
            .into_iter()
            .filter(|(epoch, _)| *epoch <= upto && *epoch < parts.epoch)
            .collect();
        let key = parts.progress_key.clone();
        self.apply_parts(&ready, &key, upto)
    }

    fn finish(mut self: Box<Self>, all: bool) -> Result<()> {
        let Some(parts) = &mut self.parts else {
            return Ok(());
        };
        if let Some(mut open) = parts.open.take() {
            open.flush()?;
            open.get_ref().sync_data()?;
        }
        if all {
            let every = list_parts(&parts.dir)?;
            let key = parts.progress_key.clone();
            if every.is_empty() {
                self.db.run("mark the output finished", async |client| {
                    set_progress(client, &key, FINISHED).await
                })?;
            } else {
                self.apply_parts(&every, &key, u64::MAX)?;
            }
        }
        Ok(())
    }
}
