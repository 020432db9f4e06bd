//! AdamW, entirely on the device.

use crate::backend::{self, Buffer, DType, Device};
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

/// [`AdamW`]'s state on the host: per parameter its first and second moments, and the steps
/// taken (bias correction goes on from there).
#[derive(Clone, Debug, PartialEq)]
pub struct AdamState {
    pub m: Vec<Vec<f32>>,
    pub v: Vec<Vec<f32>>,
    pub step: u32,
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

    /// The moments and step count on the host, in the store's parameter order.
    pub fn state(&self, device: &Device) -> Result<AdamState> {
        let backend = device.backend();
        let down = |bufs: &[Buffer]| -> Result<Vec<Vec<f32>>> {
            bufs.iter().map(|b| backend.download_f32(b)).collect()
        };
        Ok(AdamState { m: down(&self.m)?, v: down(&self.v)?, step: self.step })
    }

    /// An optimiser that goes on from `state` for the parameters of `store` (the same order
    /// and sizes as the store the state was taken from, or a subset of its rows made the same
    /// way for every parameter).
    pub fn with_state(store: &ParamStore, config: AdamWConfig, state: &AdamState) -> Result<Self> {
        let mut opt = AdamW::new(store, config)?;
        if state.m.len() != store.len() || state.v.len() != store.len() {
            return Err(Error::Invalid(format!(
                "AdamW state of {} parameters for a store of {}",
                state.m.len(),
                store.len()
            )));
        }
        let backend = store.device().backend();
        for (p, (m, v)) in store.iter().zip(state.m.iter().zip(&state.v)) {
            if m.len() != p.value.len() || v.len() != p.value.len() {
                return Err(Error::Invalid(format!(
                    "AdamW state for `{}` has {} values, the parameter {}",
                    p.name,
                    m.len(),
                    p.value.len()
                )));
            }
        }
        for (i, (m, v)) in state.m.iter().zip(&state.v).enumerate() {
            opt.m[i] = backend.upload_f32(m)?;
            opt.v[i] = backend.upload_f32(v)?;
        }
        opt.step = state.step;
        Ok(opt)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tape::Tape;

    /// Three steps of `loss = Σ w²` on a fresh tape over `store`'s single parameter.
    fn steps(tape: &mut Tape, opt: &mut AdamW, n: usize) {
        for _ in 0..n {
            tape.reset();
            let w = tape.param(tape.params().id("w").unwrap()).unwrap();
            let sq = tape.linear(w, w, None).unwrap();
            let loss = tape.sum(sq).unwrap();
            tape.backward(loss).unwrap();
            opt.step(tape.params_mut()).unwrap();
        }
    }

    /// Going on from an exported state gives the same weights, bit for bit, as never stopping.
    #[test]
    fn state_round_trip_continues_exactly() {
        let dev = Device::cpu();
        let config = AdamWConfig { lr: 0.1, ..AdamWConfig::default() };
        let start = [0.5f32, -1.5, 2.0, 0.25];
        let fresh = || {
            let mut store = ParamStore::new(&dev);
            store.add("w", &[2, 2], &start).unwrap();
            let opt = AdamW::new(&store, config).unwrap();
            (Tape::new(store), opt)
        };
        let (mut a, mut opt_a) = fresh();
        steps(&mut a, &mut opt_a, 6);

        let (mut b, mut opt_b) = fresh();
        steps(&mut b, &mut opt_b, 3);
        let state = opt_b.state(&dev).unwrap();
        let values = b.params().to_vec(b.params().id("w").unwrap()).unwrap();
        let mut store = ParamStore::new(&dev);
        store.add("w", &[2, 2], &values).unwrap();
        let mut opt_c = AdamW::with_state(&store, config, &state).unwrap();
        assert_eq!(opt_c.steps(), 3);
        let mut c = Tape::new(store);
        steps(&mut c, &mut opt_c, 3);
        let w = |t: &Tape| t.params().to_vec(t.params().id("w").unwrap()).unwrap();
        assert_eq!(w(&a), w(&c));

        let short = AdamState { m: vec![vec![0.0; 3]], ..state };
        assert!(AdamW::with_state(c.params(), config, &short).is_err());
    }
}
