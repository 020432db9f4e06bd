//! A trained (or training) flow-matching network with its token layout and standardisation:
//! the posterior network, and LF's likelihood surrogate. Built for a task and role, trains,
//! samples in chunks, saves and loads.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::train::{train, SetSource, Sets, TrainConfig, TrainReport};
use super::Progress;
use crate::error::{Error, Result};
use crate::model::checkpoint;
use crate::model::flow::{Field, SIGMA_MIN};
use crate::model::ode::{solve, OdeStats, OdeWorkspace, Solver};
use crate::model::standardize::Standardizer;
use crate::model::tfmpe::{DeviceTokens, Tfmpe, TfmpeConfig};
use crate::model::tokens::{n_labels, Layout, Token, TokenBatch};
use crate::tape::{ParamStore, Tape};
use crate::tasks::HierarchicalModel;
use crate::Device;

/// Everything saved beside the weights.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// `posterior` or `surrogate`.
    pub role: String,
    pub task: String,
    pub sites: usize,
    pub architecture: TfmpeConfig,
    pub layout: Layout,
    pub standardizer: Standardizer,
    /// Column names of the condition and target values, in token order.
    pub cond_names: Vec<String>,
    pub target_names: Vec<String>,
    /// Bijections of the parameters (natural → unconstrained), in parameter order.
    pub bijections: Vec<crate::tasks::Bijection>,
    /// The probability path: t = 0 is noise, t = 1 is data; x_t = (1 − (1−σ)t)·x0 + t·x1.
    pub time_convention: String,
    pub sigma_min: f32,
}

/// Samples per chunk must keep Philox blocks aligned: a chunk of a multiple of 4 samples
/// starts its noise at a whole block, so a sample's noise depends only on its index.
const CHUNK_ALIGN: usize = 4;

pub struct Network {
    pub config: NetworkConfig,
    pub model: Tfmpe,
    pub tape: Tape,
}

impl Network {
    /// A freshly initialised network.
    pub fn new(dev: &Device, config: NetworkConfig, seed: u64) -> Result<Network> {
        let mut params = ParamStore::new(dev);
        let model = Tfmpe::new(&mut params, config.architecture.clone(), seed)?;
        Ok(Network { config, model, tape: Tape::new(params) })
    }

    pub fn layout(&self) -> &Layout {
        &self.config.layout
    }

    /// Trains on standardised sets of this network's layout.
    pub fn fit(
        &mut self, dev: &Device, data: &mut dyn SetSource, cfg: &TrainConfig,
        progress: &dyn Progress,
    ) -> Result<TrainReport> {
        let phase = self.config.role.clone();
        train(dev, &self.model, &mut self.tape, &self.config.layout, data, cfg, &phase, progress)
    }

    /// Standardises rows of condition values (one set per row, token order).
    pub fn standardize(&self, rows: &[f64], cond: bool) -> Result<Vec<f32>> {
        let tokens = self.tokens(cond);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.chunks(tokens.len()) {
            out.extend(self.config.standardizer.apply(tokens, row)?);
        }
        Ok(out)
    }

    /// Undoes [`Network::standardize`].
    pub fn unstandardize(&self, rows: &[f32], cond: bool) -> Result<Vec<f64>> {
        let tokens = self.tokens(cond);
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.chunks(tokens.len()) {
            out.extend(self.config.standardizer.invert(tokens, row)?);
        }
        Ok(out)
    }

    fn tokens(&self, cond: bool) -> &[Token] {
        if cond {
            &self.config.layout.cond
        } else {
            &self.config.layout.target
        }
    }

