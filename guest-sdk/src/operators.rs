//! The operator runtime: turns batch calls from the host into calls of the
//! author's function, one record at a time, and collects what it emits.

use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;

use crate::abi::types::{
    Batch, Emitted, FiredTimer, KeyGroup, MigrationError, OperatorInfo, OperatorKind, Output,
    Rejected, TimerRequest,
};
use crate::batch::BatchView;
use crate::error::Error;
use crate::keyed::Keyed;
use crate::ser::BatchBuilder;
use crate::state_cache::StateCache;

/// The name of the main output.
pub const MAIN_OUTPUT: &str = "out";

/// An operator as the host sees it: batch in, batch out. The attribute macros
/// implement it; hosts, tests and benchmarks call it (natively or in Wasm).
pub trait Operator {
    /// The operator's kind and state version.
    fn info(&self) -> OperatorInfo;

    /// Called once when an instance starts, before any batch (Flink's
    /// `open`): check the config, build lookup tables.
    ///
    /// # Errors
    /// The instance does not start, and a hot swap to it is refused.
    fn open(&mut self) -> Result<(), String> {
        Ok(())
    }

    /// Processes one batch; `groups` lists every key of a keyed operator.
    ///
    /// # Errors
    /// Only when the whole batch cannot be processed (a record that fails is
    /// reported in [`Output::rejected`] instead).
    fn process(&mut self, input: &Batch, groups: Vec<KeyGroup>) -> Result<Output, String>;

    /// Runs the timer function for fired timers.
    ///
    /// # Errors
    /// When the operator has no timer function or it fails.
    fn on_timer(
        &mut self,
        timers: Vec<FiredTimer>,
        groups: Vec<KeyGroup>,
    ) -> Result<Output, String> {
        let _ = (timers, groups);
        Err("this operator registers no timers".to_owned())
    }

    /// Converts many keys' states from layout `from_version` to this
    /// version's, in order.
    ///
    /// # Errors
    /// When the operator declares no migration, or it fails for one state
    /// (named by its index).
    fn migrate(
        &mut self,
        from_version: u32,
        states: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, MigrationError> {
        let _ = states;
        Err(MigrationError {
            index: 0,
            reason: format!("this version declares no migration from state version {from_version}"),
        })
    }
}

/// Collects the records an operator emits while it processes one input row.
pub struct Emitter {
    row: u32,
    main: BatchBuilder,
    main_origins: Vec<u32>,
    /// Input rows emitted unchanged (filters): taken from the input columns.
    kept: Vec<u32>,
    sides: Vec<(String, BatchBuilder, Vec<u32>)>,
}

/// Lengths of everything emitted so far, to undo a failed record's outputs.
struct Mark {
    main: usize,
    kept: usize,
    sides: Vec<usize>,
}

impl Emitter {
    fn new() -> Self {
        Self {
            row: 0,
            main: BatchBuilder::default(),
            main_origins: Vec::new(),
            kept: Vec::new(),
            sides: Vec::new(),
        }
    }

    /// Emits a record to the main output.
    ///
    /// # Errors
    /// When the record is not a struct or map.
    pub fn emit<T: Serialize + ?Sized>(&mut self, record: &T) -> Result<(), Error> {
        self.main.append(record)?;
        self.main_origins.push(self.row);
        Ok(())
    }

    /// Emits a record to a named output.
    ///
    /// # Errors
    /// When the record is not a struct or map.
    pub fn emit_to<T: Serialize + ?Sized>(
        &mut self,
        output: &str,
        record: &T,
    ) -> Result<(), Error> {
        if output == MAIN_OUTPUT {
            return self.emit(record);
        }
        let index = match self.sides.iter().position(|(name, ..)| name == output) {
            Some(i) => i,
            None => {
                self.sides
                    .push((output.to_owned(), BatchBuilder::default(), Vec::new()));
                self.sides.len() - 1
            }
        };
        let (_, builder, origins) = &mut self.sides[index];
        builder.append(record)?;
        origins.push(self.row);
        Ok(())
    }

    /// Emits the current input record unchanged to the main output.
    pub fn keep(&mut self) {
        self.kept.push(self.row);
    }

    fn mark(&self) -> Mark {
        Mark {
            main: self.main.rows(),
            kept: self.kept.len(),
            sides: self.sides.iter().map(|(_, b, _)| b.rows()).collect(),
        }
    }

