//! A guest that panics, loops forever or allocates without bound: the run
//! goes on, the bad records are dead-lettered with the operator, version and
//! reason, and every other record comes out in order.

use crate::support::{read_jsonl, repo, run_ok, s};

#[test]
fn hostile_records_are_dead_lettered_and_the_rest_flows() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    let lines = [
        r#"{"id":1}"#,
        r#"{"id":2,"action":"panic"}"#,
        r#"{"id":3}"#,
        r#"{"id":4,"action":"loop"}"#,
        r#"{"id":5,"action":"alloc"}"#,
        r#"{"id":6}"#,
        r#"{"id":"seven"}"#,
        r#"{"id":8}"#,
    ];
    std::fs::write(&input, lines.join("\n")).unwrap();
    let pipeline = dir.path().join("hostile.toml");
    std::fs::write(
        &pipeline,
        format!(
            "[[source]]\ntype = \"jsonl\"\npath = \"{}\"\n\n\
             [[operator]]\nid = \"hostile\"\ncrate = \"{}\"\n\
             limits = {{ call_timeout = \"300ms\", memory_mib = 64 }}\n\n\
             [[sink]]\ntype = \"jsonl\"\npath = \"out.jsonl\"\n\n\
             [dead_letter]\npath = \"dead.jsonl\"\n",
            s(&input),
            s(&repo().join("tests/fixtures/hostile"))
        ),
    )
    .unwrap();
    run_ok(&["run", s(&pipeline)]);
    let out: Vec<i64> = read_jsonl(&dir.path().join("out.jsonl"))
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert_eq!(out, vec![1, 3, 6, 8]);
    let dead = read_jsonl(&dir.path().join("dead.jsonl"));
    let lines: Vec<u64> = dead.iter().map(|d| d["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![2, 4, 5, 7]);
    for d in &dead {
        assert_eq!(d["operator"], "hostile");
        assert_eq!(d["version"], 1);
        assert_eq!(d["source"], "jsonl");
    }
    let reason = |i: usize| dead[i]["reason"].as_str().unwrap().to_owned();
    assert!(
        reason(0).contains("asked to panic on record 2"),
        "{}",
        reason(0)
    );
    assert!(reason(1).contains("call timeout"), "{}", reason(1));
    assert!(reason(2).contains("memory"), "{}", reason(2));
    assert!(reason(3).contains("field `id`"), "{}", reason(3));
    assert_eq!(dead[0]["raw"], r#"{"id":2,"action":"panic"}"#);
}
