//! The subcommands of the `tfmpe` binary.

pub mod bench;
pub mod eval;
pub mod info;
pub mod progress;
pub mod run;
pub mod sample;

/// The ODE solver options shared by `run`, `sample` and `eval`.
#[derive(clap::Args, Clone, Debug)]
pub struct SolverArgs {
    /// euler, rk4 or dopri5.
    #[arg(long, default_value = "rk4")]
    pub solver: String,
    /// Steps of the fixed-step solvers.
    #[arg(long, default_value_t = 25)]
    pub steps: usize,
}

impl SolverArgs {
    pub fn solver(&self) -> tfmpe::Result<tfmpe::model::ode::Solver> {
        if self.steps == 0 {
            return Err(tfmpe::Error::Invalid("--steps must be at least 1".into()));
        }
        tfmpe::model::ode::Solver::from_name(&self.solver, self.steps)
    }
}

/// Refuses `--samples 0` in the flag's own words.
pub fn check_samples(samples: usize) -> tfmpe::Result<()> {
    if samples == 0 {
        return Err(tfmpe::Error::Invalid("--samples must be at least 1".into()));
    }
    Ok(())
}
