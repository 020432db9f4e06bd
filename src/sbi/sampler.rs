//! Drawing from a trained flow: the solver, the number of samples integrated together and the
//! device, in one value that every sampling path (posterior samples, calibration draws, LF's
//! synthetic sets) goes through.

use super::network::{check_samples, CondRows, Network, NoiseRun};
use super::posterior::Posterior;
use super::seeds::Stream;
use super::sets::ragged_mask;
use super::Progress;
use crate::backend::Precision;
use crate::error::{Error, Result};
use crate::model::density::Divergence;
use crate::model::ode::{OdeStats, Solver};
use crate::model::tokens::Layout;
use crate::tasks::{check_observed, HierarchicalModel, Observed};
use crate::Device;

/// Standardised magnitude beyond which an observation is far outside the training data.
const FAR_OUTSIDE: f64 = 10.0;

/// Integrates a network's flow from noise with one solver, `chunk` samples at a time.
#[derive(Clone)]
pub struct Sampler {
    device: Device,
    solver: Solver,
    chunk: usize,
    precision: Precision,
}

impl Sampler {
    /// Samples integrated together unless [`Sampler::with_chunk`] says otherwise. A sample's
    /// value does not depend on the chunk (see [`Network::sample`]); the chunk bounds memory.
    pub const DEFAULT_CHUNK: usize = 1000;

    pub fn new(device: &Device, solver: Solver) -> Sampler {
        Sampler {
            device: device.clone(),
            solver,
            chunk: Self::DEFAULT_CHUNK,
            precision: Precision::F32,
        }
    }

    /// The same sampler integrating `chunk` samples together.
    pub fn with_chunk(self, chunk: usize) -> Sampler {
        Sampler { chunk, ..self }
    }

