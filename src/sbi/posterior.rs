//! A trained posterior: one network for the whole parameter vector (lf, direct), or posterior
//! factorisation's pair, a global network q(θ_g | y_1..S) and a local network
//! q(η_s | θ_g, y_s) that every site shares (pf).

use std::path::Path;

use super::network::{Network, NetworkConfig, Role};
use crate::error::{Error, Result};
use crate::tasks::HierarchicalModel;
use crate::Device;

/// The checkpoint folder of pf's local network, beside the posterior's.
pub const LOCAL_DIR: &str = "local";

pub struct Posterior {
    /// lf, direct: q(θ | y); pf: q(θ_g | y).
    pub net: Network,
    /// pf: q(η_s | θ_g, y_s).
    pub local: Option<Network>,
}

impl From<Network> for Posterior {
    fn from(net: Network) -> Posterior {
        Posterior { net, local: None }
    }
}

impl Posterior {
    /// The configuration of the network that reads the whole data set (its site counts, task
    /// and standardisation of the observations).
    pub fn config(&self) -> &NetworkConfig {
        &self.net.config
    }

    /// The most target dimensions one of its flows integrates for data sets of `sites` sites,
    /// which decides how a log density takes the divergence (`auto`).
    pub fn flow_dim(&self, task: &dyn HierarchicalModel, sites: usize) -> usize {
        match self.local {
            None => task.param_dim(sites),
            Some(_) => task.global_dim().max(task.local_dim()),
        }
    }

    /// Saves the network into `dir` (the posterior's checkpoint folder) and a local network
    /// into `LOCAL_DIR` beside it.
    pub fn save(&self, dir: &Path) -> Result<()> {
        self.net.save(dir)?;
        if let Some(local) = &self.local {
            local.save(&sibling(dir))?;
        }
        Ok(())
    }

    /// Loads what [`Posterior::save`] wrote: a posterior network, or a global network with
    /// its local network beside it.
    pub fn load(dev: &Device, dir: &Path) -> Result<Posterior> {
        let net = Network::load(dev, dir)?;
        let role = net.config.role.as_str();
        if role == Role::Posterior.name() || role == Role::Joint.name() {
            return Ok(Posterior { net, local: None });
        }
        if role != Role::Global.name() {
            return Err(Error::Invalid(format!(
                "{} holds a {role} network; pass the posterior checkpoint",
                dir.display()
            )));
        }
        let local_dir = sibling(dir);
        if !local_dir.is_dir() {
            return Err(Error::Invalid(format!(
                "{} holds posterior factorisation's global network but its local network is \
                 missing: {} must hold it, as `run --method pf` wrote it",
                dir.display(),
                local_dir.display()
            )));
        }
        let local = Network::load(dev, &local_dir)?;
        if local.config.role != Role::Local.name() || local.config.task != net.config.task {
            return Err(Error::Invalid(format!(
                "{} holds a {} network of task `{}`; posterior factorisation needs the local \
                 network of task `{}` there",
                local_dir.display(),
                local.config.role,
                local.config.task,
                net.config.task
            )));
        }
        Ok(Posterior { net, local: Some(local) })
    }
}

/// The local network's folder beside the posterior's folder `dir`.
fn sibling(dir: &Path) -> std::path::PathBuf {
    dir.parent().unwrap_or(Path::new(".")).join(LOCAL_DIR)
}
