//! The likelihood-factorisation pipeline: single-site simulations → a flow-matching likelihood
//! surrogate q(y_s | θ_g, η_s) → synthetic S-site sets (prior draws + surrogate samples) → the
//! posterior network. Synthetic sets come from one fixed pool (the reference's behaviour) or,
//! with `fresh_sets`, are drawn anew every epoch.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::network::{new_network, to_sets, Network, Role, Rows};
use super::progress::Timer;
use super::sampler::Sampler;
use super::seeds::Stream;
use super::sets::{all_rows, FreshSets, InputSource, SetRows};
use super::train::{FixedSets, Sets, TrainConfig};
use super::{fit_posterior, new_posterior, Method, PipelineReport, Progress, RunConfig, Trained};
use crate::error::{Error, Result};
use crate::tasks::{simulate_batch, BatchSimulator, HierarchicalModel, SiteBatch};
use crate::Device;

/// Finite single-site simulations: `[globals, locals]` (natural), the observations (network
/// space), the functional inputs the simulator observed at, and how many were dropped.
struct SingleSites {
    params: Vec<f64>,
    obs: Vec<f64>,
    inputs: Option<Vec<f64>>,
    dropped: usize,
}

type Simulation = (Vec<f64>, Vec<f64>, Option<Vec<f64>>);

fn simulate_single_sites(
    task: &dyn HierarchicalModel, n: usize, inputs: &InputSource, seed: u64,
) -> Result<SingleSites> {
    let has_inputs = task.functional_input_dim() > 0;
    let sims = match task.batch_simulator() {
        Some(sim) => simulate_batched(task, sim, n, inputs, seed)?,
        None => simulate_each(task, n, inputs, seed)?,
    };
    let dropped = sims.iter().filter(|s| s.is_none()).count();
    let mut out = SingleSites {
        params: Vec::new(),
        obs: Vec::new(),
        inputs: has_inputs.then(Vec::new),
        dropped,
    };
    for (p, y, x) in sims.into_iter().flatten() {
        out.params.extend(p);
        out.obs.extend(y);
        if let (Some(all), Some(x)) = (out.inputs.as_mut(), x) {
            all.extend(x);
        }
    }
    Ok(out)
}

/// A finite simulation in network space, `None` for one that is not.
fn keep_finite(task: &dyn HierarchicalModel, sim: Simulation) -> Option<Simulation> {
    let (p, y, x) = sim;
    let y = task.observations_to_network(&y);
    y.iter().all(|v| v.is_finite()).then_some((p, y, x))
}

/// Site by site, in parallel, row i from its own generator.
fn simulate_each(
    task: &dyn HierarchicalModel, n: usize, inputs: &InputSource, seed: u64,
) -> Result<Vec<Option<Simulation>>> {
    let has_inputs = task.functional_input_dim() > 0;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(Stream::SingleSites.seed(seed, i as u64));
            let g = task.sample_globals(&mut rng);
            let l = task.sample_locals(&g, &mut rng);
            let inputs = if has_inputs { Some(inputs.site(task, 0, 1, &mut rng)?) } else { None };
            let y = task.simulate_site(&g, &l, inputs.as_deref(), &mut rng);
            Ok(keep_finite(task, ([g, l].concat(), y, inputs)))
        })
        .collect()
}

/// All sites through the model's batch simulator: the priors drawn in one pass from one
/// generator, then one simulator call (in its chunks).
fn simulate_batched(
    task: &dyn HierarchicalModel, sim: &dyn BatchSimulator, n: usize, inputs: &InputSource,
    seed: u64,
) -> Result<Vec<Option<Simulation>>> {
    let mut rng = StdRng::seed_from_u64(Stream::SingleSites.seed(seed, 0));
    let globals: Vec<f64> = (0..n).flat_map(|_| task.sample_globals(&mut rng)).collect();
    let locals = task.sample_locals_batch(&globals, n, &mut rng);
    task.deferred_error()?;
    let x = if task.functional_input_dim() > 0 {
        Some((0..n).map(|_| inputs.site(task, 0, 1, &mut rng)).collect::<Result<Vec<_>>>()?)
    } else {
        None
    };
    let flat = x.as_ref().map(|x| x.concat());
    let batch = SiteBatch { rows: n, globals: &globals, locals: &locals, inputs: flat.as_deref() };
    let y = simulate_batch(task, sim, &batch, rng.next_u64())?;
    let (gd, ld, od) = (task.global_dim(), task.local_dim(), task.obs_dim());
    Ok((0..n)
        .map(|i| {
            let p = [&globals[i * gd..(i + 1) * gd], &locals[i * ld..(i + 1) * ld]].concat();
            let xi = x.as_ref().map(|x| x[i].clone());
            keep_finite(task, (p, y[i * od..(i + 1) * od].to_vec(), xi))
        })
        .collect())
}