    /// The same sampler with the networks' linear layers multiplying in `precision` (bf16:
    /// operands rounded to bfloat16, sums in f32; faster on CPUs with AVX-512 BF16, slower
    /// than f32 elsewhere). Only with a fixed-step solver: an adaptive one's error control
    /// would chase the rounding. Log densities are always computed in f32.
    pub fn with_precision(self, precision: Precision) -> Result<Sampler> {
        if precision != Precision::F32 && matches!(self.solver, Solver::Dopri5 { .. }) {
            return Err(Error::Invalid(format!(
                "--precision {} needs a fixed-step solver (--solver euler or rk4): dopri5's \
                 error control would chase the rounding of the products",
                precision.name()
            )));
        }
        precision.check(self.device.backend())?;
        Ok(Sampler { precision, ..self })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn solver(&self) -> Solver {
        self.solver
    }

    /// One target sample per standardised condition row of `net`, in its own layout, the
    /// rows' noise from one run of `seed` (see [`Network::sample`]).
    pub fn draw(
        &self, net: &mut Network, conds: &[f32], inputs: Option<&[f32]>, seed: u64,
        progress: &dyn Progress,
    ) -> Result<(Vec<f32>, OdeStats)> {
        let layout = net.config.layout.clone();
        let rows = conds.len() / layout.cond.len().max(1);
        let runs = [NoiseRun { seed, rows }];
        let (solver, chunk, precision) = (self.solver, self.chunk, self.precision);
        let dev = &self.device;
        net.sample(dev, &layout, conds, inputs, None, &runs, solver, chunk, precision, progress)
    }

    /// `n` posterior samples for an observation (natural space, one full parameter vector
    /// each) from a trained posterior network.
    pub fn posterior(
        &self, posterior: &mut Posterior, task: &dyn HierarchicalModel, obs: &Observed, n: usize,
        seed: u64, progress: &dyn Progress,
    ) -> Result<Vec<Vec<f64>>> {
        let mut sets =
            self.posteriors(posterior, task, std::slice::from_ref(obs), n, seed, progress)?;
        Ok(sets.pop().unwrap_or_default())
    }

    /// `n` posterior samples for each of `observations`, all drawn with the noise of `seed`:
    /// each data set's draws equal those of [`Sampler::posterior`] for it alone.
    pub fn posteriors(
        &self, posterior: &mut Posterior, task: &dyn HierarchicalModel, observations: &[Observed],
        n: usize, seed: u64, progress: &dyn Progress,
    ) -> Result<Vec<Vec<Vec<f64>>>> {
        let seeds = vec![seed; observations.len()];
        self.posteriors_seeded(posterior, task, observations, n, &seeds, progress)
    }

    /// `n` posterior samples for each of `observations`, data set `k` with the noise of
    /// `seeds[k]`, in one batched solve per run of data sets with the same site count.
    pub fn posteriors_seeded(
        &self, posterior: &mut Posterior, task: &dyn HierarchicalModel, observations: &[Observed],
        n: usize, seeds: &[u64], progress: &dyn Progress,
    ) -> Result<Vec<Vec<Vec<f64>>>> {
        check_samples(n)?;
        let rows = n.saturating_mul(observations.len());
        let dim = observations.first().map_or(0, |o| task.param_dim(o.sites));
        super::footprint::check_draws(rows, dim)?;
        if seeds.len() != observations.len() {
            return Err(Error::Shape(format!(
                "{} seeds for {} data sets",
                seeds.len(),
                observations.len()
            )));
        }
        let mut out = Vec::with_capacity(observations.len());
        let mut first = 0;
        while first < observations.len() {
            let sites = observations[first].sites;
            let end = observations[first..]
                .iter()
                .position(|o| o.sites != sites)
                .map_or(observations.len(), |k| first + k);
            let batch = &observations[first..end];
            out.extend(self.same_sites(posterior, task, batch, n, &seeds[first..end], progress)?);
            first = end;
        }
        Ok(out)
    }

    /// The standardised conditions of `n` rows per data set (data sets that share a site
    /// count), with each data set's farthest standardised value.
    fn prepare(
        posterior: &Network, task: &dyn HierarchicalModel, observations: &[Observed], n: usize,
        progress: &dyn Progress,
    ) -> Result<Prepared> {
        let sites = observations[0].sites;
        let layout = posterior.layout_for(sites)?;
        let (mut conds, mut inputs, mut masks) = (Vec::new(), Vec::new(), Vec::new());
        let mut farthest = Vec::with_capacity(observations.len());
        // Ragged data sets are filled up to whole sites and their missing tokens masked.
        let ragged = observations.iter().any(|o| o.counts.is_some());
        let (obs_dim, input_dim) = (task.obs_dim(), task.functional_input_dim());
        for obs in observations {
            if input_dim > 0 && obs.inputs.is_none() {
                return Err(Error::Invalid(format!(
                    "task `{}` needs the functional inputs ({}) of every observation",
                    task.name(),
                    task.functional_input_names().join(", ")
                )));
            }
            check_observed(task, obs)?;
            let (values, obs_inputs) = obs.padded(obs_dim, input_dim);
            let row = task.observations_to_network(&values);
            let cond = posterior.config.standardizer.apply(&layout.cond, &row)?;
            let far = cond.iter().map(|z| f64::from(z.abs())).fold(0.0, f64::max);
            farthest.push(far);
            if far > FAR_OUTSIDE {
                progress.warning(&format!(
                    "an observation lies {far:.3e} standard deviations from the training data; \
                     its posterior draws extrapolate far beyond what the prior predicts"
                ));
            }
            conds.extend((0..n).flat_map(|_| cond.iter().copied()));
            if let Some(values) = obs_inputs.filter(|_| posterior.config.architecture.input_dim > 0)
            {
                let z = posterior.standardize_inputs(&values)?;
                inputs.extend((0..n).flat_map(|_| z.iter().copied()));
            }
            if ragged {
                let mask = ragged_mask(&obs.site_counts(obs_dim), obs_dim, layout.target.len());
                masks.extend((0..n).flat_map(|_| mask.iter().copied()));
            }
        }
        let inputs = (!inputs.is_empty()).then_some(inputs);
        let masks = ragged.then_some(masks);
        Ok(Prepared { layout, conds, inputs, masks, farthest })
    }

    /// [`Sampler::posteriors_seeded`] for data sets that share a site count.
    fn same_sites(
        &self, posterior: &mut Posterior, task: &dyn HierarchicalModel, observations: &[Observed],
        n: usize, seeds: &[u64], progress: &dyn Progress,
    ) -> Result<Vec<Vec<Vec<f64>>>> {
        let sites = observations[0].sites;
        let Prepared { layout, conds, inputs, masks, farthest } =
            Self::prepare(&posterior.net, task, observations, n, progress)?;
        let runs: Vec<NoiseRun> = seeds.iter().map(|&seed| NoiseRun { seed, rows: n }).collect();
        let (z, _) = posterior.net.sample(
            &self.device,
            &layout,
            &conds,
            inputs.as_deref(),
            masks.as_deref(),
            &runs,
            self.solver,
            self.chunk,
            self.precision,
            progress,
        )?;
        check_finite(&z, n * layout.target.len(), &farthest)?;
        let mut z = z;
        if let Some(scaling) = &posterior.net.config.local_scaling {
            let rows = cond_rows(&layout, &conds, &inputs, &masks);
            scaling.unwhiten(rows, &mut z)?;
            check_finite(&z, n * layout.target.len(), &farthest)?;
        }
        let mut unconstrained = invert(&posterior.net, &layout, &z)?;
        if let Some(local) = posterior.local.as_mut() {
            unconstrained = self.add_locals(local, task, observations, &unconstrained, n, seeds)?;
        }
        let d = task.param_dim(sites);
        let draws: Vec<Vec<Vec<f64>>> = unconstrained
            .chunks(n * d)
            .map(|set| set.chunks(d).map(|u| task.to_natural(u, sites)).collect())
            .collect();
        // Finite on the network's side but not in natural space: a bijection overflowed.
        if let Some(k) = draws.iter().position(|set| set.iter().flatten().any(|v| !v.is_finite())) {
            return Err(Error::Invalid(format!(
                "posterior draws of data set {k} overflow when mapped back to the parameters' \
                 natural space: the network extrapolates far beyond the prior"
            )));
        }
        Ok(draws)
    }

    /// Posterior factorisation: every row's locals, site by site, from the local network given
    /// the row's globals (`[data sets · n · globals]`, unconstrained) and the site's
    /// observation. Returns the full unconstrained rows. Data set `k`'s locals take the noise of
    /// [`Stream::LocalDraws`] under `seeds[k]`, so they too depend on no other data set.
    fn add_locals(
        &self, local: &mut Network, task: &dyn HierarchicalModel, observations: &[Observed],
        globals: &[f64], n: usize, seeds: &[u64],
    ) -> Result<Vec<f64>> {
        let sites = observations[0].sites;
        let (g, l) = (task.global_dim(), task.local_dim());
        let (conds, inputs) = local_conditions(local, task, observations, globals, n)?;
        let runs: Vec<NoiseRun> = seeds
            .iter()
            .map(|&seed| NoiseRun { seed: Stream::LocalDraws.seed(seed, 0), rows: n * sites })
            .collect();
        let layout = local.config.layout.clone();
        let (z, _) = local.sample(
            &self.device,
            &layout,
            &conds,
            inputs.as_deref(),
            None,
            &runs,
            self.solver,
            self.chunk,
            self.precision,
            &super::Quiet,
        )?;
        check_finite(&z, n * sites * l, &vec![0.0; observations.len()])?;
        let locals = invert(local, &layout, &z)?;
        let mut out = Vec::with_capacity(globals.len() + locals.len());
        for (row, site_locals) in globals.chunks(g).zip(locals.chunks(sites * l)) {
            out.extend_from_slice(row);
            out.extend_from_slice(site_locals);
        }
        Ok(out)
    }

    /// The posterior's log density ln q(θ | obs) at each natural-space parameter vector of
    /// `params` (parameters outside the prior's support get −∞), by integrating the flow back
    /// to noise with this sampler's solver ([`crate::model::density`]), then through the
    /// standardisation and the bijections' Jacobians.
    pub fn log_prob(
        &self, posterior: &mut Posterior, task: &dyn HierarchicalModel, obs: &Observed,
        params: &[Vec<f64>], divergence: Divergence, progress: &dyn Progress,
    ) -> Result<Vec<f64>> {
        let sets = std::slice::from_ref(obs);
        let all =
            self.log_probs(posterior, task, sets, &[params.to_vec()], divergence, progress)?;
        Ok(all.into_iter().next().unwrap_or_default())
    }

    /// [`Sampler::log_prob`] for many data sets of one site count at once: `params[k]` holds
    /// data set `k`'s parameter vectors, the same number for each.
    pub fn log_probs(
        &self, posterior: &mut Posterior, task: &dyn HierarchicalModel, observations: &[Observed],
        params: &[Vec<Vec<f64>>], divergence: Divergence, progress: &dyn Progress,
    ) -> Result<Vec<Vec<f64>>> {
        let n = params.first().map_or(0, Vec::len);
        check_samples(n)?;
        let sites = observations.first().map_or(0, |o| o.sites);
        if params.len() != observations.len()
            || params.iter().any(|p| p.len() != n)
            || observations.iter().any(|o| o.sites != sites)
        {
            return Err(Error::Shape(format!(
                "log densities need as many parameter sets as data sets ({} and {}), each of \
                 the same size, for data sets of one site count",
                params.len(),
                observations.len()
            )));
        }
        let dim = task.param_dim(sites);
        if let Some(p) = params.iter().flatten().find(|p| p.len() != dim) {
            return Err(Error::Shape(format!(
                "a parameter vector has {} values; {sites} sites of task `{}` have {dim}",
                p.len(),
                task.name()
            )));
        }
        let Prepared { layout, conds, inputs, masks, .. } =
            Self::prepare(&posterior.net, task, observations, n, progress)?;
        // The network's own targets: every parameter, or pf's globals.
        let d = layout.target.len();
        let unconstrained: Vec<Option<Vec<f64>>> = params
            .iter()
            .flatten()
            .map(|p| {
                Some(task.to_unconstrained(p, sites)).filter(|u| u.iter().all(|v| v.is_finite()))
            })
            .collect();
        let inside: Vec<bool> = unconstrained.iter().map(Option::is_some).collect();
        // Rows outside the support are integrated like any other, at zero, their result
        // discarded.
        let u_all: Vec<f64> =
            unconstrained.into_iter().flat_map(|u| u.unwrap_or_else(|| vec![0.0; dim])).collect();
        let mut z = Vec::with_capacity(params.len() * n * d);
        for u in u_all.chunks(dim) {
            z.extend(posterior.net.config.standardizer.apply(&layout.target, &u[..d])?);
        }
        let log_std = posterior.net.config.standardizer.log_std(&layout.target)?;
        // With scaled locals the flow's density is that of z = (η − m)/s: ln q(η) adds −Σ ln s.
        let log_scales = match &posterior.net.config.local_scaling {
            Some(scaling) => {
                let rows = cond_rows(&layout, &conds, &inputs, &masks);
                scaling.whiten(rows, &mut z)?
            }
            None => vec![0.0; z.len() / d.max(1)],
        };
        let mut lq: Vec<f64> = posterior
            .net
            .log_density(
                &self.device,
                &layout,
                &conds,
                inputs.as_deref(),
                masks.as_deref(),
                &z,
                n,
                self.solver,
                divergence,
                self.chunk,
                progress,
            )?
            .into_iter()
            .zip(&log_scales)
            .map(|(l, s)| l - log_std - s)
            .collect();
        if let Some(local) = posterior.local.as_mut() {
            let local_lq =
                self.local_log_density(local, task, observations, &u_all, n, divergence)?;
            for (row, sites_lq) in lq.iter_mut().zip(local_lq.chunks(sites)) {
                *row += sites_lq.iter().sum::<f64>();
            }
        }
        let out: Vec<f64> = lq
            .iter()
            .zip(params.iter().flatten())
            .zip(&inside)
            .map(
                |((&l, p), &ok)| {
                    if ok {
                        l + task.unconstrained_log_det(p, sites)
                    } else {
                        f64::NEG_INFINITY
                    }
                },
            )
            .collect();
        if let Some(i) = out.iter().position(|v| v.is_nan() || *v == f64::INFINITY) {
            return Err(Error::Invalid(format!(
                "the log density of parameter vector {} of data set {} is {}: the flow's \
                 integration diverged there (try a fixed-step solver with more steps)",
                i % n,
                i / n,
                out[i]
            )));
        }
        Ok(out.chunks(n).map(<[f64]>::to_vec).collect())
    }

    /// Posterior factorisation: ln q(η_s | θ_g, y_s) of every site of every full unconstrained
    /// row of `rows` (`[data sets · n · dim]`), in unconstrained space, row-major by site.
    fn local_log_density(
        &self, local: &mut Network, task: &dyn HierarchicalModel, observations: &[Observed],
        rows: &[f64], n: usize, divergence: Divergence,
    ) -> Result<Vec<f64>> {
        let sites = observations[0].sites;
        let (g, l) = (task.global_dim(), task.local_dim());
        let dim = task.param_dim(sites);
        let globals: Vec<f64> = rows.chunks(dim).flat_map(|u| u[..g].to_vec()).collect();
        let (conds, inputs) = local_conditions(local, task, observations, &globals, n)?;
        let layout = local.config.layout.clone();
        let mut z = Vec::with_capacity(rows.len() - globals.len());
        for site in rows.chunks(dim).flat_map(|u| u[g..].chunks(l)) {
            z.extend(local.config.standardizer.apply(&layout.target, site)?);
        }
        let log_std = local.config.standardizer.log_std(&layout.target)?;
        let lq = local.log_density(
            &self.device,
            &layout,
            &conds,
            inputs.as_deref(),
            None,
            &z,
            n * sites,
            self.solver,
            divergence,
            self.chunk,
            &super::Quiet,
        )?;
        Ok(lq.into_iter().map(|v| v - log_std).collect())
    }
}

/// Standardised conditions of a batch of data sets that share a site count.
struct Prepared {
    layout: Layout,
    conds: Vec<f32>,
    inputs: Option<Vec<f32>>,
    masks: Option<Vec<f32>>,
    farthest: Vec<f64>,
}

/// The prepared conditions of a batch as the rows the local scaling reads.
fn cond_rows<'a>(
    layout: &Layout, conds: &'a [f32], inputs: &'a Option<Vec<f32>>, masks: &'a Option<Vec<f32>>,
) -> CondRows<'a> {
    CondRows {
        conds,
        inputs: inputs.as_deref(),
        masks: masks.as_deref(),
        n_cond: layout.cond.len(),
    }
}

