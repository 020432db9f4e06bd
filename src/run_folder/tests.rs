use std::collections::BTreeMap;

use super::*;
use crate::metrics::Lc2stConfig;
use crate::model::ode::Solver;
use crate::sbi::Method;
use crate::tasks::task_by_name;

fn temp(tag: &str) -> RunFolder {
    let dir = std::env::temp_dir().join(format!("tfmpe-run-folder-{tag}-{}", std::process::id()));
    crate::io::ensure_dir(&dir).unwrap();
    RunFolder::new(dir)
}

fn training(epochs: usize) -> Training {
    Training {
        best_epoch: 1,
        best_val_loss: 0.25,
        epochs,
        final_train_loss: Some(0.5),
        scaling: None,
        seconds: 1.5,
        steps: 30,
        steps_per_s: 20.0,
        stop_message: None,
        stop_reason: "max_epochs".into(),
        train_losses: vec![1.0, 0.5],
        val_losses: vec![0.25, 0.3],
        val_loss_by_sites: BTreeMap::new(),
    }
}

fn report(metrics: Metrics) -> Report {
    Report {
        backend: "cpu".into(),
        backend_reason: "cpu: asked for".into(),
        budget: 400,
        device: "CPU (2 threads)".into(),
        dropped_simulations: 1,
        fresh_sets: false,
        synthetic_sets: None,
        surrogate_scaling: None,
        posterior_scaling: None,
        losses: Losses { posterior: Some(training(2)), surrogate: None, local: None },
        max_sites: None,
        method: Method::Direct,
        metrics,
        observation: ObservationSource::Prior { obs_seed: 5 },
        observed_inputs: false,
        ragged: false,
        rounds: Vec::new(),
        samples: 300,
        seed: 3,
        simulator_calls: 399,
        sites: 3,
        solver: Solver::Rk4 { steps: 25 },
        task: "hier-gaussian".into(),
        tfmpe_version: "0.1.0".into(),
        timings_s: [("simulate".to_string(), 0.5), ("total".to_string(), 2.0)].into(),
        training_sets: 360,
        validation_sets: 39,
    }
}

fn full_metrics() -> Metrics {
    let by_name = |v: f64| -> BTreeMap<String, f64> {
        [("mu.0".to_string(), v), ("sigma".to_string(), v / 2.0)].into()
    };
    Metrics {
        c2st: Some(C2st::Measured {
            c2st: 0.61,
            c2st_globals: Some(0.55),
            c2st_reference_samples: 1000,
        }),
        sbc: Some(SbcSummary {
            data_sets: 20,
            draws: 99,
            ks_p: by_name(0.4),
            min_ks_p: 0.2,
            min_ks_p_parameter: "sigma".into(),
            rank_histograms: [("mu.0".to_string(), vec![2; 10])].into(),
        }),
        tarp: Some(CoverageSummary {
            atc: 0.01,
            data_sets: 20,
            draws: 99,
            ecp: vec![[0.0, 0.0], [0.5, 0.45], [1.0, 1.0]],
            ks_p: 0.9,
            ks_statistic: 0.1,
        }),
        expected_coverage: Some(CoverageSummary {
            atc: -0.02,
            data_sets: 20,
            draws: 99,
            ecp: vec![[0.0, 0.0], [0.5, 0.52], [1.0, 1.0]],
            ks_p: 0.7,
            ks_statistic: 0.12,
        }),
        lc2st: Some(Lc2stSummary {
            statistic: 0.004,
            p_value: 0.3,
            reject: false,
            data_sets: 1000,
            posterior_samples: 1000,
            null_mean: 0.003,
            null_q95: 0.006,
            epochs: 180,
            settings: Lc2stConfig::default(),
        }),
    }
}

#[test]
fn a_written_report_reads_back_the_same() {
    let folder = temp("report");
    let no_exact = Metrics {
        c2st: Some(C2st::Unavailable { c2st: (), note: "task `x` has no exact posterior".into() }),
        ..Metrics::default()
    };
    for metrics in [Metrics::default(), full_metrics(), no_exact] {
        let written = report(metrics);
        folder.write_report(&written).unwrap();
        assert_eq!(folder.read_report().unwrap(), written);
    }
    std::fs::remove_dir_all(folder.path()).unwrap();
}

