//! The user-model trait and the exact-posterior benchmark tasks: special functions against
//! high-precision values, bijections, column names, data-set shapes, and simulation-based
//! calibration of every exact posterior sampler. All randomness is seeded, so every statistical
//! check is deterministic; thresholds are set so that a correct sampler fails with probability
//! about 1e−3 over the choice of seed, and the chosen seeds pass.

// Reference values are quoted with the 17 digits mpmath printed, not rounded to the nearest f64.
#![allow(clippy::excessive_precision)]

use rand::rngs::StdRng;
use rand::{Rng, RngExt, SeedableRng};
use tfmpe::tasks::special::{
    erfc, erfcx, normal_log_cdf, normal_log_interval, normal_quantile_log,
    truncated_standard_normal,
};
use tfmpe::tasks::{
    check_observation, simulate_dataset, task_by_name, tasks, Bijection, HierarchicalModel,
    Variable,
};
use tfmpe::Error;

fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

fn assert_rel(what: &str, got: f64, want: f64, rtol: f64) {
    let err = ((got - want) / want).abs();
    assert!(err <= rtol, "{what}: got {got:e}, want {want:e}, relative error {err:e} > {rtol:e}");
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let mean = xs.iter().sum::<f64>() / n;
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

// ---------------------------------------------------------------- special functions
// Reference values: mpmath at 40-60 significant digits.

#[test]
fn ln_gamma_matches_high_precision_values() {
    use tfmpe::tasks::special::ln_gamma;
    // mpmath.loggamma.
    for (x, want) in [
        (0.1, 2.2527126517342059599),
        (0.5, 0.57236494292470008707),
        (1.0, 0.0),
        (2.5, 0.28468287047291915963),
        (10.0, 12.801827480081469611),
        (100.0, 359.13420536957539878),
        (1e-8, 18.420680738180208905),
    ] {
        let got = ln_gamma(x);
        assert!((got - want).abs() <= 1e-13 * want.abs().max(1.0), "lnΓ({x}) = {got}, want {want}");
    }
}

#[test]
fn erfc_matches_high_precision_values() {
    let cases = [
        (-3.0, 1.9999779095030014),
        (-1.0, 1.8427007929497149),
        (-0.3, 1.3286267594591274),
        (0.0, 1.0),
        (1e-3, 0.99887162120903076),
        (0.2, 0.77729741078952153),
        (0.46875, 0.50738652678206201),
        (0.5, 0.47950012218695346),
        (1.0, 0.15729920705028513),
        (2.0, 0.0046777349810472658),
        (3.9, 3.4792248597231767e-8),
        (4.0, 1.5417257900280019e-8),
        (4.5, 1.9661604415428875e-10),
        (6.0, 2.1519736712498913e-17),
        (10.0, 2.0884875837625448e-45),
        (20.0, 5.3958656116079009e-176),
        (26.0, 5.6631924088561428e-296),
    ];
    // Cody's fits are accurate beyond f64; what remains is a few roundings, amplified by 2x² in
    // exp(−x²) for the largest arguments (x = 26: about 1400 ulp of x², hence 1e−13 there).
    for (x, want) in cases {
        let rtol = if x > 6.0 { 1e-13 } else { 4e-16 * 8.0 };
        assert_rel(&format!("erfc({x})"), erfc(x), want, rtol);
    }
    assert_eq!(erfc(f64::INFINITY), 0.0);
    assert_eq!(erfc(f64::NEG_INFINITY), 2.0);
    assert!(erfc(f64::NAN).is_nan());
}

#[test]
fn erfcx_matches_high_precision_values() {
    let cases = [
        (-2.0, 108.94090438997797),
        (0.3, 0.73459933456765515),
        (5.0, 0.11070463773306863),
        (30.0, 0.018795888861416751),
        (100.0, 0.0056416137829894329),
        (1e4, 5.6418958072680841e-5),
    ];
    for (x, want) in cases {
        assert_rel(&format!("erfcx({x})"), erfcx(x), want, 1e-14);
    }
}

#[test]
fn normal_log_cdf_is_accurate_in_both_tails() {
    let cases = [
        (-1e4, -50000010.129278915),
        (-200.0, -20006.21728089819),
        (-40.0, -804.60844201375379),
        (-10.0, -53.231285150512471),
        (-1.0, -1.8410216450092635),
        (0.0, -std::f64::consts::LN_2),
        (1.0, -0.17275377902344989),
        (5.0, -2.8665161296376359e-7),
        (10.0, -7.6198530241605261e-24),
    ];
    // Dividing z by √2 rounds it, which erfc amplifies by 2·(z²/2) in relative terms: harmless
    // for the log in the lower tail; in the upper tail, ln Φ(10) inherits erfc(7.07)'s 1e−14.
    for (z, want) in cases {
        assert_rel(&format!("ln Φ({z})"), normal_log_cdf(z), want, 1e-13);
    }
    assert_eq!(normal_log_cdf(f64::NEG_INFINITY), f64::NEG_INFINITY);
    assert_eq!(normal_log_cdf(f64::INFINITY), 0.0);
}

#[test]
fn normal_log_interval_matches_high_precision_values() {
    let cases = [
        (-1.0, 3.0, -0.17435952045297591),
        (5.0, 6.0, -15.068446096529453),
        (-45.0, -44.5, -994.83993207336407),
        (40.0, 41.0, -804.60844201375379),
        (-1e4, -1e4 + 1e-3, -50000000.129324716),
    ];
    for (a, b, want) in cases {
        assert_rel(&format!("ln P[{a}, {b}]"), normal_log_interval(a, b), want, 1e-13);
    }
    assert_eq!(normal_log_interval(f64::NEG_INFINITY, f64::INFINITY), 0.0);
    assert_eq!(normal_log_interval(0.5, 0.5), f64::NEG_INFINITY);
}

#[test]
fn normal_quantile_inverts_the_log_cdf_far_into_the_tails() {
    let cases = [
        (0.025f64.ln(), -1.9599639845400542),
        (1e-10f64.ln(), -6.3613409024040562),
        (-1000.0, -44.615747731969403),
        (-1e6, -1414.2077829910173),
        (0.975f64.ln(), 1.9599639845400542),
        ((-1e-12f64).ln_1p(), 7.0344838253011319),
    ];
    // AS 241 is good to about 1e−16; ln p itself carries a rounding, worth 1/|z²| of it in z.
    for (log_p, want) in cases {
        assert_rel(&format!("Φ⁻¹(exp({log_p}))"), normal_quantile_log(log_p), want, 1e-13);
    }
    for z in [-1e4, -2e3, -300.0, -38.0, -20.0, -5.0, -1.0, -0.1, 0.0, 0.7, 3.0, 6.0] {
        let back = normal_quantile_log(normal_log_cdf(z));
        assert!((back - z).abs() <= 1e-12 * z.abs().max(1.0), "round trip at {z}: {back}");
    }
    assert_eq!(normal_quantile_log(0.0), f64::INFINITY);
    assert_eq!(normal_quantile_log(f64::NEG_INFINITY), f64::NEG_INFINITY);
    assert!(normal_quantile_log(0.1).is_nan());
}

#[test]
fn truncated_normal_draws_have_the_right_mean_in_any_tail() {
    // (a, b, exact mean, exact sd), from mpmath.
    let cases = [
        (-1.0, 3.0, 0.28278611072715401, 0.7849469634),
        (5.0, 6.0, 5.1831470904771735, 0.1716171051),
        (-45.0, -44.5, -44.522449271077029, 0.02243798192),
        (40.0, 41.0, 40.024968847207264, 0.024953324),
        (-1e4, -1e4 + 1e-3, -9999.999099954606, 9.977272839e-5),
    ];
    let mut rng = rng(11);
    let n = 4000;
    for (a, b, mean, sd) in cases {
        let draws: Vec<f64> =
            (0..n).map(|_| truncated_standard_normal(a, b, rng.random())).collect();
        assert!(draws.iter().all(|&z| (a..=b).contains(&z)), "draw outside [{a}, {b}]");
        let (got_mean, got_sd) = mean_sd(&draws);
        // 5 standard errors of the mean; the sd within 10 % (its standard error is about 1.1 %).
        assert!(
            (got_mean - mean).abs() < 5.0 * sd / (n as f64).sqrt(),
            "[{a}, {b}]: mean {got_mean}"
        );
        assert!((got_sd / sd - 1.0).abs() < 0.1, "[{a}, {b}]: sd {got_sd}");
    }
}

// ---------------------------------------------------------------- bijections

#[test]
fn bijections_round_trip_and_log_det_matches_finite_differences() {
    let cases: [(Bijection, &[f64]); 5] = [
        (Bijection::Identity, &[-1e3, -1.5, 0.0, 2.0, 1e6]),
        (Bijection::Log, &[1e-8, 0.03, 1.0, 7.5, 1e5]),
        (
            Bijection::LogitAffine { lo: -10.0, hi: 10.0 },
            &[-9.99999, -9.3, -0.2, 0.0, 4.0, 9.99999],
        ),
        // The half-bounded supports of a user model's truncated normals.
        (Bijection::LogAbove { lo: -1.5 }, &[-1.4999, -1.2, 0.0, 3.0, 1e5]),
        (Bijection::LogBelow { hi: 4.0 }, &[-1e5, -2.0, 0.0, 3.9, 3.9999]),
    ];
    for (bijection, xs) in cases {
        for &x in xs {
            let u = bijection.forward(x);
            assert!(u.is_finite(), "{bijection:?} forward({x})");
            let back = bijection.inverse(u);
            assert!(
                (back - x).abs() <= 1e-12 * x.abs().max(1.0),
                "{bijection:?}: {x} → {u} → {back}"
            );
            // Central differences with a step of 1e−4 of the local length scale (the distance to
            // the support's edge, or the magnitude): truncation error ~1e−8 relative, rounding
            // ε·|u|/h ≈ 1e−10; 1e−6 in the log is far above both.
            let h = 1e-4
                * match bijection {
                    Bijection::Identity => x.abs().max(1.0),
                    Bijection::Log => x,
                    Bijection::LogitAffine { lo, hi } => (x - lo).min(hi - x),
                    Bijection::LogAbove { lo } => x - lo,
                    Bijection::LogBelow { hi } => hi - x,
                };
            // |du/dx|: the slope is negative for LogBelow.
            let slope = ((bijection.forward(x + h) - bijection.forward(x - h)) / (2.0 * h)).abs();
            let log_det = bijection.forward_log_det(x);
            assert!(
                (slope.ln() - log_det).abs() < 1e-6,
                "{bijection:?} at {x}: {log_det} vs ln {slope}"
            );
        }
    }
    let unit = Bijection::LogitAffine { lo: -10.0, hi: 10.0 };
    // Large |u| lands strictly inside the interval's closure, never outside it.
    for u in [-800.0, -40.0, 40.0, 800.0] {
        assert!((-10.0..=10.0).contains(&unit.inverse(u)), "inverse({u})");
    }
}

#[test]
fn whole_vector_transforms_follow_the_variable_layout() {
    let model = task_by_name("hier-gaussian-linear-uniform").unwrap();
    let data = simulate_dataset(model.as_ref(), 4, &mut rng(5)).unwrap();
    let u = model.to_unconstrained(&data.params, 4);
    assert_eq!(u[0], data.params[0].ln(), "sigma uses Log");
    for s in 0..4 {
        let mu = data.params[1 + s];
        assert_eq!(
            u[1 + s],
            (mu + 10.0).ln() - (10.0 - mu).ln(),
            "mu.{s} uses LogitAffine(−10, 10)"
        );
    }
    let back = model.to_natural(&u, 4);
    for (b, x) in back.iter().zip(&data.params) {
        assert!((b - x).abs() <= 1e-12 * x.abs().max(1.0));
    }
    let bijections = model.parameter_bijections(4);
    let want: f64 = bijections.iter().zip(&data.params).map(|(b, &x)| b.forward_log_det(x)).sum();
    assert_eq!(model.unconstrained_log_det(&data.params, 4), want);
}

// ---------------------------------------------------------------- names, lookup, shapes

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|s| s.to_string()).collect()
}

