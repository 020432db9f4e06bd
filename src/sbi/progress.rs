//! How long phases report themselves: progress callbacks for a front end, and the wall time of
//! each phase for the run's report.

use std::time::Instant;

/// Reports progress of long phases; the command line draws bars, the library stays quiet.
pub trait Progress: Sync {
    fn phase(&self, _name: &str) {}
    fn epoch(
        &self, _phase: &str, _epoch: usize, _max_epochs: usize, _train_loss: f64, _val_loss: f64,
    ) {
    }
    fn samples(&self, _phase: &str, _done: usize, _total: usize) {}
    /// Something the user should know that does not stop the run (a training that stopped on
    /// a non-finite loss and kept its best weights).
    fn warning(&self, _message: &str) {}
}

/// No progress output.
pub struct Quiet;

impl Progress for Quiet {}

/// Wall time per phase, in order.
pub(crate) struct Timer {
    phases: Vec<(String, f64)>,
    start: Instant,
}

impl Timer {
    pub(crate) fn start() -> Timer {
        Timer { phases: Vec::new(), start: Instant::now() }
    }

    /// Ends the phase running since the last lap (or the start) under `phase`; a phase that
    /// runs again (each round of `--rounds`) adds to its time.
    pub(crate) fn lap(&mut self, phase: &str) {
        let seconds = self.start.elapsed().as_secs_f64();
        match self.phases.iter_mut().find(|(name, _)| name == phase) {
            Some((_, total)) => *total += seconds,
            None => self.phases.push((phase.to_string(), seconds)),
        }
        self.start = Instant::now();
    }

    pub(crate) fn into_phases(self) -> Vec<(String, f64)> {
        self.phases
    }
}
