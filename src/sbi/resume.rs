//! Finished phases are kept: each trained network is saved as its phase ends, with its
//! training record, so that Ctrl-C or a crash later loses nothing finished; a resumed run loads
//! such a network instead of training it again. Every phase draws from its own seed streams,
//! so a resumed run gives the same results as an uninterrupted one.

use std::path::PathBuf;

use super::network::Network;
use super::train::TrainReport;
use crate::error::{Error, Result};
use crate::Device;

/// The training record beside a saved network's checkpoint.
const RECORD: &str = "training.json";

/// Where a run keeps its finished networks (`surrogate/`, `posterior/`).
#[derive(Clone, Debug, Default)]
pub struct Checkpoints {
    /// `None`: nothing is saved during the run.
    pub dir: Option<PathBuf>,
    /// Load a network found there instead of training it.
    pub resume: bool,
}

impl Checkpoints {
    /// The saved network of `role` and its record, when resuming and both are there.
    pub(super) fn load(&self, dev: &Device, role: &str) -> Result<Option<(Network, TrainReport)>> {
        let Some(dir) = self.dir.as_ref().filter(|_| self.resume).map(|d| d.join(role)) else {
            return Ok(None);
        };
        let record = dir.join(RECORD);
        if !record.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&record)
            .map_err(|source| Error::Io { path: record.display().to_string(), source })?;
        let report: TrainReport = serde_json::from_str(&text).map_err(|e| {
            Error::Invalid(format!(
                "{}: {e}; delete {} to train the {role} again",
                record.display(),
                dir.display()
            ))
        })?;
        Ok(Some((Network::load(dev, &dir)?, report)))
    }

    /// Saves `net` and its record as `role`; the record goes last, so that a checkpoint is
    /// resumed from only once it is complete.
    pub(super) fn save(&self, role: &str, net: &Network, report: &TrainReport) -> Result<()> {
        let Some(dir) = self.dir.as_ref().map(|d| d.join(role)) else {
            return Ok(());
        };
        net.save(&dir)?;
        let text = serde_json::to_string(report)
            .map_err(|e| Error::Invalid(format!("{role} training record: {e}")))?;
        crate::io::atomic_write(&dir.join(RECORD), text.as_bytes())
    }
}
