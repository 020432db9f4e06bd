//! Drawing from a trained flow: the solver, the number of samples integrated together and the
//! device, in one value that every sampling path (posterior samples, calibration draws, LF's
//! synthetic sets) goes through.

use super::network::{check_samples, Network};
use super::Progress;
use crate::error::Result;
use crate::model::ode::{OdeStats, Solver};
use crate::tasks::{check_observation, HierarchicalModel};
use crate::Device;

/// Integrates a network's flow from noise with one solver, `chunk` samples at a time.
#[derive(Clone)]
pub struct Sampler {
    device: Device,
    solver: Solver,
    chunk: usize,
}

impl Sampler {
    /// Samples integrated together unless [`Sampler::with_chunk`] says otherwise. A sample's
    /// value does not depend on the chunk (see [`Network::sample`]); the chunk bounds memory.
    pub const DEFAULT_CHUNK: usize = 1000;

    pub fn new(device: &Device, solver: Solver) -> Sampler {
        Sampler { device: device.clone(), solver, chunk: Self::DEFAULT_CHUNK }
    }

    /// The same sampler integrating `chunk` samples together.
    pub fn with_chunk(self, chunk: usize) -> Sampler {
        Sampler { chunk, ..self }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn solver(&self) -> Solver {
        self.solver
    }

    /// One target sample per standardised condition row of `net` (see [`Network::sample`]).
    pub fn draw(
        &self, net: &mut Network, conds: &[f32], seed: u64, progress: &dyn Progress,
    ) -> Result<(Vec<f32>, OdeStats)> {
        net.sample(&self.device, conds, self.solver, seed, self.chunk, progress)
    }

    /// `n` posterior samples for an observation (natural space, one full parameter vector
    /// each) from a trained posterior network.
    pub fn posterior(
        &self, posterior: &mut Network, task: &dyn HierarchicalModel, obs: &[f64], n: usize,
        seed: u64, progress: &dyn Progress,
    ) -> Result<Vec<Vec<f64>>> {
        let mut sets = self.posteriors(posterior, task, &[obs], n, seed, progress)?;
        Ok(sets.pop().unwrap_or_default())
    }

    /// `n` posterior samples for each of `observations` in one batched solve: set `k` holds
    /// the draws at noise offsets `k·n .. (k+1)·n`, so a single observation gets the same draws
    /// as [`Sampler::posterior`].
    pub fn posteriors(
        &self, posterior: &mut Network, task: &dyn HierarchicalModel,
        observations: &[impl AsRef<[f64]>], n: usize, seed: u64, progress: &dyn Progress,
    ) -> Result<Vec<Vec<Vec<f64>>>> {
        check_samples(n)?;
        let sites = posterior.config.sites;
        let mut conds = Vec::new();
        for obs in observations.iter().map(AsRef::as_ref) {
            check_observation(task, obs, sites)?;
            let cond = posterior.standardize(obs, true)?;
            conds.extend((0..n).flat_map(|_| cond.iter().copied()));
        }
        let (z, _) = self.draw(posterior, &conds, seed, progress)?;
        let unconstrained = posterior.unstandardize(&z, false)?;
        let d = posterior.layout().target.len();
        Ok(unconstrained
            .chunks(n * d)
            .map(|set| set.chunks(d).map(|u| task.to_natural(u, sites)).collect())
            .collect())
    }
}
