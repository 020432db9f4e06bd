//! AdamW, entirely on the device.

use crate::backend::{self, Buffer, DType};
use crate::error::{Error, Result};
use crate::tape::ParamStore;

/// Hyperparameters of [`AdamW`]. The defaults are those of
/// docs/architecture.md#training-defaults (Adam, lr 1e-4, no decay, no clipping).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub lr: f32,
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    /// Decoupled weight decay, applied to every parameter.
    pub weight_decay: f32,
    /// Clip the global gradient norm to this value before the update.
    pub max_grad_norm: Option<f32>,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        AdamWConfig {
            lr: 1e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: None,
        }
    }
}

/// AdamW with bias correction and optional global-norm clipping. The moments live on the
/// device beside the parameters; the squared global norm is accumulated into a one-element
/// device buffer, so a step never reads anything back. Only the step counter is on the host.
pub struct AdamW {
    /// Changeable between steps (learning-rate schedules).
    pub config: AdamWConfig,
    m: Vec<Buffer>,
    v: Vec<Buffer>,
    norm_sq: Buffer,
    step: u32,
    store: u32,
}

impl AdamW {
    /// Zero moments for every parameter of `store`.
    pub fn new(store: &ParamStore, config: AdamWConfig) -> Result<Self> {
        let backend = store.device().backend();
        let zeros = || -> Result<Vec<Buffer>> {
            store.iter().map(|p| backend.alloc(DType::F32, p.value.len())).collect()
        };
        Ok(AdamW {
            config,
            m: zeros()?,
            v: zeros()?,
            norm_sq: backend.alloc(DType::F32, 1)?,
            step: 0,
            store: store.uid(),
        })
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u32 {
        self.step
    }

    /// Updates every parameter from the gradients of the last backward pass.
    pub fn step(&mut self, store: &mut ParamStore) -> Result<()> {
        if store.uid() != self.store || store.len() != self.m.len() {
            return Err(Error::Invalid(format!(
                "AdamW was built for another parameter store ({} parameters; this one has {})",
                self.m.len(),
                store.len()
            )));
        }
        let device = store.device().clone();
        let backend = device.backend();
        let c = self.config;
        if c.max_grad_norm.is_some() {
            for (i, g) in store.grads.iter().enumerate() {
                backend.sum_squares(g, &mut self.norm_sq, i > 0)?;
            }
        }
        self.step += 1;
        let p = backend::AdamW {
            lr: c.lr,
            beta1: c.beta1,
            beta2: c.beta2,
            eps: c.eps,
            weight_decay: c.weight_decay,
            step: self.step,
        };
        let clip = c.max_grad_norm.map(|max| (&self.norm_sq, max));
        for (i, (m, v)) in self.m.iter_mut().zip(&mut self.v).enumerate() {
            let (value, grad) = store.value_and_grad(i);
            backend.adamw_step(&p, value, grad, m, v, clip)?;
        }
        Ok(())
    }
}