#[test]
fn column_names_for_three_sites_follow_the_csv_dialect() {
    let linear = strings(&["sigma", "mu.0", "mu.1", "mu.2"]);
    for name in ["hier-gaussian-linear", "hier-gaussian-linear-uniform"] {
        let model = task_by_name(name).unwrap();
        assert_eq!(model.parameter_names(3), linear, "{name}");
        assert_eq!(model.observation_names(3), strings(&["y.0", "y.1", "y.2"]), "{name}");
    }
    let model = task_by_name("hier-gaussian").unwrap();
    assert_eq!(model.parameter_names(3), strings(&["mu", "theta.0", "theta.1", "theta.2"]));
    let obs: Vec<String> =
        (0..3).flat_map(|s| (0..5).map(move |j| format!("y.{s}[{j}]"))).collect();
    assert_eq!(model.observation_names(3), obs);
    let model = task_by_name("hier-seir").unwrap();
    assert_eq!(
        model.parameter_names(2),
        strings(&[
            "beta0", "alpha", "sigma", "amp.0", "period.0", "phase.0", "amp.1", "period.1",
            "phase.1"
        ])
    );
    assert_eq!(model.observation_names(3), obs);
    assert_eq!(model.functional_input_names(), strings(&["t"]));
}

#[test]
fn unknown_task_names_the_input_and_the_known_tasks() {
    let Err(err) = task_by_name("hier-gausian") else {
        panic!("a misspelt task was accepted");
    };
    assert!(matches!(err, Error::Invalid(_)), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("`hier-gausian`"), "{message}");
    for known in [
        "hier-gaussian",
        "hier-gaussian-linear",
        "hier-gaussian-linear-uniform",
        "hier-seir",
        "hier-sir",
        "hier-lotka-volterra",
    ] {
        assert!(message.contains(known), "{message} lacks {known}");
        assert_eq!(task_by_name(known).unwrap().name(), known);
    }
    let names: Vec<String> = tasks().iter().map(|t| t.name().to_string()).collect();
    let unique: std::collections::HashSet<&String> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "task names are unique: {names:?}");
}