/// Refuses non-finite draws, naming the data set (of `per_set` values each) and, when the
/// observation lies far from the training data (`farthest`, standardised), that cause.
fn check_finite(z: &[f32], per_set: usize, farthest: &[f64]) -> Result<()> {
    let Some(bad) = z.iter().position(|v| !v.is_finite()) else {
        return Ok(());
    };
    let k = bad / per_set.max(1);
    let far = farthest.get(k).copied().unwrap_or(0.0);
    let cause = if far > FAR_OUTSIDE || !far.is_finite() {
        format!(
            "the observation lies {far:.3e} standard deviations from the training data, far \
             outside what the prior predicts"
        )
    } else {
        "the network's weights or the solver produced them (a corrupt checkpoint?)".into()
    };
    let count = z[k * per_set..(k + 1) * per_set].iter().filter(|v| !v.is_finite()).count();
    Err(Error::Invalid(format!(
        "{count} of the {per_set} posterior values of data set {k} are not finite: {cause}"
    )))
}

/// Standardised target rows of `net` in `layout` mapped back to unconstrained values.
fn invert(net: &Network, layout: &Layout, z: &[f32]) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(z.len());
    for row in z.chunks(layout.target.len().max(1)) {
        out.extend(net.config.standardizer.invert(&layout.target, row)?);
    }
    Ok(out)
}

