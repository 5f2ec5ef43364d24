//! Reading records into the author's serde types: every field attribute an
//! author may use reads the column it names, whatever the column order.

use serde::Deserialize;
use serde_json::json;
use weir_guest::BatchView;
use weir_guest::testing::batch_of;

#[derive(Deserialize, Debug, PartialEq)]
struct Order {
    #[serde(alias = "qty_total")]
    qty: i64,
    #[serde(rename = "price_cents")]
    price: i64,
    #[serde(default)]
    discount: i64,
    #[serde(skip)]
    seen: bool,
    note: Option<String>,
}

fn orders(rows: &[serde_json::Value]) -> Vec<Result<Order, String>> {
    let batch = batch_of(rows);
    let view = BatchView::new(&batch);
    (0..view.rows())
        .map(|row| view.record::<Order>(row).map_err(|e| e.to_string()))
        .collect()
}

#[test]
fn aliases_renames_defaults_and_skipped_fields_read_their_own_columns() {
    let read = orders(&[
        json!({"note": "n", "price_cents": 250, "qty_total": 3}),
        json!({"qty": 4, "price_cents": 100, "discount": 7}),
    ]);
    assert_eq!(
        read,
        vec![
            Ok(Order {
                qty: 3,
                price: 250,
                discount: 0,
                seen: false,
                note: Some("n".into())
            }),
            Ok(Order {
                qty: 4,
                price: 100,
                discount: 7,
                seen: false,
                note: None
            }),
        ]
    );
}

#[test]
fn a_bad_field_is_named_before_a_missing_one() {
    let read = orders(&[
        json!({"qty": "x"}),
        json!({"qty": 1}),
        json!({"qty": 1, "price_cents": 2.5}),
    ]);
    assert_eq!(
        read,
        vec![
            Err("field `qty`: invalid type: string \"x\", expected i64".to_owned()),
            Err("missing field `price_cents`".to_owned()),
            Err("field `price_cents`: invalid type: floating point `2.5`, expected i64".to_owned()),
        ]
    );
}

#[derive(Deserialize, Debug, PartialEq)]
struct Pair {
    #[serde(alias = "b")]
    a: i64,
    c: i64,
}

#[test]
fn an_alias_never_shifts_a_value_into_the_next_field() {
    let batch = batch_of(&[json!({"a": 1, "b": 2, "c": 3}), json!({"b": 4, "c": 5})]);
    let view = BatchView::new(&batch);
    assert_eq!(
        view.record::<Pair>(0).map_err(|e| e.to_string()),
        Err("duplicate field `a`".to_owned())
    );
    assert_eq!(view.record::<Pair>(1), Ok(Pair { a: 4, c: 5 }));
}

fn ten() -> i64 {
    10
}

#[derive(Deserialize, Debug, PartialEq)]
struct Line {
    #[serde(default = "ten")]
    n: i64,
    #[serde(skip)]
    skipped: bool,
    s: Option<String>,
    #[serde(default = "ten_too")]
    m: Option<i64>,
    x: f64,
}

fn ten_too() -> Option<i64> {
    Some(10)
}

#[test]
fn nulls_read_as_absent_fields_with_their_defaults() {
    let batch = batch_of(&[
        json!({"n": 1, "s": "a", "m": 2, "x": 0.5}),
        json!({"x": 1.5}),
        json!({"n": 3, "s": "b", "m": 4, "x": 2}),
    ]);
    let view = BatchView::new(&batch);
    let read: Vec<Line> = (0..3).map(|row| view.record(row).unwrap()).collect();
    let line = |n, s: Option<&str>, m, x| Line {
        n,
        skipped: false,
        s: s.map(str::to_owned),
        m,
        x,
    };
    assert_eq!(
        read,
        vec![
            line(1, Some("a"), Some(2), 0.5),
            line(10, None, Some(10), 1.5),
            line(3, Some("b"), Some(4), 2.0),
        ]
    );
}