    fn rollback(&mut self, mark: Mark) {
        self.main.truncate(mark.main);
        self.main_origins.truncate(mark.main);
        self.kept.truncate(mark.kept);
        for (i, (_, builder, origins)) in self.sides.iter_mut().enumerate() {
            let keep = mark.sides.get(i).copied().unwrap_or(0);
            builder.truncate(keep);
            origins.truncate(keep);
        }
    }

    fn finish(self) -> Vec<Emitted> {
        let mut emitted = Vec::with_capacity(1 + self.sides.len());
        if !self.kept.is_empty() {
            emitted.push(Emitted {
                output: MAIN_OUTPUT.to_owned(),
                batch: Batch {
                    rows: 0,
                    columns: Vec::new(),
                },
                origins: self.kept,
                unchanged: true,
            });
        }
        if self.main.rows() > 0 {
            emitted.push(Emitted {
                output: MAIN_OUTPUT.to_owned(),
                batch: self.main.finish(),
                origins: self.main_origins,
                unchanged: false,
            });
        }
        for (output, builder, origins) in self.sides {
            if builder.rows() > 0 {
                emitted.push(Emitted {
                    output,
                    batch: builder.finish(),
                    origins,
                    unchanged: false,
                });
            }
        }
        emitted
    }
}

/// What an operator function may return besides a single record: zero or
/// more records, or an error that sends the input record to the dead letters.
pub trait IntoRecords {
    /// Emits the records to the main output.
    ///
    /// # Errors
    /// An `Err` value, or a record that is not a struct or map.
    fn emit_into(self, emitter: &mut Emitter) -> Result<(), Error>;
}

impl IntoRecords for () {
    fn emit_into(self, _: &mut Emitter) -> Result<(), Error> {
        Ok(())
    }
}

impl<T: Serialize> IntoRecords for Option<T> {
    fn emit_into(self, emitter: &mut Emitter) -> Result<(), Error> {
        match self {
            Some(record) => emitter.emit(&record),
            None => Ok(()),
        }
    }
}

impl<T: Serialize> IntoRecords for Vec<T> {
    fn emit_into(self, emitter: &mut Emitter) -> Result<(), Error> {
        self.iter().try_for_each(|record| emitter.emit(record))
    }
}

impl<R: IntoRecords, E: std::fmt::Display> IntoRecords for Result<R, E> {
    fn emit_into(self, emitter: &mut Emitter) -> Result<(), Error> {
        match self {
            Ok(records) => records.emit_into(emitter),
            Err(e) => Err(Error::new(e.to_string())),
        }
    }
}

/// A stateless operator's per-record function, generated by the macros.
pub trait RowFn: 'static {
    /// Handles input row `row`, emitting through `emit`.
    ///
    /// # Errors
    /// The record goes to the dead-letter output with this reason.
    fn call(&mut self, view: &BatchView<'_>, row: usize, emit: &mut Emitter) -> Result<(), Error>;
}

/// Runs a [`RowFn`] over whole batches: map, filter, filter_map, flat_map.
pub struct Stateless<F>(pub F);

impl<F: RowFn> Operator for Stateless<F> {
    fn info(&self) -> OperatorInfo {
        OperatorInfo {
            kind: OperatorKind::Stateless,
            state_version: 0,
        }
    }

    fn process(&mut self, input: &Batch, _groups: Vec<KeyGroup>) -> Result<Output, String> {
        let view = BatchView::new(input);
        let mut emitter = Emitter::new();
        let mut rejected = Vec::new();
        for row in 0..view.rows() {
            emitter.row = row as u32;
            let mark = emitter.mark();
            if let Err(e) = self.0.call(&view, row, &mut emitter) {
                emitter.rollback(mark);
                rejected.push(Rejected {
                    row: row as u32,
                    reason: e.to_string(),
                });
            }
        }
        Ok(Output {
            emitted: emitter.finish(),
            rejected,
            state_updates: Vec::new(),
            timers: Vec::new(),
        })
    }
}

/// A keyed process function, generated by the `keyed` macro.
pub trait KeyedFn: 'static {
    /// The per-key value state.
    type State: Serialize + DeserializeOwned + Default;
    /// The version of the state layout.
    const STATE_VERSION: u32;