/// The local network's standardised conditions (and inputs) for every site of every row:
/// row `i` of data set `k` takes the unconstrained globals `globals[(k·n + i)·g ..]` and, for
/// each site in order, that site's observation. Data sets must observe every value of every site.
fn local_conditions(
    local: &Network, task: &dyn HierarchicalModel, observations: &[Observed], globals: &[f64],
    n: usize,
) -> Result<(Vec<f32>, Option<Vec<f32>>)> {
    let (g, od, id) = (task.global_dim(), task.obs_dim(), task.functional_input_dim());
    let cond_tokens = &local.config.layout.cond;
    let (mut conds, mut inputs) = (Vec::new(), Vec::new());
    let mut rows = globals.chunks(g);
    for obs in observations {
        if obs.counts.is_some() {
            return Err(Error::Invalid(
                "posterior factorisation's networks take data sets whose sites hold every \
                 observation; for ragged data sets train with --method lf --ragged"
                    .into(),
            ));
        }
        let values = task.observations_to_network(&obs.values);
        let site_inputs = match (&obs.inputs, id > 0) {
            (Some(x), true) => Some(local.standardize_inputs(x)?),
            _ => None,
        };
        for _ in 0..n {
            let row = rows.next().ok_or_else(|| Error::Shape("too few rows of globals".into()))?;
            for s in 0..obs.sites {
                let cond: Vec<f64> =
                    row.iter().chain(&values[s * od..(s + 1) * od]).copied().collect();
                conds.extend(local.config.standardizer.apply(cond_tokens, &cond)?);
                if let Some(x) = &site_inputs {
                    inputs.extend_from_slice(&x[s * od * id..(s + 1) * od * id]);
                }
            }
        }
    }
    Ok((conds, (id > 0).then_some(inputs)))
}
