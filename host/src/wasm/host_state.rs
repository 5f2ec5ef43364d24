//! The data each operator instance's store holds, and the host functions of
//! the `weir:operator/host` interface that use it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use wasmtime::StoreLimits;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{host, types};
use crate::runtime::MapStates;

/// A write to a map state made during a call, applied only if the call succeeds.
pub(crate) type PendingWrites = HashMap<(u32, String, Vec<u8>), Option<Vec<u8>>>;

/// Store data of one operator instance.
pub struct HostState {
    pub(crate) wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limits: MemoryLimiter,
    /// `operator-id@vN`, for log lines.
    pub(crate) label: Arc<str>,
    /// What the guest wrote to stderr (panic messages), kept for trap reports.
    pub(crate) stderr: super::guest_output::GuestOutput,
    /// The keys of the current call, by group index.
    pub(crate) call_keys: Vec<String>,
    /// The worker's map states, moved in for the duration of a call.
    pub(crate) maps: MapStates,
    pub(crate) pending: PendingWrites,
    /// The first failure of the map state store during the call: it fails
    /// the call, as the guest cannot be told.
    pub(crate) store_error: Option<String>,
    pub(crate) watermark: i64,
    /// Event times of the rows of the current call, if known.
    pub(crate) event_times: Option<Arc<crate::runtime::RowTimes>>,
    pub(crate) counters: Arc<Mutex<HashMap<String, i64>>>,
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

/// The store's limits, remembering a memory growth they refused: a trap
/// that follows is then explained as the operator exceeding `memory_mib`,
/// not as the allocator's backtrace.
pub(crate) struct MemoryLimiter {
    pub(crate) limits: StoreLimits,
    /// The bytes the last refused memory growth asked for.
    pub(crate) refused: Option<usize>,
}

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let allowed = self.limits.memory_growing(current, desired, maximum);
        if !matches!(allowed, Ok(true)) {
            self.refused = Some(desired);
        }
        allowed
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        self.limits.table_growing(current, desired, maximum)
    }

    fn instances(&self) -> usize {
        self.limits.instances()
    }

    fn tables(&self) -> usize {
        self.limits.tables()
    }

    fn memories(&self) -> usize {
        self.limits.memories()
    }
}

impl HostState {
    fn key_of(&self, group: u32) -> Option<&str> {
        self.call_keys.get(group as usize).map(String::as_str)
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: host::LogLevel, message: String) {
        let label = &self.label;
        match level {
            host::LogLevel::Trace => tracing::trace!(operator = %label, "{message}"),
            host::LogLevel::Debug => tracing::debug!(operator = %label, "{message}"),
            host::LogLevel::Info => tracing::info!(operator = %label, "{message}"),
            host::LogLevel::Warn => tracing::warn!(operator = %label, "{message}"),
            host::LogLevel::Error => tracing::error!(operator = %label, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: i64) {
        if let Ok(mut counters) = self.counters.lock() {
            *counters.entry(name).or_default() += delta;
        }
    }

    fn map_get(&mut self, group: u32, name: String, entry: Vec<u8>) -> Option<Vec<u8>> {
        if let Some(pending) = self.pending.get(&(group, name.clone(), entry.clone())) {
            return pending.clone();
        }
        let key = self.call_keys.get(group as usize)?;
        match self.maps.get(key, &name, &entry) {
            Ok(value) => value,
            Err(e) => {
                self.store_error.get_or_insert(format!("{e:#}"));
                None
            }
        }
    }

    fn map_set(&mut self, group: u32, name: String, entry: Vec<u8>, value: Option<Vec<u8>>) {
        // A group outside the call is ignored: the guest can only touch the
        // keys of the batch it was given.
        if self.key_of(group).is_some() {
            self.pending.insert((group, name, entry), value);
        }
    }

    fn map_entries(&mut self, group: u32, name: String) -> Vec<(Vec<u8>, Vec<u8>)> {
        let Some(key) = self.call_keys.get(group as usize) else {
            return Vec::new();
        };
        let mut entries = match self.maps.entries(key, &name) {
            Ok(entries) => entries,
            Err(e) => {
                self.store_error.get_or_insert(format!("{e:#}"));
                return Vec::new();
            }
        };
        for ((g, n, entry), value) in &self.pending {
            if *g == group && *n == name {
                match value {
                    Some(v) => entries.insert(entry.clone(), v.clone()),
                    None => entries.remove(entry),
                };
            }
        }
        entries.into_iter().collect()
    }

    fn event_times(&mut self) -> types::RowTimes {
        match self.event_times.as_deref() {
            Some(t) => types::RowTimes {
                times: t.times.clone(),
                watermarks: t.watermarks.clone(),
            },
            None => types::RowTimes {
                times: Vec::new(),
                watermarks: Vec::new(),
            },
        }
    }

    fn current_time(&mut self, domain: types::TimeDomain) -> i64 {
        match domain {
            types::TimeDomain::EventTime => self.watermark,
            types::TimeDomain::ProcessingTime => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
        }
    }
}

impl HostState {
    /// Applies the map writes of a successful call to `maps`.
    ///
    /// # Errors
    /// When the store cannot be written.
    pub(crate) fn commit_pending(&mut self) -> anyhow::Result<()> {
        let pending = std::mem::take(&mut self.pending);
        let keys = &self.call_keys;
        let writes = pending.iter().filter_map(|((group, name, entry), value)| {
            let key = keys.get(*group as usize)?;
            Some((key.as_str(), name.as_str(), &entry[..], value.as_deref()))
        });
        self.maps.apply(writes)
    }
}
