//! Host bindings generated from `wit/`, the one place the WIT world is bound.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "operator-component",
});

pub use self::weir::operator::host;
pub use self::weir::operator::types;