#[test]
fn simulated_datasets_have_the_declared_shapes() {
    let mut rng = rng(3);
    for model in tasks() {
        let model = model.as_ref();
        for sites in [1, 7] {
            let data = simulate_dataset(model, sites, &mut rng).unwrap();
            assert_eq!(data.sites, sites);
            assert_eq!(data.params.len(), model.param_dim(sites), "{}", model.name());
            assert_eq!(data.params.len(), model.parameter_names(sites).len());
            assert_eq!(data.obs.len(), sites * model.obs_dim(), "{}", model.name());
            assert_eq!(data.obs.len(), model.observation_names(sites).len());
            let inputs = data.inputs.as_ref().map_or(0, Vec::len);
            assert_eq!(inputs, data.obs.len() * model.functional_input_dim(), "{}", model.name());
            assert_eq!(model.functional_input_names().len(), model.functional_input_dim());
            assert!(data.is_finite());
            // Every draw lies in its variable's support: the forward map is finite there.
            assert!(model.to_unconstrained(&data.params, sites).iter().all(|u| u.is_finite()));
        }
    }
}

#[test]
fn check_observation_rejects_wrong_lengths_and_non_finite_values() {
    let model = task_by_name("hier-gaussian-linear").unwrap();
    assert!(check_observation(model.as_ref(), &[0.1, 0.2, 0.3], 3).is_ok());
    let err = check_observation(model.as_ref(), &[0.1, 0.2], 3).unwrap_err();
    assert!(matches!(err, Error::Shape(_)), "{err:?}");
    let err = check_observation(model.as_ref(), &[0.1, f64::NAN, 0.3], 3).unwrap_err();
    assert!(matches!(err, Error::Invalid(_)) && err.to_string().contains("`y.1`"), "{err}");
}

/// A user model with vector variables and a functional input per observation, to pin the naming
/// rules and the input layout on something other than scalars.
struct VectorModel;

impl HierarchicalModel for VectorModel {
    fn name(&self) -> &str {
        "vector-test"
    }
    fn global_variables(&self) -> Vec<Variable> {
        vec![
            Variable::new("loc", 2, Bijection::Identity),
            Variable::scalar("scale", Bijection::Log),
        ]
    }
    fn local_variables(&self) -> Vec<Variable> {
        vec![Variable::new("theta", 2, Bijection::Identity)]
    }
    fn observation_variables(&self) -> Vec<Variable> {
        vec![Variable::new("y", 3, Bijection::Identity)]
    }
    fn functional_input_dim(&self) -> usize {
        1
    }
    fn sample_functional_inputs(&self, _rng: &mut dyn Rng) -> Option<Vec<f64>> {
        Some(vec![1.0, 2.0, 3.0])
    }
    fn sample_globals(&self, rng: &mut dyn Rng) -> Vec<f64> {
        vec![rng.random(), rng.random(), 1.0 + rng.random::<f64>()]
    }
    fn sample_locals(&self, globals: &[f64], _rng: &mut dyn Rng) -> Vec<f64> {
        vec![globals[0], globals[1]]
    }
    fn simulate_site(
        &self, _: &[f64], locals: &[f64], inputs: Option<&[f64]>, _: &mut dyn Rng,
    ) -> Vec<f64> {
        inputs.unwrap().iter().map(|t| locals[0] + t * locals[1]).collect()
    }
}

