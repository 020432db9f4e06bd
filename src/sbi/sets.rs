//! LF's synthetic S-site sets: globals, local parameters from the prior, and observations from
//! the likelihood surrogate. Used once for a fixed pool, or every epoch for fresh sets.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use super::network::{Network, Rows};
use super::sampler::Sampler;
use super::seeds::Stream;
use super::train::{SetSource, Sets};
use super::Progress;
use crate::error::{Error, Result};
use crate::model::standardize::Standardizer;
use crate::model::tokens::Layout;
use crate::tasks::HierarchicalModel;

/// Draws synthetic sets for one task and site count.
pub struct FreshSets<'t> {
    task: &'t dyn HierarchicalModel,
    sites: usize,
    /// Integrates the surrogate's observations.
    sampler: Sampler,
    /// The base of the per-draw `Synthetic*` streams.
    seed: u64,
    /// Calls so far: each call draws from its own streams.
    draws: u64,
}

/// `(conditions, targets)` rows of the posterior network for sets with these globals:
/// observations (network space, site-major) and the unconstrained parameter vector.
pub fn posterior_rows(
    task: &dyn HierarchicalModel, sites: usize, globals: &[f64], locals: &[Vec<f64>], obs: &[f64],
) -> (Vec<f64>, Vec<f64>) {
    let params: Vec<f64> = globals.iter().chain(locals.iter().flatten()).copied().collect();
    (obs.to_vec(), task.to_unconstrained(&params, sites))
}

/// Unstandardised rows of the posterior network: conditions, targets and functional inputs.
#[derive(Clone, Debug, Default)]
pub struct SetRows {
    pub cond: Vec<f64>,
    pub target: Vec<f64>,
    pub inputs: Option<Vec<f64>>,
}

impl SetRows {
    pub fn rows(&self) -> Rows<'_> {
        Rows::new(&self.cond, &self.target, self.inputs.as_deref())
    }
}

/// One site's functional inputs from the task, checked against its declared size.
pub fn site_inputs(task: &dyn HierarchicalModel, rng: &mut dyn rand::Rng) -> Result<Vec<f64>> {
    let expected = task.obs_dim() * task.functional_input_dim();
    match task.sample_functional_inputs(rng) {
        Some(v) if v.len() == expected => Ok(v),
        other => Err(Error::Invalid(format!(
            "task `{}`: sample_functional_inputs gave {} values, but {} observations with {} inputs each need {expected}",
            task.name(),
            other.map_or(0, |v| v.len()),
            task.obs_dim(),
            task.functional_input_dim()
        ))),
    }
}

impl<'t> FreshSets<'t> {
    pub fn new(task: &'t dyn HierarchicalModel, sites: usize, sampler: Sampler, seed: u64) -> Self {
        FreshSets { task, sites, sampler, seed, draws: 0 }
    }

    /// Synthetic sets for the given globals (natural space, one vector per set); returns the
    /// posterior network's rows, unstandardised.
    pub fn synthesize(
        &mut self, surrogate: &mut Network, globals: &[Vec<f64>], progress: &dyn Progress,
    ) -> Result<SetRows> {
        let (task, sites, draw) = (self.task, self.sites, self.draws);
        self.draws += 1;
        let locals_stream = Stream::SyntheticLocals { draw };
        let locals: Vec<Vec<Vec<f64>>> = globals
            .par_iter()
            .enumerate()
            .map(|(i, g)| {
                let mut rng = StdRng::seed_from_u64(locals_stream.seed(self.seed, i as u64));
                (0..sites).map(|_| task.sample_locals(g, &mut rng)).collect()
            })
            .collect();
        // Surrogate conditions: the unconstrained [globals, locals] of every site of every set.
        let site_bij = task.parameter_bijections(1);
        let mut cond_rows = Vec::with_capacity(globals.len() * sites * site_bij.len());
        for (g, ls) in globals.iter().zip(&locals) {
            for l in ls {
                cond_rows.extend(g.iter().chain(l).zip(&site_bij).map(|(&v, b)| b.forward(v)));
            }
        }
        let conds = surrogate.standardize(&cond_rows, true)?;
        // Each set's sites observe at inputs drawn from the task; the surrogate generates every
        // site's observation at its own inputs.
        let inputs = self.draw_inputs(globals.len(), draw)?;
        let z = inputs.as_deref().map(|v| surrogate.standardize_inputs(v)).transpose()?;
        let noise = Stream::SyntheticNoise { draw }.seed(self.seed, 0);
        let (y, _) = self.sampler.draw(surrogate, &conds, z.as_deref(), noise, progress)?;
        let y = surrogate.unstandardize(&y, false)?;
        let per_set = sites * task.obs_dim();
        let (mut cond, mut target) = (Vec::new(), Vec::new());
        for (i, (g, ls)) in globals.iter().zip(&locals).enumerate() {
            let (c, t) = posterior_rows(task, sites, g, ls, &y[i * per_set..(i + 1) * per_set]);
            cond.extend(c);
            target.extend(t);
        }
        Ok(SetRows { cond, target, inputs })
    }

