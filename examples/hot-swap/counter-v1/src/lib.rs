//! Version 1 of the hot-swap counter: counts each key's records in an
//! integer kept in keyed state (state layout version 1).

use serde::{Deserialize, Serialize};
use weir_guest::Keyed;

/// An input record: `seq` counts 1, 2, 3, … per key.
#[derive(Deserialize)]
pub struct Tick {
    key: String,
    seq: i64,
}

/// What version 1 emits for every record.
#[derive(Serialize)]
pub struct Counted {
    key: String,
    seq: i64,
    count: i64,
    version: u32,
}

#[weir_guest::keyed]
pub fn counter(tick: Tick, ctx: &mut Keyed<i64>) -> Counted {
    let count = ctx.state();
    *count += 1;
    Counted {
        key: tick.key,
        seq: tick.seq,
        count: *count,
        version: 1,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_guest::testing::Harness;

    #[test]
    fn counts_per_key() {
        let mut harness = Harness::keyed(super::weir_operator(), "key");
        let out = harness.run(&[
            json!({"key": "a", "seq": 1}),
            json!({"key": "b", "seq": 1}),
            json!({"key": "a", "seq": 2}),
        ]);
        assert_eq!(
            out.records("out"),
            vec![
                json!({"key": "a", "seq": 1, "count": 1, "version": 1}),
                json!({"key": "b", "seq": 1, "count": 1, "version": 1}),
                json!({"key": "a", "seq": 2, "count": 2, "version": 1}),
            ]
        );
        assert_eq!(harness.state("a"), Some(json!(2)));
    }
}