#[test]
fn vector_variables_and_functional_inputs_follow_the_layout() {
    let model = VectorModel;
    assert_eq!(
        model.parameter_names(2),
        strings(&[
            "loc[0]",
            "loc[1]",
            "scale",
            "theta.0[0]",
            "theta.0[1]",
            "theta.1[0]",
            "theta.1[1]"
        ])
    );
    assert_eq!(model.observation_names(1), strings(&["y.0[0]", "y.0[1]", "y.0[2]"]));
    assert_eq!((model.global_dim(), model.local_dim(), model.obs_dim()), (3, 2, 3));
    let boxed: Box<dyn HierarchicalModel> = Box::new(VectorModel);
    let data = simulate_dataset(boxed.as_ref(), 2, &mut rng(1)).unwrap();
    assert_eq!(data.inputs.as_deref(), Some(&[1.0, 2.0, 3.0, 1.0, 2.0, 3.0][..]));
    assert_eq!(data.obs[2], data.params[3] + 3.0 * data.params[4]);
    assert!(model.exact_posterior(&data.obs, data.inputs.as_deref(), 2, 10, &mut rng(2)).is_none());
}

// ---------------------------------------------------------------- tasks with vector variables

/// The vector-valued benchmark tasks without exact posteriors.
const VECTOR_TASKS: [&str; 3] = ["hier-gaussian-mixture", "hier-two-moons", "hier-slcp"];

#[test]
fn vector_tasks_name_their_components() {
    let mixture = strings(&[
        "loc[0]",
        "loc[1]",
        "scale[0]",
        "scale[1]",
        "theta.0[0]",
        "theta.0[1]",
        "theta.1[0]",
        "theta.1[1]",
    ]);
    for name in ["hier-gaussian-mixture", "hier-two-moons"] {
        let model = task_by_name(name).unwrap();
        assert_eq!(model.parameter_names(2), mixture, "{name}");
        assert_eq!(model.observation_names(2), strings(&["y.0[0]", "y.0[1]", "y.1[0]", "y.1[1]"]));
        assert_eq!(model.param_dim(5), 4 + 2 * 5, "{name}");
    }
    let slcp = task_by_name("hier-slcp").unwrap();
    assert_eq!(
        slcp.parameter_names(2),
        strings(&["s1", "s2", "rho", "m.0[0]", "m.0[1]", "m.1[0]", "m.1[1]"])
    );
    let obs: Vec<String> =
        (0..2).flat_map(|s| (0..8).map(move |j| format!("y.{s}[{j}]"))).collect();
    assert_eq!(slcp.observation_names(2), obs);
    assert_eq!(slcp.param_dim(5), 3 + 2 * 5);
}

/// Every scalar's support as an open interval, from its bijection.
fn support(bijection: Bijection) -> (f64, f64) {
    bijection.support()
}

#[test]
fn vector_task_prior_draws_lie_in_their_supports_and_round_trip() {
    for name in VECTOR_TASKS {
        let model = task_by_name(name).unwrap();
        let bijections = model.parameter_bijections(5);
        let mut r = rng(13);
        for _ in 0..2_000 {
            let data = simulate_dataset(model.as_ref(), 5, &mut r).unwrap();
            assert!(data.is_finite(), "{name}");
            for (k, (&x, &b)) in data.params.iter().zip(&bijections).enumerate() {
                let (lo, hi) = support(b);
                assert!(lo < x && x < hi, "{name}: parameter {k} = {x} outside ({lo}, {hi})");
            }
            let back = model.to_natural(&model.to_unconstrained(&data.params, 5), 5);
            for (b, x) in back.iter().zip(&data.params) {
                assert!((b - x).abs() <= 1e-12 * x.abs().max(1.0), "{name}: {x} → {b}");
            }
        }
    }
}

#[test]
fn vector_task_bijections_round_trip_at_the_edges_of_their_supports() {
    for name in VECTOR_TASKS {
        let model = task_by_name(name).unwrap();
        for b in model.parameter_bijections(1) {
            let Bijection::LogitAffine { lo, hi } = b else { continue };
            for x in [lo + 1e-12, lo + 1e-15, hi - 1e-12, hi - 1e-15] {
                let u = b.forward(x);
                assert!(u.is_finite(), "{name}: {b:?} forward({x}) = {u}");
                let back = b.inverse(u);
                assert!(lo < back && back < hi, "{name}: {b:?} {x} → {back}");
                // Within a few ulps of the bound's magnitude.
                assert!((back - x).abs() <= 1e-15 * hi.abs().max(lo.abs()), "{name}: {x} → {back}");
            }
        }
    }
}

#[test]
fn vector_tasks_are_deterministic_for_a_fixed_seed() {
    for name in VECTOR_TASKS {
        let model = task_by_name(name).unwrap();
        let first = simulate_dataset(model.as_ref(), 4, &mut rng(21)).unwrap();
        assert_eq!(first, simulate_dataset(model.as_ref(), 4, &mut rng(21)).unwrap(), "{name}");
        assert_ne!(first, simulate_dataset(model.as_ref(), 4, &mut rng(22)).unwrap(), "{name}");
        assert!(model.exact_posterior(&first.obs, None, 4, 10, &mut rng(23)).is_none());
    }
}

// ---------------------------------------------------------------- exact posteriors

/// Posterior draws per data set in the SBC loops; ranks then take the values 0..=99.
const SBC_DRAWS: usize = 99;
const SBC_REPLICATIONS: usize = 200;
/// Upper 1e−3 quantile of χ² with 9 degrees of freedom (10 bins).
const CHI2_9_CRITICAL: f64 = 27.877;

