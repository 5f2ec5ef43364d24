//! Event time at the source: each record's timestamp, and the watermark that
//! trails the largest one seen by the configured delay.
//!
//! A partitioned source (Kafka) keeps one lane per partition: its watermark
//! trails the smallest of the lanes' largest event times, so a partition
//! that lags behind holds it back, as Flink's per-partition watermarks do.
//! A lane with no record for `idle_timeout`, or one read to its end, stops
//! holding it back.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use std::time::{Duration, Instant};

use crate::config::EventTimeConfig;

/// Reads event times and tracks the watermark of one source.
pub(crate) struct EventClock {
    field: String,
    delay_ms: i64,
    max_seen: i64,
    sent: i64,
    /// The largest watermark a row arrived under: the watermark never
    /// moves back, even when a lane joins or wakes up.
    floor: i64,
    /// One per partition of a partitioned source; none for the others.
    lanes: Vec<Lane>,
    idle_timeout: Option<Duration>,
    lanes_since: Instant,
}

/// The event time of one partition.
struct Lane {
    max_seen: i64,
    last_record: Option<Instant>,
    /// Read to its end: it holds nothing back any more.
    ended: bool,
}

impl EventClock {
    pub(crate) fn new(config: &EventTimeConfig) -> Self {
        Self {
            field: config.field.clone(),
            delay_ms: i64::try_from(config.watermark_delay.as_millis()).unwrap_or(i64::MAX),
            max_seen: i64::MIN,
            sent: i64::MIN,
            floor: i64::MIN,
            lanes: Vec::new(),
            idle_timeout: config.idle_timeout,
            lanes_since: Instant::now(),
        }
    }

    /// Tracks `count` lanes (partitions) from now on, each holding the
    /// watermark back until it has records or is idle.
    pub(crate) fn set_lanes(&mut self, count: usize) {
        self.lanes = (0..count)
            .map(|_| Lane {
                max_seen: i64::MIN,
                last_record: None,
                ended: false,
            })
            .collect();
        self.lanes_since = Instant::now();
    }

    /// Lane `lane` was read to its end: it stops holding the watermark back.
    pub(crate) fn end_lane(&mut self, lane: usize) {
        if let Some(lane) = self.lanes.get_mut(lane) {
            lane.ended = true;
        }
    }

    /// The watermark now: the largest event time seen (the smallest of the
    /// active lanes', with lanes) minus the delay, never below one given.
    fn watermark(&self, now: Instant) -> i64 {
        let seen = if self.lanes.is_empty() {
            self.max_seen
        } else {
            let idle = |lane: &Lane| {
                self.idle_timeout.is_some_and(|timeout| {
                    now.saturating_duration_since(lane.last_record.unwrap_or(self.lanes_since))
                        >= timeout
                })
            };
            self.lanes
                .iter()
                .filter(|lane| !lane.ended && !idle(lane))
                .map(|lane| lane.max_seen)
                .min()
                // Every lane idle or ended: none holds the watermark back.
                .unwrap_or(self.max_seen)
        };
        seen.saturating_sub(self.delay_ms).max(self.floor)
    }

    /// The event time of every row and the watermark it arrived under, or
    /// the reason a row has no event time the source can read. `lanes`
    /// gives each row's lane when the source has lanes.
    pub(crate) fn stamp(
        &mut self,
        batch: &RecordBatch,
        lanes: Option<&[u32]>,
    ) -> Vec<Result<(i64, i64), String>> {
        let times = self.read(batch);
        let now = Instant::now();
        times
            .into_iter()
            .enumerate()
            .map(|(row, time)| {
                let time = time?;
                let watermark = self.watermark(now);
                self.floor = watermark;
                self.max_seen = self.max_seen.max(time);
                let lane = lanes
                    .and_then(|lanes| lanes.get(row))
                    .and_then(|&lane| self.lanes.get_mut(lane as usize));
                if let Some(lane) = lane {
                    lane.max_seen = lane.max_seen.max(time);
                    lane.last_record = Some(now);
                }
                Ok((time, watermark))
            })
            .collect()
    }

    fn read(&self, batch: &RecordBatch) -> Vec<Result<i64, String>> {
        let missing = || Err(format!("missing event time field `{}`", self.field));
        let Some(column) = batch.column_by_name(&self.field) else {
            return (0..batch.num_rows()).map(|_| missing()).collect();
        };
        let times: Vec<Result<i64, String>> = match column.data_type() {
            DataType::Int64 => {
                let values = column.as_primitive::<Int64Type>();
                (0..values.len())
                    .map(|i| {
                        if values.is_valid(i) {
                            Ok(values.value(i))
                        } else {
                            missing()
                        }
                    })
                    .collect()
            }
            DataType::Utf8 => {
                // A column of mixed types arrives as JSON text per value.
                let json = batch
                    .schema_ref()
                    .field_with_name(&self.field)
                    .is_ok_and(crate::codec::is_json_field);
                let values = column.as_string::<i32>();
                (0..values.len())
                    .map(|i| {
                        if !values.is_valid(i) {
                            return missing();
                        }
                        let text = values.value(i);
                        if !json {
                            return self.rfc3339(text);
                        }
                        match serde_json::from_str::<serde_json::Value>(text) {
                            Ok(serde_json::Value::Number(n)) => n.as_i64().ok_or_else(|| {
                                format!(
                                    "event time field `{}` is not whole milliseconds",
                                    self.field
                                )
                            }),
                            Ok(serde_json::Value::String(s)) => self.rfc3339(&s),
                            _ => Err(format!(
                                "event time field `{}` must be epoch milliseconds or an RFC 3339 \
                                 string",
                                self.field
                            )),
                        }
                    })
                    .collect()
            }
            _ => (0..batch.num_rows())
                .map(|i| {
                    if column.is_valid(i) {
                        Err(format!(
                            "event time field `{}` must be epoch milliseconds or an RFC 3339 \
                             string",
                            self.field
                        ))
                    } else {
                        missing()
                    }
                })
                .collect(),
        };
        times
    }

    fn rfc3339(&self, text: &str) -> Result<i64, String> {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| t.timestamp_millis())
            .map_err(|e| {
                format!(
                    "event time field `{}` is not an RFC 3339 time: {e}",
                    self.field
                )
            })
    }

    /// The clock's state for a checkpoint: the largest event time seen and
    /// the last watermark sent.
    pub(crate) fn save(&self) -> (i64, i64) {
        (self.max_seen, self.sent)
    }

    /// Sets the clock back to a checkpoint's state. Lanes start again
    /// from the records read after it, above the watermark already sent.
    pub(crate) fn restore(&mut self, (max_seen, sent): (i64, i64)) {
        self.max_seen = max_seen;
        self.sent = sent;
        self.floor = sent;
    }

    /// The watermark, when it moved since the last call.
    pub(crate) fn advance(&mut self) -> Option<i64> {
        let watermark = self.watermark(Instant::now());
        (watermark > self.sent).then(|| {
            self.sent = watermark;
            watermark
        })
    }
}
