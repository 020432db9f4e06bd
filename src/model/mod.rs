//! The model layer: tokens, the TFMPE velocity field, flow-matching training, ODE samplers, the
//! flow's log density and checkpoints.

pub mod checkpoint;
pub mod density;
pub mod flow;
pub mod ode;
pub mod standardize;
pub mod tfmpe;
pub mod tokens;
