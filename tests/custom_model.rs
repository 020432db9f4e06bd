//! User models: the prior vocabulary (moments, supports, references to globals), the checks on
//! a model's parts, batched simulation, the model file and its external-program simulator.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::rngs::StdRng;
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use tfmpe::tasks::custom::{model_file, CustomVariable};
use tfmpe::tasks::special::erfc;
use tfmpe::tasks::{
    simulate_dataset, simulate_datasets, BatchSimulator, Bijection, CustomModel, HierarchicalModel,
    Param, ParamFunction, Prior, SiteBatch, Variable,
};
use tfmpe::Error;

const N: usize = 200_000;

fn moments(x: &[f64]) -> (f64, f64) {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (mean, x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0))
}

fn phi(z: f64) -> f64 {
    (-0.5 * z * z).exp() / (2.0 * std::f64::consts::PI).sqrt()
}

fn big_phi(z: f64) -> f64 {
    0.5 * erfc(-z / std::f64::consts::SQRT_2)
}

/// Mean and variance of N(m, s) truncated to (a, b).
fn truncated_moments(m: f64, s: f64, a: f64, b: f64) -> (f64, f64) {
    let (al, be) = ((a - m) / s, (b - m) / s);
    let z = big_phi(be) - big_phi(al);
    let (pa, pb) = (phi(al), phi(be));
    let ta = if al.is_finite() { al * pa } else { 0.0 };
    let tb = if be.is_finite() { be * pb } else { 0.0 };
    let d = (pa - pb) / z;
    (m + s * d, s * s * (1.0 + (ta - tb) / z - d * d))
}

#[test]
fn every_prior_family_draws_its_moments_inside_its_support() {
    use std::f64::consts::PI;
    let v = Param::Value;
    let lognormal_var = ((0.25f64).exp() - 1.0) * (0.2f64 + 0.25).exp();
    let tn = truncated_moments(1.0, 2.0, -1.0, 2.0);
    let half = truncated_moments(0.5, 1.0, 0.0, f64::INFINITY);
    let below = truncated_moments(0.0, 1.5, f64::NEG_INFINITY, 1.0);
    let cases: Vec<(Prior, f64, f64)> = vec![
        (Prior::Normal { loc: v(1.0), scale: v(2.0) }, 1.0, 4.0),
        (Prior::HalfNormal { scale: v(2.0) }, 2.0 * (2.0 / PI).sqrt(), 4.0 * (1.0 - 2.0 / PI)),
        (Prior::LogNormal { loc: v(0.1), scale: v(0.5) }, (0.1f64 + 0.125).exp(), lognormal_var),
        (Prior::Uniform { lo: -1.0, hi: 3.0 }, 1.0, 16.0 / 12.0),
        (Prior::TruncatedNormal { loc: v(1.0), scale: v(2.0), lo: -1.0, hi: 2.0 }, tn.0, tn.1),
        (
            Prior::TruncatedNormal { loc: v(0.5), scale: v(1.0), lo: 0.0, hi: f64::INFINITY },
            half.0,
            half.1,
        ),
        (
            Prior::TruncatedNormal { loc: v(0.0), scale: v(1.5), lo: f64::NEG_INFINITY, hi: 1.0 },
            below.0,
            below.1,
        ),
        (Prior::Exponential { rate: v(2.0) }, 0.5, 0.25),
        (Prior::Gamma { shape: v(3.0), rate: v(2.0) }, 1.5, 0.75),
        (Prior::Beta { alpha: v(2.0), beta: v(5.0) }, 2.0 / 7.0, 10.0 / (49.0 * 8.0)),
    ];
    let mut rng = StdRng::seed_from_u64(1);
    let no_globals = |_: &str| -> usize { unreachable!() };
    for (prior, mean, var) in cases {
        let x = prior.sample("x", &[], 1, N, &no_globals, &mut rng).unwrap();
        // The density (`run --rounds` weighs by it) integrates to one over the draws' range
        // widened by ten sd, on a midpoint grid, and is −∞ outside the support.
        let (lo, hi) =
            x.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let (lo, hi) = (lo - 10.0 * var.sqrt(), hi + 10.0 * var.sqrt());
        let n = 400_000;
        let h = (hi - lo) / n as f64;
        let grid: Vec<f64> = (0..n).map(|i| lo + (i as f64 + 0.5) * h).collect();
        let mass: f64 = grid
            .iter()
            .map(|&g| prior.log_density("x", &[], 1, &[g], &no_globals).unwrap()[0].exp() * h)
            .sum();
        assert!((mass - 1.0).abs() < 2e-3, "{prior:?}: the density integrates to {mass}");
        let outside =
            [-1e6, 1e6].map(|g| prior.log_density("x", &[], 1, &[g], &no_globals).unwrap()[0]);
        let bounded = prior.family() != "Normal";
        assert!(!bounded || outside.contains(&f64::NEG_INFINITY), "{prior:?}: {outside:?}");
        let (m, s2) = moments(&x);
        // Five standard errors of the mean; 3% of the variance (its standard error is below 1%
        // for these shapes at 200 000 draws).
        assert!((m - mean).abs() < 5.0 * (var / N as f64).sqrt(), "{prior:?}: mean {m} vs {mean}");
        assert!((s2 / var - 1.0).abs() < 0.03, "{prior:?}: variance {s2} vs {var}");
        let b = prior.bijection();
        assert!(
            x.iter().all(|&v| b.forward(v).is_finite()),
            "{prior:?}: every draw inside the support of {b:?}"
        );
    }
}

