//! The context a keyed process function gets: its key, state, timers, outputs.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::marker::PhantomData;

use crate::abi::types::{TimeDomain, TimerRequest};
use crate::error::Error;
use crate::host;
use crate::operators::Emitter;

/// The current key's view of a keyed operator: value state of type `S`,
/// named map states, timers and outputs. State lives in the host, so it
/// survives restarts and version swaps of the operator.
pub struct Keyed<'k, S> {
    pub(crate) key: &'k str,
    pub(crate) group: u32,
    pub(crate) state: &'k mut KeyState<S>,
    pub(crate) emitter: &'k mut Emitter,
    pub(crate) timers: &'k mut Vec<TimerRequest>,
    pub(crate) timer: Option<(TimeDomain, i64)>,
    pub(crate) time: Option<i64>,
    pub(crate) arrival_watermark: Option<i64>,
    /// The operator's event-time watermark, which only moves between calls.
    pub(crate) operator_watermark: i64,
}

/// A key's value state while a batch is processed.
pub(crate) struct KeyState<S> {
    pub(crate) value: Option<S>,
    pub(crate) dirty: bool,
    /// The value came from the instance's cache (see `state_cache`).
    pub(crate) cached: bool,
}

impl<S: Default> Keyed<'_, S> {
    /// The key of the record (or timer) being processed, as text.
    pub fn key(&self) -> &str {
        self.key
    }

    /// The key's state, created with `S::default()` when it has none.
    pub fn state(&mut self) -> &mut S {
        self.state.dirty = true;
        self.state.value.get_or_insert_with(S::default)
    }

    /// The key's state, if it has one.
    pub fn get(&self) -> Option<&S> {
        self.state.value.as_ref()
    }

    /// Replaces the key's state.
    pub fn set(&mut self, value: S) {
        self.state.dirty = true;
        self.state.value = Some(value);
    }

    /// Removes the key's state.
    pub fn clear(&mut self) {
        self.state.dirty = true;
        self.state.value = None;
    }

    /// The key's map state called `name`, with entries of type `V` keyed by `K`.
    pub fn map<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned>(
        &self,
        name: &str,
    ) -> MapState<'_, K, V> {
        MapState {
            group: self.group,
            key: self.key,
            name: name.to_owned(),
            _types: PhantomData,
        }
    }

    /// Emits a record to the named side output (`"out"` is the main output).
    ///
    /// # Errors
    /// When the record is not a struct or map.
    pub fn emit_to<T: Serialize>(&mut self, output: &str, record: &T) -> Result<(), Error> {
        self.emitter.emit_to(output, record)
    }

    /// Emits a record to the main output.
    ///
    /// # Errors
    /// When the record is not a struct or map.
    pub fn emit<T: Serialize>(&mut self, record: &T) -> Result<(), Error> {
        self.emitter.emit(record)
    }

    /// Calls the operator's timer function for this key once the watermark
    /// passes `time_ms` (epoch milliseconds).
    pub fn register_event_timer(&mut self, time_ms: i64) {
        self.timer_request(TimeDomain::EventTime, time_ms, false)
    }

    /// Deletes an event-time timer registered earlier for this key.
    pub fn delete_event_timer(&mut self, time_ms: i64) {
        self.timer_request(TimeDomain::EventTime, time_ms, true)
    }

    /// Calls the operator's timer function for this key once the wall clock
    /// passes `time_ms`.
    pub fn register_processing_timer(&mut self, time_ms: i64) {
        self.timer_request(TimeDomain::ProcessingTime, time_ms, false)
    }

    /// Deletes a processing-time timer registered earlier for this key.
    pub fn delete_processing_timer(&mut self, time_ms: i64) {
        self.timer_request(TimeDomain::ProcessingTime, time_ms, true)
    }

    /// The event-time watermark (epoch ms) for the record being processed:
    /// the operator's, or the one the record arrived under if that is later
    /// (so lateness does not depend on how records were batched).
    pub fn watermark(&self) -> i64 {
        let current = self.operator_watermark;
        self.arrival_watermark.map_or(current, |w| w.max(current))
    }

    /// The host's wall clock, epoch milliseconds.
    pub fn processing_time(&self) -> i64 {
        host::current_time(TimeDomain::ProcessingTime)
    }

    /// The event time (epoch ms) of the record being processed, as the
    /// pipeline's source declared it; in a timer function, the timer's time.
    pub fn timestamp(&self) -> Option<i64> {
        self.time
    }

    /// In a timer function: the domain and time of the timer that fired.
    pub fn fired_timer(&self) -> Option<(TimeDomain, i64)> {
        self.timer
    }

    #[doc(hidden)]
    pub fn __emitter(&mut self) -> &mut Emitter {
        self.emitter
    }

    fn timer_request(&mut self, domain: TimeDomain, time: i64, delete: bool) {
        self.timers.push(TimerRequest {
            group: self.group,
            domain,
            time,
            delete,
        });
    }
}

/// A map state of the current key; entries are stored in the host as JSON.
pub struct MapState<'k, K, V> {
    group: u32,
    key: &'k str,
    name: String,
    _types: PhantomData<fn(K, V)>,
}

impl<K: Serialize + DeserializeOwned, V: Serialize + DeserializeOwned> MapState<'_, K, V> {
    /// The value stored under `entry`.
    ///
    /// # Errors
    /// When the stored value does not deserialize into `V`.
    pub fn get(&self, entry: &K) -> Result<Option<V>, Error> {
        let entry = serde_json::to_vec(entry)?;
        match host::map_get(self.group, self.key, &self.name, &entry) {
            Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
            None => Ok(None),
        }
    }

    /// Stores `value` under `entry`.
    ///
    /// # Errors
    /// When the entry or value does not serialize.
    pub fn insert(&self, entry: &K, value: &V) -> Result<(), Error> {
        let entry = serde_json::to_vec(entry)?;
        let value = serde_json::to_vec(value)?;
        host::map_set(self.group, self.key, &self.name, &entry, Some(&value));
        Ok(())
    }

    /// Removes `entry`.
    ///
    /// # Errors
    /// When the entry does not serialize.
    pub fn remove(&self, entry: &K) -> Result<(), Error> {
        let entry = serde_json::to_vec(entry)?;
        host::map_set(self.group, self.key, &self.name, &entry, None);
        Ok(())
    }

    /// Every entry, ordered by the JSON text of the entry key.
    ///
    /// # Errors
    /// When a stored entry does not deserialize.
    pub fn entries(&self) -> Result<Vec<(K, V)>, Error> {
        host::map_entries(self.group, self.key, &self.name)
            .into_iter()
            .map(|(k, v)| Ok((serde_json::from_slice(&k)?, serde_json::from_slice(&v)?)))
            .collect()
    }
}
