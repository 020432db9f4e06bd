//! Small networks fitted with the tape on the CPU backend and evaluated on the host in f64:
//! the regressions behind the posterior's conditional scaling (its locals' in `local_scaling`,
//! its globals' in `global_scaling`).
//!
//! Two shapes: an MLP of one row of features, and a set function (deep set) of a data set's
//! sites: each site's features through one MLP, their mean over the sites with 1/S appended
//! through another. The mean makes it invariant to the sites' order and defined for any site
//! count; 1/S tells it how much the mean has averaged, which sets how narrow the globals are.
//!
//! Fitting is least squares by minibatch Adam, each value optionally weighted, keeping the
//! epoch with the lowest validation error; the learning rate drops by [`LR_DROP`] at each
//! plateau of [`PATIENCE`] epochs and fitting stops at the plateau after [`LR_DROPS`] drops:
//! Adam at a fixed rate leaves the weights jittering at the rate's scale, and the scalings'
//! locations must be precise to within their scales.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::nn::{AdamW, AdamWConfig, Linear};
use crate::tape::{ParamStore, Tape, Var};
use crate::Device;

/// Width of every hidden layer, and of a deep set's site summary.
const HIDDEN: usize = 64;
const MAX_EPOCHS: usize = 400;
const PATIENCE: usize = 10;
const LR_DROP: f32 = 0.25;
const LR_DROPS: usize = 3;
/// Rows (MLP) or data sets (deep set) per optimiser step.
const BATCH: usize = 256;
const LR: f32 = 1e-3;

/// A multilayer perceptron evaluated on the host: ReLU between layers, the last linear.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostMlp {
    /// Layer widths, the input's first.
    pub widths: Vec<usize>,
    /// Per layer: its `[in · out]` weights, row-major, then its `out` biases.
    pub layers: Vec<Vec<f32>>,
    /// An affine map of the input added to the output, `[(in + 1) · out]` row-major (an
    /// input's weight for each output, then the intercepts); empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affine: Vec<f64>,
}

/// The error for networks that do not fit their layout.
pub(super) fn damaged() -> Error {
    Error::Invalid(
        "the posterior's conditional scaling in config.json does not match its layout (a \
         damaged checkpoint?); train the posterior again"
            .into(),
    )
}

impl HostMlp {
    pub(super) fn check(&self, inputs: usize, outputs: usize) -> Result<()> {
        let w = &self.widths;
        let sizes_ok = w.len() == self.layers.len() + 1
            && w.first() == Some(&inputs)
            && w.last() == Some(&outputs)
            && self.layers.iter().zip(w.windows(2)).all(|(l, io)| l.len() == (io[0] + 1) * io[1])
            && (self.affine.is_empty() || self.affine.len() == (inputs + 1) * outputs);
        if !sizes_ok {
            return Err(damaged());
        }
        Ok(())
    }

    fn outputs(&self) -> usize {
        self.widths.last().copied().unwrap_or(0)
    }

    /// The output at `x`, in f64.
    pub(super) fn forward(&self, x: &[f64]) -> Vec<f64> {
        let mut h = x.to_vec();
        let last = self.layers.len().saturating_sub(1);
        for (i, (layer, io)) in self.layers.iter().zip(self.widths.windows(2)).enumerate() {
            let (n_in, n_out) = (io[0], io[1]);
            let mut next: Vec<f64> = layer[n_in * n_out..].iter().map(|&b| f64::from(b)).collect();
            for (k, &v) in h.iter().enumerate() {
                let row = &layer[k * n_out..(k + 1) * n_out];
                next.iter_mut().zip(row).for_each(|(a, &w)| *a += v * f64::from(w));
            }
            if i < last {
                next.iter_mut().for_each(|a| *a = a.max(0.0));
            }
            h = next;
        }
        if !self.affine.is_empty() {
            let (n_in, n_out) = (x.len(), h.len());
            for (k, out) in h.iter_mut().enumerate() {
                *out += self.affine[n_in * n_out + k]
                    + x.iter()
                        .enumerate()
                        .map(|(j, v)| v * self.affine[j * n_out + k])
                        .sum::<f64>();
            }
        }
        h
    }
}