#[test]
fn supports_give_the_bijections() {
    let v = Param::Value;
    let inf = f64::INFINITY;
    let tn = |lo, hi| Prior::TruncatedNormal { loc: v(0.0), scale: v(1.0), lo, hi };
    assert_eq!(Prior::Normal { loc: v(0.0), scale: v(1.0) }.bijection(), Bijection::Identity);
    assert_eq!(Prior::Gamma { shape: v(2.0), rate: v(1.0) }.bijection(), Bijection::Log);
    assert_eq!(
        Prior::Beta { alpha: v(1.0), beta: v(1.0) }.bijection(),
        Bijection::LogitAffine { lo: 0.0, hi: 1.0 }
    );
    assert_eq!(tn(0.0, inf).bijection(), Bijection::Log);
    assert_eq!(tn(-2.0, inf).bijection(), Bijection::LogAbove { lo: -2.0 });
    assert_eq!(tn(-inf, 3.0).bijection(), Bijection::LogBelow { hi: 3.0 });
    assert_eq!(tn(-1.0, 3.0).bijection(), Bijection::LogitAffine { lo: -1.0, hi: 3.0 });
    assert_eq!(tn(-inf, inf).bijection(), Bijection::Identity);
}

/// y = μ_s + σ·z at every site, one row per call counted.
struct GaussianSimulator {
    calls: AtomicUsize,
    rows: AtomicUsize,
}

impl GaussianSimulator {
    fn new() -> Self {
        GaussianSimulator { calls: AtomicUsize::new(0), rows: AtomicUsize::new(0) }
    }
}

impl BatchSimulator for GaussianSimulator {
    fn simulate(&self, batch: &SiteBatch, seed: u64) -> tfmpe::Result<Vec<f64>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.rows.fetch_add(batch.rows, Ordering::Relaxed);
        let mut rng = StdRng::seed_from_u64(seed);
        let gd = batch.globals.len() / batch.rows;
        Ok((0..batch.rows)
            .map(|r| {
                let z: f64 = StandardNormal.sample(&mut rng);
                batch.locals[r] + batch.globals[r * gd] * z
            })
            .collect())
    }
}

/// The counting simulator shared with the test that reads its counts.
struct Shared(Arc<GaussianSimulator>);

impl BatchSimulator for Shared {
    fn simulate(&self, batch: &SiteBatch, seed: u64) -> tfmpe::Result<Vec<f64>> {
        self.0.simulate(batch, seed)
    }
}

fn gaussian_linear(sim: Box<dyn BatchSimulator>, locals: Prior) -> tfmpe::Result<CustomModel> {
    CustomModel::new(
        "my-model",
        vec![
            CustomVariable::new("sigma", 1, Prior::HalfNormal { scale: Param::Value(1.0) }),
            CustomVariable::new(
                "m",
                1,
                Prior::Normal { loc: Param::Value(0.0), scale: Param::Value(3.0) },
            ),
        ],
        vec![CustomVariable::new("mu", 1, locals)],
        vec![Variable::scalar("y", Bijection::Identity)],
        sim,
    )
}

fn standard_locals() -> Prior {
    Prior::Normal { loc: Param::Value(0.0), scale: Param::Value(1.0) }
}

