//! `tfmpe eval`: C2ST of `samples.csv` against the task's exact posterior for `observation.csv`.

use std::path::{Path, PathBuf};

use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::json;
use tfmpe::io::Table;
use tfmpe::metrics::{c2st, C2stConfig};
use tfmpe::model::checkpoint;
use tfmpe::sbi::network::NetworkConfig;
use tfmpe::tasks::{task_by_name, HierarchicalModel};
use tfmpe::{Device, Error, Result};

use super::files::{self, read_observation, write_json};

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A folder written by `tfmpe run`.
    #[arg(long)]
    pub out: PathBuf,
    /// Reference (exact posterior) samples to draw.
    #[arg(long, default_value_t = REFERENCE_SAMPLES)]
    pub reference_samples: usize,
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
}

/// Exact-posterior draws that `tfmpe run` compares against (C2ST) and plots.
pub const REFERENCE_SAMPLES: usize = 1000;

impl EvalArgs {
    pub fn for_run(out: &Path) -> EvalArgs {
        EvalArgs {
            out: out.to_path_buf(),
            reference_samples: REFERENCE_SAMPLES,
            backend: tfmpe::backend::BackendKind::Auto,
        }
    }
}

/// Computes the metrics and returns them as a JSON object.
pub fn evaluate(device: &Device, args: &EvalArgs) -> Result<serde_json::Value> {
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
    let Some(reference) = exact_reference(&*task, &obs, sites, args.reference_samples) else {
        return Ok(
            json!({ "c2st": null, "note": format!("task `{}` has no exact posterior", task.name()) }),
        );
    };
    // In natural parameter space, as sbibm does.
    let acc = c2st(device, &samples.rows, &reference, &C2stConfig::default())?;
    Ok(json!({ "c2st": acc, "c2st_reference_samples": reference.len() }))
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