/// A set function of a data set's sites: `set(mean over sites of site(features), 1/S)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeepSet {
    pub site: HostMlp,
    pub set: HostMlp,
}

impl DeepSet {
    pub(super) fn check(&self, features: usize, outputs: usize) -> Result<()> {
        let summary = self.site.outputs();
        self.site.check(features, summary)?;
        self.set.check(summary + 1, outputs)
    }

    /// The output for the sites `x` (`[S · features]`, S ≥ 1).
    pub(super) fn forward(&self, x: &[f64], features: usize) -> Vec<f64> {
        DeepSet::forward_parts(&self.site, &self.set, x, features)
    }

    fn forward_parts(site: &HostMlp, set: &HostMlp, x: &[f64], features: usize) -> Vec<f64> {
        let sites = x.len() / features.max(1);
        let mut pooled = vec![0.0; site.outputs()];
        for row in x.chunks(features.max(1)) {
            pooled.iter_mut().zip(site.forward(row)).for_each(|(p, v)| *p += v);
        }
        let inv = 1.0 / sites.max(1) as f64;
        pooled.iter_mut().for_each(|p| *p *= inv);
        pooled.push(inv);
        set.forward(&pooled)
    }
}

/// A fitted network: a deep set if it has a site network, else an MLP of one row.
pub(super) struct Fitted {
    site: Option<HostMlp>,
    set: HostMlp,
}

impl Fitted {
    fn forward(&self, x: &[f64], features: usize) -> Vec<f64> {
        match &self.site {
            Some(site) => DeepSet::forward_parts(site, &self.set, x, features),
            None => self.set.forward(x),
        }
    }
}

/// Regression pairs: each pair is `sites` rows of `features` values (1 for an MLP's pairs)
/// and its targets, with an optional weight per target value.
#[derive(Clone)]
pub(super) struct Pairs {
    pub x: Vec<f32>,
    pub y: Vec<f32>,
    pub weights: Option<Vec<f32>>,
    pub features: usize,
    pub sites: usize,
}

impl Pairs {
    pub fn new(features: usize, sites: usize) -> Pairs {
        Pairs { x: Vec::new(), y: Vec::new(), weights: None, features, sites }
    }

    pub fn len(&self) -> usize {
        self.x.len() / (self.features * self.sites).max(1)
    }

    fn outputs(&self) -> usize {
        self.y.len() / self.len().max(1)
    }

    /// Pair `i`'s features, in f64.
    pub fn x_of(&self, i: usize) -> Vec<f64> {
        let n = self.features * self.sites;
        self.x[i * n..(i + 1) * n].iter().map(|&v| f64::from(v)).collect()
    }

    /// The same features with other targets (and no weights).
    pub fn with_targets(&self, y: Vec<f32>) -> Pairs {
        Pairs { x: self.x.clone(), y, weights: None, ..*self }
    }

    /// `f` of every pair's features, `[pairs · outputs]`; pairs in parallel (each on its
    /// own, so the result does not depend on the threads).
    pub fn map_rows(&self, f: impl Fn(&[f64]) -> Vec<f64> + Sync) -> Vec<f64> {
        let each: Vec<Vec<f64>> =
            (0..self.len()).into_par_iter().map(|i| f(&self.x_of(i))).collect();
        each.concat()
    }

    /// The MLP `mlp` at every (one-row) pair.
    pub fn predict_mlp(&self, mlp: &HostMlp) -> Vec<f64> {
        self.map_rows(|x| mlp.forward(x))
    }

    /// The deep set `net` at every pair.
    pub fn predict_deep_set(&self, net: &DeepSet) -> Vec<f64> {
        self.map_rows(|x| net.forward(x, self.features))
    }

    /// The weighted sum of squared errors of `predicted` against the targets, and the sum of
    /// the weights (each 1 where the pairs carry none): summed over buckets, their ratio is
    /// the mean squared error of all.
    pub fn squared_errors(&self, predicted: &[f64]) -> (f64, f64) {
        let weight = |k: usize| self.weights.as_ref().map_or(1.0, |w| f64::from(w[k]));
        let errors = predicted.iter().zip(&self.y).enumerate();
        errors.fold((0.0, 0.0), |(sse, total), (k, (p, &y))| {
            (sse + weight(k) * (p - f64::from(y)).powi(2), total + weight(k))
        })
    }
}

