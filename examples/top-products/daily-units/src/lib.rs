//! Units sold per product per UTC day: a tumbling one-day event-time window
//! keyed by product. Orders whose day has already closed go to `late`.

use serde::{Deserialize, Serialize};
use weir_guest::Window;

/// An order line (its `ts` is the pipeline's event time).
#[derive(Deserialize)]
pub struct Order {
    qty: i64,
}

/// One product's units on one day.
#[derive(Serialize)]
pub struct DayUnits {
    day: String,
    product: String,
    units: i64,
}

#[weir_guest::window(tumbling = "1d", result = day_units)]
pub fn add(units: &mut i64, order: Order) {
    *units += order.qty;
}

/// The window's result: the product (the key), its day and its units.
pub fn day_units(product: &str, window: Window, units: &i64) -> Option<DayUnits> {
    Some(DayUnits {
        day: utc_date(window.start),
        product: product.to_owned(),
        units: *units,
    })
}

/// `YYYY-MM-DD` of an epoch-millisecond time (proleptic Gregorian, UTC).
pub fn utc_date(epoch_ms: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let z = epoch_ms.div_euclid(86_400_000) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc_date(0), "1970-01-01");
        assert_eq!(super::utc_date(1_709_251_199_999), "2024-02-29");
        assert_eq!(super::utc_date(1_709_251_200_000), "2024-03-01");
        assert_eq!(super::utc_date(-1), "1969-12-31");
    }
}