#[test]
fn a_batch_simulator_sees_all_the_sites_of_a_phase_in_one_call() {
    let sim = Arc::new(GaussianSimulator::new());
    let model = gaussian_linear(Box::new(Shared(sim.clone())), standard_locals()).unwrap();
    let seeds: Vec<u64> = (0..50).collect();
    let sets = simulate_datasets(&model, 10, &seeds).unwrap();
    assert_eq!(sim.calls.load(Ordering::Relaxed), 1);
    assert_eq!(sim.rows.load(Ordering::Relaxed), 500);
    assert_eq!(sets.len(), 50);
    // Each data set's sites share its globals and carry its locals: y − μ_s is σ-scaled noise.
    let z: Vec<f64> = sets
        .iter()
        .flat_map(|d| (0..10).map(move |s| (d.obs[s] - d.params[2 + s]) / d.params[0]))
        .collect();
    let (m, v) = moments(&z);
    assert!(m.abs() < 0.15 && (v - 1.0).abs() < 0.2, "noise mean {m}, variance {v}");
    // The same seeds give the same data sets; a single data set is one call too.
    assert_eq!(sets, simulate_datasets(&model, 10, &seeds).unwrap());
    simulate_dataset(&model, 7, &mut StdRng::seed_from_u64(3)).unwrap();
    assert_eq!(sim.calls.load(Ordering::Relaxed), 3);
    assert_eq!(model.parameter_names(2), ["sigma", "m", "mu.0", "mu.1"]);
}

#[test]
fn local_priors_take_globals_by_name_and_as_functions() {
    /// loc = 2·m, for every row at once.
    struct TwiceM;
    impl ParamFunction for TwiceM {
        fn eval(&self, globals: &[f64], rows: usize) -> tfmpe::Result<Vec<f64>> {
            Ok((0..rows).map(|r| 2.0 * globals[r * 2 + 1]).collect())
        }
    }
    let cases = [(Param::Global("m".into()), 1.0), (Param::Function(Arc::new(TwiceM)), 2.0)];
    for (loc, factor) in cases {
        let locals = Prior::Normal { loc, scale: Param::Global("sigma".into()) };
        let model = gaussian_linear(Box::new(GaussianSimulator::new()), locals).unwrap();
        let seeds: Vec<u64> = (100..2100).collect();
        let sets = simulate_datasets(&model, 5, &seeds).unwrap();
        // (μ_s − factor·m) / σ ~ N(0, 1).
        let z: Vec<f64> = sets
            .iter()
            .flat_map(|d| {
                (0..5).map(move |s| (d.params[2 + s] - factor * d.params[1]) / d.params[0])
            })
            .collect();
        let (m, v) = moments(&z);
        assert!(m.abs() < 0.05 && (v - 1.0).abs() < 0.05, "factor {factor}: mean {m}, var {v}");
        // The prior density resolves the same parameters, site by site.
        let d = &sets[0];
        let (sigma, mm) = (d.params[0], d.params[1]);
        let normal = |x: f64, loc: f64, sd: f64| {
            -0.5 * ((x - loc) / sd).powi(2) - sd.ln() - 0.5 * (2.0 * std::f64::consts::PI).ln()
        };
        let mut want = 2f64.ln() + normal(sigma, 0.0, 1.0) + normal(mm, 0.0, 3.0);
        want += d.params[2..].iter().map(|&mu| normal(mu, factor * mm, sigma)).sum::<f64>();
        let got = model.log_prior(&d.params, 5).unwrap();
        assert!((got - want).abs() < 1e-9 * want.abs().max(1.0), "{got} against {want}");
        // A negative σ has no density; a negative scale from it makes the locals' −∞ too.
        let mut bad = d.params.clone();
        bad[0] = -1.0;
        assert_eq!(model.log_prior(&bad, 5), Some(f64::NEG_INFINITY));
    }
}

fn refused(result: tfmpe::Result<CustomModel>, needle: &str) {
    match result {
        Ok(_) => panic!("a model that should be refused ({needle}) was built"),
        Err(e) => assert!(e.to_string().contains(needle), "`{e}` does not say `{needle}`"),
    }
}

