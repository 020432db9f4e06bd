//! A fully connected layer.

use rand::Rng;

use super::init::lecun_normal;
use crate::error::Result;
use crate::tape::{ParamId, ParamStore, Tape, Var};

/// `y = x · W (+ b)` with `W: [in, out]` (`{name}.weight`) and `b: [out]` (`{name}.bias`).
/// Weights are LeCun-normal, the bias starts at zero.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: ParamId,
    pub bias: Option<ParamId>,
    pub in_dim: usize,
    pub out_dim: usize,
}

impl Linear {
    pub fn new<R: Rng + ?Sized>(
        store: &mut ParamStore, name: &str, in_dim: usize, out_dim: usize, bias: bool, rng: &mut R,
    ) -> Result<Self> {
        let weight = store.add(
            &format!("{name}.weight"),
            &[in_dim, out_dim],
            &lecun_normal(rng, in_dim, in_dim * out_dim),
        )?;
        let bias = bias
            .then(|| store.add(&format!("{name}.bias"), &[out_dim], &vec![0.0; out_dim]))
            .transpose()?;
        Ok(Linear { weight, bias, in_dim, out_dim })
    }

    pub fn forward(&self, tape: &mut Tape, x: Var) -> Result<Var> {
        let w = tape.param(self.weight)?;
        let b = self.bias.map(|b| tape.param(b)).transpose()?;
        tape.linear(x, w, b)
    }

    /// `relu(x · W + b)`, fused into the GEMM when the layer has a bias.
    pub fn forward_relu(&self, tape: &mut Tape, x: Var) -> Result<Var> {
        let w = tape.param(self.weight)?;
        match self.bias {
            Some(b) => {
                let b = tape.param(b)?;
                tape.linear_relu(x, w, b)
            }
            None => {
                let z = tape.linear(x, w, None)?;
                let y = tape.relu(z)?;
                tape.release(z)?;
                Ok(y)
            }
        }
    }
}
