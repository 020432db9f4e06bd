//! The model layer: tokens, the TFMPE velocity field, flow-matching training, ODE samplers and
//! checkpoints.

pub mod checkpoint;
pub mod flow;
pub mod ode;
pub mod standardize;
pub mod tfmpe;
pub mod tokens;