/// Pearson's χ² of ranks in 0..=SBC_DRAWS against the uniform law, in 10 equal bins.
fn chi_square_uniform(ranks: &[usize]) -> f64 {
    let mut counts = [0usize; 10];
    for &r in ranks {
        counts[r * 10 / (SBC_DRAWS + 1)] += 1;
    }
    let expected = ranks.len() as f64 / 10.0;
    counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
}

/// Simulation-based calibration: for data sets drawn from the prior and the simulator, the rank
/// of each true parameter among exact posterior draws is uniform. Ranks are kept for the global
/// and for one site chosen at random per data set: ranks of different sites of one data set are
/// dependent (they share the global), which would break the χ² test's independence assumption,
/// while the random site still exercises every site index.
fn assert_calibrated(name: &str, seed: u64) {
    let model = task_by_name(name).unwrap();
    let mut rng = rng(seed);
    let (mut global_ranks, mut local_ranks) = (Vec::new(), Vec::new());
    for _ in 0..SBC_REPLICATIONS {
        let sites = rng.random_range(3..=10);
        let data = simulate_dataset(model.as_ref(), sites, &mut rng).unwrap();
        let inputs = data.inputs.as_deref();
        let draws = model.exact_posterior(&data.obs, inputs, sites, SBC_DRAWS, &mut rng).unwrap();
        assert_eq!(draws.len(), SBC_DRAWS);
        assert!(draws.iter().all(|d| d.len() == model.param_dim(sites)));
        let rank = |k: usize| draws.iter().filter(|d| d[k] < data.params[k]).count();
        global_ranks.push(rank(0));
        local_ranks.push(rank(1 + rng.random_range(0..sites)));
    }
    let global = chi_square_uniform(&global_ranks);
    let local = chi_square_uniform(&local_ranks);
    assert!(global < CHI2_9_CRITICAL, "{name}: global ranks χ² = {global:.1}");
    assert!(local < CHI2_9_CRITICAL, "{name}: site ranks χ² = {local:.1}");
}

#[test]
fn sbc_hier_gaussian() {
    assert_calibrated("hier-gaussian", 101);
}

#[test]
fn sbc_hier_gaussian_linear() {
    assert_calibrated("hier-gaussian-linear", 102);
}

#[test]
fn sbc_hier_gaussian_linear_uniform() {
    assert_calibrated("hier-gaussian-linear-uniform", 103);
}

#[test]
fn sbc_hier_brownian() {
    assert_calibrated("hier-brownian", 104);
}

/// Solves P x = b for a small dense symmetric positive-definite P by Gaussian elimination.
fn solve(mut p: Vec<Vec<f64>>, mut b: Vec<f64>) -> Vec<f64> {
    let n = b.len();
    for k in 0..n {
        let pivot = p[k].clone();
        for i in k + 1..n {
            let f = p[i][k] / pivot[k];
            for (pij, pkj) in p[i][k..].iter_mut().zip(&pivot[k..]) {
                *pij -= f * pkj;
            }
            b[i] -= f * b[k];
        }
    }
    for k in (0..n).rev() {
        let tail: f64 = (k + 1..n).map(|j| p[k][j] * b[j]).sum();
        b[k] = (b[k] - tail) / p[k][k];
    }
    b
}

/// The joint Gaussian posterior of (μ, θ_0..θ_S−1) for μ ~ N(0, 1), θ_s ~ N(μ, 0.1) and
/// observations y_sj ~ N(θ_s, sd_sj): its precision and shift, term by term from the
/// log-density −μ²/2 − Σ_s (θ_s − μ)²/(2·0.1²) − Σ_sj (y_sj − θ_s)²/(2 sd_sj²).
fn site_gaussian(obs: &[f64], sd: &[f64], sites: usize) -> (Vec<Vec<f64>>, Vec<f64>) {
    let (dim, per_site) = (1 + sites, obs.len() / sites);
    let mut precision = vec![vec![0.0; dim]; dim];
    let mut shift = vec![0.0; dim];
    precision[0][0] = 1.0;
    for s in 0..sites {
        let t = 1.0 / 0.01;
        precision[0][0] += t;
        precision[1 + s][1 + s] += t;
        precision[0][1 + s] -= t;
        precision[1 + s][0] -= t;
        let site = per_site * s..per_site * (s + 1);
        for (sd, y) in sd[site.clone()].iter().zip(&obs[site]) {
            let w = 1.0 / (sd * sd);
            precision[1 + s][1 + s] += w;
            shift[1 + s] += y * w;
        }
    }
    (precision, shift)
}

/// Every coordinate's mean and variance over `draws` match the Gaussian of this precision and
/// shift: the mean within 5 standard errors, the variance within 5 % (its standard error is
/// 1 % at 20 000 draws).
fn assert_gaussian_moments(draws: &[Vec<f64>], precision: Vec<Vec<f64>>, shift: Vec<f64>) {
    let (dim, n) = (shift.len(), draws.len());
    let mean = solve(precision.clone(), shift);
    for k in 0..dim {
        let unit: Vec<f64> = (0..dim).map(|i| if i == k { 1.0 } else { 0.0 }).collect();
        let var = solve(precision.clone(), unit)[k];
        let column: Vec<f64> = draws.iter().map(|d| d[k]).collect();
        let (got_mean, got_sd) = mean_sd(&column);
        assert!(
            (got_mean - mean[k]).abs() < 5.0 * (var / n as f64).sqrt(),
            "coordinate {k}: mean {got_mean} vs {}",
            mean[k]
        );
        assert!(
            (got_sd * got_sd / var - 1.0).abs() < 0.05,
            "coordinate {k}: variance {} vs {var}",
            got_sd * got_sd
        );
    }
}

