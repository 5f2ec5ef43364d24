//! Decoded keyed states kept between calls. The host sends each key's state
//! as JSON with every call that touches the key, and parsing it again was
//! most of a small window operator's work (Nexmark q5). A cached value is
//! used only when the host sends exactly the bytes this instance wrote, so
//! the host stays the owner of state: after a swap, a restart, a migration
//! or a failed call, the bytes differ or the cache is new, and the state is
//! parsed as before.
//!
//! Like Flink's heap state backend, this assumes a state reads back as what
//! was written: a `#[serde(skip)]` field keeps its value between calls while
//! the key stays cached.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;

use crate::abi::types::{KeyGroup, StateUpdate};
use crate::keyed::KeyState;

/// At most this many keys are cached...
const MAX_KEYS: usize = 1 << 16;
/// ...holding at most this many bytes of JSON; past either, the cache starts
/// over (the states are still in the host). The cache must not be what
/// makes an operator hit its memory limit.
const MAX_BYTES: usize = 8 << 20;
/// A larger state is not cached.
const MAX_STATE_BYTES: usize = MAX_BYTES / 4;

/// The last state this instance wrote for each recently seen key.
pub(crate) struct StateCache<S> {
    entries: HashMap<String, Cached<S>, foldhash::fast::FixedState>,
    bytes: usize,
}

struct Cached<S> {
    json: Vec<u8>,
    /// `None` while a call has the value out (and after a call that failed
    /// with it: the next one parses the host's bytes again).
    value: Option<S>,
}

impl<S> Default for StateCache<S> {
    fn default() -> Self {
        Self {
            entries: HashMap::default(),
            bytes: 0,
        }
    }
}

impl<S: Serialize + DeserializeOwned> StateCache<S> {
    /// The state of every group: the cached value when the host's bytes are
    /// the ones it was written as, else parsed from them.
    ///
    /// # Errors
    /// When a state does not parse as `S`.
    pub(crate) fn load(&mut self, groups: &[KeyGroup]) -> Result<Vec<KeyState<S>>, String> {
        groups
            .iter()
            .map(|g| {
                let cached = match (&g.state, self.entries.get_mut(g.key.as_str())) {
                    (Some(json), Some(c)) if same_bytes(json, &c.json) => c.value.take(),
                    _ => None,
                };
                let hit = cached.is_some();
                let value = match (&g.state, cached) {
                    (Some(_), Some(value)) => Some(value),
                    (Some(bytes), None) => Some(serde_json::from_slice(bytes).map_err(|e| {
                        format!(
                            "state of key `{}` does not match the state type: {e}",
                            g.key
                        )
                    })?),
                    (None, _) => None,
                };
                Ok(KeyState {
                    value,
                    dirty: false,
                    cached: hit,
                })
            })
            .collect()
    }

    /// The updates of the states a call changed (as JSON), keeping every
    /// state the call ends with in the cache.
    ///
    /// # Errors
    /// When a state does not serialize.
    pub(crate) fn store(
        &mut self,
        groups: Vec<KeyGroup>,
        states: Vec<KeyState<S>>,
    ) -> Result<Vec<StateUpdate>, String> {
        let mut updates = Vec::new();
        for (index, (group, state)) in groups.into_iter().zip(states).enumerate() {
            let (dirty, cached) = (state.dirty, state.cached);
            match (dirty, state.value, group.state) {
                // Unchanged: the host's bytes are what the value reads as.
                (false, Some(value), Some(json)) => {
                    let json = if cached {
                        Json::Cached
                    } else {
                        Json::Host(json)
                    };
                    self.put(group.key, json, value);
                }
                (true, Some(value), _) => {
                    let json = self.write(&group.key, &value)?;
                    updates.push(StateUpdate {
                        group: index as u32,
                        state: Some(json.clone()),
                    });
                    self.put(group.key, Json::Written(json), value);
                }
                (dirty, _, _) => {
                    if dirty {
                        updates.push(StateUpdate {
                            group: index as u32,
                            state: None,
                        });
                    }
                    if let Some(old) = self.entries.remove(group.key.as_str()) {
                        self.bytes -= old.json.len();
                    }
                }
            }
        }
        Ok(updates)
    }

    /// `value` as JSON, written into the key's old buffer when it has one.
    fn write(&mut self, key: &str, value: &S) -> Result<Vec<u8>, String> {
        let mut json = match self.entries.get_mut(key) {
            Some(c) => {
                self.bytes -= c.json.len();
                std::mem::take(&mut c.json)
            }
            None => Vec::with_capacity(128),
        };
        json.clear();
        serde_json::to_writer(&mut json, value).map_err(|e| e.to_string())?;
        Ok(json)
    }

