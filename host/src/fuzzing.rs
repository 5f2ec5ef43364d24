//! Entry points of the fuzz targets in `fuzz/` and of their regression
//! tests: each takes arbitrary bytes, must return rather than panic, and
//! checks what the code must keep true whatever the input (every line is
//! either a record or a dead letter, say).
//!
//! They cover what comes from outside the host: JSON Lines and CSV input,
//! pipeline files, the batches a guest returns across the Wasm boundary,
//! and checkpoint files read back from disk.
//!
//! `cargo fuzz` (nightly, `fuzz/`) runs them coverage-guided. On stable,
//! `cargo test` runs each over a bounded number of inputs mutated from
//! hand-written seeds and the kept regressions (`fuzzing::tests::mutated`):
//! not coverage-guided, but in every CI run.

use crate::codec;
use crate::wasm::bindings::types;

/// JSON Lines: every non-empty line is a row or a bad line, the rows
/// encode back to JSON Lines, and each of those lines decodes again.
pub fn jsonl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines: Vec<(u64, &str)> = text
        .split('\n')
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i as u64 + 1, l))
        .collect();
    let (batch, numbers, bad) = codec::decode_json_lines(lines.iter().copied());
    assert_eq!(
        batch.num_rows() + bad.len(),
        lines.len(),
        "a line went missing"
    );
    assert_eq!(numbers.len(), batch.num_rows());
    let mut out = Vec::new();
    codec::encode_json_lines(&batch, &mut out);
    let out = String::from_utf8(out).expect("the encoder writes UTF-8");
    let again: Vec<(u64, &str)> = out
        .lines()
        .enumerate()
        .map(|(i, l)| (i as u64 + 1, l))
        .collect();
    let (_, _, bad_again) = codec::decode_json_lines(again);
    assert!(
        bad_again.is_empty(),
        "encoded rows do not decode: {bad_again:?}"
    );
}

/// CSV: the first line is the header; every other non-empty line is a row
/// or a bad line.
pub fn csv(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.split('\n');
    let Some(Ok(header)) = lines.next().map(codec::parse_csv_header) else {
        return;
    };
    let records: Vec<(u64, &str)> = lines
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| (i as u64 + 2, l))
        .collect();
    let (batch, numbers, bad) = codec::decode_csv_lines(&header, records.iter().copied());
    assert_eq!(
        batch.num_rows() + bad.len(),
        records.len(),
        "a line went missing"
    );
    assert_eq!(numbers.len(), batch.num_rows());
}

/// A pipeline file: parsed and checked, or refused with an error.
pub fn pipeline(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = crate::config::Pipeline::parse(text, std::path::Path::new("fuzz.toml"));
    }
}

/// A checkpoint's state file and manifest: decoded, or refused with an
/// error (their checksums catch damage; this is about never panicking).
pub fn checkpoint(data: &[u8]) {
    let _ = postcard::from_bytes::<crate::checkpoint::WorkerState>(data);
    // As a disk store loads it, entry by entry (here into memory: the
    // decoding is the same).
    let mut state = crate::runtime::KeyedState::default();
    let _ = state.load_state_file(
        data,
        crate::runtime::Owner {
            index: 1,
            workers: 2,
        },
    );
    let _ = serde_json::from_slice::<crate::checkpoint::Manifest>(data);
}

/// A guest's output for a call of `rows` input rows, built from the bytes:
/// decoded into Arrow, or refused with an error.
pub fn guest_output(data: &[u8]) {
    let mut bytes = Bytes(data);
    let rows = usize::from(bytes.byte() % 8);
    let emitted = (0..bytes.byte() % 3)
        .map(|_| types::Emitted {
            output: bytes.name(),
            batch: bytes.batch(),
            origins: bytes.list(|b| u32::from(b.byte() % 10)),
            unchanged: bytes.byte() % 4 == 0,
        })
        .collect();
    let output = types::Output {
        emitted,
        rejected: bytes.list(|b| types::Rejected {
            row: u32::from(b.byte() % 10),
            reason: b.name(),
        }),
        state_updates: Vec::new(),
        timers: Vec::new(),
    };
    if let Ok(decoded) = crate::wasm::convert::decode_output(output, rows) {
        for (_, batch, origins) in &decoded.emitted {
            if let Some(batch) = batch {
                assert_eq!(batch.num_rows(), origins.len());
            }
        }
    }
}

