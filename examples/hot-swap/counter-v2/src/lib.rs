//! Version 2 of the hot-swap counter: keeps the sum of `seq` too, so its
//! state layout changes (version 2) and it migrates version 1's counts.

use serde::{Deserialize, Serialize};
use weir_guest::Keyed;

/// An input record: `seq` counts 1, 2, 3, … per key.
#[derive(Deserialize)]
pub struct Tick {
    key: String,
    seq: i64,
}

/// The state of one key in layout version 2.
#[derive(Serialize, Deserialize, Default, Debug, PartialEq)]
pub struct Totals {
    pub count: i64,
    pub sum_seq: i64,
}

/// What version 2 emits for every record.
#[derive(Serialize)]
pub struct Counted {
    key: String,
    seq: i64,
    count: i64,
    sum_seq: i64,
    version: u32,
}

#[weir_guest::keyed(state_version = 2, migrate = from_v1)]
pub fn counter(tick: Tick, ctx: &mut Keyed<Totals>) -> Counted {
    let totals = ctx.state();
    totals.count += 1;
    totals.sum_seq += tick.seq;
    Counted {
        key: tick.key,
        seq: tick.seq,
        count: totals.count,
        sum_seq: totals.sum_seq,
        version: 2,
    }
}

/// Version 1 kept only the count; as `seq` runs 1..=n, the sum it did not
/// keep is n(n+1)/2.
pub fn from_v1(count: i64) -> Totals {
    Totals {
        count,
        sum_seq: count * (count + 1) / 2,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use weir_guest::testing::Harness;

    #[test]
    fn takes_over_version_1_state() {
        let mut harness = Harness::keyed(counter_v1::weir_operator(), "key");
        harness.run(&[json!({"key": "a", "seq": 1}), json!({"key": "a", "seq": 2})]);
        harness.swap_to(super::weir_operator()).unwrap();
        assert_eq!(harness.state("a"), Some(json!({"count": 2, "sum_seq": 3})));
        let out = harness.run(&[json!({"key": "a", "seq": 3})]);
        assert_eq!(
            out.records("out"),
            vec![json!({"key": "a", "seq": 3, "count": 3, "sum_seq": 6, "version": 2})]
        );
    }

    #[test]
    fn version_1_cannot_read_version_2_state() {
        let mut harness = Harness::keyed(super::weir_operator(), "key");
        harness.run(&[json!({"key": "a", "seq": 1})]);
        let error = harness.swap_to(counter_v1::weir_operator()).unwrap_err();
        assert!(
            error.contains("cannot convert the newer state version 2"),
            "{error}"
        );
        assert_eq!(harness.state("a"), Some(json!({"count": 1, "sum_seq": 1})));
    }
}
