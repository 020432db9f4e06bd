//! LF's synthetic S-site sets: globals, local parameters from the prior, and observations from
//! the likelihood surrogate. Used once for a fixed pool, or every epoch for fresh sets.

use rand::rngs::StdRng;
use rand::SeedableRng;
use rayon::prelude::*;

use super::network::{Network, NetworkConfig, Rows};
use super::sampler::Sampler;
use super::seeds::Stream;
use super::train::{SetSource, Sets};
use super::Progress;
use crate::error::{Error, Result};
use crate::tasks::HierarchicalModel;

/// The site counts of synthetic sets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SiteCounts {
    /// Every set has this many sites.
    Fixed(usize),
    /// Sets of every count from 1 to this one (`run --max-sites`).
    UpTo(usize),
}

impl SiteCounts {
    /// The largest count.
    pub fn max(self) -> usize {
        match self {
            SiteCounts::Fixed(s) | SiteCounts::UpTo(s) => s,
        }
    }

    /// `(sites, sets)` runs for `n` sets taken in blocks of `block` sets of one count each:
    /// with [`SiteCounts::UpTo`] the blocks' counts rise evenly from 1 to the maximum, so
    /// that a batch (a block) never mixes site counts and every count range is trained.
    pub fn schedule(self, n: usize, block: usize) -> Vec<(usize, usize)> {
        let max = match self {
            SiteCounts::Fixed(s) => return vec![(s, n)],
            SiteCounts::UpTo(m) => m,
        };
        let block = block.max(1);
        let blocks = n.div_ceil(block);
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for k in 0..blocks {
            let sites = 1 + k * max / blocks.max(1);
            let sets = block.min(n - k * block);
            match runs.last_mut() {
                Some((s, count)) if *s == sites => *count += sets,
                _ => runs.push((sites, sets)),
            }
        }
        runs
    }
}

/// Draws synthetic sets for one task.
pub struct FreshSets<'t> {
    task: &'t dyn HierarchicalModel,
    sites: SiteCounts,
    inputs: InputSource,
    /// Each synthetic site keeps a random number of its observations (1 to all), masked.
    ragged: bool,
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

/// Unstandardised rows of the posterior network for sets of `sites` sites: conditions,
/// targets and functional inputs.
#[derive(Clone, Debug, Default)]
pub struct SetRows {
    pub sites: usize,
    pub cond: Vec<f64>,
    pub target: Vec<f64>,
    pub inputs: Option<Vec<f64>>,
    /// Key masks of ragged sets (`[sets · tokens]`), `None` when every site is complete.
    pub mask: Option<Vec<f32>>,
}

impl SetRows {
    pub fn rows(&self) -> Rows<'_> {
        let rows = Rows::new(self.sites, &self.cond, &self.target, self.inputs.as_deref());
        Rows { mask: self.mask.as_deref(), ..rows }
    }
}

/// The rows of every site count, as the networks take them.
pub fn all_rows(sets: &[SetRows]) -> Vec<Rows<'_>> {
    sets.iter().map(SetRows::rows).collect()
}

/// Where simulated sites take their functional inputs from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum InputSource {
    /// Fresh draws from the task's input distribution.
    #[default]
    Prior,
    /// The observation's inputs, one vector per observed site: a set with as many sites as
    /// the observation takes them site by site, any other site the inputs of an observed site
    /// drawn at random.
    Observed(Vec<Vec<f64>>),
}

impl InputSource {
    /// The inputs of site `site` of a set of `sites` sites.
    pub fn site(
        &self, task: &dyn HierarchicalModel, site: usize, sites: usize, rng: &mut dyn rand::Rng,
    ) -> Result<Vec<f64>> {
        match self {
            InputSource::Prior => site_inputs(task, rng),
            InputSource::Observed(observed) if observed.len() == sites => {
                Ok(observed[site].clone())
            }
            InputSource::Observed(observed) if !observed.is_empty() => {
                Ok(observed[rand::RngExt::random_range(rng, 0..observed.len())].clone())
            }
            InputSource::Observed(_) => {
                Err(Error::Invalid("observed inputs were asked for but none were given".into()))
            }
        }
    }
}

