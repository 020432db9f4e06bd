//! Parity: every kernel of the contract on every backend present, against a plain f64
//! reference written here (not the CPU backend), on fresh random inputs and odd sizes.

mod attention;
#[path = "../common/mod.rs"]
mod common;
mod elementwise;
mod embedding;
mod flow;
mod loss;
mod matmul;
mod memory;
mod norm;
mod ode;
mod optim;
mod random;
