//! Host bindings generated from `wit/`, the one place the WIT world is bound.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "operator-component",
});

pub use weir::operator::host;
pub use weir::operator::types;
