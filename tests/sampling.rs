//! Sampling many data sets at once: each data set's draws equal those of a call for it alone,
//! whatever the chunking; a posterior trained for several site counts answers each of them and
//! refuses the others. The networks here are untrained: the properties are exact, not
//! statistical.

#[path = "common/mod.rs"]
mod common;

use rand::rngs::StdRng;
use rand::SeedableRng;
use tfmpe::backend::Precision::F32;
use tfmpe::model::density::Divergence;
use tfmpe::model::ode::Solver;
use tfmpe::model::tfmpe::TfmpeConfig;
use tfmpe::sbi::network::CondRows;
use tfmpe::sbi::{new_network, Posterior, Quiet, Role, Rows, Sampler};
use tfmpe::tasks::{simulate_dataset, task_by_name, HierarchicalModel, Observed};
use tfmpe::Device;

const SOLVER: Solver = Solver::Rk4 { steps: 3 };

/// Rows of `n` simulated sets of `sites` sites: observations, unconstrained parameters and
/// inputs.
fn simulated(
    task: &dyn HierarchicalModel, sites: usize, n: usize,
) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let mut rng = StdRng::seed_from_u64(sites as u64);
    let (mut cond, mut target, mut inputs) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..n {
        let d = simulate_dataset(task, sites, &mut rng).unwrap();
        cond.extend(&d.obs);
        target.extend(task.to_unconstrained(&d.params, sites));
        inputs.extend(d.inputs.unwrap_or_default());
    }
    (cond, target, inputs)
}

/// An untrained posterior network for these site counts (one: a fixed-S network).
fn network(dev: &Device, task: &dyn HierarchicalModel, site_counts: &[usize]) -> Posterior {
    let data: Vec<_> = site_counts.iter().map(|&s| (s, simulated(task, s, 20))).collect();
    let has_inputs = task.functional_input_dim() > 0;
    let rows: Vec<Rows> = data
        .iter()
        .map(|(s, (c, t, i))| Rows::new(*s, c, t, has_inputs.then_some(i.as_slice())))
        .collect();
    let arch = TfmpeConfig { width: 16, layers: 1, heads: 2, n_ff: 1, ..Default::default() };
    let max = *site_counts.iter().max().unwrap();
    new_network(dev, task, Role::Posterior, max, &rows, &arch, 5).unwrap().into()
}

fn observed(task: &dyn HierarchicalModel, sites: usize, seed: u64) -> Observed {
    simulate_dataset(task, sites, &mut StdRng::seed_from_u64(seed)).unwrap().observed()
}

#[test]
fn many_data_sets_draw_what_each_draws_alone() {
    let dev = Device::cpu();
    for name in ["hier-brownian", "hier-gaussian"] {
        let task = task_by_name(name).unwrap();
        let mut net = network(&dev, &*task, &[2]);
        let data: Vec<Observed> = (0..3).map(|k| observed(&*task, 2, 10 + k)).collect();
        // 7 draws of 3 parameters each and chunks of 4: chunks straddle data sets, and a
        // data set's noise starts inside a Philox block of four numbers.
        let sampler = Sampler::new(&dev, SOLVER).with_chunk(4);
        let together = sampler.posteriors(&mut net, &*task, &data, 7, 11, &Quiet).unwrap();
        let alone = Sampler::new(&dev, SOLVER);
        for (k, obs) in data.iter().enumerate() {
            let one = alone.posterior(&mut net, &*task, obs, 7, 11, &Quiet).unwrap();
            assert_eq!(together[k], one, "{name}: data set {k}");
        }
        // Different data sets give different draws from the same noise.
        assert_ne!(together[0], together[1], "{name}");
        // Own seeds per data set: each equals a lone call with its seed.
        let seeds = [3, 4, 5];
        let seeded = sampler.posteriors_seeded(&mut net, &*task, &data, 5, &seeds, &Quiet).unwrap();
        for (k, obs) in data.iter().enumerate() {
            let one = alone.posterior(&mut net, &*task, obs, 5, seeds[k], &Quiet).unwrap();
            assert_eq!(seeded[k], one, "{name}: seeded data set {k}");
        }
    }
}

