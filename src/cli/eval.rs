//! `tfmpe eval`: C2ST of `samples.csv` against the task's exact posterior for `observation.csv`,
//! and on request SBC and TARP of the saved posterior network over data sets from the prior.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use tfmpe::io::Table;
use tfmpe::metrics::{c2st, sbc, tarp, C2stConfig};
use tfmpe::model::checkpoint;
use tfmpe::model::ode::Solver;
use tfmpe::sbi;
use tfmpe::sbi::network::{Network, NetworkConfig};
use tfmpe::tasks::{task_by_name, HierarchicalModel};
use tfmpe::{Device, Error, Result};

use super::files::{self, read_observation, write_json};
use super::progress::Bars;
use super::{plots, SolverArgs};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A folder written by `tfmpe run`.
    #[arg(long)]
    pub out: PathBuf,
    /// Reference (exact posterior) samples to draw.
    #[arg(long, default_value_t = REFERENCE_SAMPLES)]
    pub reference_samples: usize,
    /// Data sets simulated from the prior for SBC and TARP (0: skip them). Each needs
    /// `--calibration-draws` posterior samples from the saved network.
    #[arg(long, default_value_t = 0)]
    pub calibration: usize,
    /// Posterior draws per calibration data set (SBC ranks take the values 0..=this).
    #[arg(long, default_value_t = 99)]
    pub calibration_draws: usize,
    /// The ODE solver of the calibration draws.
    #[command(flatten)]
    pub ode: SolverArgs,
    /// Seeds the calibration data sets and draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
}

/// Exact-posterior draws that `tfmpe run` compares against (C2ST) and plots.
pub const REFERENCE_SAMPLES: usize = 1000;

impl EvalArgs {
    /// The evaluation `tfmpe run` ends with: calibration over `calibration` data sets (0: none)
    /// with the run's solver and seed.
    pub fn for_run(out: &Path, calibration: usize, ode: SolverArgs, seed: u64) -> Self {
        EvalArgs {
            out: out.to_path_buf(),
            reference_samples: REFERENCE_SAMPLES,
            calibration,
            calibration_draws: 99,
            ode,
            seed,
            backend: tfmpe::backend::BackendKind::Auto,
        }
    }
}

/// Computes the metrics and returns them as a JSON object.
pub fn evaluate(device: &Device, args: &EvalArgs) -> Result<serde_json::Value> {
    // The calibration options are checked before the C2ST spends its minute.
    let solver = args.ode.solver()?;
    if args.calibration > 0 && args.calibration_draws == 0 {
        return Err(Error::Invalid(
            "--calibration-draws must be at least 1 (99 is the usual choice)".into(),
        ));
    }
    let config: NetworkConfig = checkpoint::load_config(&args.out.join(files::POSTERIOR_DIR))?;
    let task = task_by_name(&config.task)?;
    let (obs, sites) = read_observation(&args.out.join(files::OBSERVATION), &*task, None)?;
    let samples = Table::read(&args.out.join(files::SAMPLES))?;
    let names = task.parameter_names(sites);
    if samples.columns != names {
        return Err(Error::Invalid(format!(
            "{}: the columns are not the parameters of `{}` with {sites} sites",
            args.out.join(files::SAMPLES).display(),
            task.name()
        )));
    }
    let mut metrics = match exact_reference(&*task, &obs, sites, args.reference_samples) {
        // In natural parameter space, as sbibm does.
        Some(reference) => json!({
            "c2st": c2st(device, &samples.rows, &reference, &C2stConfig::default())?,
            "c2st_reference_samples": reference.len(),
        }),
        None => {
            json!({ "c2st": null, "note": format!("task `{}` has no exact posterior", task.name()) })
        }
    };
    if args.calibration > 0 {
        let (sbc, tarp) = calibration(device, args, solver, &*task, &names)?;
        metrics["sbc"] = sbc;
        metrics["tarp"] = tarp;
    }
    Ok(metrics)
}

/// SBC and TARP of the saved posterior network over `args.calibration` data sets from the prior.
fn calibration(
    device: &Device,
    args: &EvalArgs,
    solver: Solver,
    task: &dyn HierarchicalModel,
    names: &[String],
) -> Result<(serde_json::Value, serde_json::Value)> {
    let mut net = Network::load(device, &args.out.join(files::POSTERIOR_DIR))?;
    let bars = Bars::new();
    let cal = sbi::calibration_draws(
        device,
        &mut net,
        task,
        args.calibration,
        args.calibration_draws,
        solver,
        args.seed,
        1000,
        &bars,
    )?;
    bars.finish();
    let s = sbc(&cal.truths, &cal.draws)?;
    let by_name = |f: &dyn Fn(usize) -> serde_json::Value| -> serde_json::Map<_, _> {
        names
            .iter()
            .enumerate()
            .map(|(p, n)| (n.clone(), f(p)))
            .collect()
    };
    let worst = (0..names.len())
        .min_by(|&a, &b| s.ks_p[a].total_cmp(&s.ks_p[b]))
        .unwrap_or(0);
    let sbc = json!({
        "data_sets": args.calibration, "draws": s.draws,
        "ks_p": by_name(&|p| json!(s.ks_p[p])),
        "min_ks_p": s.ks_p[worst], "min_ks_p_parameter": names[worst],
        "rank_histograms": by_name(&|p| json!(s.histogram(p, 10))),
    });
    let t = tarp(&cal.truths, &cal.draws)?;
    let ecp: Vec<[f64; 2]> = (0..=20)
        .map(|k| k as f64 / 20.0)
        .map(|a| [a, t.ecp(a)])
        .collect();
    plots::write_calibration(&args.out, task, net.config.sites, names, &s, &t)?;
    let tarp = json!({
        "data_sets": args.calibration, "draws": s.draws, "ks_statistic": t.ks_statistic,
        "ks_p": t.ks_p, "atc": t.atc(), "ecp": ecp,
    });
    Ok((sbc, tarp))
}

/// `n` draws from the task's exact posterior for `obs`, or `None` when it has none. The seed is
/// fixed, so the run's plot shows the very draws its C2ST compared against.
pub fn exact_reference(
    task: &dyn HierarchicalModel,
    obs: &[f64],
    sites: usize,
    n: usize,
) -> Option<Vec<Vec<f64>>> {
    task.exact_posterior(obs, None, sites, n, &mut StdRng::seed_from_u64(0xC25))
}

pub fn run(args: EvalArgs) -> Result<()> {
    let (device, _) = Device::open(args.backend)?;
    let metrics = evaluate(&device, &args)?;
    let path = args.out.join(files::REPORT);
    if let Ok(text) = std::fs::read_to_string(&path) {
        if let Ok(mut report) = serde_json::from_str::<serde_json::Value>(&text) {
            report["metrics"] = metrics.clone();
            write_json(&path, &report)?;
        }
    }
    println!("{metrics}");
    Ok(())
}
