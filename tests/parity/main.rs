//! Parity: every kernel of the contract on every backend present, against a plain f64
//! reference written here (not the CPU backend), on fresh random inputs and odd sizes.

#[path = "../common/mod.rs"]
mod common;
mod matmul;
mod random;
mod memory;
mod elementwise;
mod attention;
mod norm;
mod embedding;
mod flow;
mod ode;
mod optim;
mod loss;