/// The (weighted) mean squared error of the networks' predictions `predict` over the buckets
/// of pairs `buckets`.
pub(super) fn mean_squared_error(buckets: &[Pairs], predict: impl Fn(&Pairs) -> Vec<f64>) -> f64 {
    let (sse, total) = buckets.iter().fold((0.0, 0.0), |(sse, total), p| {
        let (s, t) = p.squared_errors(&predict(p));
        (sse + s, total + t)
    });
    sse / f64::max(total, f64::MIN_POSITIVE)
}

/// Fits an MLP of one row to `fit` by least squares (weighted where the pairs carry weights),
/// keeping the epoch with the lowest error on `val`; returns it and that error. `what` names
/// the fit in errors.
pub(super) fn train_mlp(
    fit: &Pairs, val: &Pairs, what: &str, rng: &mut StdRng,
) -> Result<(HostMlp, f64)> {
    let (net, loss) =
        train(std::slice::from_ref(fit), std::slice::from_ref(val), false, what, rng)?;
    Ok((net.set, loss))
}

/// Fits a deep set to the buckets of pairs `fit` (a bucket per site count) as
/// [`train_mlp`] fits an MLP.
pub(super) fn train_deep_set(
    fit: &[Pairs], val: &[Pairs], what: &str, rng: &mut StdRng,
) -> Result<(DeepSet, f64)> {
    let (net, loss) = train(fit, val, true, what, rng)?;
    let site =
        net.site.ok_or_else(|| Error::Invalid(format!("fitting {what}: no site network")))?;
    Ok((DeepSet { site, set: net.set }, loss))
}