/// Reads fuzz bytes as the parts of a guest batch; zeros once they run out.
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&first, rest)) = self.0.split_first() else {
            return 0;
        };
        self.0 = rest;
        first
    }

    fn i64(&mut self) -> i64 {
        i64::from_le_bytes(std::array::from_fn(|_| self.byte()))
    }

    fn list<T>(&mut self, mut item: impl FnMut(&mut Self) -> T) -> Vec<T> {
        (0..self.byte() % 12).map(|_| item(self)).collect()
    }

    fn name(&mut self) -> String {
        ["out", "side", "a", ""][usize::from(self.byte() % 4)].to_owned()
    }

    fn text(&mut self) -> types::TextValues {
        types::TextValues {
            offsets: self.list(|b| i32::from(b.byte() as i8)),
            bytes: self.list(Self::byte),
        }
    }

    fn batch(&mut self) -> types::Batch {
        types::Batch {
            rows: u32::from(self.byte() % 10),
            columns: self.list(|b| types::Column {
                name: b.name(),
                values: match b.byte() % 5 {
                    0 => types::Values::Int64(b.list(Self::i64)),
                    1 => types::Values::Float64(b.list(|b| f64::from_bits(b.i64() as u64))),
                    2 => types::Values::Boolean(b.list(|b| b.byte() % 2 == 0)),
                    3 => types::Values::Utf8(b.text()),
                    _ => types::Values::Json(b.text()),
                },
                validity: (b.byte() % 2 == 0).then(|| b.list(Self::byte)),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Target = fn(&[u8]);

    const TARGETS: [(&str, Target); 5] = [
        ("jsonl", jsonl),
        ("csv", csv),
        ("pipeline", pipeline),
        ("guest_output", guest_output),
        ("checkpoint", checkpoint),
    ];

    #[test]
    fn kept_inputs_still_pass() {
        let kept = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/regressions");
        for (target, run) in TARGETS {
            let Ok(entries) = std::fs::read_dir(kept.join(target)) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                run(&std::fs::read(&path).unwrap());
            }
        }
    }

    #[test]
    fn hand_written_bad_inputs_pass() {
        jsonl(
            b"{\"a\":1}\n{\"a\":\n\n[1,2]\n{\"a\":\"\\ud800\"}\n{\"a\":1e999}\n{\"a\":{\"b\":[\n",
        );
        jsonl(&[b'{', b'"', 0xff, b'"', b':', b'1', b'}']);
        csv(b"a,b\n1,2\n\"x\n3\n4,5,6\n,\n");
        csv(b"a,a\n1,2\n");
        pipeline(b"[[source]]\ntype = \"jsonl\"\n");
        pipeline(b"[[operator]]\nid = 5\n");
        pipeline(b"batch_size = -1\n");
        for seed in 0..=255u8 {
            let bytes: Vec<u8> = (0..64u8)
                .map(|i| seed.wrapping_mul(31).wrapping_add(i * 7))
                .collect();
            guest_output(&bytes);
        }
    }

    /// Seeds per target: valid inputs, for mutations to break.
    fn seeds(target: &str) -> Vec<Vec<u8>> {
        let mut seeds: Vec<Vec<u8>> = match target {
            "jsonl" => vec![
                br#"{"product":"tea","qty":2,"price_cents":300,"tags":["a"],"n":null}"#.to_vec(),
                b"{\"a\":1.5e3}\n{\"a\":\"x\"}\n{\"a\":{\"b\":[1,2]}}\n".to_vec(),
            ],
            "csv" => vec![b"product,qty,price\ntea,2,3.5\n\"a,b\",1,\n".to_vec()],
            "pipeline" => vec![
                std::fs::read(
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                        .join("../examples/top-products/pipeline.toml"),
                )
                .unwrap(),
            ],
            "checkpoint" => {
                let mut state = crate::checkpoint::WorkerState::default();
                state
                    .values
                    .insert("tea".into(), br#"{"units":3}"#.to_vec());
                state.event_timers.insert(86_400_000, "tea");
                let manifest = br#"{"id":3,"completed_at":"2026-12-06T00:00:00Z","sources":[{"name":"orders","position":{"File":{"offset":10,"line":1,"header":null}},"clock":[5,0]}],"operators":[{"id":"sales","workers":[{"version":1,"content_hash":"ab","state_version":0,"state":{"file":"sales-0.state","bytes":9,"crc32":1}}]}],"sinks":[{"path":"out.jsonl","bytes":0}]}"#;
                vec![postcard::to_stdvec(&state).unwrap(), manifest.to_vec()]
            }
            _ => vec![(0..=255u8).collect()],
        };
        let kept = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions")
            .join(target);
        if let Ok(entries) = std::fs::read_dir(kept) {
            seeds.extend(
                entries
                    .flatten()
                    .filter_map(|e| std::fs::read(e.path()).ok()),
            );
        }
        seeds
    }

    /// One random change: flip, insert, delete or copy bytes, or insert a
    /// token that matters to the formats.
    fn mutate(input: &mut Vec<u8>, rng: &mut u64) {
        let mut next = || {
            *rng ^= *rng << 13;
            *rng ^= *rng >> 7;
            *rng ^= *rng << 17;
            *rng
        };
        const TOKENS: [&[u8]; 12] = [
            b"{", b"}", b"\"", b",", b"\n", b"[", b"]", b"\\u", b"1e999", b"null", b"=", b"\xff",
        ];
        let at = |n: u64, len: usize| (n % (len as u64 + 1)) as usize;
        match next() % 6 {
            0 if !input.is_empty() => {
                let i = at(next(), input.len() - 1);
                input[i] ^= 1 << (next() % 8);
            }
            1 => {
                let i = at(next(), input.len());
                input.insert(i, next() as u8);
            }
            2 if !input.is_empty() => {
                let i = at(next(), input.len() - 1);
                let n = (next() % 8) as usize;
                input.drain(i..(i + n).min(input.len()));
            }
            3 if input.len() > 1 => {
                let from = at(next(), input.len() - 1);
                let to = at(next(), input.len());
                let piece: Vec<u8> = input[from..(from + 16).min(input.len())].to_vec();
                input.splice(to..to, piece);
            }
            4 => {
                let i = at(next(), input.len());
                let token = TOKENS[(next() % TOKENS.len() as u64) as usize];
                input.splice(i..i, token.iter().copied());
            }
            _ => input.truncate(at(next(), input.len())),
        }
    }

    /// Every target over 20,000 inputs, each a seed after 1 to 8 random
    /// changes: the fuzzing CI can run on stable Rust.
    #[test]
    fn mutated() {
        for (target, run) in TARGETS {
            let seeds = seeds(target);
            let mut rng = 0x5EED_u64 ^ target.len() as u64;
            for i in 0..20_000 {
                let mut input = seeds[i % seeds.len()].clone();
                for _ in 0..=(i % 8) {
                    mutate(&mut input, &mut rng);
                }
                run(&input);
            }
        }
    }
}