/// An untrained posterior-factorisation pair for sets of `sites` sites: the global network
/// and the local network of one site given the globals.
fn factorised(dev: &Device, task: &dyn HierarchicalModel, sites: usize) -> Posterior {
    let (cond, target, inputs) = simulated(task, sites, 20);
    let (g, l, od) = (task.global_dim(), task.local_dim(), task.obs_dim());
    let x = task.functional_input_dim() > 0;
    let dim = task.param_dim(sites);
    let globals: Vec<f64> = target.chunks(dim).flat_map(|u| u[..g].to_vec()).collect();
    let (mut local_cond, mut local_target) = (Vec::new(), Vec::new());
    for (y, u) in cond.chunks(sites * od).zip(target.chunks(dim)) {
        for s in 0..sites {
            local_cond.extend_from_slice(&u[..g]);
            local_cond.extend_from_slice(&y[s * od..(s + 1) * od]);
            local_target.extend_from_slice(&u[g + s * l..g + (s + 1) * l]);
        }
    }
    let arch = TfmpeConfig { width: 16, layers: 1, heads: 2, n_ff: 1, ..Default::default() };
    let rows = Rows::new(sites, &cond, &globals, x.then_some(inputs.as_slice()));
    let global = new_network(dev, task, Role::Global, sites, &[rows], &arch, 5).unwrap();
    let rows = Rows::new(1, &local_cond, &local_target, x.then_some(inputs.as_slice()));
    let local = new_network(dev, task, Role::Local, 1, &[rows], &arch, 6).unwrap();
    Posterior { net: global, local: Some(local) }
}

#[test]
fn factorised_posteriors_draw_and_score_each_data_set_as_alone() {
    let dev = Device::cpu();
    for name in ["hier-brownian", "hier-gaussian"] {
        let task = task_by_name(name).unwrap();
        let mut pf = factorised(&dev, &*task, 2);
        let data: Vec<Observed> = (0..3).map(|k| observed(&*task, 2, 30 + k)).collect();
        let sampler = Sampler::new(&dev, SOLVER).with_chunk(4);
        let together = sampler.posteriors(&mut pf, &*task, &data, 7, 11, &Quiet).unwrap();
        let seeds = [3, 4, 5];
        let seeded = sampler.posteriors_seeded(&mut pf, &*task, &data, 5, &seeds, &Quiet).unwrap();
        let alone = Sampler::new(&dev, SOLVER);
        for (k, obs) in data.iter().enumerate() {
            let one = alone.posterior(&mut pf, &*task, obs, 7, 11, &Quiet).unwrap();
            assert_eq!(together[k], one, "{name}: data set {k}");
            let one = alone.posterior(&mut pf, &*task, obs, 5, seeds[k], &Quiet).unwrap();
            assert_eq!(seeded[k], one, "{name}: seeded data set {k}");
        }
        // Every draw is a whole parameter vector, and the two sites' locals differ.
        assert!(together.iter().flatten().all(|d| d.len() == task.param_dim(2)));
        assert!(together[0].iter().all(|d| d[1] != d[2]), "{name}");
        let exact = Divergence::Exact;
        let lp = sampler.log_probs(&mut pf, &*task, &data, &together, exact, &Quiet).unwrap();
        for (k, obs) in data.iter().enumerate() {
            let one = alone.log_prob(&mut pf, &*task, obs, &together[k], exact, &Quiet).unwrap();
            for (a, b) in lp[k].iter().zip(&one) {
                assert!(a.is_finite() && (a - b).abs() <= 1e-6 * b.abs(), "{name} {k}: {a} {b}");
            }
        }
    }
    // pf trains on whole sites: a ragged data set is refused, naming the fix.
    let task = task_by_name("hier-brownian").unwrap();
    let mut pf = factorised(&dev, &*task, 2);
    let full = observed(&*task, 2, 3);
    let ragged = Observed {
        sites: 2,
        values: full.values[..9].to_vec(),
        inputs: full.inputs.as_ref().map(|x| x[..9].to_vec()),
        counts: Some(vec![4, 5]),
    };
    let err = Sampler::new(&dev, SOLVER)
        .posterior(&mut pf, &*task, &ragged, 3, 0, &Quiet)
        .unwrap_err()
        .to_string();
    assert!(err.contains("--ragged"), "{err}");
}