#[test]
fn models_with_bad_parts_are_refused_naming_the_part() {
    let sim = || -> Box<dyn BatchSimulator> { Box::new(GaussianSimulator::new()) };
    let v = Param::Value;
    refused(
        gaussian_linear(sim(), Prior::Normal { loc: Param::Global("tau".into()), scale: v(1.0) }),
        "refers to `tau`, which is not a scalar global",
    );
    refused(gaussian_linear(sim(), Prior::Normal { loc: v(0.0), scale: v(-1.0) }), "scale = -1");
    refused(gaussian_linear(sim(), Prior::Uniform { lo: 2.0, hi: 1.0 }), "lo < hi");
    refused(gaussian_linear(sim(), Prior::Uniform { lo: 0.0, hi: f64::INFINITY }), "both finite");
    let global = |prior| CustomVariable::new("g", 1, prior);
    let local = || CustomVariable::new("mu", 1, standard_locals());
    let y = || vec![Variable::scalar("y", Bijection::Identity)];
    refused(
        CustomModel::new(
            "m",
            vec![global(Prior::Exponential { rate: Param::Global("g".into()) })],
            vec![local()],
            y(),
            sim(),
        ),
        "a global's prior takes only constants",
    );
    refused(
        CustomModel::new("m", vec![global(standard_locals())], vec![local()], vec![], sim()),
        "at least one global, one local and one observation",
    );
    refused(
        CustomModel::new(
            "m",
            vec![global(standard_locals())],
            vec![CustomVariable::new("g", 1, standard_locals())],
            y(),
            sim(),
        ),
        "two variables are named `g`",
    );
    refused(
        CustomModel::new(
            "m",
            vec![CustomVariable::new("a.b", 1, standard_locals())],
            vec![local()],
            y(),
            sim(),
        ),
        "variable name `a.b`",
    );
}

#[test]
fn a_simulator_of_the_wrong_shape_is_an_error_naming_the_shapes() {
    struct Short;
    impl BatchSimulator for Short {
        fn simulate(&self, batch: &SiteBatch, _: u64) -> tfmpe::Result<Vec<f64>> {
            Ok(vec![0.0; batch.rows - 1])
        }
    }
    let model = gaussian_linear(Box::new(Short), standard_locals()).unwrap();
    let e = simulate_datasets(&model, 4, &[1, 2]).unwrap_err();
    assert!(matches!(e, Error::Simulator(_)), "{e:?}");
    assert!(e.to_string().contains("returned 7 values for 8 sites"), "{e}");
}

// ---------------------------------------------------------------- model files

fn example_folder() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/model-file")
}

/// A model file around a shell command, in a fresh folder.
fn shell_model(script: &str, extra: &str) -> tfmpe::Result<CustomModel> {
    let text = format!(
        "format = 1\nname = \"shell\"\n{extra}\n\
         [[globals]]\nname = \"sigma\"\nprior = {{ family = \"HalfNormal\", scale = 1 }}\n\
         [[locals]]\nname = \"mu\"\nsize = 2\nprior = {{ family = \"Normal\", loc = 0, scale = \"sigma\" }}\n\
         [[observations]]\nname = \"y\"\n\
         [simulator]\ncommand = [\"sh\", \"-c\", {script:?}]\nparallel = 2\ntimeout = 2\n"
    );
    model_file::parse(&text, &std::env::temp_dir())
}

#[test]
fn the_example_model_file_runs_its_python_simulator() {
    let model = model_file::load(&example_folder().join("gaussian-linear.toml")).unwrap();
    assert_eq!(model.name(), "gaussian-linear");
    assert_eq!(model.parameter_bijections(1), [Bijection::Log, Bijection::Identity]);
    let seeds: Vec<u64> = (0..200).collect();
    let sets = simulate_datasets(&model, 10, &seeds).unwrap();
    let z: Vec<f64> = sets
        .iter()
        .flat_map(|d| (0..10).map(move |s| (d.obs[s] - d.params[1 + s]) / d.params[0]))
        .collect();
    let (m, v) = moments(&z);
    assert!(m.abs() < 0.1 && (v - 1.0).abs() < 0.1, "noise mean {m}, variance {v}");
    assert_eq!(sets, simulate_datasets(&model, 10, &seeds).unwrap(), "seeded");
}

