//! Parquet files in a folder, partitioned by a field, zstd-compressed: the
//! warehousing case.
//!
//! With `partition_by = "day"` a record whose `day` is `2026-12-07` goes to
//! `day=2026-12-07/part-<checkpoint>-<n>.parquet` (the Hive layout Spark,
//! DuckDB and Arrow read): the field is in the folder name, not in the file.
//! A record without the field goes to `day=__HIVE_DEFAULT_PARTITION__`.
//!
//! # Checkpoints: exactly-once
//!
//! Files are written under hidden names (readers skip names starting with
//! `.`): `.inprogress-<n>.parquet` while open. A file is closed when it
//! reaches `max_file_bytes`, when a record's columns no longer fit its
//! columns, and at every barrier. At barrier k every file of the epoch is
//! synced and renamed `.part-<k>-<n>.parquet.pending` (phase one); once
//! checkpoint k is complete, the pending files up to k are renamed to
//! `part-<k>-<n>.parquet` (phase two). A restart from checkpoint k renames
//! the pending files up to k, deletes later ones, files still in progress,
//! and visible files of checkpoints after k, so the folder ends as an
//! uninterrupted run's. A fresh start deletes every part file of the folder:
//! the folder belongs to the sink. Without checkpoints (standard input) the
//! files are finished at the end, as `part-000000-<n>.parquet`.

use anyhow::{Context, Result};
use arrow::array::{Array, ArrayRef, StringArray, UInt32Array, new_null_array};
use arrow::compute::{cast, take_record_batch};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;
use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Sink;
use crate::codec::is_json_field;
use crate::runtime::Message;

/// `type = "parquet"`: Parquet files in a folder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ParquetSinkConfig {
    /// What the sink receives (see [`crate::config::SinkConfig::from`]).
    #[serde(default)]
    pub from: Option<crate::config::Inputs>,
    /// The folder, relative to the pipeline file.
    pub path: PathBuf,
    /// The field whose value names each record's subfolder, if any.
    #[serde(default)]
    pub partition_by: Option<String>,
    /// A file is closed and the next one started past this size (default
    /// 128 MiB).
    #[serde(default = "default_max_file_bytes")]
    pub max_file_bytes: u64,
}

fn default_max_file_bytes() -> u64 {
    128 << 20
}

/// The folder of records without the partition field.
const NULL_PARTITION: &str = "__HIVE_DEFAULT_PARTITION__";

/// Parquet files in a folder.
pub(super) struct ParquetSink {
    root: PathBuf,
    partition_by: Option<String>,
    max_file_bytes: u64,
    checkpoints: bool,
    properties: WriterProperties,
    /// The open file of each partition folder.
    open: HashMap<PathBuf, OpenFile>,
    /// Closed files of the open epoch, in the order they were started.
    closed: Vec<(u64, PathBuf)>,
    /// Files of ended epochs waiting for their checkpoint: (checkpoint,
    /// pending path).
    pending: Vec<(u64, PathBuf)>,
    /// The last barrier's checkpoint.
    last_barrier: u64,
    /// Files started in this run, numbering the in-progress names.
    started: u64,
}

struct OpenFile {
    /// Its number in the run, to keep the start order.
    number: u64,
    path: PathBuf,
    schema: SchemaRef,
    writer: ArrowWriter<File>,
}

/// What a file name in the folder is.
enum Name {
    InProgress,
    Pending(u64),
    Visible(u64),
}

fn parse_name(name: &str) -> Option<Name> {
    if name.starts_with(".inprogress-") && name.ends_with(".parquet") {
        return Some(Name::InProgress);
    }
    let checkpoint = |rest: &str| rest.split_once('-').and_then(|(c, _)| c.parse().ok());
    if let Some(rest) = name
        .strip_prefix(".part-")
        .and_then(|n| n.strip_suffix(".parquet.pending"))
    {
        return checkpoint(rest).map(Name::Pending);
    }
    if let Some(rest) = name
        .strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".parquet"))
    {
        return checkpoint(rest).map(Name::Visible);
    }
    None
}

