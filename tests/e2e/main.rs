//! End-to-end tests: the `weir` binary on the examples, on generated inputs
//! checked against independent implementations, and on hostile components.

mod bad_input;
mod conformance;
mod dashboard;
mod examples;
mod graphs;
mod hot_swap;
mod kafka;
mod metrics;
mod nats;
mod nexmark;
mod no_trace;
mod parquet;
mod postgres;
mod recovery;
mod refusals;
mod sandbox;
mod scaffold;
#[path = "../shared/live.rs"]
mod shared;
mod support;
mod tap;
mod time;
