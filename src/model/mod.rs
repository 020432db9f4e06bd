//! The model layer: tokens, the TFMPE velocity field, flow-matching training, ODE samplers and
//! checkpoints.

pub mod ode;