#[test]
fn hutchinson_log_densities_depend_neither_on_the_chunking_nor_on_other_data_sets() {
    let dev = Device::cpu();
    let task = task_by_name("hier-gaussian").unwrap();
    let mut net = network(&dev, &*task, &[2]);
    let data: Vec<Observed> = (0..3).map(|k| observed(&*task, 2, 20 + k)).collect();
    let draws =
        Sampler::new(&dev, SOLVER).posteriors(&mut net, &*task, &data, 7, 1, &Quiet).unwrap();
    let hutchinson = Divergence::Hutchinson { probes: 2, seed: 5 };
    // 7 rows of 3 parameters per data set and chunks of 4: chunks straddle data sets.
    let chunked = Sampler::new(&dev, SOLVER).with_chunk(4);
    let together = chunked.log_probs(&mut net, &*task, &data, &draws, hutchinson, &Quiet).unwrap();
    let alone = Sampler::new(&dev, SOLVER);
    for (k, obs) in data.iter().enumerate() {
        let one = alone.log_prob(&mut net, &*task, obs, &draws[k], hutchinson, &Quiet).unwrap();
        // The same probes give the same estimate up to rounding: the backward pass's GEMMs
        // round a chunk of one row (the last here) apart from a chunk of seven, by 1e-8.
        // Other probes would move it by the estimator's spread, of order 1.
        for (a, b) in together[k].iter().zip(&one) {
            assert!((a - b).abs() <= 1e-6 * b.abs(), "data set {k}: {a} against {b}");
        }
    }
    // Other probes give other estimates.
    let other = Divergence::Hutchinson { probes: 2, seed: 6 };
    let moved = alone.log_prob(&mut net, &*task, &data[0], &draws[0], other, &Quiet).unwrap();
    assert_ne!(moved, together[0]);
}

#[test]
fn function_valued_observations_need_their_inputs() {
    let dev = Device::cpu();
    let task = task_by_name("hier-brownian").unwrap();
    let mut net = network(&dev, &*task, &[2]);
    let mut obs = observed(&*task, 2, 1);
    let sampler = Sampler::new(&dev, SOLVER);
    let with = sampler.posterior(&mut net, &*task, &obs, 4, 0, &Quiet).unwrap();
    // Other observation times, same values: the network must see the difference.
    let shifted: Vec<f64> = obs.inputs.as_ref().unwrap().iter().map(|t| t + 1.0).collect();
    let moved = Observed { inputs: Some(shifted), ..obs.clone() };
    assert_ne!(sampler.posterior(&mut net, &*task, &moved, 4, 0, &Quiet).unwrap(), with);
    obs.inputs = None;
    let err = sampler.posterior(&mut net, &*task, &obs, 4, 0, &Quiet).unwrap_err().to_string();
    assert!(err.contains("functional inputs") && err.contains('t'), "{err}");
}

#[test]
fn a_posterior_for_several_site_counts_answers_each_and_no_other() {
    let dev = Device::cpu();
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let mut any = network(&dev, &*task, &[1, 2, 4]);
    assert!(any.config().any_sites && any.config().sites == 4);
    let sampler = Sampler::new(&dev, SOLVER);
    for sites in 1..=4 {
        // Site counts between the trained ones are answered too: their layouts are prefixes.
        let layout = any.net.layout_for(sites).unwrap();
        assert_eq!(layout, tfmpe::model::tokens::Layout::posterior(&*task, sites));
        let draws = sampler.posterior(&mut any, &*task, &observed(&*task, sites, 2), 3, 0, &Quiet);
        assert_eq!(draws.unwrap()[0].len(), 1 + sites);
    }
    for sites in [0, 5] {
        let err = any.net.layout_for(sites).unwrap_err().to_string();
        assert!(err.contains("from 1 to 4"), "{err}");
    }
    let mut fixed = network(&dev, &*task, &[3]);
    assert!(!fixed.config().any_sites);
    let err = sampler
        .posterior(&mut fixed, &*task, &observed(&*task, 2, 2), 3, 0, &Quiet)
        .unwrap_err()
        .to_string();
    assert!(err.contains("3 sites only") && err.contains("--max-sites"), "{err}");
}

