//! Parity: every kernel of the contract on every backend present, against a plain f64
//! reference written here (not the CPU backend), on fresh random inputs and odd sizes.
//!
//! Test paths read `parity::<family>::<device>::<case>` (see `devices.rs`), so a filter such as
//! `cargo test --test parity parity::matmul::cuda` picks one family on one device. Tests that
//! compare two devices with each other live in `parity::<family>::across_devices`.

#[macro_use]
mod devices;
#[path = "../common/mod.rs"]
mod common;

/// The kernel families, one file each beside this one (`#[path = "."]` keeps the files here
/// while the module adds `parity::` to every test path).
#[path = "."]
mod parity {
    mod attention;
    mod elementwise;
    mod embedding;
    mod errors;
    mod flow;
    mod loss;
    mod matmul;
    mod memory;
    mod model_inputs;
    mod norm;
    mod ode;
    mod optim;
    mod random;
}