#[test]
fn an_external_simulator_reads_the_documented_columns() {
    // Echo the header it was given, then y = mu[0] + mu[1] per row (awk on the CSV).
    let script = r#"read h; echo "$h" >&2; echo y; awk -F, '{ printf "%.17g\n", $2 + $3 }'"#;
    let model = shell_model(script, "").unwrap();
    let sets = simulate_datasets(&model, 3, &[5, 6, 7]).unwrap();
    for d in &sets {
        for s in 0..3 {
            let (a, b) = (d.params[1 + 2 * s], d.params[2 + 2 * s]);
            assert!((d.obs[s] - (a + b)).abs() < 1e-9 * (1.0 + a.abs() + b.abs()));
        }
    }
    // Non-finite rows are passed on (the pipelines drop and count them).
    let model = shell_model(
        r#"cat > /dev/null; echo y; for i in $(seq $TFMPE_ROWS); do echo nan; done"#,
        "",
    )
    .unwrap();
    let sets = simulate_datasets(&model, 2, &[1]).unwrap();
    assert!(sets[0].obs.iter().all(|v| v.is_nan()));
}

#[test]
fn external_simulator_failures_quote_its_standard_error() {
    let cases = [
        (r#"cat > /dev/null; echo 'the ODE diverged' >&2; exit 3"#, "the ODE diverged"),
        (r#"cat > /dev/null; echo x; echo 1"#, "wrote the header `x`"),
        (r#"cat > /dev/null; echo y; echo 1"#, "rows for"),
        (r#"cat > /dev/null; echo y; for i in $(seq $TFMPE_ROWS); do echo abc; done"#, "`abc`"),
        (r#"sleep 10"#, "timed out"),
    ];
    for (script, needle) in cases {
        let model = shell_model(script, "").unwrap();
        let e = simulate_datasets(&model, 2, &[1, 2]).unwrap_err();
        assert!(matches!(e, Error::Simulator(_)), "{script}: {e:?}");
        assert!(e.to_string().contains(needle), "{script}: `{e}` lacks `{needle}`");
    }
    let missing = model_file::parse(
        &std::fs::read_to_string(example_folder().join("gaussian-linear.toml"))
            .unwrap()
            .replace("\"python3\"", "\"no-such-program-tfmpe\""),
        &example_folder(),
    )
    .unwrap();
    let e = simulate_datasets(&missing, 2, &[1]).unwrap_err();
    assert!(e.to_string().contains("cannot start `no-such-program-tfmpe"), "{e}");
}

#[test]
fn model_file_mistakes_are_explained() {
    let ok = std::fs::read_to_string(example_folder().join("gaussian-linear.toml")).unwrap();
    let cases = [
        (ok.replace("format = 1", "format = 2"), "reads format = 1"),
        (ok.replace("HalfNormal", "Cauchy"), "unknown family `Cauchy`"),
        (ok.replace("loc = 0.0, ", ""), "missing [\"loc\"]"),
        (
            ok.replace("scale = 1.0 }\n\n[[locals]]", "scale = 1.0, rate = 2 }\n\n[[locals]]"),
            "not used [\"rate\"]",
        ),
        (ok.replace("name = \"y\"", "name = \"y\"\ncolour = 1"), "unknown field `colour`"),
        (ok.replace("batch = 10000", "batch = 0"), "batch ≥ 1"),
    ];
    for (text, needle) in cases {
        match model_file::parse(&text, &example_folder()) {
            Ok(_) => panic!("accepted a file that should say `{needle}`"),
            Err(e) => assert!(e.to_string().contains(needle), "`{e}` lacks `{needle}`"),
        }
    }
}

#[test]
fn mangled_model_files_are_errors_never_panics() {
    use rand::RngExt;
    let ok = std::fs::read_to_string(example_folder().join("gaussian-linear.toml")).unwrap();
    let pieces =
        ["=", "\"", "[", "]", "{", "}", ",", "-1", "1e400", "nan", "\n", "size = 0", "lo = 5"];
    let mut rng = StdRng::seed_from_u64(9);
    for _ in 0..3000 {
        let mut text = ok.clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(0..=text.len());
            let at = (0..=at).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
            if rng.random_bool(0.5) {
                text.insert_str(at, pieces[rng.random_range(0..pieces.len())]);
            } else {
                let end = (at + rng.random_range(1..8)).min(text.len());
                let end = (end..=text.len()).find(|&i| text.is_char_boundary(i)).unwrap();
                text.replace_range(at..end, "");
            }
        }
        // Ok or a message; a panic fails the test.
        let _ = model_file::parse(&text, &example_folder());
    }
}