/// A ragged data set (a site observed at 3 of its 5 times) is sampled by filling the missing
/// places and masking their tokens out of attention: the draws equal those of a network
/// layout without those tokens at all.
#[test]
fn a_masked_missing_observation_is_the_same_as_an_absent_one() {
    use tfmpe::model::tokens::Layout;
    use tfmpe::sbi::NoiseRun;

    let dev = Device::cpu();
    let task = task_by_name("hier-brownian").unwrap();
    let mut net = network(&dev, &*task, &[2]);
    let full = observed(&*task, 2, 3);
    // Site 0 keeps its first 3 values, site 1 all 5.
    let keep = |i: usize| !(3..5).contains(&i);
    let values: Vec<f64> = (0..10).filter(|&i| keep(i)).map(|i| full.values[i]).collect();
    let inputs: Vec<f64> =
        (0..10).filter(|&i| keep(i)).map(|i| full.inputs.as_ref().unwrap()[i]).collect();
    let ragged = Observed { sites: 2, values, inputs: Some(inputs), counts: Some(vec![3, 5]) };
    let sampler = Sampler::new(&dev, SOLVER);
    let masked = sampler.posterior(&mut net, &*task, &ragged, 6, 9, &Quiet).unwrap();

    let own = net.net.config.layout.clone();
    let cond = own.cond.iter().enumerate().filter(|(i, _)| keep(*i)).map(|(_, t)| *t);
    let layout = Layout { cond: cond.collect(), target: own.target.clone() };
    let z = net.net.config.standardizer.apply(&layout.cond, &ragged.values).unwrap();
    let conds: Vec<f32> = (0..6).flat_map(|_| z.iter().copied()).collect();
    let x = net.net.standardize_inputs(ragged.inputs.as_ref().unwrap()).unwrap();
    let inputs: Vec<f32> = (0..6).flat_map(|_| x.iter().copied()).collect();
    let runs = [NoiseRun { seed: 9, rows: 6 }];
    let (absent, _) = net
        .net
        .sample(&dev, &layout, &conds, Some(&inputs), None, &runs, SOLVER, 1000, F32, &Quiet)
        .unwrap();
    let absent = net.net.unstandardize(&absent, false).unwrap();
    let masked: Vec<f64> = masked.iter().flat_map(|d| task.to_unconstrained(d, 2)).collect();
    let worst = masked.iter().zip(&absent).map(|(a, b)| (a - b).abs()).fold(0.0, f64::max);
    assert!(worst < 1e-5, "masked and absent tokens differ by {worst}");
    // Masking matters: the full observation gives other draws.
    let with_all = sampler.posterior(&mut net, &*task, &full, 6, 9, &Quiet).unwrap();
    let with_all: Vec<f64> = with_all.iter().flat_map(|d| task.to_unconstrained(d, 2)).collect();
    assert!(with_all.iter().zip(&absent).any(|(a, b)| (a - b).abs() > 1e-3));
}

/// Records warnings.
#[derive(Default)]
struct Warnings(std::sync::Mutex<Vec<String>>);

impl tfmpe::sbi::Progress for Warnings {
    fn warning(&self, message: &str) {
        self.0.lock().unwrap().push(message.to_string());
    }
}

/// An observation far outside what the prior predicts gives a warning with its standardised
/// distance; one so far that the draws are not finite is an error that says why, never NaN
/// samples.
#[test]
fn observations_far_outside_the_training_data_warn_or_fail() {
    let dev = Device::cpu();
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let mut net = network(&dev, &*task, &[2]);
    let sampler = Sampler::new(&dev, SOLVER);
    let at = |y: f64| Observed { sites: 2, values: vec![y, 0.1], inputs: None, counts: None };
    let quiet = Warnings::default();
    sampler.posterior(&mut net, &*task, &at(0.5), 4, 0, &quiet).unwrap();
    assert!(quiet.0.lock().unwrap().is_empty());
    let far = Warnings::default();
    sampler.posterior(&mut net, &*task, &at(500.0), 4, 0, &far).unwrap();
    let far = far.0.lock().unwrap();
    assert!(far.len() == 1 && far[0].contains("standard deviations"), "{far:?}");
    let err =
        sampler.posterior(&mut net, &*task, &at(1e300), 4, 0, &Quiet).unwrap_err().to_string();
    assert!(err.contains("not finite") && err.contains("far outside"), "{err}");
}