#[test]
fn hier_gaussian_posterior_moments_match_the_joint_gaussian() {
    let model = task_by_name("hier-gaussian").unwrap();
    let sites = 4;
    let data = simulate_dataset(model.as_ref(), sites, &mut rng(21)).unwrap();
    let (precision, shift) = site_gaussian(&data.obs, &vec![0.1; data.obs.len()], sites);
    let draws = model.exact_posterior(&data.obs, None, sites, 20_000, &mut rng(22)).unwrap();
    assert_gaussian_moments(&draws, precision, shift);
}

#[test]
fn hier_brownian_posterior_moments_match_the_joint_gaussian_given_the_times() {
    let model = task_by_name("hier-brownian").unwrap();
    let sites = 3;
    let data = simulate_dataset(model.as_ref(), sites, &mut rng(23)).unwrap();
    let times = data.inputs.as_ref().expect("hier-brownian has observation times");
    // The noise standard deviation of each observation is its time.
    let (precision, shift) = site_gaussian(&data.obs, times, sites);
    let draws = model.exact_posterior(&data.obs, Some(times), sites, 20_000, &mut rng(24)).unwrap();
    assert!(model.exact_posterior(&data.obs, None, sites, 1, &mut rng(24)).is_none());
    assert_gaussian_moments(&draws, precision, shift);
}

/// The posterior of σ tabulated by the trapezoid rule on a uniform grid in σ, a different route
/// from the samplers' zooming grid in ln σ: (σ, normalised weight) pairs.
fn sigma_quadrature(log_density: impl Fn(f64) -> f64, upper: f64) -> Vec<(f64, f64)> {
    let points = 100_000;
    let h = upper / points as f64;
    let logs: Vec<f64> = (1..=points).map(|i| log_density(i as f64 * h)).collect();
    let max = logs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut weights: Vec<(f64, f64)> = logs
        .iter()
        .enumerate()
        .map(|(i, l)| {
            ((i + 1) as f64 * h, (l - max).exp() * if i + 1 == points { 0.5 } else { 1.0 })
        })
        .collect();
    let total: f64 = weights.iter().map(|w| w.1).sum();
    weights.iter_mut().for_each(|w| w.1 /= total);
    weights
}

/// Posterior expectation of f(σ) under a quadrature table.
fn expect(table: &[(f64, f64)], f: impl Fn(f64) -> f64) -> f64 {
    table.iter().map(|&(sigma, w)| w * f(sigma)).sum()
}

/// Compares the sample mean and sd of `column` with exact values: 5 standard errors for the mean,
/// 5 % for the sd (its standard error is under 1 % for 20 000 draws).
fn assert_moments(what: &str, column: &[f64], mean: f64, sd: f64) {
    let (got_mean, got_sd) = mean_sd(column);
    let n = column.len() as f64;
    assert!((got_mean - mean).abs() < 5.0 * sd / n.sqrt(), "{what}: mean {got_mean} vs {mean}");
    assert!((got_sd / sd - 1.0).abs() < 0.05, "{what}: sd {got_sd} vs {sd}");
}

/// Checks σ and every μ_s of 20 000 exact posterior draws against quadrature; `site_moments`
/// gives (E, E[·²]) of μ_s given σ and y_s.
fn assert_posterior_moments(
    name: &str, obs: &[f64], table: &[(f64, f64)], site_moments: impl Fn(f64, f64) -> (f64, f64),
) {
    let model = task_by_name(name).unwrap();
    let draws = model.exact_posterior(obs, None, obs.len(), 20_000, &mut rng(31)).unwrap();
    let column = |k: usize| -> Vec<f64> { draws.iter().map(|d| d[k]).collect() };
    let sigma_mean = expect(table, |s| s);
    let sigma_sd = (expect(table, |s| s * s) - sigma_mean * sigma_mean).sqrt();
    assert_moments(&format!("{name} sigma"), &column(0), sigma_mean, sigma_sd);
    for (s, &y) in obs.iter().enumerate() {
        let mean = expect(table, |sigma| site_moments(sigma, y).0);
        let second = expect(table, |sigma| site_moments(sigma, y).1);
        assert_moments(
            &format!("{name} mu.{s}"),
            &column(1 + s),
            mean,
            (second - mean * mean).sqrt(),
        );
    }
}

#[test]
fn hier_gaussian_linear_posterior_moments_match_quadrature() {
    let obs = [0.3, -1.7, 2.4, 0.05, -0.9, 1.1];
    let sum_sq: f64 = obs.iter().map(|y| y * y).sum();
    // HalfNormal(1) puts e^−72 of its density beyond σ = 12.
    let table = sigma_quadrature(
        |sigma| {
            let var = 1.0 + sigma * sigma;
            -0.5 * sigma * sigma - 0.5 * obs.len() as f64 * var.ln() - 0.5 * sum_sq / var
        },
        12.0,
    );
    // μ_s | σ, y_s ~ N(y_s/(1 + σ²), σ²/(1 + σ²)).
    assert_posterior_moments("hier-gaussian-linear", &obs, &table, |sigma, y| {
        let var = 1.0 + sigma * sigma;
        (y / var, sigma * sigma / var + (y / var).powi(2))
    });
}