    /// Handles input row `row` with its key's context.
    ///
    /// # Errors
    /// The record goes to the dead-letter output with this reason.
    fn call(
        &mut self,
        view: &BatchView<'_>,
        row: usize,
        ctx: &mut Keyed<'_, Self::State>,
    ) -> Result<(), Error>;

    /// Called once when an instance starts (see [`Operator::open`]).
    ///
    /// # Errors
    /// The instance does not start.
    fn open(&mut self) -> Result<(), Error> {
        Ok(())
    }

    /// Handles a fired timer (see [`Keyed::fired_timer`]).
    ///
    /// # Errors
    /// The timer call fails with this reason.
    fn on_timer(&mut self, ctx: &mut Keyed<'_, Self::State>) -> Result<(), Error> {
        let _ = ctx;
        Err(Error::new("this operator has no timer function"))
    }

    /// Converts a state of layout `from_version` to [`Self::State`] as JSON.
    ///
    /// # Errors
    /// When no migration is declared or it fails.
    fn migrate(&mut self, from_version: u32, state: &[u8]) -> Result<Vec<u8>, Error> {
        let _ = state;
        Err(Error::new(format!(
            "this version declares no migration from state version {from_version}"
        )))
    }
}

/// Runs a [`KeyedFn`] over batches grouped by key.
pub struct KeyedOp<F: KeyedFn> {
    function: F,
    cache: StateCache<F::State>,
}

impl<F: KeyedFn> KeyedOp<F> {
    /// The operator running `function`.
    pub fn new(function: F) -> Self {
        Self {
            function,
            cache: StateCache::default(),
        }
    }
}

impl<F: KeyedFn> Operator for KeyedOp<F> {
    fn info(&self) -> OperatorInfo {
        OperatorInfo {
            kind: OperatorKind::Keyed,
            state_version: F::STATE_VERSION,
        }
    }

    fn open(&mut self) -> Result<(), String> {
        self.function.open().map_err(|e| e.to_string())
    }

    fn process(&mut self, input: &Batch, groups: Vec<KeyGroup>) -> Result<Output, String> {
        let view = BatchView::new(input);
        let mut states = self.cache.load(&groups)?;
        // Rows are processed in arrival order, switching key context per row,
        // so the output keeps the input's order, not just per-key order.
        let mut row_group = vec![u32::MAX; view.rows()];
        for (g, group) in groups.iter().enumerate() {
            for &row in &group.rows {
                if let Some(slot) = row_group.get_mut(row as usize) {
                    *slot = g as u32;
                }
            }
        }
        let mut emitter = Emitter::new();
        let mut rejected = Vec::new();
        let mut timers: Vec<TimerRequest> = Vec::new();
        let times = crate::host::event_times();
        let watermark = crate::host::current_time(crate::abi::types::TimeDomain::EventTime);
        for (row, &g) in row_group.iter().enumerate() {
            let Some(group) = groups.get(g as usize) else {
                continue;
            };
            emitter.row = row as u32;
            let mark = emitter.mark();
            let timers_before = timers.len();
            let mut ctx = Keyed {
                key: &group.key,
                group: g,
                state: &mut states[g as usize],
                emitter: &mut emitter,
                timers: &mut timers,
                timer: None,
                time: times.times.get(row).copied(),
                arrival_watermark: times.watermarks.get(row).copied(),
                operator_watermark: watermark,
            };
            if let Err(e) = self.function.call(&view, row, &mut ctx) {
                emitter.rollback(mark);
                timers.truncate(timers_before);
                rejected.push(Rejected {
                    row: row as u32,
                    reason: e.to_string(),
                });
            }
        }
        Ok(Output {
            emitted: emitter.finish(),
            rejected,
            state_updates: self.cache.store(groups, states)?,
            timers,
        })
    }

    fn on_timer(
        &mut self,
        fired: Vec<FiredTimer>,
        groups: Vec<KeyGroup>,
    ) -> Result<Output, String> {
        let mut states = self.cache.load(&groups)?;
        let mut emitter = Emitter::new();
        let mut timers = Vec::new();
        let watermark = crate::host::current_time(crate::abi::types::TimeDomain::EventTime);
        for (index, timer) in fired.iter().enumerate() {
            // What a timer emits has the timer's time as its event time.
            emitter.row = index as u32;
            let group = groups
                .get(timer.group as usize)
                .ok_or_else(|| format!("timer for unknown key group {}", timer.group))?;
            let mut ctx = Keyed {
                key: &group.key,
                group: timer.group,
                state: &mut states[timer.group as usize],
                emitter: &mut emitter,
                timers: &mut timers,
                timer: Some((timer.domain, timer.time)),
                time: Some(timer.time),
                arrival_watermark: None,
                operator_watermark: watermark,
            };
            self.function
                .on_timer(&mut ctx)
                .map_err(|e| format!("timer at {} for key `{}`: {e}", timer.time, group.key))?;
        }
        Ok(Output {
            emitted: emitter.finish(),
            rejected: Vec::new(),
            state_updates: self.cache.store(groups, states)?,
            timers,
        })
    }