    /// The functional inputs of `n` sets of `sites` sites (set-major, then site, then
    /// observation), drawn from the task; `None` for a task without inputs.
    fn draw_inputs(&self, n: usize, draw: u64) -> Result<Option<Vec<f64>>> {
        let task = self.task;
        if task.functional_input_dim() == 0 {
            return Ok(None);
        }
        let stream = Stream::SyntheticInputs { draw };
        let per_set: Vec<Vec<f64>> = (0..n)
            .into_par_iter()
            .map(|i| {
                let mut rng = StdRng::seed_from_u64(stream.seed(self.seed, i as u64));
                let mut set = Vec::new();
                for _ in 0..self.sites {
                    set.extend(site_inputs(task, &mut rng)?);
                }
                Ok(set)
            })
            .collect::<Result<_>>()?;
        Ok(Some(per_set.concat()))
    }

    /// `n` globals drawn from the prior.
    fn prior_globals(&mut self, n: usize) -> Vec<Vec<f64>> {
        let stream = Stream::SyntheticGlobals { draw: self.draws };
        (0..n)
            .into_par_iter()
            .map(|i| {
                let mut rng = StdRng::seed_from_u64(stream.seed(self.seed, i as u64));
                self.task.sample_globals(&mut rng)
            })
            .collect()
    }

    /// A training source that draws `n_sets` fresh sets (new globals from the prior) every
    /// epoch and standardises them with the posterior network's statistics.
    pub fn into_source<'a>(
        self, surrogate: &'a mut Network, posterior: &Network, n_sets: usize, validation: Sets,
        progress: &'a dyn Progress,
    ) -> FreshSource<'a>
    where
        't: 'a,
    {
        FreshSource {
            gen: self,
            surrogate,
            standardizer: posterior.config.standardizer.clone(),
            layout: posterior.config.layout.clone(),
            n_sets,
            validation,
            current: Sets::default(),
            progress,
        }
    }
}

pub struct FreshSource<'a> {
    gen: FreshSets<'a>,
    surrogate: &'a mut Network,
    standardizer: Standardizer,
    layout: Layout,
    n_sets: usize,
    validation: Sets,
    current: Sets,
    progress: &'a dyn Progress,
}

impl FreshSource<'_> {
    fn standardize(
        &self, rows: &[f64], tokens: &[crate::model::tokens::Token],
    ) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(rows.len());
        for row in rows.chunks(tokens.len()) {
            out.extend(self.standardizer.apply(tokens, row)?);
        }
        Ok(out)
    }
}

impl SetSource for FreshSource<'_> {
    fn train(&mut self, _epoch: usize) -> Result<&Sets> {
        let globals = self.gen.prior_globals(self.n_sets);
        let rows = self.gen.synthesize(self.surrogate, &globals, self.progress)?;
        self.current = Sets {
            cond: self.standardize(&rows.cond, &self.layout.cond)?,
            target: self.standardize(&rows.target, &self.layout.target)?,
            inputs: match &rows.inputs {
                Some(v) => self.standardizer.apply_inputs(v)?,
                None => Vec::new(),
            },
        };
        Ok(&self.current)
    }

    fn validation(&self) -> &Sets {
        &self.validation
    }
}