/// The key mask `[tokens]` (1 = present) of a posterior set whose site s holds its first
/// `counts[s]` of `obs_dim` observation tokens: condition tokens site by site, then
/// `n_target` targets, all present.
pub fn ragged_mask(counts: &[usize], obs_dim: usize, n_target: usize) -> Vec<f32> {
    let mut mask = Vec::with_capacity(counts.len() * obs_dim + n_target);
    for &n in counts {
        mask.extend((0..obs_dim).map(|j| if j < n { 1.0 } else { 0.0 }));
    }
    mask.resize(mask.len() + n_target, 1.0);
    mask
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
    pub fn new(
        task: &'t dyn HierarchicalModel, sites: SiteCounts, inputs: InputSource, sampler: Sampler,
        seed: u64,
    ) -> Self {
        FreshSets { task, sites, inputs, ragged: false, sampler, seed, draws: 0 }
    }

    /// The same source with ragged sites: each synthetic site keeps the first n of its
    /// observations, n uniform from 1 to all, the rest masked, so that the posterior learns
    /// sites observed at fewer inputs.
    pub fn ragged(self, ragged: bool) -> Self {
        FreshSets { ragged, ..self }
    }

    /// Synthetic sets for the given globals (natural space, one vector per set), their site
    /// counts in blocks of `block` sets (see [`SiteCounts::schedule`]); returns the posterior
    /// network's rows, unstandardised, one [`SetRows`] per run of one site count.
    pub fn synthesize(
        &mut self, surrogate: &mut Network, globals: &[Vec<f64>], block: usize,
        progress: &dyn Progress,
    ) -> Result<Vec<SetRows>> {
        let mut out = Vec::new();
        let mut first = 0;
        for (sites, n) in self.sites.schedule(globals.len(), block) {
            out.push(self.synthesize_sites(
                surrogate,
                &globals[first..first + n],
                sites,
                progress,
            )?);
            first += n;
        }
        Ok(out)
    }

    /// Synthetic sets of `sites` sites for the given globals.
    fn synthesize_sites(
        &mut self, surrogate: &mut Network, globals: &[Vec<f64>], sites: usize,
        progress: &dyn Progress,
    ) -> Result<SetRows> {
        let (task, draw) = (self.task, self.draws);
        self.draws += 1;
        let locals_stream = Stream::SyntheticLocals { draw };
        let locals: Vec<Vec<Vec<f64>>> = globals
            .par_iter()
            .enumerate()
            .map(|(i, g)| {
                let mut rng = StdRng::seed_from_u64(locals_stream.seed(self.seed, i as u64));
                // One call per set: a user model's prior function sees all its sites at once.
                let flat = task.sample_locals_batch(&g.repeat(sites), sites, &mut rng);
                flat.chunks(task.local_dim()).map(<[f64]>::to_vec).collect()
            })
            .collect();
        task.deferred_error()?;
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
        let inputs = self.draw_inputs(globals.len(), sites, draw)?;
        let z = inputs.as_deref().map(|v| surrogate.standardize_inputs(v)).transpose()?;
        let noise = Stream::SyntheticNoise { draw }.seed(self.seed, 0);
        let (y, _) = self.sampler.draw(surrogate, &conds, z.as_deref(), noise, progress)?;
        let y = surrogate.targets_from_flow(&conds, z.as_deref(), y)?;
        let per_set = sites * task.obs_dim();
        let (mut cond, mut target) = (Vec::new(), Vec::new());
        for (i, (g, ls)) in globals.iter().zip(&locals).enumerate() {
            let (c, t) = posterior_rows(task, sites, g, ls, &y[i * per_set..(i + 1) * per_set]);
            cond.extend(c);
            target.extend(t);
        }
        let mask = self.ragged.then(|| self.ragged_masks(globals.len(), sites, draw));
        Ok(SetRows { sites, cond, target, inputs, mask })
    }

    /// Key masks of `n` ragged sets of `sites` sites, one count per site from its set's stream.
    fn ragged_masks(&self, n: usize, sites: usize, draw: u64) -> Vec<f32> {
        let obs_dim = self.task.obs_dim();
        let n_target = self.task.param_dim(sites);
        let stream = Stream::SyntheticCounts { draw };
        (0..n)
            .flat_map(|i| {
                let mut rng = StdRng::seed_from_u64(stream.seed(self.seed, i as u64));
                let counts: Vec<usize> =
                    (0..sites).map(|_| rand::RngExt::random_range(&mut rng, 1..=obs_dim)).collect();
                ragged_mask(&counts, obs_dim, n_target)
            })
            .collect()
    }

    /// The functional inputs of `n` sets of `sites` sites (set-major, then site, then
    /// observation), drawn from the task; `None` for a task without inputs.
    fn draw_inputs(&self, n: usize, sites: usize, draw: u64) -> Result<Option<Vec<f64>>> {
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
                for site in 0..sites {
                    set.extend(self.inputs.site(task, site, sites, &mut rng)?);
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
    /// epoch, in blocks of `block` sets, and standardises them with the posterior network's
    /// statistics.
    pub fn into_source<'a>(
        self, surrogate: &'a mut Network, posterior: &Network, n_sets: usize, block: usize,
        validation: Vec<Sets>, progress: &'a dyn Progress,
    ) -> FreshSource<'a>
    where
        't: 'a,
    {
        FreshSource {
            gen: self,
            surrogate,
            config: posterior.config.clone(),
            n_sets,
            block,
            validation,
            current: Vec::new(),
            progress,
        }
    }
}

pub struct FreshSource<'a> {
    gen: FreshSets<'a>,
    surrogate: &'a mut Network,
    /// The posterior network's configuration: its layouts and standardisation.
    config: NetworkConfig,
    n_sets: usize,
    block: usize,
    validation: Vec<Sets>,
    current: Vec<Sets>,
    progress: &'a dyn Progress,
}

impl SetSource for FreshSource<'_> {
    fn train(&mut self, _epoch: usize) -> Result<&[Sets]> {
        let globals = self.gen.prior_globals(self.n_sets);
        let rows = self.gen.synthesize(self.surrogate, &globals, self.block, self.progress)?;
        self.current = rows.iter().map(|r| self.config.sets(r.rows())).collect::<Result<_>>()?;
        Ok(&self.current)
    }

    fn validation(&self) -> &[Sets] {
        &self.validation
    }
}