    fn migrate(
        &mut self,
        from_version: u32,
        states: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, MigrationError> {
        if from_version == F::STATE_VERSION {
            return Ok(states);
        }
        if from_version > F::STATE_VERSION {
            return Err(MigrationError {
                index: 0,
                reason: format!(
                    "this version reads state version {} and cannot convert the newer state \
                     version {from_version} back",
                    F::STATE_VERSION
                ),
            });
        }
        states
            .iter()
            .enumerate()
            .map(|(index, state)| {
                self.function
                    .migrate(from_version, state)
                    .map_err(|e| MigrationError {
                        index: index as u32,
                        reason: e.to_string(),
                    })
            })
            .collect()
    }
}

/// Migrates one JSON state with a typed function `fn(Old) -> New`.
///
/// # Errors
/// When the state is not an `Old`, or `New` does not serialize.
pub fn migrate_with<Old: DeserializeOwned, New: Serialize>(
    f: impl FnOnce(Old) -> New,
    state: &[u8],
) -> Result<Vec<u8>, Error> {
    let old: Old = serde_json::from_slice(state).map_err(|e| {
        Error::new(format!(
            "old state does not match the migration's input type: {e}"
        ))
    })?;
    Ok(serde_json::to_vec(&f(old))?)
}

thread_local! {
    static CONFIG: RefCell<String> = RefCell::new("{}".to_owned());
    static OPERATOR: RefCell<Option<Box<dyn Operator>>> = const { RefCell::new(None) };
}

pub(crate) fn config<T: DeserializeOwned>() -> Result<T, Error> {
    CONFIG.with_borrow(|c| {
        serde_json::from_str(c).map_err(|e| Error::new(format!("invalid operator config: {e}")))
    })
}

/// The functions behind the component's exports, called by the code the
/// attribute macros generate. They keep the operator in a per-instance global.
pub mod export_glue {
    use super::*;

    /// `init`: stores the config and creates the operator.
    ///
    /// # Errors
    /// When the operator's `open` fails.
    pub fn init(config: String, make: fn() -> Box<dyn Operator>) -> Result<OperatorInfo, String> {
        CONFIG.with_borrow_mut(|c| *c = config);
        let mut operator = make();
        operator.open()?;
        let info = operator.info();
        OPERATOR.with_borrow_mut(|o| *o = Some(operator));
        Ok(info)
    }

    fn with<R>(f: impl FnOnce(&mut dyn Operator) -> Result<R, String>) -> Result<R, String> {
        OPERATOR.with_borrow_mut(|o| match o {
            Some(operator) => f(operator.as_mut()),
            None => Err("the operator was called before `init`".to_owned()),
        })
    }

    /// `process`.
    ///
    /// # Errors
    /// See [`Operator::process`].
    pub fn process(input: Batch, groups: Vec<KeyGroup>) -> Result<Output, String> {
        with(|o| o.process(&input, groups))
    }

    /// `on-timer`.
    ///
    /// # Errors
    /// See [`Operator::on_timer`].
    pub fn on_timer(timers: Vec<FiredTimer>, groups: Vec<KeyGroup>) -> Result<Output, String> {
        with(|o| o.on_timer(timers, groups))
    }

    /// `migrate`.
    ///
    /// # Errors
    /// See [`Operator::migrate`].
    pub fn migrate(
        from_version: u32,
        states: Vec<Vec<u8>>,
    ) -> Result<Vec<Vec<u8>>, MigrationError> {
        OPERATOR.with_borrow_mut(|o| match o {
            Some(operator) => operator.migrate(from_version, states),
            None => Err(MigrationError {
                index: 0,
                reason: "the operator was called before `init`".to_owned(),
            }),
        })
    }
}
