//! Write Weir stream operators in Rust, over your own serde types.
//!
//! An operator is a plain function with one attribute. The attribute picks the
//! operator kind and hides the WebAssembly ABI: records reach the function as
//! your `Deserialize` type and leave it as your `Serialize` type, while the
//! host and the guest exchange whole column batches.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Bid { auction: i64, price: i64 }
//!
//! #[derive(Serialize)]
//! struct EuroBid { auction: i64, price_eur: f64 }
//!
//! #[weir_guest::map]
//! fn to_euro(bid: Bid) -> EuroBid {
//!     EuroBid { auction: bid.auction, price_eur: bid.price as f64 * 0.908 }
//! }
//! # fn main() {}
//! ```
//!
//! The kinds are [`macro@map`], [`macro@filter`], [`macro@filter_map`],
//! [`macro@flat_map`] and [`macro@keyed`] (a keyed process function with value
//! state, map state, timers and side outputs through [`Keyed`]).
//!
//! A function may return `Result<_, E>` where `E: Display`: an `Err` sends the
//! input record to the pipeline's dead-letter output with that message, as does
//! an input record that does not deserialize into the function's input type.
//!
//! The crate also builds natively, so an operator crate can be unit-tested with
//! `cargo test` by calling the function directly, or through [`testing`] with
//! the same batch path the host uses.
#![deny(missing_docs)]

extern crate self as weir_guest;

mod batch;
mod de;
mod error;
mod host;
mod keyed;
mod operators;
mod ser;
mod state_cache;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
pub mod windows;

pub use batch::BatchView;
pub use error::Error;
pub use keyed::{Keyed, MapState};
pub use operators::{IntoRecords, MAIN_OUTPUT, Operator};
pub use weir_guest_macros::{filter, filter_map, flat_map, keyed, map, window};
pub use windows::Window;

/// Logs a message through the host, tagged with the operator id and version.
pub fn log(level: LogLevel, message: &str) {
    host::log(level, message)
}

/// Adds `delta` to the operator counter `name`, shown by `weir status`.
pub fn counter_add(name: &str, delta: i64) {
    host::counter_add(name, delta)
}

/// The severity of a [`log`] line.
pub use abi::types::TimeDomain;
pub use host::LogLevel;

/// The operator's `config` table from the pipeline file, deserialized into `T`.
///
/// # Errors
/// When the table does not match `T`.
pub fn config<T: serde::de::DeserializeOwned>() -> Result<T, Error> {
    operators::config()
}

/// The component ABI: types generated from `wit/` by wit-bindgen.
///
/// Operator authors never need these; they are public for the attribute macros
/// and for hosts or benchmarks that drive an operator natively.
#[allow(missing_docs)]
pub mod abi {
    wit_bindgen::generate!({
        path: "../wit",
        world: "operator-component",
        pub_export_macro: true,
        export_macro_name: "__export_operator",
        default_bindings_module: "weir_guest::abi",
        runtime_path: "weir_guest::__private::wit_bindgen::rt",
    });
    pub use self::weir::operator::types;
}

#[doc(hidden)]
pub mod __private {
    pub use crate::operators::{
        Emitter, IntoRecords, KeyedFn, KeyedOp, RowFn, Stateless, export_glue, migrate_with,
    };
    pub use serde_json;
    pub use wit_bindgen;
}

/// Exports the operator made by `$make` as the component's `operator`
/// interface. Used by the attribute macros in `wasm32` builds.
#[doc(hidden)]
#[macro_export]
macro_rules! __weir_export {
    ($make:ident) => {
        const _: () = {
            struct __WeirExport;
            impl $crate::abi::exports::weir::operator::operator::Guest for __WeirExport {
                fn init(
                    config: ::std::string::String,
                ) -> ::core::result::Result<$crate::abi::types::OperatorInfo, ::std::string::String>
                {
                    $crate::__private::export_glue::init(config, $make)
                }
                fn process(
                    input: $crate::abi::types::Batch,
                    groups: ::std::vec::Vec<$crate::abi::types::KeyGroup>,
                ) -> ::core::result::Result<$crate::abi::types::Output, ::std::string::String>
                {
                    $crate::__private::export_glue::process(input, groups)
                }
                fn on_timer(
                    timers: ::std::vec::Vec<$crate::abi::types::FiredTimer>,
                    groups: ::std::vec::Vec<$crate::abi::types::KeyGroup>,
                ) -> ::core::result::Result<$crate::abi::types::Output, ::std::string::String>
                {
                    $crate::__private::export_glue::on_timer(timers, groups)
                }
                fn migrate(
                    from_version: u32,
                    states: ::std::vec::Vec<::std::vec::Vec<u8>>,
                ) -> ::core::result::Result<
                    ::std::vec::Vec<::std::vec::Vec<u8>>,
                    $crate::abi::types::MigrationError,
                > {
                    $crate::__private::export_glue::migrate(from_version, states)
                }
            }
            $crate::abi::__export_operator!(__WeirExport);
        };
    };
}
