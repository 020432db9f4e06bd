//! Neural-network layers on top of the tape, and the AdamW optimiser.
//!
//! A layer registers its parameters into a [`ParamStore`](crate::tape::ParamStore) under
//! stable dotted names (`encoder.0.attn.qkv.weight`), keeps only their ids, and records its
//! forward pass on a [`Tape`](crate::tape::Tape) that owns that store. Weights are stored
//! `[in, out]`, so a linear layer is one GEMM `x · W` with the bias fused in its epilogue.

mod attention;
mod embedding;
mod init;
mod linear;
mod norm;
mod optim;
mod transformer;

pub use attention::MultiHeadAttention;
pub use embedding::{Embedding, FourierFeatures};
pub use linear::Linear;
pub use norm::LayerNorm;
pub use optim::{AdamState, AdamW, AdamWConfig};
pub use transformer::{EncoderBlock, Transformer, TransformerConfig};