/// Every sink file under `dir`, with its folder's depth kept to partition
/// folders (`name=value`).
fn walk(dir: &Path, found: &mut Vec<(PathBuf, Name)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.file_type()?.is_dir() {
            if name.contains('=') {
                walk(&entry.path(), found)?;
            }
        } else if let Some(kind) = parse_name(&name) {
            found.push((entry.path(), kind));
        }
    }
    Ok(())
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to)
        .with_context(|| format!("cannot rename `{}` to `{}`", from.display(), to.display()))
}

fn remove(path: &Path) -> Result<()> {
    std::fs::remove_file(path).with_context(|| format!("cannot delete `{}`", path.display()))
}

/// Syncs each folder of `files` once.
fn sync_folders<'a>(files: impl IntoIterator<Item = &'a Path>) -> Result<()> {
    let mut folders: Vec<&Path> = files.into_iter().filter_map(Path::parent).collect();
    folders.sort();
    folders.dedup();
    for folder in folders {
        crate::checkpoint::store::sync_dir(folder)?;
    }
    Ok(())
}

/// `.part-<checkpoint>-<n>.parquet.pending` made visible.
fn visible_path(pending: &Path) -> PathBuf {
    let name = pending
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    let name = name
        .strip_prefix('.')
        .and_then(|n| n.strip_suffix(".pending"))
        .unwrap_or(name);
    pending.with_file_name(name)
}

/// A partition value as a folder name: bytes other than letters, digits,
/// `-`, `_` and `.` (and a leading `.`) are percent-encoded.
fn folder_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for (i, b) in value.bytes().enumerate() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || (b == b'.' && i > 0) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    if out.is_empty() {
        out.push_str(NULL_PARTITION);
    }
    out
}

/// Each row's partition value as text.
fn partition_values(batch: &RecordBatch, field: &str) -> Vec<Option<String>> {
    let rows = batch.num_rows();
    let Some((index, f)) = batch
        .schema()
        .column_with_name(field)
        .map(|(i, f)| (i, f.clone()))
    else {
        return vec![None; rows];
    };
    let array = batch.column(index);
    if let Some(strings) = array.as_any().downcast_ref::<StringArray>() {
        let json = is_json_field(&f);
        return (0..rows)
            .map(|r| {
                strings.is_valid(r).then(|| {
                    let value = strings.value(r);
                    if json {
                        serde_json::from_str::<String>(value).unwrap_or_else(|_| value.to_owned())
                    } else {
                        value.to_owned()
                    }
                })
            })
            .collect();
    }
    let options = arrow::util::display::FormatOptions::default();
    match arrow::util::display::ArrayFormatter::try_new(array.as_ref(), &options) {
        Ok(formatter) => (0..rows)
            .map(|r| array.is_valid(r).then(|| formatter.value(r).to_string()))
            .collect(),
        Err(_) => vec![None; rows],
    }
}

/// The same fields, every one nullable: a later batch may lack a value.
fn nullable(schema: &Schema) -> SchemaRef {
    Arc::new(Schema::new(
        schema
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect::<Vec<Field>>(),
    ))
}

/// `batch` in a file's `schema`, when it fits: the same fields (a missing
/// one is null), and integers where the file has floats.
fn conform(batch: &RecordBatch, schema: &SchemaRef) -> Option<RecordBatch> {
    let own = batch.schema();
    if own
        .fields()
        .iter()
        .any(|f| schema.field_with_name(f.name()).is_err())
    {
        return None;
    }
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let column = match own.column_with_name(field.name()) {
            None => new_null_array(field.data_type(), batch.num_rows()),
            Some((_, f)) if is_json_field(f) != is_json_field(field) => return None,
            Some((i, f)) if f.data_type() == field.data_type() => Arc::clone(batch.column(i)),
            Some((i, f))
                if f.data_type() == &DataType::Int64 && field.data_type() == &DataType::Float64 =>
            {
                cast(batch.column(i), &DataType::Float64).ok()?
            }
            Some(_) => return None,
        };
        columns.push(column);
    }
    RecordBatch::try_new(Arc::clone(schema), columns).ok()
}