#[test]
fn hier_gaussian_linear_uniform_posterior_moments_match_quadrature() {
    // Observations at and beyond the support's edges make the likelihood depend on σ and the
    // truncation of μ_s matter.
    let obs = [9.95, -9.9, 3.0, 10.02, 0.5];
    // HalfNormal(0.1) puts e^−72 of its density beyond σ = 1.2.
    let table = sigma_quadrature(
        |sigma| {
            -0.5 * (sigma / 0.1).powi(2)
                + obs
                    .iter()
                    .map(|&y| normal_log_interval((-10.0 - y) / sigma, (10.0 - y) / sigma))
                    .sum::<f64>()
        },
        1.2,
    );
    // μ_s | σ, y_s is N(y_s, σ) truncated to [−10, 10]: with a, b the standardised bounds and
    // Z = Φ(b) − Φ(a), its mean is y + σ(φ(a) − φ(b))/Z and its variance
    // σ²[1 + (aφ(a) − bφ(b))/Z − ((φ(a) − φ(b))/Z)²].
    assert_posterior_moments("hier-gaussian-linear-uniform", &obs, &table, |sigma, y| {
        let (a, b) = ((-10.0 - y) / sigma, (10.0 - y) / sigma);
        let log_z = normal_log_interval(a, b);
        let ratio = |x: f64| (-0.5 * x * x - 0.918_938_533_204_672_8 - log_z).exp();
        let shift = ratio(a) - ratio(b);
        let var = sigma * sigma * (1.0 + a * ratio(a) - b * ratio(b) - shift * shift);
        let mean = y + sigma * shift;
        (mean, var + mean * mean)
    });
    let draws = task_by_name("hier-gaussian-linear-uniform")
        .unwrap()
        .exact_posterior(&obs, None, obs.len(), 1000, &mut rng(32))
        .unwrap();
    assert!(draws.iter().flat_map(|d| &d[1..]).all(|mu| (-10.0..=10.0).contains(mu)));
}

#[test]
fn hier_brownian_ragged_posteriors_use_each_site_s_own_observations() {
    let model = task_by_name("hier-brownian").unwrap();
    let data = simulate_dataset(model.as_ref(), 2, &mut rng(25)).unwrap();
    let full = data.observed();
    let draws = |obs: &tfmpe::tasks::Observed| {
        model.exact_posterior_observed(obs, 4000, &mut rng(26)).unwrap()
    };
    // Counts that say "all five" are the plain data set.
    let all_five = tfmpe::tasks::Observed { counts: Some(vec![5, 5]), ..full.clone() };
    assert_eq!(draws(&all_five), draws(&full));
    // Site 0 keeps only its latest (least precise) observation: its θ widens toward the prior.
    let times = full.inputs.as_ref().unwrap();
    let latest = (0..5).max_by(|&a, &b| times[a].total_cmp(&times[b])).unwrap();
    let mut values = vec![full.values[latest]];
    let mut inputs = vec![times[latest]];
    values.extend_from_slice(&full.values[5..]);
    inputs.extend_from_slice(&times[5..]);
    let ragged =
        tfmpe::tasks::Observed { sites: 2, values, inputs: Some(inputs), counts: Some(vec![1, 5]) };
    let sd = |d: &[Vec<f64>], k: usize| mean_sd(&d.iter().map(|x| x[k]).collect::<Vec<_>>()).1;
    let (wide, narrow) = (draws(&ragged), draws(&full));
    assert!(sd(&wide, 1) > sd(&narrow, 1), "θ_0 with one observation is wider");
    assert!((sd(&wide, 2) / sd(&narrow, 2) - 1.0).abs() < 0.2, "θ_1 keeps its observations");
    // A task whose sites always observe everything has no ragged exact posterior.
    let gaussian = task_by_name("hier-gaussian").unwrap();
    let g = simulate_dataset(gaussian.as_ref(), 2, &mut rng(27)).unwrap().observed();
    let g = tfmpe::tasks::Observed { counts: Some(vec![5, 5]), ..g };
    assert!(gaussian.exact_posterior_observed(&g, 10, &mut rng(28)).is_none());
}

/// Times 5 000 single-site prior simulations (the middle training budget) of every task on one
/// thread and counts the finite ones:
/// `cargo test --release --test tasks time_a_budget -- --ignored --nocapture`.
#[test]
#[ignore]
fn time_a_budget_of_single_site_simulations() {
    for model in tasks() {
        let start = std::time::Instant::now();
        let mut rng = rng(0);
        let mut finite = 0;
        for _ in 0..5_000 {
            let g = model.sample_globals(&mut rng);
            let l = model.sample_locals(&g, &mut rng);
            let inputs = model.sample_functional_inputs(&mut rng);
            let y = model.simulate_site(&g, &l, inputs.as_deref(), &mut rng);
            finite += usize::from(y.iter().all(|v| v.is_finite()));
        }
        println!("{}: {:?}, {finite} of 5 000 finite", model.name(), start.elapsed());
    }
}

/// ∫∫ exp(log p) over a two-parameter posterior (one site), by the trapezoid rule on the grid
/// `xs × ys` mapped to parameters by `at`, which returns the point and the Jacobian of the map.
fn grid_mass(
    task: &dyn HierarchicalModel, obs: &[f64], xs: &[f64], ys: &[f64],
    at: impl Fn(f64, f64) -> (Vec<f64>, f64),
) -> f64 {
    let (points, jacobians): (Vec<Vec<f64>>, Vec<f64>) =
        xs.iter().flat_map(|&x| ys.iter().map(move |&y| (x, y))).map(|(x, y)| at(x, y)).unzip();
    let lp = task.exact_log_posterior(obs, None, 1, &points).expect("an exact log density");
    let weight = |v: &[f64], i: usize| {
        let h = v[1] - v[0];
        if i == 0 || i == v.len() - 1 {
            h / 2.0
        } else {
            h
        }
    };
    let mut mass = 0.0;
    for i in 0..xs.len() {
        for j in 0..ys.len() {
            let k = i * ys.len() + j;
            mass += weight(xs, i) * weight(ys, j) * jacobians[k] * lp[k].exp();
        }
    }
    mass
}

fn linspace(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    (0..n).map(|i| lo + (hi - lo) * i as f64 / (n - 1) as f64).collect()
}

