//! `tfmpe eval`: C2ST of `samples.csv` against the task's exact posterior for `observation.csv`,
//! and on request SBC, TARP and the HPD expected coverage of the saved posterior network over
//! data sets from the prior and L-C2ST at the observation (`tfmpe::run_folder` computes them); the metrics go into
//! `report.json` and to stdout.

use std::path::PathBuf;

use tfmpe::run_folder::{EvalConfig, RunFolder, MAX_REFERENCE_SAMPLES, REFERENCE_SAMPLES};
use tfmpe::{Device, Error, Result};

use super::progress::Bars;
use super::{DivergenceArgs, Lc2stArgs, SolverArgs};

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
    #[command(flatten)]
    pub lc2st: Lc2stArgs,
    /// Also the HPD expected coverage over the calibration data sets, from the posterior's log
    /// density at each truth and its draws (needs --calibration).
    #[arg(long)]
    pub expected_coverage: bool,
    #[command(flatten)]
    pub density: DivergenceArgs,
    /// Seeds the calibration data sets and draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to compute: auto (a GPU backend when one works, else cpu), cpu, wgpu or cuda.
    #[arg(long, env = "TFMPE_BACKEND", default_value = "auto")]
    pub backend: tfmpe::backend::BackendKind,
}

pub fn run(args: EvalArgs) -> Result<()> {
    let config = EvalConfig {
        reference_samples: args.reference_samples,
        calibration: args.calibration,
        calibration_draws: args.calibration_draws,
        solver: args.ode.solver()?,
        seed: args.seed,
        lc2st: args.lc2st.eval()?,
        expected_coverage: args
            .expected_coverage
            .then(|| args.density.coverage_eval())
            .transpose()?,
    };
    // Its refusals, in the flags' words, before any work.
    super::check_calibration(args.calibration, args.calibration_draws)?;
    if args.reference_samples > MAX_REFERENCE_SAMPLES {
        return Err(Error::Invalid(format!(
            "--reference-samples {} is more than the {MAX_REFERENCE_SAMPLES} a C2ST can use (it \
             compares as many as samples.csv holds)",
            args.reference_samples
        )));
    }
    config.check()?;
    let (device, _) = Device::open(args.backend)?;
    let folder = RunFolder::new(&args.out);
    let bars = Bars::new();
    let metrics = folder.evaluate(&device, &config, &bars)?;
    bars.finish();
    let saved = folder.update_metrics(&metrics)?;
    eprintln!("tfmpe: saved the metrics in {}", saved.display());
    println!("{}", metrics.to_json()?);
    Ok(())
}