impl ParquetSink {
    /// Takes over folder `root`: finishes or drops what a crashed run left
    /// (`restore = (checkpoint, last checkpoint whose files are visible)`),
    /// or deletes the part files of an earlier run on a fresh start.
    ///
    /// # Errors
    /// When the folder cannot be created or cleaned up.
    pub(super) fn open(
        config: &ParquetSinkConfig,
        root: &Path,
        checkpoints: bool,
        restore: Option<(u64, u64)>,
    ) -> Result<Self> {
        std::fs::create_dir_all(root)
            .with_context(|| format!("sink: cannot create folder `{}`", root.display()))?;
        let mut found = Vec::new();
        walk(root, &mut found)?;
        let (commit_upto, keep_upto) = match restore {
            Some((id, kept)) => (id, Some(kept.max(id))),
            None => (0, None),
        };
        let mut committed = Vec::new();
        for (path, kind) in found {
            match kind {
                Name::Pending(c) if c <= commit_upto => {
                    let visible = visible_path(&path);
                    rename(&path, &visible)?;
                    committed.push(visible);
                }
                Name::Visible(c) if keep_upto.is_some_and(|keep| c <= keep) => {}
                _ => remove(&path)?,
            }
        }
        sync_folders(committed.iter().map(PathBuf::as_path))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .build();
        Ok(Self {
            root: root.to_owned(),
            partition_by: config.partition_by.clone(),
            max_file_bytes: config.max_file_bytes.max(1),
            checkpoints,
            properties,
            open: HashMap::new(),
            closed: Vec::new(),
            pending: Vec::new(),
            last_barrier: commit_upto,
            started: 0,
        })
    }

    fn label(&self) -> String {
        format!("sink `parquet` (`{}`)", self.root.display())
    }

    /// The batch's rows by partition folder, in the order first seen; the
    /// partition field left out.
    fn split(&self, batch: &RecordBatch) -> Result<Vec<(PathBuf, RecordBatch)>> {
        let Some(field) = &self.partition_by else {
            return Ok(vec![(self.root.clone(), batch.clone())]);
        };
        let values = partition_values(batch, field);
        let without = match batch.schema().index_of(field) {
            Ok(i) => {
                let mut batch = batch.clone();
                batch.remove_column(i);
                batch
            }
            Err(_) => batch.clone(),
        };
        let folder = |value: &Option<String>| {
            self.root.join(format!(
                "{field}={}",
                value
                    .as_deref()
                    .map_or(NULL_PARTITION.to_owned(), folder_value)
            ))
        };
        if values.windows(2).all(|w| w[0] == w[1]) {
            let value = values.first().cloned().flatten();
            return Ok(vec![(folder(&value), without)]);
        }
        let mut order: Vec<&Option<String>> = Vec::new();
        let mut rows: HashMap<&Option<String>, Vec<u32>> = HashMap::new();
        for (row, value) in values.iter().enumerate() {
            let entry = rows.entry(value).or_insert_with(|| {
                order.push(value);
                Vec::new()
            });
            entry.push(u32::try_from(row)?);
        }
        order
            .into_iter()
            .map(|value| {
                let indices = UInt32Array::from(rows.remove(value).unwrap_or_default());
                Ok((folder(value), take_record_batch(&without, &indices)?))
            })
            .collect()
    }

    /// Writes `batch` to partition folder `folder`'s open file, starting a
    /// new one when there is none or the batch does not fit it.
    fn write_to(&mut self, folder: PathBuf, batch: &RecordBatch) -> Result<()> {
        let fitted = match self.open.get(&folder) {
            Some(open) => match conform(batch, &open.schema) {
                Some(fitted) => Some(fitted),
                None => {
                    self.close(&folder)?;
                    None
                }
            },
            None => None,
        };
        let label = self.label();
        let open = match self.open.entry(folder) {
            std::collections::hash_map::Entry::Occupied(open) => open.into_mut(),
            std::collections::hash_map::Entry::Vacant(slot) => {
                std::fs::create_dir_all(slot.key()).with_context(|| {
                    format!("{label}: cannot create `{}`", slot.key().display())
                })?;
                self.started += 1;
                let path = slot
                    .key()
                    .join(format!(".inprogress-{}.parquet", self.started));
                let file = File::create(&path)
                    .with_context(|| format!("{label}: cannot create `{}`", path.display()))?;
                let schema = nullable(&batch.schema());
                let writer =
                    ArrowWriter::try_new(file, Arc::clone(&schema), Some(self.properties.clone()))?;
                slot.insert(OpenFile {
                    number: self.started,
                    path,
                    schema,
                    writer,
                })
            }
        };
        let batch = match fitted {
            Some(fitted) => fitted,
            None => conform(batch, &open.schema).context("a batch does not fit its own schema")?,
        };
        open.writer
            .write(&batch)
            .with_context(|| format!("{label}: cannot write `{}`", open.path.display()))?;
        let size = (open.writer.bytes_written() + open.writer.in_progress_size()) as u64;
        if size >= self.max_file_bytes {
            let folder = open.path.parent().map(Path::to_owned).unwrap_or_default();
            self.close(&folder)?;
        }
        Ok(())
    }