/// Metrics written before the globals' C2ST existed still read, with that figure absent.
#[test]
fn metrics_without_the_globals_c2st_read() {
    let old = r#"{"c2st": 0.61, "c2st_reference_samples": 1000}"#;
    let want = C2st::Measured { c2st: 0.61, c2st_globals: None, c2st_reference_samples: 1000 };
    assert_eq!(serde_json::from_str::<Metrics>(old).unwrap().c2st, Some(want));
}

/// The layout outside tools parse: these keys, an empty metrics object when not evaluated, a
/// null network where the method has none, the C2ST beside SBC and TARP.
#[test]
fn the_report_keeps_its_json_layout() {
    let value = |r: &Report| serde_json::to_value(r).unwrap();
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    let bare = value(&report(Metrics::default()));
    assert_eq!(
        keys(&bare),
        [
            "backend",
            "backend_reason",
            "budget",
            "device",
            "dropped_simulations",
            "fresh_sets",
            "losses",
            "method",
            "metrics",
            "observation",
            "samples",
            "seed",
            "simulator_calls",
            "sites",
            "solver",
            "task",
            "tfmpe_version",
            "timings_s",
            "training_sets",
            "validation_sets"
        ]
    );
    assert_eq!(bare["metrics"], serde_json::json!({}));
    assert_eq!(bare["losses"]["surrogate"], serde_json::Value::Null);
    assert_eq!(bare["losses"]["posterior"]["final_train_loss"], 0.5);
    assert_eq!(bare["observation"], serde_json::json!({ "obs_seed": 5 }));
    assert_eq!(bare["method"], "direct");
    assert_eq!(bare["solver"], serde_json::json!({ "solver": "rk4", "steps": 25 }));
    let given = Report { observation: ObservationSource::Given, ..report(full_metrics()) };
    let full = value(&given);
    assert_eq!(full["observation"], "file");
    assert_eq!(
        keys(&full["metrics"]),
        [
            "c2st",
            "c2st_globals",
            "c2st_reference_samples",
            "expected_coverage",
            "lc2st",
            "sbc",
            "tarp"
        ]
    );
    assert_eq!(full["metrics"]["expected_coverage"]["ecp"][1], serde_json::json!([0.5, 0.52]));
    assert_eq!(full["metrics"]["lc2st"]["settings"]["null_trials"], 100);
    assert_eq!(full["metrics"]["tarp"]["ecp"][1], serde_json::json!([0.5, 0.45]));
    // The solver's f32 tolerances keep the digits the file has always had.
    let dopri5 =
        Report { solver: Solver::from_name("dopri5", 1).unwrap(), ..report(Metrics::default()) };
    let text = dopri5.to_json_pretty().unwrap();
    assert!(text.contains("\"atol\": 9.999999747378752e-6,\n    \"max_iters\": 4096,"));
    assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), dopri5);
}

#[test]
fn non_finite_losses_read_back_as_nan() {
    let folder = temp("nan");
    let mut written = report(Metrics::default());
    let posterior = written.losses.posterior.as_mut().unwrap();
    posterior.best_val_loss = f64::INFINITY;
    posterior.val_losses[1] = f64::NAN;
    folder.write_report(&written).unwrap();
    let read = folder.read_report().unwrap();
    let posterior = read.losses.posterior.unwrap();
    assert!(posterior.best_val_loss.is_nan() && posterior.val_losses[1].is_nan());
    assert_eq!(posterior.val_losses[0], 0.25);
    std::fs::remove_dir_all(folder.path()).unwrap();
}

#[test]
fn samples_and_observation_read_back() {
    let folder = temp("csv");
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let samples = vec![vec![1.0, 0.5, -0.25], vec![2.0, 0.0, 1.0]];
    folder.write_samples(&*task, 2, samples.clone()).unwrap();
    assert_eq!(folder.read_samples(&*task, 2).unwrap(), samples);
    assert!(folder.read_samples(&*task, 3).is_err());
    let obs = Observed { sites: 2, values: vec![0.5, -1.0], inputs: None, counts: None };
    folder.write_observation(&*task, &obs).unwrap();
    assert_eq!(folder.read_observation(&*task).unwrap(), obs);
    let mut metrics = full_metrics();
    // Without a report the metrics are kept in metrics.json.
    let saved = folder.update_metrics(&metrics).unwrap();
    assert!(folder.read_report().is_err(), "no report.json was written");
    assert_eq!(saved, folder.path().join("metrics.json"));
    let text = std::fs::read_to_string(&saved).unwrap();
    assert_eq!(serde_json::from_str::<Metrics>(&text).unwrap(), metrics);
    folder.write_report(&report(Metrics::default())).unwrap();
    metrics.sbc = None;
    assert_eq!(folder.update_metrics(&metrics).unwrap(), folder.path().join("report.json"));
    assert_eq!(folder.read_report().unwrap().metrics, metrics);
    std::fs::remove_dir_all(folder.path()).unwrap();
}