    fn put(&mut self, key: String, json: Json, value: S) {
        let json = match json {
            Json::Written(json) => json,
            Json::Cached => {
                if let Some(c) = self.entries.get_mut(key.as_str()) {
                    c.value = Some(value);
                }
                return;
            }
            Json::Host(host_bytes) => {
                if let Some(old) = self.entries.remove(key.as_str()) {
                    self.bytes -= old.json.len();
                }
                host_bytes
            }
        };
        if json.len() > MAX_STATE_BYTES {
            self.entries.remove(key.as_str());
            return;
        }
        if !self.entries.contains_key(key.as_str())
            && (self.entries.len() >= MAX_KEYS || self.bytes + json.len() > MAX_BYTES)
        {
            self.entries.clear();
            self.bytes = 0;
        }
        self.bytes += json.len();
        match self.entries.get_mut(key.as_str()) {
            Some(c) => {
                c.json = json;
                c.value = Some(value);
            }
            None => {
                self.entries.insert(
                    key,
                    Cached {
                        json,
                        value: Some(value),
                    },
                );
            }
        }
    }
}

/// The JSON a value is cached with.
enum Json {
    /// Just written by this instance.
    Written(Vec<u8>),
    /// The host's bytes for a value the call did not change.
    Host(Vec<u8>),
    /// The bytes already in the cache: the value was taken from it unchanged.
    Cached,
}

/// `a == b`, eight bytes at a time: Wasm's `memcmp` goes byte by byte.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (a_words, a_tail) = a.as_chunks::<8>();
    let (b_words, b_tail) = b.as_chunks::<8>();
    a_tail == b_tail
        && a_words
            .iter()
            .zip(b_words)
            .all(|(x, y)| u64::from_ne_bytes(*x) == u64::from_ne_bytes(*y))
}

#[cfg(test)]
mod tests {
    use super::{StateCache, same_bytes};
    use crate::abi::types::KeyGroup;

    fn group(key: &str, state: Option<&str>) -> KeyGroup {
        KeyGroup {
            key: key.to_owned(),
            rows: Vec::new(),
            state: state.map(|s| s.as_bytes().to_vec()),
        }
    }

    /// The host owns state: a cached value is used only for the exact bytes
    /// it was written as, so a state written elsewhere (another version, a
    /// rolled-back call) is read from the host's bytes.
    #[test]
    fn a_cached_state_is_used_only_for_the_bytes_it_was_written_as() {
        let mut cache = StateCache::<Vec<i64>>::default();
        let mut states = cache.load(&[group("a", None)]).unwrap();
        states[0].value = Some(vec![1, 2]);
        states[0].dirty = true;
        let updates = cache.store(vec![group("a", None)], states).unwrap();
        assert_eq!(updates[0].state.as_deref(), Some(&b"[1,2]"[..]));

        // The host's bytes are the written ones: the cached value is used
        // (seen here by a value the JSON could not give back).
        cache
            .entries
            .get_mut("a")
            .unwrap()
            .value
            .as_mut()
            .unwrap()
            .push(99);
        let states = cache.load(&[group("a", Some("[1,2]"))]).unwrap();
        assert_eq!(states[0].value, Some(vec![1, 2, 99]));
        cache
            .store(vec![group("a", Some("[1,2]"))], states)
            .unwrap();

        // Other bytes: parsed, whatever the cache held.
        let states = cache.load(&[group("a", Some("[7]"))]).unwrap();
        assert_eq!(states[0].value, Some(vec![7]));
        cache.store(vec![group("a", Some("[7]"))], states).unwrap();

        // No state in the host: none, and the cached one is forgotten.
        let states = cache.load(&[group("a", None)]).unwrap();
        assert_eq!(states[0].value, None);
        cache.store(vec![group("a", None)], states).unwrap();
        assert!(cache.entries.is_empty() && cache.bytes == 0);
    }

    /// A call that fails after taking cached values sends no updates, so
    /// the host keeps its bytes: the next call must read those, not what
    /// the failed call made of the value.
    #[test]
    fn a_failed_call_leaves_no_changed_value_behind() {
        let mut cache = StateCache::<Vec<i64>>::default();
        let mut states = cache.load(&[group("a", None)]).unwrap();
        states[0].value = Some(vec![1, 2, 3]);
        states[0].dirty = true;
        cache.store(vec![group("a", None)], states).unwrap();

        let mut states = cache.load(&[group("a", Some("[1,2,3]"))]).unwrap();
        states[0].value.as_mut().unwrap().push(4);
        drop(states); // the call failed: no `store`

        let mut states = cache.load(&[group("a", Some("[1,2,3]"))]).unwrap();
        assert_eq!(states[0].value, Some(vec![1, 2, 3]));

        // A shorter state written into the key's old buffer is exactly its JSON.
        states[0].value = Some(vec![9]);
        states[0].dirty = true;
        let updates = cache
            .store(vec![group("a", Some("[1,2,3]"))], states)
            .unwrap();
        assert_eq!(updates[0].state.as_deref(), Some(&b"[9]"[..]));
        let states = cache.load(&[group("a", Some("[9]"))]).unwrap();
        assert_eq!(states[0].value, Some(vec![9]));
        assert_eq!(cache.bytes, 3);
    }

    #[test]
    fn same_bytes_compares_every_byte() {
        let a: Vec<u8> = (0..37).collect();
        assert!(same_bytes(&a, &a.clone()));
        for i in 0..a.len() {
            let mut b = a.clone();
            b[i] ^= 1;
            assert!(!same_bytes(&a, &b), "byte {i}");
        }
        assert!(!same_bytes(&a, &a[..36]));
        assert!(same_bytes(&[], &[]));
    }
}
