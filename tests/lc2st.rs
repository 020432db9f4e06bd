//! L-C2ST tested statistically on `hier-gaussian-linear` with two sites, whose exact posterior
//! is wide enough for a small calibration set to show its shape: exact draws must give uniform
//! p-values over independent repetitions, and estimates made too narrow, too wide or shifted
//! must be rejected.

use rand::rngs::StdRng;
use rand::SeedableRng;
use tfmpe::metrics::{ks_uniform, lc2st, Calibration, Lc2st, Lc2stConfig, MlpTraining};
use tfmpe::tasks::{simulate_dataset, task_by_name, HierarchicalModel};
use tfmpe::Device;

/// How an estimate's draw is made from independent exact draws at the same x.
#[derive(Clone, Copy, Debug)]
enum Estimate {
    Exact,
    /// The mean of nine exact draws: the right mean, a third of the standard deviation.
    Narrow,
    /// `a + (a − b)`: the right mean, √5 ≈ 2.2 times the standard deviation.
    Wide,
    /// An exact draw moved by one posterior standard deviation (of a reference observation)
    /// in every coordinate.
    Shifted,
}

const SITES: usize = 2;

struct Setup {
    task: Box<dyn HierarchicalModel>,
    sites: usize,
    /// The exact posterior's standard deviation per coordinate at a reference observation.
    sd: Vec<f64>,
}

impl Setup {
    fn new() -> Setup {
        Setup::with_sites(SITES)
    }

    fn with_sites(sites: usize) -> Setup {
        let task = task_by_name("hier-gaussian-linear").unwrap();
        let mut rng = StdRng::seed_from_u64(99);
        let data = simulate_dataset(task.as_ref(), sites, &mut rng).unwrap();
        let draws = task.exact_posterior(&data.obs, None, sites, 4000, &mut rng).unwrap();
        let sd = (0..draws[0].len())
            .map(|j| {
                let m = draws.iter().map(|d| d[j]).sum::<f64>() / draws.len() as f64;
                (draws.iter().map(|d| (d[j] - m).powi(2)).sum::<f64>() / draws.len() as f64).sqrt()
            })
            .collect();
        Setup { task, sites, sd }
    }

    fn draws(&self, obs: &[f64], n: usize, how: Estimate, rng: &mut StdRng) -> Vec<Vec<f64>> {
        let exact = |k: usize, rng: &mut StdRng| {
            self.task.exact_posterior(obs, None, self.sites, n * k, rng).unwrap()
        };
        match how {
            Estimate::Exact => exact(1, rng),
            Estimate::Narrow => exact(9, rng)
                .chunks(9)
                .map(|d| {
                    (0..d[0].len()).map(|j| d.iter().map(|v| v[j]).sum::<f64>() / 9.0).collect()
                })
                .collect(),
            Estimate::Wide => exact(2, rng)
                .chunks(2)
                .map(|d| d[0].iter().zip(&d[1]).map(|(a, b)| 2.0 * a - b).collect())
                .collect(),
            Estimate::Shifted => exact(1, rng)
                .into_iter()
                .map(|d| d.iter().zip(&self.sd).map(|(v, s)| v + s).collect())
                .collect(),
        }
    }

    /// One L-C2ST from scratch: a calibration set of `n` data sets with one draw of the
    /// estimate each, and an observation with `n` draws of the estimate.
    fn run(&self, n: usize, how: Estimate, seed: u64, cfg: &Lc2stConfig) -> Lc2st {
        let mut rng = StdRng::seed_from_u64(seed);
        let (mut prior, mut xs, mut posterior) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..n {
            let data = simulate_dataset(self.task.as_ref(), self.sites, &mut rng).unwrap();
            posterior.push(self.draws(&data.obs, 1, how, &mut rng).remove(0));
            prior.push(data.params);
            xs.push(data.obs);
        }
        let x_o = simulate_dataset(self.task.as_ref(), self.sites, &mut rng).unwrap().obs;
        let theta_o = self.draws(&x_o, n, how, &mut rng);
        let cal = Calibration { prior: &prior, xs: &xs, posterior: &posterior };
        lc2st(&Device::cpu(), &cal, &theta_o, &x_o, &Lc2stConfig { seed, ..cfg.clone() }).unwrap()
    }
}

fn config() -> Lc2stConfig {
    Lc2stConfig { null_trials: 50, ..Lc2stConfig::default() }
}

/// Over 40 independent repetitions with exact draws, the p-values are uniform. With 50 nulls a
/// p-value below 0.05 means at most 2 of the 50 null statistics above the main one: under the
/// null the main classifier is exchangeable with the nulls, so that has probability 3/51.
/// Rejections then follow Binomial(40, 0.059): mean 2.4, and at most 7 with probability 0.997.
#[test]
fn exact_draws_give_uniform_p_values() {
    let setup = Setup::new();
    let cfg = config();
    let results: Vec<Lc2st> =
        (0..40).map(|k| setup.run(300, Estimate::Exact, 1000 + k, &cfg)).collect();
    let p: Vec<f64> = results.iter().map(|r| r.p_value).collect();
    let rejected = results.iter().filter(|r| r.reject).count();
    let (_, ks) = ks_uniform(&p);
    eprintln!("exact: {rejected} of 40 rejected, KS p {ks:.3}, p-values {p:?}");
    assert!(rejected <= 7, "{rejected} of 40 rejections at α = 0.05 with exact draws");
    assert!(ks > 0.01, "p-values of exact draws are not uniform (KS p {ks})");
}

/// Each wrong estimate is rejected in at least 4 of 5 repetitions with the usual calibration
/// set of 1 000 data sets.
#[test]
fn wrong_estimates_are_rejected() {
    let setup = Setup::new();
    let cfg = config();
    for how in [Estimate::Narrow, Estimate::Wide, Estimate::Shifted] {
        let results: Vec<Lc2st> = (0..5).map(|k| setup.run(1000, how, 2000 + k, &cfg)).collect();
        let rejected = results.iter().filter(|r| r.reject).count();
        let p: Vec<f64> = results.iter().map(|r| r.p_value).collect();
        let epochs: Vec<usize> = results.iter().map(|r| r.epochs).collect();
        eprintln!("{how:?}: {rejected} of 5 rejected, p-values {p:?}, epochs {epochs:?}");
        assert!(rejected >= 4, "{how:?}: only {rejected} of 5 rejected, p-values {p:?}");
    }
}

/// The same seed gives the same result, bit for bit.
#[test]
fn lc2st_is_deterministic() {
    let setup = Setup::new();
    let mlp = MlpTraining { max_epochs: 20, ..MlpTraining::default() };
    let cfg = Lc2stConfig { null_trials: 5, mlp, ..config() };
    let a = setup.run(100, Estimate::Exact, 7, &cfg);
    let b = setup.run(100, Estimate::Exact, 7, &cfg);
    assert_eq!(a, b);
}

/// The cost of the wide network at the benchmark's size (hier-gaussian-linear with 10 sites:
/// θ of 11, x of 10, 1 000 data sets): 100 nulls beside the main classifier against the main
/// classifier with one null. A benchmark, not a check:
/// `cargo test --release --test lc2st -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_the_wide_network_against_few_classifiers() {
    let setup = Setup::with_sites(10);
    for nulls in [1, 100] {
        let start = std::time::Instant::now();
        let r =
            setup.run(1000, Estimate::Exact, 5, &Lc2stConfig { null_trials: nulls, ..config() });
        eprintln!(
            "{} classifiers: {:.1} s (until the last stopped: {} epochs)",
            nulls + 1,
            start.elapsed().as_secs_f64(),
            r.epochs
        );
    }
}