/// The C2ST against the exact posterior, jointly and on the globals alone: exact draws of
/// another seed are at chance on both; σ moved by one posterior sd scores about 0.69 on its
/// own (the best classifier's accuracy between two unit normals one apart); a task without an
/// exact posterior says so.
#[test]
fn the_globals_c2st_sees_a_moved_global() {
    use rand::rngs::StdRng;
    use rand::SeedableRng;
    let task = task_by_name("hier-gaussian-linear").unwrap();
    let obs = Observed { sites: 3, values: vec![0.3, -1.2, 2.0], inputs: None, counts: None };
    let exact = task.exact_posterior_observed(&obs, 1000, &mut StdRng::seed_from_u64(9)).unwrap();
    let measured = |rows: &[Vec<f64>]| match exact_c2st(&*task, &obs, rows, 1000) {
        Ok(C2st::Measured { c2st, c2st_globals: Some(g), c2st_reference_samples: 1000 }) => {
            (c2st, g)
        }
        other => panic!("{other:?}"),
    };
    let (joint, globals) = measured(&exact);
    assert!(joint < 0.6 && globals < 0.6, "exact draws: {joint}, {globals}");
    let mean = exact.iter().map(|r| r[0]).sum::<f64>() / 1000.0;
    let sd = (exact.iter().map(|r| (r[0] - mean).powi(2)).sum::<f64>() / 999.0).sqrt();
    let moved: Vec<Vec<f64>> = exact.iter().map(|r| [&[r[0] + sd], &r[1..]].concat()).collect();
    let (joint_moved, globals) = measured(&moved);
    eprintln!("C2ST of exact draws {joint}; σ moved: {joint_moved}, of σ alone {globals}");
    assert!(globals > 0.62, "σ moved by one sd: {globals}");
    let moons = task_by_name("hier-two-moons").unwrap();
    let obs = Observed { sites: 1, values: vec![0.1, 0.2], inputs: None, counts: None };
    let zeros = vec![vec![0.0; 6]; 20];
    let none = exact_c2st(&*moons, &obs, &zeros, 1000).unwrap();
    assert!(matches!(none, C2st::Unavailable { .. }), "{none:?}");
}

/// A resumed run compares its settings with the saved `settings.json`, the observation's f64s
/// among them: they must read back bit for bit. (With serde_json's default float parsing one
/// value in a few dozen came back one unit in the last place off, and `--resume` of the
/// README's main job, 50 observed values, refused its own folder.)
#[test]
fn a_resumed_run_reads_its_settings_back_exactly() {
    use rand::rngs::StdRng;
    use rand::{RngExt, SeedableRng};
    let folder = temp("settings");
    let mut rng = StdRng::seed_from_u64(3);
    let values: Vec<f64> = (0..1000).map(|_| rng.random::<f64>() * 8.0 - 4.0).collect();
    let obs = Observed { sites: 1000, values, inputs: None, counts: None };
    let mut spec = RunSpec {
        config: crate::sbi::RunConfig::new(1000, 5000),
        observation: Observation::Given(obs.clone()),
        samples: 10,
        solver: Solver::from_name("euler", 2).unwrap(),
        evaluation: None,
        observed_inputs: false,
        existing: Existing::Refuse,
        model_file: None,
    };
    folder.check_settings(&spec, &obs).unwrap();
    spec.existing = Existing::Resume;
    folder.check_settings(&spec, &obs).unwrap();
    let mut moved = obs.clone();
    moved.values[7] = f64::from_bits(moved.values[7].to_bits() + 1);
    let err = folder.check_settings(&spec, &moved).unwrap_err().to_string();
    assert!(err.contains("other settings (observation)"), "{err}");
    std::fs::remove_dir_all(folder.path()).unwrap();
}
