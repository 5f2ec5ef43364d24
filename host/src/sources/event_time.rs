//! Event time at the source: each record's timestamp, and the watermark that
//! trails the largest one seen by the configured delay.

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};

use crate::config::EventTimeConfig;

/// Reads event times and tracks the watermark of one source.
pub(crate) struct EventClock {
    field: String,
    delay_ms: i64,
    max_seen: i64,
    sent: i64,
}

impl EventClock {
    pub(crate) fn new(config: &EventTimeConfig) -> Self {
        Self {
            field: config.field.clone(),
            delay_ms: i64::try_from(config.watermark_delay.as_millis()).unwrap_or(i64::MAX),
            max_seen: i64::MIN,
            sent: i64::MIN,
        }
    }

    /// The event time of every row and the watermark it arrived under, or
    /// the reason a row has no event time the source can read.
    pub(crate) fn stamp(&mut self, batch: &RecordBatch) -> Vec<Result<(i64, i64), String>> {
        let times = self.read(batch);
        times
            .into_iter()
            .map(|time| {
                let time = time?;
                let watermark = self.max_seen.saturating_sub(self.delay_ms);
                self.max_seen = self.max_seen.max(time);
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

    /// Sets the clock back to a checkpoint's state.
    pub(crate) fn restore(&mut self, (max_seen, sent): (i64, i64)) {
        self.max_seen = max_seen;
        self.sent = sent;
    }

    /// The watermark, when it moved since the last call.
    pub(crate) fn advance(&mut self) -> Option<i64> {
        let watermark = self.max_seen.saturating_sub(self.delay_ms);
        (watermark > self.sent).then(|| {
            self.sent = watermark;
            watermark
        })
    }
}