pub(super) fn run(
    dev: &Device, task: &dyn HierarchicalModel, cfg: &RunConfig, progress: &dyn Progress,
) -> Result<Trained> {
    if cfg.ragged && !task.ragged_observations() {
        return Err(Error::Invalid(format!(
            "--ragged: task `{}` observes every value at every site; only function-valued tasks \
             take sites observed at fewer inputs",
            task.name()
        )));
    }
    let mut report = PipelineReport::default();
    let mut timer = Timer::start();
    progress.phase("simulate");
    let sims = simulate_single_sites(task, cfg.budget, &cfg.inputs, cfg.seed)?;
    report.simulator_calls = cfg.budget;
    report.dropped_simulations = sims.dropped;
    let (pd, od) = (task.global_dim() + task.local_dim(), task.obs_dim());
    let n = sims.params.len() / pd;
    if n < 2 {
        return Err(Error::Invalid(format!(
            "only {n} of {} simulations were finite; raise the simulation budget",
            cfg.budget
        )));
    }
    let n_val = cfg.validation_count(n);
    let n_train = n - n_val;
    timer.lap("simulate");

    // The surrogate: conditions are the unconstrained site parameters, targets the observation
    // at the site's functional inputs.
    progress.phase("surrogate");
    let site_bij: Vec<_> = task.parameter_bijections(1);
    let unconstrained: Vec<f64> = sims
        .params
        .chunks(pd)
        .flat_map(|p| p.iter().zip(&site_bij).map(|(&v, b)| b.forward(v)))
        .collect();
    let all = Rows::new(1, &unconstrained, &sims.obs, sims.inputs.as_deref());
    let (train, validation) = all.split(n_train, pd, od, od * task.functional_input_dim());
    // joint: one network of the posterior's layout, trained first as the surrogate.
    let joint = cfg.method == Method::Joint;
    let (role, sites) = if joint { (Role::Joint, cfg.sites) } else { (Role::Surrogate, 1) };
    let (mut surrogate, s_report) = match cfg.checkpoints.load(dev, "surrogate")? {
        Some(saved) => saved,
        None => {
            let mut surrogate = new_network(
                dev,
                task,
                role,
                sites,
                &[train],
                &cfg.architecture,
                Stream::SurrogateInit.seed(cfg.seed, 0),
            )?;
            let s_cfg = TrainConfig {
                seed: Stream::SurrogateTraining.seed(cfg.seed, 0),
                epoch_file: cfg.checkpoints.epoch_file("surrogate"),
                ..cfg.surrogate_train.clone()
            };
            let r = surrogate.as_surrogate(task, |net| {
                let mut s_data = FixedSets {
                    train: vec![to_sets(net, train)?],
                    validation: vec![to_sets(net, validation)?],
                };
                net.fit(dev, &mut s_data, &s_cfg, progress)
            })?;
            cfg.checkpoints.save("surrogate", &surrogate, &r)?;
            (surrogate, r)
        }
    };
    report.surrogate = Some(s_report);
    report.training_sets = n_train;
    report.validation_sets = n_val;
    timer.lap("surrogate_training");
    if let Some((posterior, p_report)) = cfg.checkpoints.load(dev, "posterior")? {
        report.posterior = Some(p_report);
        report.phases = timer.into_phases();
        let surrogate = (!joint).then_some(surrogate);
        return Ok(Trained { posterior: posterior.into(), surrogate, report });
    }

    // Synthetic S-site sets: globals of the simulations, fresh locals from the prior, and
    // surrogate observations.
    progress.phase("synthetic sets");
    let globals: Vec<Vec<f64>> =
        sims.params.chunks(pd).map(|p| p[..task.global_dim()].to_vec()).collect();
    let (train_g, val_g) = globals.split_at(n_train);
    let counts = cfg.site_counts();
    let mut fresh = FreshSets::new(
        task,
        counts,
        cfg.inputs.clone(),
        Sampler::new(dev, cfg.surrogate_solver),
        Stream::SyntheticSets.seed(cfg.seed, 0),
    )
    .ragged(cfg.ragged);
    // Training sets come in blocks of one batch per site count; validation sets in blocks
    // that spread them over (up to) ten site counts.
    let (block, val_block) = (cfg.train.batch, n_val.div_ceil(counts.max().min(10)));
    let (train_sets, val_sets) = surrogate.as_surrogate(task, |net| {
        Ok((
            fresh.synthesize(net, train_g, block, progress)?,
            fresh.synthesize(net, val_g, val_block, progress)?,
        ))
    })?;
    timer.lap("synthetic_sets");

    progress.phase("posterior");
    let to_buckets = |net: &Network, sets: &[SetRows]| -> Result<Vec<Sets>> {
        sets.iter().map(|r| to_sets(net, r.rows())).collect()
    };
    if joint {
        // The same network goes on as the posterior, with the surrogate's sets still among
        // its training sets so that it keeps both roles; validation is the posterior's.
        let mut net = surrogate;
        let mut train_buckets = to_buckets(&net, &train_sets)?;
        train_buckets.push(net.as_surrogate(task, |n| to_sets(n, train))?);
        let mut data = FixedSets { train: train_buckets, validation: to_buckets(&net, &val_sets)? };
        report.posterior = Some(fit_posterior(dev, &mut net, &mut data, cfg, progress)?);
        timer.lap("posterior_training");
        report.phases = timer.into_phases();
        return Ok(Trained { posterior: net.into(), surrogate: None, report });
    }
    let mut posterior = new_posterior(dev, task, cfg, Role::Posterior, &all_rows(&train_sets))?;
    let validation = to_buckets(&posterior, &val_sets)?;
    report.posterior = Some(if cfg.fresh_sets {
        let mut source =
            fresh.into_source(&mut surrogate, &posterior, n_train, block, validation, progress);
        fit_posterior(dev, &mut posterior, &mut source, cfg, progress)?
    } else {
        let mut data = FixedSets { train: to_buckets(&posterior, &train_sets)?, validation };
        fit_posterior(dev, &mut posterior, &mut data, cfg, progress)?
    });
    timer.lap("posterior_training");
    report.phases = timer.into_phases();
    Ok(Trained { posterior: posterior.into(), surrogate: Some(surrogate), report })
}
