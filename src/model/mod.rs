//! The model layer: tokens, the TFMPE velocity field, flow-matching training, ODE samplers and
//! checkpoints.

pub mod ode;
pub mod tokens;
pub mod checkpoint;
pub mod standardize;
pub mod tfmpe;
pub mod flow;