fn train(
    fit: &[Pairs], val: &[Pairs], deep_set: bool, what: &str, rng: &mut StdRng,
) -> Result<(Fitted, f64)> {
    let (Some(first), n_val) =
        (fit.iter().find(|p| p.len() > 0), val.iter().map(Pairs::len).sum::<usize>())
    else {
        return Err(Error::Invalid(format!("fitting {what} needs training pairs")));
    };
    if n_val == 0 {
        return Err(Error::Invalid(format!("fitting {what} needs validation pairs")));
    }
    let (f, o) = (first.features, first.outputs());
    // On the CPU backend whatever the run's: steps this small gain nothing on a GPU (and a
    // software adapter crawls through them), and every backend then gets the same fit.
    let dev = Device::cpu();
    let mut store = ParamStore::new(&dev);
    let mut stack = |name: &str, widths: &[usize], rng: &mut StdRng| -> Result<Vec<Linear>> {
        let layer = |(i, io): (usize, &[usize])| {
            Linear::new(&mut store, &format!("{name}.{i}"), io[0], io[1], true, rng)
        };
        widths.windows(2).enumerate().map(layer).collect()
    };
    let site_widths = [f, HIDDEN, HIDDEN, HIDDEN];
    let set_widths =
        if deep_set { [HIDDEN + 1, HIDDEN, HIDDEN, o] } else { [f, HIDDEN, HIDDEN, o] };
    let site = if deep_set { stack("site", &site_widths, rng)? } else { Vec::new() };
    let set = stack("set", &set_widths, rng)?;
    let mut opt = AdamW::new(&store, AdamWConfig { lr: LR, ..AdamWConfig::default() })?;
    let mut tape = Tape::new(store);
    let mlp = |tape: &mut Tape, layers: &[Linear], x: Var| -> Result<Var> {
        let mut h = x;
        for layer in &layers[..layers.len() - 1] {
            h = layer.forward_relu(tape, h)?;
        }
        layers[layers.len() - 1].forward(tape, h)
    };
    // A batch of n pairs of `sites` rows: the site network on every row, then each pair's
    // mean as a batched GEMM, a row of 1/S shared by the n pairs' [sites, HIDDEN] blocks (a
    // single GEMM with an [n, n · sites] averaging matrix did n times the work, mostly on
    // zeros, and cost more than the networks themselves).
    let forward = |tape: &mut Tape, x: Var, n: usize, sites: usize| -> Result<Var> {
        if !deep_set {
            return mlp(tape, &set, x);
        }
        let h = mlp(tape, &site, x)?;
        let h = tape.reshape(h, &[n, sites, HIDDEN])?;
        let inv = 1.0 / sites as f32;
        let average = tape.input(&vec![inv; sites], &[1, sites])?;
        let pooled = tape.batched_linear(average, h, None)?;
        let pooled = tape.reshape(pooled, &[n, HIDDEN])?;
        let count = tape.input(&vec![inv; n], &[n, 1])?;
        let summary = tape.concat(&[pooled, count])?;
        mlp(tape, &set, summary)
    };
    let to_host = |tape: &Tape, layers: &[Linear], widths: &[usize]| -> Result<HostMlp> {
        let params = tape.params();
        let layers = layers
            .iter()
            .map(|l| {
                let mut v = params.to_vec(l.weight)?;
                v.extend(params.to_vec(l.bias.expect("every layer has a bias"))?);
                Ok(v)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(HostMlp { widths: widths.to_vec(), layers, affine: Vec::new() })
    };
    let fitted = |tape: &Tape| -> Result<Fitted> {
        let site = deep_set.then(|| to_host(tape, &site, &site_widths)).transpose()?;
        Ok(Fitted { site, set: to_host(tape, &set, &set_widths)? })
    };
    let val_loss = |net: &Fitted| -> f64 {
        mean_squared_error(val, |p| p.map_rows(|x| net.forward(x, p.features)))
    };
    // Batches never mix buckets (their site counts differ); their order is shuffled.
    let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
    let (mut bx, mut by, mut bw) = (Vec::new(), Vec::new(), Vec::new());
    let mut best: Option<(f64, Fitted)> = None;
    let (mut stale, mut drops) = (0, 0);
    for _ in 0..MAX_EPOCHS {
        batches.clear();
        for (b, pairs) in fit.iter().enumerate() {
            let mut order: Vec<usize> = (0..pairs.len()).collect();
            order.shuffle(rng);
            batches.extend(order.chunks(BATCH).map(|c| (b, c.to_vec())));
        }
        batches.shuffle(rng);
        for (b, chunk) in &batches {
            let pairs = &fit[*b];
            let (row, sites) = (pairs.features * pairs.sites, pairs.sites);
            bx.clear();
            by.clear();
            bw.clear();
            for &i in chunk {
                bx.extend_from_slice(&pairs.x[i * row..(i + 1) * row]);
                by.extend_from_slice(&pairs.y[i * o..(i + 1) * o]);
                if let Some(w) = &pairs.weights {
                    bw.extend_from_slice(&w[i * o..(i + 1) * o]);
                }
            }
            let n = chunk.len();
            tape.reset();
            let x = tape.input(&bx, &[n * sites, f])?;
            let y = tape.input(&by, &[n, o])?;
            let w = pairs.weights.is_some().then(|| tape.input(&bw, &[n, o])).transpose()?;
            let pred = forward(&mut tape, x, n, sites)?;
            let loss = tape.mse(pred, y, w)?;
            tape.backward(loss)?;
            opt.step(tape.params_mut())?;
        }
        let net = fitted(&tape)?;
        let loss = val_loss(&net);
        if !loss.is_finite() {
            return Err(Error::Invalid(format!(
                "fitting {what} diverged (a non-finite validation loss)"
            )));
        }
        if best.as_ref().is_none_or(|(b, _)| loss < *b) {
            best = Some((loss, net));
            stale = 0;
        } else {
            stale += 1;
            if stale >= PATIENCE {
                if drops == LR_DROPS {
                    break;
                }
                drops += 1;
                stale = 0;
                opt.config.lr *= LR_DROP;
            }
        }
    }
    tape.reset();
    let (loss, net) = best.expect("at least one epoch ran");
    Ok((net, loss))
}
