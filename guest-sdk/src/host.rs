//! The host functions an operator may call, with a native stand-in.
//!
//! In a component these call the `weir:operator/host` imports. In a native
//! build (unit tests, benchmarks) the same calls go to an in-memory host kept
//! per thread, so an operator crate behaves the same without Wasm.

use crate::abi::types::{RowTimes, TimeDomain};
pub use crate::abi::weir::operator::host::LogLevel;

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::*;
    use crate::abi::weir::operator::host as wit;

    pub fn log(level: LogLevel, message: &str) {
        wit::log(level, message)
    }
    pub fn counter_add(name: &str, delta: i64) {
        wit::counter_add(name, delta)
    }
    pub fn map_get(group: u32, _key: &str, map: &str, entry: &[u8]) -> Option<Vec<u8>> {
        wit::map_get(group, map, entry)
    }
    pub fn map_set(group: u32, _key: &str, map: &str, entry: &[u8], value: Option<&[u8]>) {
        wit::map_set(group, map, entry, value)
    }
    pub fn map_entries(group: u32, _key: &str, map: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        wit::map_entries(group, map)
    }
    pub fn current_time(domain: TimeDomain) -> i64 {
        wit::current_time(domain)
    }
    pub fn event_times() -> RowTimes {
        wit::event_times()
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::*;
    use std::cell::RefCell;
    use std::collections::{BTreeMap, HashMap};

    /// The in-memory host of native builds.
    #[derive(Default)]
    pub struct NativeHost {
        pub maps: HashMap<(String, String), BTreeMap<Vec<u8>, Vec<u8>>>,
        pub counters: HashMap<String, i64>,
        pub watermark: i64,
        /// Event times and arrival watermarks of the current batch's rows.
        pub event_times: (Vec<i64>, Vec<i64>),
    }

    thread_local! {
        pub static NATIVE: RefCell<NativeHost> = RefCell::new(NativeHost {
            watermark: i64::MIN,
            ..NativeHost::default()
        });
    }

    pub fn log(level: LogLevel, message: &str) {
        eprintln!("[{level:?}] {message}");
    }
    pub fn counter_add(name: &str, delta: i64) {
        NATIVE.with_borrow_mut(|h| *h.counters.entry(name.to_owned()).or_default() += delta);
    }
    pub fn map_get(_group: u32, key: &str, map: &str, entry: &[u8]) -> Option<Vec<u8>> {
        NATIVE.with_borrow(|h| {
            h.maps
                .get(&(key.to_owned(), map.to_owned()))
                .and_then(|m| m.get(entry).cloned())
        })
    }
    pub fn map_set(_group: u32, key: &str, map: &str, entry: &[u8], value: Option<&[u8]>) {
        NATIVE.with_borrow_mut(|h| {
            let m = h.maps.entry((key.to_owned(), map.to_owned())).or_default();
            match value {
                Some(v) => m.insert(entry.to_vec(), v.to_vec()),
                None => m.remove(entry),
            };
        })
    }
    pub fn map_entries(_group: u32, key: &str, map: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
        NATIVE.with_borrow(|h| {
            h.maps
                .get(&(key.to_owned(), map.to_owned()))
                .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
                .unwrap_or_default()
        })
    }
    pub fn event_times() -> RowTimes {
        NATIVE.with_borrow(|h| RowTimes {
            times: h.event_times.0.clone(),
            watermarks: h.event_times.1.clone(),
        })
    }
    pub fn current_time(domain: TimeDomain) -> i64 {
        match domain {
            TimeDomain::EventTime => NATIVE.with_borrow(|h| h.watermark),
            TimeDomain::ProcessingTime => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        }
    }
}

pub(crate) use imp::*;