/// A posterior whose locals are scaled conditionally (`--posterior-scaling conditional`):
/// its draws are the flow's unwhitened, and its log density, the flow's less Σ ln s, is a
/// density. One site of hier-gaussian-linear, so (σ, μ) is two-dimensional and integrable on a
/// grid; the grid of μ at each σ follows the scaling's location and scale there, since at small
/// σ the density in μ is far narrower than any fixed grid. A sign error in the Jacobian term
/// would weigh the mass by s² (or leave it out, by s), far from 1 wherever s is not 1.
#[test]
fn scaled_locals_keep_the_log_density_a_density() {
    let dev = Device::cpu();
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let (cond, target, _) = simulated(&*task, 1, 2000);
    let rows = Rows::new(1, &cond, &target, None);
    let arch = TfmpeConfig { width: 16, layers: 1, heads: 2, n_ff: 1, ..Default::default() };
    let mut net = new_network(&dev, &*task, Role::Posterior, 1, &[rows], &arch, 5).unwrap();
    let (train, validation) = rows.split(1800, 1, 2, 0);
    let sets = |r| tfmpe::sbi::to_sets(&net, r).unwrap();
    let (train, validation) = (sets(train), sets(validation));
    net.fit_local_scaling(&[train], &[validation], 7).unwrap();
    let scaling = net.config.local_scaling.clone().unwrap();
    let obs = Observed { sites: 1, values: vec![0.8], inputs: None, counts: None };
    let conds = net.standardize(&[0.8], true).unwrap();
    let rows_at = |u: f32, eta: f32| {
        let mut z = vec![u, eta];
        let on = CondRows { conds: &conds, inputs: None, masks: None, n_cond: 1 };
        scaling.whiten(on, &mut z).unwrap();
        z[1]
    };
    // The grid: ln σ over ±7 of its standardised spread; μ over ±8 scales about m.
    // Steps of a tenth of a scale: the sum of a smooth density on an even grid this fine is
    // exact far below the bound (mass 0.9999968; steps of 0.05 gave 1.0000014 in three times
    // the time).
    let (du, dz) = (0.1f64, 0.1f64);
    let (mut params, mut weights) = (Vec::new(), Vec::new());
    let mut widths = Vec::new();
    let unstandardize = |u: f64, v: f64| net.unstandardize(&[u as f32, v as f32], false).unwrap();
    // d ln σ / du: the standardisation's spread of ln σ.
    let spread = unstandardize(1.0, 0.0)[0] - unstandardize(0.0, 0.0)[0];
    let points = |span: f64, step: f64| (span / step).round() as u32;
    for i in 0..=points(14.0, du) {
        let u = -7.0 + du * f64::from(i);
        let (z0, z1) = (rows_at(u as f32, 0.0), rows_at(u as f32, 1.0));
        let (s, m) = (1.0 / f64::from(z1 - z0), -f64::from(z0) / f64::from(z1 - z0));
        let (lo, hi) = (unstandardize(u, m), unstandardize(u, m + s));
        let (log_sigma, c, w) = (lo[0], lo[1], hi[1] - lo[1]);
        widths.push(w);
        for k in 0..=points(16.0, dz) {
            let z = -8.0 + dz * f64::from(k);
            params.push(vec![log_sigma.exp(), c + w * z]);
            // dσ dμ = σ · (d ln σ / du) du · w dz.
            weights.push(log_sigma.exp() * spread * du * w * dz);
        }
    }
    let min_width = widths.iter().fold(f64::INFINITY, |a, &b| a.min(b));
    assert!(min_width < 0.2, "the scaling never narrows μ (smallest width {min_width})");
    let sampler = Sampler::new(&dev, Solver::Rk4 { steps: 24 });
    let mut posterior: Posterior = net.into();
    let lp =
        sampler.log_prob(&mut posterior, &*task, &obs, &params, Divergence::Exact, &Quiet).unwrap();
    let mass: f64 = lp.iter().zip(&weights).map(|(l, w)| l.exp() * w).sum();
    eprintln!("mass {mass}");
    assert!((mass - 1.0).abs() < 5e-3, "the scaled posterior's density integrates to {mass}");
    // Draws land where the density is: their μ lie within the scaling's reach of m.
    let draws = sampler.posterior(&mut posterior, &*task, &obs, 200, 3, &Quiet).unwrap();
    assert!(draws.iter().flatten().all(|v| v.is_finite()));
}
