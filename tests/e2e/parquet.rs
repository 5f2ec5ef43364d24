//! The Parquet sink: the rows read back with the Parquet reader, the
//! partition folders, and a run killed at random moments that ends with
//! every row exactly once across the files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use ::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use ::parquet::basic::Compression;

use crate::support::{Rng, run_ok, s, weir};

/// Every file under `root`, relative, sorted.
fn files(root: &Path) -> Vec<String> {
    fn walk(dir: &Path, root: &Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).expect("folder").flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, root, found);
            } else {
                found.push(
                    path.strip_prefix(root)
                        .expect("under root")
                        .display()
                        .to_string(),
                );
            }
        }
    }
    let mut found = Vec::new();
    walk(root, root, &mut found);
    found.sort();
    found
}

/// The rows of one Parquet file as JSON lines, checking it is
/// zstd-compressed.
fn read_rows(path: &Path) -> Vec<String> {
    let file = std::fs::File::open(path).expect("parquet file");
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).expect("a Parquet file");
    for group in builder.metadata().row_groups() {
        for column in group.columns() {
            assert!(
                matches!(column.compression(), Compression::ZSTD(_)),
                "{}: {:?}",
                path.display(),
                column.compression()
            );
        }
    }
    let mut rows = Vec::new();
    for batch in builder.build().expect("reader") {
        let batch = batch.expect("a batch");
        let mut out = Vec::new();
        weir::codec::encode_json_lines(&batch, &mut out);
        rows.extend(
            String::from_utf8(out)
                .expect("UTF-8")
                .lines()
                .map(str::to_owned),
        );
    }
    rows
}

/// The rows of every visible file under `root`, by file.
fn read_all(root: &Path) -> BTreeMap<String, Vec<String>> {
    files(root)
        .into_iter()
        .map(|name| {
            assert!(
                !name.split('/').any(|part| part.starts_with('.')),
                "a hidden file was left: {name}"
            );
            let rows = read_rows(&root.join(&name));
            (name, rows)
        })
        .collect()
}

fn write_pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("pipeline.toml");
    std::fs::write(&path, text).expect("pipeline written");
    path
}

