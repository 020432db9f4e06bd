//! The likelihood-factorisation pipeline: single-site simulations → a flow-matching likelihood
//! surrogate q(y_s | θ_g, η_s) → synthetic S-site sets (prior draws + surrogate samples) → the
//! posterior network. Synthetic sets come from one fixed pool (the reference's behaviour) or,
//! with `fresh_sets`, are drawn anew every epoch. With `rounds` > 1 (sequential LF) each round
//! after the first simulates at a proposal drawn from the posterior at the observation
//! ([`super::proposal`]) and trains both networks further on all simulations so far.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rayon::prelude::*;

use super::network::{new_network, to_sets, Network, Role, Rows};
use super::progress::Timer;
use super::proposal::{truncated_sir, Proposal, RoundReport, ESTIMATE_DRAWS};
use super::resume::Checkpoints;
use super::sampler::Sampler;
use super::seeds::Stream;
use super::sets::{all_rows, FreshSets, InputSource, SetRows};
use super::train::{FixedSets, Sets, TrainConfig, TrainReport};
use super::{
    fit_posterior, new_posterior, scale_locals, Method, PipelineReport, Progress, RunConfig,
    Trained,
};
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

/// `n` single-site simulations, their parameters drawn from the prior or, given `params`
/// (`[globals, locals]`, natural, one vector per simulation), taken from there.
fn simulate_single_sites(
    task: &dyn HierarchicalModel, n: usize, inputs: &InputSource, seed: u64,
    params: Option<&[Vec<f64>]>,
) -> Result<SingleSites> {
    let has_inputs = task.functional_input_dim() > 0;
    let sims = match task.batch_simulator() {
        Some(sim) => simulate_batched(task, sim, n, inputs, seed, params)?,
        None => simulate_each(task, n, inputs, seed, params)?,
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
    params: Option<&[Vec<f64>]>,
) -> Result<Vec<Option<Simulation>>> {
    let has_inputs = task.functional_input_dim() > 0;
    (0..n)
        .into_par_iter()
        .map(|i| {
            let mut rng = StdRng::seed_from_u64(Stream::SingleSites.seed(seed, i as u64));
            let (g, l) = match params {
                Some(p) => (p[i][..task.global_dim()].to_vec(), p[i][task.global_dim()..].to_vec()),
                None => {
                    let g = task.sample_globals(&mut rng);
                    let l = task.sample_locals(&g, &mut rng);
                    (g, l)
                }
            };
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
    seed: u64, params: Option<&[Vec<f64>]>,
) -> Result<Vec<Option<Simulation>>> {
    let mut rng = StdRng::seed_from_u64(Stream::SingleSites.seed(seed, 0));
    let g = task.global_dim();
    let (globals, locals): (Vec<f64>, Vec<f64>) = match params {
        Some(p) => (
            p.iter().flat_map(|v| v[..g].to_vec()).collect(),
            p.iter().flat_map(|v| v[g..].to_vec()).collect(),
        ),
        None => {
            let globals: Vec<f64> = (0..n).flat_map(|_| task.sample_globals(&mut rng)).collect();
            let locals = task.sample_locals_batch(&globals, n, &mut rng);
            (globals, locals)
        }
    };
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

/// The simulations of all rounds so far, each round split into training and validation
/// parts alike.
#[derive(Default)]
struct Pool {
    train: Vec<SingleSites>,
    val: Vec<SingleSites>,
}

impl Pool {
    /// Adds a round's simulations (the first `n_train` for training).
    fn add(&mut self, sims: SingleSites, n_train: usize, task: &dyn HierarchicalModel) {
        let (pd, od) = (task.global_dim() + task.local_dim(), task.obs_dim());
        let k = od * task.functional_input_dim();
        let split =
            |v: &[f64], per: usize| (v[..n_train * per].to_vec(), v[n_train * per..].to_vec());
        let (p0, p1) = split(&sims.params, pd);
        let (o0, o1) = split(&sims.obs, od);
        let (x0, x1) = match &sims.inputs {
            Some(x) => {
                let (a, b) = split(x, k);
                (Some(a), Some(b))
            }
            None => (None, None),
        };
        self.train.push(SingleSites { params: p0, obs: o0, inputs: x0, dropped: 0 });
        self.val.push(SingleSites { params: p1, obs: o1, inputs: x1, dropped: 0 });
    }

    /// The globals of the synthetic sets, one per simulation of the pool (training, then
    /// validation): those of the first round's simulations, which come from the prior, and
    /// fresh prior draws for each later round's. A later round simulates at the proposal, and
    /// its globals would make the posterior learn the proposal as its prior; the synthetic sets
    /// cost no simulations, so they keep the prior's globals and the proposal only decides
    /// where the surrogate learns. `train_sets` (`--synthetic-sets`) sizes the training pool:
    /// past the simulations it takes more prior draws, short of them the first ones only.
    fn synthetic_globals(
        &self, task: &dyn HierarchicalModel, seed: u64, train_sets: Option<usize>,
    ) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let g = task.global_dim();
        let pd = g + task.local_dim();
        let globals = |parts: &[SingleSites], part: u64| -> Vec<Vec<f64>> {
            let mut out: Vec<Vec<f64>> =
                parts[0].params.chunks(pd).map(|p| p[..g].to_vec()).collect();
            for (round, sims) in parts.iter().enumerate().skip(1) {
                let index = 2 * round as u64 + part;
                let mut rng = StdRng::seed_from_u64(Stream::RoundPriorGlobals.seed(seed, index));
                out.extend((0..sims.params.len() / pd).map(|_| task.sample_globals(&mut rng)));
            }
            out
        };
        let mut train = globals(&self.train, 0);
        if let Some(n) = train_sets {
            let mut rng = StdRng::seed_from_u64(Stream::PoolPriorGlobals.seed(seed, 0));
            let more = n.saturating_sub(train.len());
            train.extend((0..more).map(|_| task.sample_globals(&mut rng)));
            train.truncate(n);
        }
        (train, globals(&self.val, 1))
    }

    /// The training and the validation simulations of every round, concatenated.
    fn all(&self) -> (SingleSites, SingleSites) {
        let cat = |parts: &[SingleSites]| SingleSites {
            params: parts.iter().flat_map(|s| s.params.clone()).collect(),
            obs: parts.iter().flat_map(|s| s.obs.clone()).collect(),
            inputs: parts[0]
                .inputs
                .as_ref()
                .map(|_| parts.iter().flat_map(|s| s.inputs.clone().unwrap_or_default()).collect()),
            dropped: 0,
        };
        (cat(&self.train), cat(&self.val))
    }
}

/// The surrogate's rows of simulations: the unconstrained site parameters as conditions, the
/// observation (at the site's functional inputs) as targets.
fn surrogate_rows(task: &dyn HierarchicalModel, sims: &SingleSites) -> (Vec<f64>, Vec<f64>) {
    let site_bij = task.parameter_bijections(1);
    let unconstrained = sims
        .params
        .chunks(site_bij.len())
        .flat_map(|p| p.iter().zip(&site_bij).map(|(&v, b)| b.forward(v)))
        .collect();
    (unconstrained, sims.obs.clone())
}

/// An effective sample size of the proposal's weights below which a round warns.
const LOW_ESS: f64 = 10.0;

/// Simulations per round: the budget in equal shares, the first rounds one more each where
/// it does not divide.
fn round_budgets(budget: usize, rounds: usize) -> Vec<usize> {
    let rounds = rounds.max(1);
    (0..rounds).map(|r| budget / rounds + usize::from(r < budget % rounds)).collect()
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
    let sequential = cfg.rounds > 1;
    // A sequential run's networks change every round: a resumed one starts again.
    let restart = RunConfig {
        checkpoints: Checkpoints { resume: false, ..cfg.checkpoints.clone() },
        ..cfg.clone()
    };
    let cfg = if sequential { &restart } else { cfg };
    let observation = match (&cfg.observation, sequential) {
        (None, true) => {
            return Err(Error::Invalid(
                "--rounds draws its proposals at the observation, and none was given".into(),
            ))
        }
        (obs, _) => obs.as_ref(),
    };
    let mut report = PipelineReport::default();
    let mut timer = Timer::start();
    let mut pool = Pool::default();
    let mut surrogate: Option<Network> = None;
    let mut posterior: Option<Network> = None;
    let mut proposal: Option<Proposal> = None;
    let budgets = round_budgets(cfg.budget, cfg.rounds);
    for (round, &n_round) in budgets.iter().enumerate() {
        progress.phase("simulate");
        let seed = match round {
            0 => cfg.seed,
            r => Stream::RoundSites.seed(cfg.seed, r as u64),
        };
        let given = proposal.as_ref().map(|p| p.sites.as_slice());
        let sims = simulate_single_sites(task, n_round, &cfg.inputs, seed, given)?;
        report.simulator_calls += n_round;
        report.dropped_simulations += sims.dropped;
        let pd = task.global_dim() + task.local_dim();
        let n = sims.params.len() / pd;
        if n < 2 {
            return Err(Error::Invalid(format!(
                "only {n} of {n_round} simulations were finite; raise the simulation budget"
            )));
        }
        let n_val = cfg.validation_count(n);
        pool.add(sims, n - n_val, task);
        if sequential {
            report.rounds.push(RoundReport {
                round,
                simulations: n_round,
                source: if round == 0 { "prior".into() } else { format!("round {}", round - 1) },
                ess: proposal.as_ref().map(|p| p.ess),
            });
        }
        timer.lap("simulate");
        let (train_sims, val_sims) = pool.all();
        let (net, s_report) =
            fit_surrogate(dev, task, cfg, surrogate.take(), &train_sims, &val_sims, progress)?;
        surrogate = Some(net);
        report.surrogate = Some(s_report);
        report.training_sets = train_sims.params.len() / pd;
        report.validation_sets = val_sims.params.len() / pd;
        report.synthetic_sets = Some(cfg.pool_sets(report.training_sets));
        timer.lap("surrogate_training");
        let net = surrogate.as_mut().expect("trained above");
        let (p, p_report) = fit_on_synthetic_sets(
            dev,
            task,
            cfg,
            net,
            posterior.take(),
            &train_sims,
            pool.synthetic_globals(task, cfg.seed, report.synthetic_sets),
            &mut timer,
            progress,
        )?;
        report.posterior = Some(p_report);
        // joint: the surrogate is the posterior.
        let p = match p {
            Some(p) => p,
            None => surrogate.take().expect("trained above"),
        };
        if round + 1 < budgets.len() {
            progress.phase("proposal");
            let obs = observation.expect("checked above");
            let next = budgets[round + 1];
            let (p, drawn) = truncated_sir(dev, task, p, obs, next, cfg.seed, round + 1, progress);
            posterior = Some(p);
            let drawn = drawn?;
            if drawn.ess < LOW_ESS {
                progress.warning(&format!(
                    "round {}: the proposal's importance weights have an effective sample size \
                     of {:.1} of {ESTIMATE_DRAWS} draws (the posterior is far narrower than the \
                     prior), so its {next} simulations repeat a few parameter vectors",
                    round + 1,
                    drawn.ess
                ));
            }
            proposal = Some(drawn);
            timer.lap("proposal");
        } else {
            posterior = Some(p);
        }
    }
    report.phases = timer.into_phases();
    let posterior = posterior.expect("one round at least").into();
    Ok(Trained { posterior, surrogate, report })
}

/// Trains the surrogate (a new one, or `surrogate` further) on the pool's single sites, or
/// loads it when the run resumes; saves it as its phase ends.
fn fit_surrogate(
    dev: &Device, task: &dyn HierarchicalModel, cfg: &RunConfig, surrogate: Option<Network>,
    train_sims: &SingleSites, val_sims: &SingleSites, progress: &dyn Progress,
) -> Result<(Network, TrainReport)> {
    progress.phase("surrogate");
    if let Some(saved) = cfg.checkpoints.load(dev, "surrogate")? {
        return Ok(saved);
    }
    let (c, t) = surrogate_rows(task, train_sims);
    let (vc, vt) = surrogate_rows(task, val_sims);
    let train = Rows::new(1, &c, &t, train_sims.inputs.as_deref());
    let validation = Rows::new(1, &vc, &vt, val_sims.inputs.as_deref());
    // joint: one network of the posterior's layout, trained first as the surrogate.
    let (role, sites) =
        if cfg.method == Method::Joint { (Role::Joint, cfg.sites) } else { (Role::Surrogate, 1) };
    let mut net = match surrogate {
        Some(net) => net,
        None => new_network(
            dev,
            task,
            role,
            sites,
            &[train],
            &cfg.architecture,
            Stream::SurrogateInit.seed(cfg.seed, 0),
        )?,
    };
    let scaling_fit = cfg.surrogate_scaling_fit().filter(|_| role == Role::Surrogate);
    let s_cfg = TrainConfig {
        seed: Stream::SurrogateTraining.seed(cfg.seed, 0),
        epoch_file: cfg.checkpoints.epoch_file("surrogate"),
        ..cfg.surrogate_train.clone()
    };
    let r = net.as_surrogate(task, |n| {
        let (mut train, mut validation) = (to_sets(n, train)?, to_sets(n, validation)?);
        let scaling = match scaling_fit {
            Some(choice) => n.fit_scaling(&mut train, &mut validation, choice)?,
            None => None,
        };
        let mut s_data = FixedSets { train: vec![train], validation: vec![validation] };
        n.fit(dev, &mut s_data, &s_cfg, progress).map(|r| TrainReport { scaling, ..r })
    })?;
    cfg.checkpoints.save("surrogate", &net, &r)?;
    Ok((net, r))
}

/// Synthetic S-site sets (the given prior globals, one per simulation, fresh locals from the
/// prior, surrogate observations) and the posterior trained on them: a new posterior or `posterior` further.
/// joint: the surrogate itself goes on as the posterior, with its single sites still among
/// its training sets so that it keeps both roles, and `None` is returned for it. Loads the
/// posterior when the run resumes.
#[allow(clippy::too_many_arguments)]
fn fit_on_synthetic_sets(
    dev: &Device, task: &dyn HierarchicalModel, cfg: &RunConfig, surrogate: &mut Network,
    posterior: Option<Network>, train_sims: &SingleSites,
    (train_g, val_g): (Vec<Vec<f64>>, Vec<Vec<f64>>), timer: &mut Timer, progress: &dyn Progress,
) -> Result<(Option<Network>, TrainReport)> {
    let joint = cfg.method == Method::Joint;
    if let Some((saved, r)) = cfg.checkpoints.load(dev, "posterior")? {
        return Ok((Some(saved), r));
    }
    progress.phase("synthetic sets");
    let (n_train, n_val) = (train_g.len(), val_g.len());
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
            fresh.synthesize(net, &train_g, block, progress)?,
            fresh.synthesize(net, &val_g, val_block, progress)?,
        ))
    })?;
    timer.lap("synthetic_sets");

    progress.phase("posterior");
    let to_buckets = |net: &Network, sets: &[SetRows]| -> Result<Vec<Sets>> {
        sets.iter().map(|r| to_sets(net, r.rows())).collect()
    };
    if joint {
        let (c, t) = surrogate_rows(task, train_sims);
        let own = Rows::new(1, &c, &t, train_sims.inputs.as_deref());
        let mut train_buckets = to_buckets(surrogate, &train_sets)?;
        train_buckets.push(surrogate.as_surrogate(task, |n| to_sets(n, own))?);
        let validation = to_buckets(surrogate, &val_sets)?;
        let mut data = FixedSets { train: train_buckets, validation };
        let r = fit_posterior(dev, surrogate, &mut data, cfg, progress)?;
        timer.lap("posterior_training");
        return Ok((None, r));
    }
    let mut posterior = match posterior {
        Some(net) => net,
        None => new_posterior(dev, task, cfg, Role::Posterior, &all_rows(&train_sets))?,
    };
    let (train_rows, val_rows) = (all_rows(&train_sets), all_rows(&val_sets));
    let scaling = scale_locals(&mut posterior, cfg, &train_rows, &val_rows, progress)?;
    let validation = to_buckets(&posterior, &val_sets)?;
    let r = if cfg.fresh_sets {
        let mut source =
            fresh.into_source(surrogate, &posterior, n_train, block, validation, progress);
        fit_posterior(dev, &mut posterior, &mut source, cfg, progress)?
    } else {
        let mut data = FixedSets { train: to_buckets(&posterior, &train_sets)?, validation };
        fit_posterior(dev, &mut posterior, &mut data, cfg, progress)?
    };
    timer.lap("posterior_training");
    Ok((Some(posterior), TrainReport { scaling: scaling.or(r.scaling.clone()), ..r }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tasks::task_by_name;

    /// A round after the first simulated at its proposal (here every global is 50, far out in
    /// the prior's tail); the synthetic sets take the first round's globals as simulated and
    /// prior draws in place of the later round's, as many as it has simulations.
    #[test]
    fn synthetic_sets_take_prior_globals_for_proposal_rounds() {
        let task = task_by_name("hier-gaussian-linear").unwrap();
        let sites = |params: Vec<f64>| SingleSites {
            obs: vec![0.0; params.len() / 2],
            params,
            inputs: None,
            dropped: 0,
        };
        let mut pool = Pool::default();
        let first: Vec<f64> = (0..10).flat_map(|i| [0.1 * i as f64 + 0.05, 0.0]).collect();
        pool.add(sites(first.clone()), 8, &*task);
        pool.add(sites([50.0, 0.0].repeat(30)), 24, &*task);
        let (train, val) = pool.synthetic_globals(&*task, 3, None);
        assert_eq!((train.len(), val.len()), (8 + 24, 2 + 6));
        let simulated: Vec<Vec<f64>> = first.chunks(2).map(|p| vec![p[0]]).collect();
        assert_eq!(train[..8], simulated[..8]);
        assert_eq!(val[..2], simulated[8..]);
        for g in train[8..].iter().chain(&val[2..]) {
            // σ ~ HalfNormal(1): positive, and nowhere near the proposal's 50.
            assert!(g[0] > 0.0 && g[0] < 6.0, "{g:?}");
        }
        // Seeded: the same pool gives the same draws.
        assert_eq!(pool.synthetic_globals(&*task, 3, None), (train.clone(), val.clone()));

        // --synthetic-sets: a larger pool goes on with other prior draws, a smaller one keeps
        // the first globals; validation never changes.
        let (more, more_val) = pool.synthetic_globals(&*task, 3, Some(50));
        assert_eq!((more.len(), &more[..32], &more_val), (50, &train[..], &val));
        assert!(more[32..].iter().all(|g| g[0] > 0.0 && g[0] < 6.0 && !train.contains(g)));
        let (fewer, _) = pool.synthetic_globals(&*task, 3, Some(5));
        assert_eq!(fewer, train[..5]);
    }
}
