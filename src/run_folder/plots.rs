//! The plots of a run folder: posterior marginals and loss curves, and with calibration the
//! TARP curve and SBC rank histograms.

use super::RunFolder;
use crate::error::Result;
use crate::io::atomic_write;
use crate::metrics::{Sbc, Tarp};
use crate::report::{
    calibration_svg, losses_svg, posterior_svg, LossCurve, Marginal, RankHistogram,
};
use crate::sbi::PipelineReport;
use crate::tasks::HierarchicalModel;

pub(super) const POSTERIOR_PLOT: &str = "posterior.svg";
pub(super) const LOSS_PLOT: &str = "losses.svg";
pub(super) const CALIBRATION_PLOT: &str = "calibration.svg";

/// Sites whose locals get a panel: enough to judge them, few enough to read at 50 sites.
const SITES_SHOWN: usize = 4;

/// How many leading parameters get a panel: the globals and the first sites' locals.
fn shown(task: &dyn HierarchicalModel, sites: usize) -> usize {
    task.global_dim() + sites.min(SITES_SHOWN) * task.local_dim()
}

impl RunFolder {
    /// Writes `posterior.svg`: the globals and the first sites' locals, each over the exact
    /// posterior's draws and the true value where those are known. Rows are full parameter vectors
    /// named by `names`.
    pub fn write_posterior_plot(
        &self, task: &dyn HierarchicalModel, sites: usize, names: &[String], samples: &[Vec<f64>],
        reference: Option<&[Vec<f64>]>, truth: Option<&[f64]>,
    ) -> Result<()> {
        let shown = shown(task, sites);
        let column = |rows: &[Vec<f64>], j: usize| -> Vec<f64> {
            rows.iter().map(|r| r.get(j).copied().unwrap_or(f64::NAN)).collect()
        };
        let panels: Vec<Marginal> = names
            .iter()
            .take(shown)
            .enumerate()
            .map(|(j, name)| Marginal {
                name: name.clone(),
                samples: column(samples, j),
                reference: reference.map(|r| column(r, j)),
                truth: truth.and_then(|t| t.get(j).copied()),
            })
            .collect();
        let svg = posterior_svg(&panels);
        atomic_write(&self.file(POSTERIOR_PLOT), svg.as_bytes())
    }

    /// Writes `losses.svg`: one panel per trained network.
    pub fn write_loss_plot(&self, report: &PipelineReport) -> Result<()> {
        let curves: Vec<LossCurve> = [
            ("surrogate", &report.surrogate),
            ("posterior", &report.posterior),
            ("local", &report.local),
        ]
        .into_iter()
        .filter_map(|(name, r)| {
            r.as_ref().map(|r| LossCurve {
                name: name.into(),
                train: r.train_losses.clone(),
                val: r.val_losses.clone(),
                best_epoch: r.best_epoch,
            })
        })
        .collect();
        atomic_write(&self.file(LOSS_PLOT), losses_svg(&curves).as_bytes())
    }

    /// Writes `calibration.svg`: the TARP coverage curve, then the SBC rank histograms of the
    /// parameters `posterior.svg` shows.
    pub fn write_calibration_plot(
        &self, task: &dyn HierarchicalModel, sites: usize, names: &[String], sbc: &Sbc, tarp: &Tarp,
    ) -> Result<()> {
        let ranks: Vec<RankHistogram> = names
            .iter()
            .take(shown(task, sites))
            .enumerate()
            .map(|(p, name)| RankHistogram {
                name: name.clone(),
                counts: sbc.histogram(p, 10),
                ks_p: sbc.ks_p[p],
            })
            .collect();
        let ecp: Vec<(f64, f64)> =
            (0..=50).map(|k| k as f64 / 50.0).map(|a| (a, tarp.ecp(a))).collect();
        let svg = calibration_svg(&ecp, tarp.ks_p, &ranks);
        atomic_write(&self.file(CALIBRATION_PLOT), svg.as_bytes())
    }
}
