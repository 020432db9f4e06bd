//! `tfmpe sample`: posterior samples for a new observation from a saved posterior network.

use std::path::PathBuf;

use tfmpe::sbi::{self, network::Network};
use tfmpe::tasks::task_by_name;
use tfmpe::{Device, Error, Result};

use super::files::{read_observation, write_rows};
use super::progress::Bars;

#[derive(clap::Args)]
pub struct SampleArgs {
    /// The posterior checkpoint folder (`DIR/posterior` of a run, or the run folder itself).
    #[arg(long)]
    pub model: PathBuf,
    /// A one-row CSV with the observation.
    #[arg(long)]
    pub observation: PathBuf,
    #[arg(long, default_value_t = 1000)]
    pub samples: usize,
    #[command(flatten)]
    pub ode: super::SolverArgs,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Samples integrated together (bounds the memory).
    #[arg(long, default_value_t = 1000)]
    pub chunk: usize,
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
    /// Output CSV.
    #[arg(long)]
    pub out: PathBuf,
}

pub fn run(args: SampleArgs) -> Result<()> {
    let solver = args.ode.solver()?;
    let (device, why) = Device::open(args.backend)?;
    eprintln!("tfmpe: backend {why}");
    let dir = if args.model.join(super::files::POSTERIOR_DIR).is_dir() {
        args.model.join(super::files::POSTERIOR_DIR)
    } else {
        args.model.clone()
    };
    let mut net = Network::load(&device, &dir)?;
    if net.config.role != "posterior" {
        return Err(Error::Invalid(format!(
            "{} holds a {} network; pass the posterior checkpoint",
            dir.display(),
            net.config.role
        )));
    }
    let task = task_by_name(&net.config.task)?;
    let (obs, sites) = read_observation(&args.observation, &*task, Some(net.config.sites))?;
    let bars = Bars::new();
    let samples = sbi::sample_posterior(
        &device,
        &mut net,
        &*task,
        &obs,
        args.samples,
        solver,
        args.seed,
        args.chunk,
        &bars,
    )?;
    bars.finish();
    write_rows(&args.out, task.parameter_names(sites), samples)
}