    /// Draws one target sample per condition row (`conds`: `[n · n_cond]`, standardised) by
    /// integrating the flow from noise, `chunk` samples at a time. Sample `i` uses the noise at
    /// Philox offset `i`, so its value does not depend on the chunking.
    pub fn sample(
        &mut self, dev: &Device, conds: &[f32], solver: Solver, seed: u64, chunk: usize,
        progress: &dyn Progress,
    ) -> Result<(Vec<f32>, OdeStats)> {
        let (c, m) = (self.config.layout.cond.len(), self.config.layout.target.len());
        if c == 0 {
            return Err(Error::Invalid("sampling needs condition tokens".into()));
        }
        let n = conds.len() / c;
        let chunk = chunk.max(CHUNK_ALIGN) / CHUNK_ALIGN * CHUNK_ALIGN;
        let mut out = Vec::with_capacity(n * m);
        let mut stats = OdeStats::default();
        let backend = dev.backend();
        self.tape.reset();
        self.tape.set_inference(true)?;
        let mut cached: Option<(usize, DeviceTokens, OdeWorkspace)> = None;
        let result = (|| {
            for start in (0..n).step_by(chunk) {
                let len = chunk.min(n - start);
                if cached.as_ref().is_none_or(|(l, _, _)| *l != len) {
                    let tb = TokenBatch::repeat(&self.config.layout, len)?;
                    self.config.architecture.check_ids(&tb)?;
                    cached = Some((
                        len,
                        DeviceTokens::upload(dev, &tb)?,
                        OdeWorkspace::new(dev, len, m)?,
                    ));
                }
                let (_, tokens, ws) = cached.as_mut().expect("filled above");
                let cond = backend.upload_f32(&conds[start * c..(start + len) * c])?;
                let mut x = backend.alloc(crate::backend::DType::F32, len * m)?;
                backend.normal_fill(&mut x, seed, (start * m / CHUNK_ALIGN) as u64)?;
                let mut field =
                    Field { model: &self.model, tape: &mut self.tape, tokens, cond: &cond };
                let s = solve(dev, &mut field, solver, &mut x, ws)?;
                stats.evals += s.evals;
                stats.iterations += s.iterations;
                out.extend(backend.download_f32(&x)?);
                progress.samples(&self.config.role, start + len, n);
            }
            Ok(())
        })();
        self.tape.reset();
        self.tape.set_inference(false)?;
        result.map(|()| (out, stats))
    }

    pub fn save(&self, dir: &Path) -> Result<()> {
        checkpoint::save(dir, &self.config, self.tape.params())
    }

    pub fn load(dev: &Device, dir: &Path) -> Result<Network> {
        let config: NetworkConfig = checkpoint::load_config(dir)?;
        let mut net = Network::new(dev, config, 0)?;
        checkpoint::load_params(dir, net.tape.params_mut())?;
        Ok(net)
    }
}

/// Refuses sample counts that cannot be produced.
pub fn check_samples(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::Invalid("the number of samples must be at least 1".into()));
    }
    Ok(())
}

/// Which network of a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Conditions: observations of S sites; targets: all parameters.
    Posterior,
    /// LF's likelihood surrogate. Conditions: globals and one site's locals (unconstrained);
    /// targets: that site's observation.
    Surrogate,
}

/// A freshly initialised network of `role` for `task`, its embedding tables sized for its
/// layout and its standardisation fitted on the given training rows (`cond` and `target`,
/// one set per row, token order).
#[allow(clippy::too_many_arguments)]
pub fn new_network(
    dev: &Device, task: &dyn HierarchicalModel, role: Role, sites: usize, cond: &[f64],
    target: &[f64], architecture: &TfmpeConfig, seed: u64,
) -> Result<Network> {
    let (layout, name, cond_names, target_names) = match role {
        Role::Posterior => (
            Layout::posterior(task, sites),
            "posterior",
            task.observation_names(sites),
            task.parameter_names(sites),
        ),
        Role::Surrogate => (
            Layout::surrogate(task),
            "surrogate",
            task.parameter_names(1),
            task.observation_names(1),
        ),
    };
    let (_, pos, group) = layout.max_ids();
    let architecture = TfmpeConfig {
        n_labels: n_labels(task),
        max_positions: pos as usize + 1,
        max_groups: group as usize + 1,
        ..architecture.clone()
    };
    let config = NetworkConfig {
        role: name.to_string(),
        task: task.name().to_string(),
        sites,
        architecture,
        standardizer: fit_standardizer(&layout, cond, target)?,
        layout,
        cond_names,
        target_names,
        bijections: task.parameter_bijections(sites),
        time_convention: "t = 0 is noise, t = 1 is data".into(),
        sigma_min: SIGMA_MIN,
    };
    Network::new(dev, config, seed)
}

/// Fits a standardiser over cond and target rows of one layout.
fn fit_standardizer(layout: &Layout, cond: &[f64], target: &[f64]) -> Result<Standardizer> {
    let (c, m) = (layout.cond.len(), layout.target.len());
    let tokens: Vec<_> = layout.cond.iter().chain(&layout.target).copied().collect();
    let n = target.len() / m;
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            cond[i * c..(i + 1) * c].iter().chain(&target[i * m..(i + 1) * m]).copied().collect()
        })
        .collect();
    Standardizer::fit(&tokens, rows.iter().map(|r| r.as_slice()))
}

/// Standardised sets for `net` from unstandardised rows.
pub fn to_sets(net: &Network, cond: &[f64], target: &[f64]) -> Result<Sets> {
    Ok(Sets { cond: net.standardize(cond, true)?, target: net.standardize(target, false)? })
}