#[test]
fn exact_log_posteriors_integrate_to_one_and_match_their_samplers() {
    // One site, so the posterior is two-dimensional and a fine grid integrates it to 1e−4;
    // a wrong normaliser or a missing term would be off by far more. hier-gaussian-linear's μ
    // given σ narrows to a spike as σ → 0, so its grid runs over (σ, z) with
    // μ = y/(1 + σ²) + z·σ/√(1 + σ²), whose Jacobian is σ/√(1 + σ²).
    let gl = task_by_name("hier-gaussian-linear").unwrap();
    let y = 1.3;
    let mass =
        grid_mass(&*gl, &[y], &linspace(1e-9, 8.0, 1601), &linspace(-9.0, 9.0, 721), |s, z| {
            let (var, sd) = (1.0 + s * s, s / (1.0 + s * s).sqrt());
            (vec![s, y / var + z * sd], sd)
        });
    assert!((mass - 1.0).abs() < 1e-3, "hier-gaussian-linear integrates to {mass}");
    let hg = task_by_name("hier-gaussian").unwrap();
    let obs = [0.31, 0.52, 0.18, 0.44, 0.29];
    let (mus, thetas) = (linspace(-1.0, 1.8, 1401), linspace(-0.3, 1.0, 1301));
    let mass = grid_mass(&*hg, &obs, &mus, &thetas, |m, t| (vec![m, t], 1.0));
    assert!((mass - 1.0).abs() < 1e-3, "hier-gaussian integrates to {mass}");
    // At many sites, the mean log density over exact draws is minus the entropy of the
    // Gaussian chain μ | y, θ_s | μ, y_s: −d/2 (1 + ln 2π) − ln sd_μ − S ln sd_θ, where the
    // draws' own spread gives the standard deviations (their sampling error is 1/√(2n)).
    let sites = 4;
    let obs: Vec<f64> = (0..5 * sites).map(|i| 0.1 * (i % 7) as f64).collect();
    let draws = hg.exact_posterior(&obs, None, sites, 20_000, &mut rng(3)).unwrap();
    let lp = hg.exact_log_posterior(&obs, None, sites, &draws).unwrap();
    let mean_lp = lp.iter().sum::<f64>() / lp.len() as f64;
    let (_, sd_mu) = mean_sd(&draws.iter().map(|d| d[0]).collect::<Vec<_>>());
    // θ_s − its conditional mean has sd_θ; its conditional mean moves with μ by a known
    // factor, so the residual's spread is taken from draws with that factor removed.
    let d = (1 + sites) as f64;
    let (_, sd_theta) = {
        let k = (1.0 / 0.01) / (1.0 / 0.01 + 5.0 / 0.01);
        let r: Vec<f64> = draws.iter().map(|x| x[1] - k * x[0]).collect();
        mean_sd(&r)
    };
    let want = -d / 2.0 * (1.0 + (2.0 * std::f64::consts::PI).ln())
        - sd_mu.ln()
        - sites as f64 * sd_theta.ln();
    assert!((mean_lp - want).abs() < 0.05, "mean log density {mean_lp}, want {want}");
}

/// The prior densities that `run --rounds` weighs by are the densities of the prior's draws:
/// for a density h on a box, E_prior[h(x) / p(x)] = ∫ h = 1 exactly when p is the draws'
/// density there (a density of another model moves it by the ratio of the two). Checked with
/// 200 000 draws on a box of one site's (global, local − shift · global), a map of unit
/// Jacobian, where p stays well away from zero: hier-gaussian's local sits within a few 0.1 of
/// its global.
#[test]
fn prior_densities_are_the_densities_of_the_prior_draws() {
    for (name, shift, lo, hi) in [
        ("hier-gaussian-linear", 0.0, [0.3, -1.5], [1.5, 1.5]),
        ("hier-gaussian", 1.0, [-1.0, -0.15], [1.0, 0.15]),
        ("hier-brownian", 1.0, [-1.0, -0.15], [1.0, 0.15]),
    ] {
        let task = task_by_name(name).unwrap();
        let volume = (hi[0] - lo[0]) * (hi[1] - lo[1]);
        let mut r = rng(8);
        let n = 200_000;
        let terms: Vec<f64> = (0..n)
            .map(|_| {
                let glob = task.sample_globals(&mut r);
                let x = [glob.clone(), task.sample_locals(&glob, &mut r)].concat();
                let y = [x[0], x[1] - shift * x[0]];
                let inside = (0..2).all(|k| (lo[k]..hi[k]).contains(&y[k]));
                if inside {
                    (-task.log_prior(&x, 1).unwrap()).exp() / volume
                } else {
                    0.0
                }
            })
            .collect();
        let (mean, sd) = mean_sd(&terms);
        let se = sd / (n as f64).sqrt();
        assert!((mean - 1.0).abs() < 4.0 * se, "{name}: E[h/p] = {mean} ± {se}");
        assert!(se < 0.02, "{name}: too few draws in the box (se {se})");
        // Two sites: the second site's local adds its own term.
        let glob = task.sample_globals(&mut r);
        let (a, b) = (task.sample_locals(&glob, &mut r), task.sample_locals(&glob, &mut r));
        let both = task.log_prior(&[glob.clone(), a.clone(), b.clone()].concat(), 2).unwrap();
        let one = |l: &[f64]| task.log_prior(&[glob.clone(), l.to_vec()].concat(), 1).unwrap();
        let no_site = one(&a) + one(&b) - both;
        let again = one(&a) - (both - one(&b));
        assert!((no_site - again).abs() < 1e-12 && no_site.is_finite(), "{name}");
    }
    let gl = task_by_name("hier-gaussian-linear").unwrap();
    assert_eq!(gl.log_prior(&[-0.1, 0.0], 1), Some(f64::NEG_INFINITY));
    assert_eq!(task_by_name("hier-two-moons").unwrap().log_prior(&[0.5; 6], 1), None);
}
