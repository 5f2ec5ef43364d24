//! Window operators run natively through the test harness: sessions merge,
//! allowed lateness updates a fired window, later records go to `late`.

use serde_json::{Value, json};
use weir_guest::testing::Harness;

mod sessions {
    use serde::{Deserialize, Serialize};
    use weir_guest::Window;

    #[derive(Deserialize)]
    pub struct Click {}

    #[derive(Serialize)]
    pub struct Session {
        user: String,
        start: i64,
        end: i64,
        clicks: i64,
    }

    #[weir_guest::window(session = "10s", merge = merge, result = session)]
    pub fn add(clicks: &mut i64, _click: Click) {
        *clicks += 1;
    }

    pub fn merge(clicks: &mut i64, other: i64) {
        *clicks += other;
    }

    pub fn session(user: &str, window: Window, clicks: &i64) -> Option<Session> {
        Some(Session {
            user: user.to_owned(),
            start: window.start,
            end: window.end,
            clicks: *clicks,
        })
    }
}

mod late_sums {
    use serde::{Deserialize, Serialize};
    use weir_guest::Window;

    #[derive(Deserialize)]
    pub struct Sale {
        amount: i64,
    }

    #[derive(Serialize)]
    pub struct Total {
        start: i64,
        total: i64,
    }

    #[weir_guest::window(tumbling = "10s", allowed_lateness = "5s", result = total)]
    pub fn add(total: &mut i64, sale: Sale) {
        *total += sale.amount;
    }

    pub fn total(_key: &str, window: Window, total: &i64) -> Option<Total> {
        Some(Total {
            start: window.start,
            total: *total,
        })
    }
}

fn click(user: &str, ts: i64) -> Value {
    json!({"user": user, "ts": ts})
}

#[test]
fn sessions_merge_when_a_click_bridges_them() {
    // Records may be 20 s late, so nothing closes before the end.
    let mut harness = Harness::keyed(sessions::weir_operator(), "user").event_time("ts", 20_000);
    // Two sessions of `a` 15 s apart, then a click that bridges them.
    let out = harness.run(&[click("a", 0), click("a", 15_000), click("b", 1_000)]);
    assert!(out.records("out").is_empty());
    let out = harness.run(&[click("a", 8_000)]);
    assert!(out.records("out").is_empty());
    let out = harness.finish();
    assert_eq!(
        out.records("out"),
        vec![
            json!({"user": "b", "start": 1_000, "end": 11_000, "clicks": 1}),
            json!({"user": "a", "start": 0, "end": 25_000, "clicks": 3}),
        ]
    );
}

#[test]
fn a_session_closes_when_the_watermark_passes_its_gap() {
    let mut harness = Harness::keyed(sessions::weir_operator(), "user").event_time("ts", 0);
    harness.run(&[click("a", 0), click("a", 4_000)]);
    let out = harness.run(&[click("b", 20_000)]);
    assert_eq!(
        out.records("out"),
        vec![json!({"user": "a", "start": 0, "end": 14_000, "clicks": 2})]
    );
}

#[test]
fn allowed_lateness_updates_a_fired_window_and_later_records_are_late() {
    let sale = |amount: i64, ts: i64| json!({"shop": "s", "amount": amount, "ts": ts});
    let mut harness = Harness::keyed(late_sums::weir_operator(), "shop").event_time("ts", 0);
    harness.run(&[sale(1, 1_000), sale(2, 9_000)]);
    // The watermark passes the window [0, 10 s): it fires.
    let out = harness.run(&[sale(5, 12_000)]);
    assert_eq!(out.records("out"), vec![json!({"start": 0, "total": 3})]);
    // Within the 5 s of allowed lateness: the window fires again, updated.
    let out = harness.run(&[sale(10, 2_000)]);
    assert_eq!(out.records("out"), vec![json!({"start": 0, "total": 13})]);
    // The watermark passes 10 s + 5 s: the window is gone; a record for it is late.
    harness.run(&[sale(1, 16_000)]);
    let out = harness.run(&[sale(100, 3_000)]);
    assert!(out.records("out").is_empty());
    assert_eq!(out.records("late"), vec![sale(100, 3_000)]);
    let out = harness.finish();
    assert_eq!(
        out.records("out"),
        vec![json!({"start": 10_000, "total": 6})]
    );
}