    /// Finishes and syncs partition folder `folder`'s open file.
    fn close(&mut self, folder: &Path) -> Result<()> {
        let Some(open) = self.open.remove(folder) else {
            return Ok(());
        };
        let context = || format!("{}: cannot finish `{}`", self.label(), open.path.display());
        let file = open.writer.into_inner().with_context(context)?;
        file.sync_all().with_context(context)?;
        self.closed.push((open.number, open.path));
        Ok(())
    }

    /// Closes every open file; returns the epoch's files, numbered within
    /// their folder: (in-progress path, final name without its prefix).
    fn end_epoch(&mut self, checkpoint: u64) -> Result<Vec<(PathBuf, String)>> {
        let folders: Vec<PathBuf> = self.open.keys().cloned().collect();
        for folder in folders {
            self.close(&folder)?;
        }
        let mut files = std::mem::take(&mut self.closed);
        files.sort();
        let mut counts: HashMap<PathBuf, u32> = HashMap::new();
        Ok(files
            .into_iter()
            .map(|(_, path)| {
                let folder = path.parent().map(Path::to_owned).unwrap_or_default();
                let n = counts.entry(folder).or_default();
                let name = format!("part-{checkpoint:06}-{n:03}.parquet");
                *n += 1;
                (path, name)
            })
            .collect())
    }

    /// Renames the epoch's files to their final names now.
    fn finish_visible(&mut self, checkpoint: u64) -> Result<()> {
        let files = self.end_epoch(checkpoint)?;
        let mut done = Vec::new();
        for (path, name) in files {
            let visible = path.with_file_name(name);
            rename(&path, &visible)?;
            done.push(visible);
        }
        self.commit(u64::MAX)?;
        sync_folders(done.iter().map(PathBuf::as_path))
    }
}

impl Sink for ParquetSink {
    fn write(&mut self, message: &Message) -> Result<()> {
        if message.batch.num_rows() == 0 {
            return Ok(());
        }
        for (folder, batch) in self.split(&message.batch)? {
            self.write_to(folder, &batch)?;
        }
        Ok(())
    }

    fn barrier(&mut self, id: u64) -> Result<u64> {
        let files = self.end_epoch(id)?;
        let mut pending = Vec::new();
        for (path, name) in files {
            let target = path.with_file_name(format!(".{name}.pending"));
            rename(&path, &target)?;
            pending.push(target);
        }
        sync_folders(pending.iter().map(PathBuf::as_path))?;
        self.pending.extend(pending.into_iter().map(|p| (id, p)));
        self.last_barrier = id;
        Ok(id)
    }

    fn commit(&mut self, upto: u64) -> Result<()> {
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.pending)
            .into_iter()
            .partition(|(c, _)| *c <= upto);
        self.pending = waiting;
        let mut done = Vec::new();
        for (_, path) in ready {
            let visible = visible_path(&path);
            rename(&path, &visible)?;
            done.push(visible);
        }
        sync_folders(done.iter().map(PathBuf::as_path))
    }

    fn finish(mut self: Box<Self>, all: bool) -> Result<()> {
        if !self.checkpoints {
            return self.finish_visible(0);
        }
        if all {
            let last = self.last_barrier + 1;
            return self.finish_visible(last);
        }
        // Left for a restart, which deletes the epoch's files.
        let folders: Vec<PathBuf> = self.open.keys().cloned().collect();
        for folder in folders {
            self.close(&folder)?;
        }
        Ok(())
    }
}