#[test]
fn rows_go_to_one_zstd_file_per_partition_and_read_back_exactly() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("orders.jsonl"),
        concat!(
            r#"{"day":"2026-12-07","product":"espresso","qty":2,"price":2.5}"#,
            "\n",
            r#"{"day":"2026-12-06","product":"croissant","qty":1,"price":1.75}"#,
            "\n",
            r#"{"day":"2026-12-07","product":"tea","qty":3,"price":2.25,"tags":["hot"]}"#,
            "\n",
            r#"{"product":"scone","qty":1,"price":3.0}"#,
            "\n",
            r#"{"day":"12/08 a:b","product":"juice","qty":4,"price":4.0}"#,
            "\n",
        ),
    )
    .expect("input written");
    let pipeline = write_pipeline(
        dir.path(),
        "[[source]]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\n\n\
         [[sink]]\ntype = \"parquet\"\npath = \"out\"\npartition_by = \"day\"\n",
    );
    run_ok(&["run", s(&pipeline)]);
    let read = read_all(&dir.path().join("out"));
    let expected: BTreeMap<String, Vec<String>> = [
        (
            "day=12%2F08%20a%3Ab/part-000001-000.parquet",
            vec![r#"{"product":"juice","qty":4,"price":4.0}"#],
        ),
        (
            "day=2026-12-06/part-000001-000.parquet",
            vec![r#"{"product":"croissant","qty":1,"price":1.75}"#],
        ),
        (
            "day=2026-12-07/part-000001-000.parquet",
            vec![
                r#"{"product":"espresso","qty":2,"price":2.5}"#,
                r#"{"product":"tea","qty":3,"price":2.25,"tags":["hot"]}"#,
            ],
        ),
        (
            "day=__HIVE_DEFAULT_PARTITION__/part-000001-000.parquet",
            vec![r#"{"product":"scone","qty":1,"price":3.0}"#],
        ),
    ]
    .into_iter()
    .map(|(name, rows)| {
        (
            name.to_owned(),
            rows.into_iter().map(str::to_owned).collect(),
        )
    })
    .collect();
    assert_eq!(read, expected);
}

#[test]
fn files_roll_at_max_file_bytes_and_a_fresh_run_replaces_the_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut input = String::new();
    for i in 0..1000 {
        input.push_str(&format!("{{\"n\":{i},\"text\":\"row {i}\"}}\n"));
    }
    std::fs::write(dir.path().join("rows.jsonl"), &input).expect("input written");
    let pipeline = write_pipeline(
        dir.path(),
        "batch_size = 100\n[[source]]\ntype = \"jsonl\"\npath = \"rows.jsonl\"\n\n\
         [[sink]]\ntype = \"parquet\"\npath = \"out\"\nmax_file_bytes = 1\n",
    );
    // A file of an earlier run, and one that is not the sink's.
    std::fs::create_dir_all(dir.path().join("out")).expect("folder");
    std::fs::write(dir.path().join("out/part-000007-000.parquet"), "old").expect("old");
    std::fs::write(dir.path().join("out/notes.txt"), "mine").expect("notes");
    run_ok(&["run", s(&pipeline)]);
    let mut names = files(&dir.path().join("out"));
    assert!(names.contains(&"notes.txt".to_owned()), "{names:?}");
    names.retain(|n| n != "notes.txt");
    let expected: Vec<String> = (0..10)
        .map(|n| format!("part-000001-{n:03}.parquet"))
        .collect();
    assert_eq!(names, expected, "one file per batch of 100 rows");
    let rows: Vec<String> = names
        .iter()
        .flat_map(|n| read_rows(&dir.path().join("out").join(n)))
        .collect();
    let want: Vec<String> = (0..1000)
        .map(|i| format!("{{\"n\":{i},\"text\":\"row {i}\"}}"))
        .collect();
    assert_eq!(rows, want);
}

#[test]
fn a_run_killed_at_random_moments_writes_every_row_once() {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut rng = Rng::new(21);
    let mut input = String::new();
    let mut expected = Vec::new();
    for i in 0..200_000u64 {
        let day = format!("2026-12-{:02}", 1 + rng.below(7));
        let qty = 1 + rng.below(9);
        input.push_str(&format!(
            "{{\"day\":\"{day}\",\"order\":{i},\"qty\":{qty}}}\n"
        ));
        expected.push(format!("{day} {{\"order\":{i},\"qty\":{qty}}}"));
    }
    expected.sort();
    std::fs::write(dir.path().join("orders.jsonl"), &input).expect("input written");
    let pipeline = write_pipeline(
        dir.path(),
        "checkpoint_interval = \"50ms\"\ncheckpoint_dir = \"ck\"\nbatch_size = 64\n\
         [[source]]\ntype = \"jsonl\"\npath = \"orders.jsonl\"\n\n\
         [[sink]]\ntype = \"parquet\"\npath = \"out\"\npartition_by = \"day\"\n",
    );
    crate::support::pace_sources(&pipeline, 3);
    let has_checkpoint = || {
        std::fs::read_dir(dir.path().join("ck"))
            .map(|entries| {
                entries.flatten().any(|e| {
                    let name = e.file_name().to_string_lossy().into_owned();
                    name.starts_with("chk-") && !name.ends_with(".tmp")
                })
            })
            .unwrap_or(false)
    };
    let mut kills = 0;
    let mut logs = Vec::new();
    for attempt in 0..4 {
        let log = dir.path().join(format!("run-{attempt}.log"));
        logs.push(log.clone());
        let mut child = weir()
            .args(["run", s(&pipeline)])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("weir starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        while !has_checkpoint() && Instant::now() < deadline {
            if child.try_wait().expect("wait").is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(rng.below(300)));
        let finished = child.try_wait().expect("wait").is_some();
        let _ = child.kill();
        let status = child.wait().expect("weir ends");
        if finished {
            assert!(status.success(), "weir failed");
            break;
        }
        kills += 1;
    }
    assert!(
        kills >= 2,
        "only {kills} runs were killed before they ended"
    );
    let out = run_ok(&["run", s(&pipeline)]);
    // A run killed just as it read the last record has deleted its
    // checkpoints; the next one then starts over. Some restart resumed.
    let mut all = String::from_utf8_lossy(&out.stderr).into_owned();
    for log in &logs {
        all.push_str(&std::fs::read_to_string(log).unwrap_or_default());
    }
    assert!(all.contains("weir: resuming from checkpoint"), "{all}");

    let mut rows = Vec::new();
    let mut checkpoints = std::collections::BTreeSet::new();
    for (name, file_rows) in read_all(&dir.path().join("out")) {
        let (folder, file) = name.split_once('/').expect("a partition folder");
        let day = folder.strip_prefix("day=").expect("day=...");
        checkpoints.insert(file.split('-').nth(1).unwrap_or("").to_owned());
        rows.extend(file_rows.into_iter().map(|r| format!("{day} {r}")));
    }
    rows.sort();
    assert_eq!(rows.len(), expected.len(), "rows missing or written twice");
    assert!(rows == expected, "the rows differ from the input's");
    assert!(
        checkpoints.len() > 2,
        "files of several checkpoints: {checkpoints:?}"
    );
}
