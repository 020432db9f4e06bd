//! Local C2ST (L-C2ST, Linhart et al. 2023): is the posterior estimate right at one
//! observation x_o, judged from an amortised calibration set?
//!
//! A classifier learns to tell class P, pairs `[θ^q_i, x_i]` with θ^q_i drawn from the
//! estimate q(θ | x_i), from class Q, pairs `[θ_i, x_i]` from the joint (θ_i from the prior,
//! x_i simulated from it). Where q is the true posterior the classes are the same distribution,
//! and the classifier's probability is ½ everywhere. The statistic evaluates it at x_o over
//! draws θ^q_j from q(θ | x_o): `T = mean_j (d(θ^q_j, x_o) − ½)²`. Its null distribution comes
//! from classifiers trained on the same rows with the class labels permuted; the p-value is
//! the share of null statistics above `T`, and the test rejects when it is below α.
//!
//! As sbi's `LC2ST` (v0.25) with its MLP: two hidden ReLU layers of 10·d units (d: the
//! dimension of θ only), Adam with lr 1e-3 and batches of min(200, rows), early stopping on the
//! accuracy of a 10% validation split (patience 50, best weights restored), up to 1 000 epochs,
//! 100 null trials, α = 0.05, the strict inequality and no +1 in the p-value. Choices made
//! deliberately, where sbi leaves freedom or has a quirk:
//! - **z-scoring on** (sbi's default is off): θ with the mean and sd of the P class's θ, x with
//!   those of the x_i, a constant column only centred. Unscaled inputs (counts of an epidemic,
//!   say) would make the classifier's start depend on the task's units.
//! - **One wide network**: the main classifier and the null classifiers train together, as
//!   one network of `1 + null_trials` independent MLPs (block-diagonal layers, see
//!   [`crate::tape::Tape::batched_linear`]); each keeps its own weights, its own Adam state
//!   (Adam is per element) and its own early stopping; a classifier that stops leaves the
//!   network (its rows of the weights and moments are dropped), so the cost is the sum of the
//!   classifiers' epochs run in wide GEMMs. They share the rows of each minibatch
//!   and the validation split, which sbi draws per classifier; a random split keeps every
//!   permuted labelling balanced to within sampling noise. The loss is the mean over all
//!   classifiers, so each one's gradient is scaled by 1/(1 + null_trials), which Adam's update
//!   ignores (up to its ε).
//! - **Paired permutations** for the null (see [`Null`]): sbi shuffles all 2N labels, which
//!   breaks the pairing of the two rows that share each x_i and makes the test conservative
//!   (measured: over 40 repetitions with exact draws the p-values averaged 0.6, KS p 0.05).
//!   Swapping labels within pairs is an exact permutation test; sbi's null stays available.
//! - **Weights start as sklearn starts them** (Glorot uniform, biases too), as in
//!   [`super::c2st`]; there is no L2 penalty (sklearn's 1e-4 is negligible).

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::RngExt;

use super::classifier::{glorot, stream, MlpTraining};
use serde::{Deserialize, Serialize};

use crate::backend::Device;
use crate::error::{Error, Result};
use crate::nn::{AdamState, AdamW, AdamWConfig};
use crate::tape::{ParamId, ParamStore, Tape, Var};

/// Settings of [`lc2st`]; the defaults are those of sbi's `LC2ST` with `classifier="mlp"`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lc2stConfig {
    /// Permutation-null classifiers.
    pub null_trials: usize,
    /// The test rejects when the p-value is below this.
    pub alpha: f64,
    /// The classifiers' training (d of the hidden width: the dimension of θ).
    #[serde(flatten)]
    pub mlp: MlpTraining,
    /// Seeds the initial weights, the permutations, the split and the minibatches.
    pub seed: u64,
    /// How the null classifiers' labels are permuted.
    pub null: Null,
}

/// The permutation of the class labels that trains a null classifier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Null {
    /// Swap the labels within each pair `[θ^q_i, x_i]`, `[θ_i, x_i]` with probability ½, so
    /// that every labelling has each x_i once in each class, as the true one has. Under the
    /// null hypothesis θ^q_i and θ_i are exchangeable given x_i, so the main classifier is
    /// exchangeable with the null ones and the p-value is exactly uniform.
    #[default]
    Paired,
    /// Shuffle all 2N labels (sbi's `permutation=True`). This breaks the pairs: a null
    /// labelling may put both copies of an x_i in one class and the classifier can learn x
    /// alone, so null statistics run larger and the test is conservative.
    Pooled,
}

impl Default for Lc2stConfig {
    fn default() -> Self {
        Lc2stConfig {
            null_trials: 100,
            alpha: 0.05,
            mlp: MlpTraining::default(),
            seed: 1,
            null: Null::Paired,
        }
    }
}

impl Lc2stConfig {
    fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Invalid(format!("l-c2st: {what}")));
        if self.null_trials == 0 {
            return bad("null_trials must be at least 1");
        }
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return bad("alpha must lie in (0, 1)");
        }
        self.mlp.check("l-c2st")?;
        Ok(())
    }
}

/// The calibration set: N prior draws θ_i, their simulations x_i, and one draw θ^q_i from the
/// estimate q(θ | x_i) for each.
pub struct Calibration<'a> {
    pub prior: &'a [Vec<f64>],
    pub xs: &'a [Vec<f64>],
    pub posterior: &'a [Vec<f64>],
}

/// The result of [`lc2st`] at one observation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Lc2st {
    /// `mean_j (d(θ^q_j, x_o) − ½)²` of the classifier trained on the true labels.
    pub statistic: f64,
    /// Share of the null statistics strictly above `statistic`.
    pub p_value: f64,
    pub reject: bool,
    /// The statistics of the permutation-null classifiers.
    pub null_statistics: Vec<f64>,
    /// Epochs the wide network trained (until its last classifier stopped).
    pub epochs: usize,
}

/// L-C2ST of the estimate at `x_o`, given `theta_o`: draws from q(θ | x_o).
pub fn lc2st(
    device: &Device, cal: &Calibration, theta_o: &[Vec<f64>], x_o: &[f64], cfg: &Lc2stConfig,
) -> Result<Lc2st> {
    Lc2stClassifiers::train(device, cal, cfg)?.at(theta_o, x_o)
}

/// The main and null classifiers trained on one calibration set. They do not depend on the
/// observation (the estimate is amortised), so one training answers many observations.
pub struct Lc2stClassifiers {
    tape: Tape,
    net: WideMlp,
    epochs: usize,
    theta_scale: Scale,
    x_scale: Scale,
    alpha: f64,
}

impl Lc2stClassifiers {
    pub fn train(device: &Device, cal: &Calibration, cfg: &Lc2stConfig) -> Result<Self> {
        cfg.check()?;
        let (d, dx) = check_calibration(cal)?;
        let theta_scale = Scale::of(cal.posterior, d);
        let x_scale = Scale::of(cal.xs, dx);
        let n = cal.prior.len();
        let mut rows = Vec::with_capacity(2 * n * (d + dx));
        for thetas in [cal.posterior, cal.prior] {
            for (theta, x) in thetas.iter().zip(cal.xs) {
                rows.extend(theta_scale.apply(theta));
                rows.extend(x_scale.apply(x));
            }
        }
        let labels = labels(n, cfg.null_trials, cfg.null, &mut stream(cfg.seed, LABELS));
        let data = Data { rows, dim: d + dx, labels, nets: 1 + cfg.null_trials };
        let (tape, net, epochs) = train(device, &data, d, cfg)?;
        Ok(Lc2stClassifiers { tape, net, epochs, theta_scale, x_scale, alpha: cfg.alpha })
    }

    /// The test at `x_o`, given `theta_o`: draws from q(θ | x_o).
    pub fn at(&mut self, theta_o: &[Vec<f64>], x_o: &[f64]) -> Result<Lc2st> {
        let (d, dx) = (self.theta_scale.mean.len(), self.x_scale.mean.len());
        check_rows("theta_o (posterior draws at the observation)", theta_o, d)?;
        check_rows("x_o (the observation)", std::slice::from_ref(&x_o.to_vec()), dx)?;
        let mut eval = Vec::with_capacity(theta_o.len() * (d + dx));
        let x_o = self.x_scale.apply(x_o);
        for theta in theta_o {
            eval.extend(self.theta_scale.apply(theta));
            eval.extend_from_slice(&x_o);
        }
        let logits = self.net.logits_of(&mut self.tape, &eval, theta_o.len())?;
        let per_net: Vec<f64> = logits
            .chunks(theta_o.len())
            .map(|z| {
                let sum: f64 = z.iter().map(|&z| (sigmoid(z) - 0.5).powi(2)).sum();
                sum / z.len() as f64
            })
            .collect();
        if let Some(h) = per_net.iter().position(|t| !t.is_finite()) {
            return Err(Error::Invalid(format!(
                "l-c2st: classifier {h} gave a non-finite statistic (its training diverged)"
            )));
        }
        let statistic = per_net[0];
        let null_statistics = per_net[1..].to_vec();
        let above = null_statistics.iter().filter(|&&t| statistic < t).count();
        let p_value = above as f64 / null_statistics.len() as f64;
        let reject = p_value < self.alpha;
        Ok(Lc2st { statistic, p_value, reject, null_statistics, epochs: self.epochs })
    }
}

/// The random streams of one test: the validation split and minibatch order, the null
/// labellings, and the start of classifier h at `FIRST_INIT + h`.
const SPLIT_AND_BATCHES: u64 = 0;
const LABELS: u64 = 1;
const FIRST_INIT: u64 = 2;

fn sigmoid(z: f32) -> f64 {
    1.0 / (1.0 + (-f64::from(z)).exp())
}

/// Checks the calibration set and returns (dimension of θ, dimension of x).
fn check_calibration(cal: &Calibration) -> Result<(usize, usize)> {
    let n = cal.prior.len();
    if n < 20 {
        return Err(Error::Invalid(format!(
            "l-c2st needs at least 20 calibration data sets (1 000 is usual), got {n}"
        )));
    }
    for (name, len) in [("xs", cal.xs.len()), ("posterior draws", cal.posterior.len())] {
        if len != n {
            return Err(Error::Invalid(format!(
                "l-c2st: {n} prior draws but {len} {name}; each calibration data set needs one \
                 of each"
            )));
        }
    }
    let d = cal.prior[0].len();
    let dx = cal.xs[0].len();
    check_rows("prior draws", cal.prior, d)?;
    check_rows("posterior draws", cal.posterior, d)?;
    check_rows("xs", cal.xs, dx)?;
    Ok((d, dx))
}

fn check_rows(name: &str, rows: &[Vec<f64>], dim: usize) -> Result<()> {
    if rows.is_empty() || dim == 0 {
        return Err(Error::Invalid(format!("l-c2st: {name} are empty")));
    }
    for (i, row) in rows.iter().enumerate() {
        if row.len() != dim {
            return Err(Error::Invalid(format!(
                "l-c2st: {name}: row {i} has {} values, expected {dim}",
                row.len()
            )));
        }
        if let Some(j) = row.iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid(format!(
                "l-c2st: {name}: row {i} holds a non-finite value at column {j}"
            )));
        }
    }
    Ok(())
}

/// Per-column z-scoring (sample sd with n − 1; a constant column is only centred).
struct Scale {
    mean: Vec<f64>,
    inv_sd: Vec<f64>,
}

impl Scale {
    fn of(rows: &[Vec<f64>], dim: usize) -> Scale {
        let n = rows.len() as f64;
        let mean: Vec<f64> = (0..dim).map(|j| rows.iter().map(|r| r[j]).sum::<f64>() / n).collect();
        let inv_sd = (0..dim)
            .map(|j| {
                let var = rows.iter().map(|r| (r[j] - mean[j]).powi(2)).sum::<f64>() / (n - 1.0);
                if var > 0.0 {
                    var.sqrt().recip()
                } else {
                    1.0
                }
            })
            .collect();
        Scale { mean, inv_sd }
    }

    fn apply(&self, row: &[f64]) -> Vec<f32> {
        row.iter()
            .zip(self.mean.iter().zip(&self.inv_sd))
            .map(|(v, (m, s))| ((v - m) * s) as f32)
            .collect()
    }
}

/// The 2N rows (class P first, then Q), and every classifier's labels: `labels[h · 2N + i]`,
/// classifier 0 with the true labels, each null classifier with a permutation of them.
struct Data {
    rows: Vec<f32>,
    dim: usize,
    labels: Vec<f32>,
    nets: usize,
}

impl Data {
    fn len(&self) -> usize {
        self.rows.len() / self.dim
    }

    /// Rows `idx` as one `[len, dim]` block, and the labels of the classifiers `nets` for
    /// them, classifier-major (`[nets, len]`).
    fn batch(&self, idx: &[usize], nets: &[usize], x: &mut Vec<f32>, y: &mut Vec<f32>) {
        x.clear();
        y.clear();
        for &i in idx {
            x.extend_from_slice(&self.rows[i * self.dim..(i + 1) * self.dim]);
        }
        let n = self.len();
        for &h in nets {
            y.extend(idx.iter().map(|&i| self.labels[h * n + i]));
        }
    }
}

/// Row `i` (class P) and row `n + i` (class Q) share x_i. A paired null swaps the two labels
/// of each pair with probability ½; a pooled null shuffles all 2N labels.
fn labels(n: usize, null_trials: usize, null: Null, rng: &mut StdRng) -> Vec<f32> {
    let truth: Vec<f32> = (0..2 * n).map(|i| if i < n { 0.0 } else { 1.0 }).collect();
    let mut labels = truth.clone();
    for _ in 0..null_trials {
        let mut permuted = truth.clone();
        match null {
            Null::Paired => {
                for i in 0..n {
                    if rng.random::<bool>() {
                        permuted.swap(i, n + i);
                    }
                }
            }
            Null::Pooled => permuted.shuffle(rng),
        }
        labels.extend(permuted);
    }
    labels
}

/// MLPs side by side: per layer `[nets, in, out]` weights and `[nets, out]` biases.
struct WideMlp {
    layers: Vec<(ParamId, ParamId)>,
    dim: usize,
}

/// Each layer's weights and biases on the host, `[nets, ..]` each.
type HostLayers = Vec<(Vec<f32>, Vec<f32>)>;

impl WideMlp {
    /// Glorot-uniform weights and biases, as sklearn starts its MLP.
    /// Classifier h starts from its own stream, so the main classifier (h = 0) starts the
    /// same whatever the number of nulls.
    fn init(nets: usize, dim: usize, width: usize, seed: u64) -> HostLayers {
        let shapes = [(dim, width), (width, width), (width, 1)];
        let mut layers: HostLayers = vec![(Vec::new(), Vec::new()); shapes.len()];
        for h in 0..nets {
            let mut rng = stream(seed, FIRST_INIT + h as u64);
            for ((fan_in, fan_out), (w, b)) in shapes.iter().zip(&mut layers) {
                w.extend(glorot(&mut rng, fan_in * fan_out, *fan_in, *fan_out));
                b.extend(glorot(&mut rng, *fan_out, *fan_in, *fan_out));
            }
        }
        layers
    }

    fn new(store: &mut ParamStore, nets: usize, dim: usize, values: &HostLayers) -> Result<Self> {
        let mut layers = Vec::new();
        for (k, (w, b)) in values.iter().enumerate() {
            let out = b.len() / nets;
            let fan_in = w.len() / (nets * out);
            let w = store.add(&format!("lc2st.{k}.weight"), &[nets, fan_in, out], w)?;
            let b = store.add(&format!("lc2st.{k}.bias"), &[nets, out], b)?;
            layers.push((w, b));
        }
        Ok(WideMlp { layers, dim })
    }

    /// Logits `[nets, rows, 1]` of every classifier for the shared `x: [rows, dim]`.
    fn forward(&self, tape: &mut Tape, x: Var) -> Result<Var> {
        let mut h = x;
        for (k, &(w, b)) in self.layers.iter().enumerate() {
            let (w, b) = (tape.param(w)?, tape.param(b)?);
            let z = tape.batched_linear(h, w, Some(b))?;
            h = if k + 1 < self.layers.len() { tape.relu(z)? } else { z };
        }
        Ok(h)
    }

    /// Every classifier's logits for `rows` rows of `x`, classifier-major, in inference mode.
    fn logits_of(&self, tape: &mut Tape, x: &[f32], rows: usize) -> Result<Vec<f32>> {
        tape.reset();
        tape.set_inference(true)?;
        let x = tape.input(x, &[rows, self.dim])?;
        let z = self.forward(tape, x)?;
        let out = tape.to_vec(z)?;
        tape.reset();
        tape.set_inference(false)?;
        Ok(out)
    }
}

/// The rows of `keep` (indices into its `nets` blocks) of a `[nets, ..]` array.
fn select(values: &[f32], nets: usize, keep: &[usize]) -> Vec<f32> {
    let per = values.len() / nets;
    keep.iter().flat_map(|&h| values[h * per..(h + 1) * per].iter().copied()).collect()
}

/// The classifiers still training, as one wide network with its optimiser.
struct Training {
    /// Global index of each classifier in the network, in order.
    active: Vec<usize>,
    tape: Tape,
    net: WideMlp,
    opt: AdamW,
}

impl Training {
    fn new(
        device: &Device, dim: usize, active: Vec<usize>, values: &HostLayers, lr: f32,
        state: Option<&AdamState>,
    ) -> Result<Training> {
        let mut store = ParamStore::new(device);
        let net = WideMlp::new(&mut store, active.len(), dim, values)?;
        let config = AdamWConfig { lr, ..AdamWConfig::default() };
        let opt = match state {
            Some(s) => AdamW::with_state(&store, config, s)?,
            None => AdamW::new(&store, config)?,
        };
        Ok(Training { active, tape: Tape::new(store), net, opt })
    }

    /// The network's weights on the host, in layer order.
    fn values(&self) -> Result<HostLayers> {
        let params = self.tape.params();
        self.net.layers.iter().map(|&(w, b)| Ok((params.to_vec(w)?, params.to_vec(b)?))).collect()
    }

    /// The same training without the classifiers that have stopped: their rows leave the
    /// weights and the optimiser's moments, so the wide GEMMs shrink as classifiers finish.
    fn without(self, device: &Device, stopped: &[bool], lr: f32) -> Result<Training> {
        let nets = self.active.len();
        let keep: Vec<usize> = (0..nets).filter(|&h| !stopped[self.active[h]]).collect();
        let values: HostLayers = self
            .values()?
            .iter()
            .map(|(w, b)| (select(w, nets, &keep), select(b, nets, &keep)))
            .collect();
        // The loss is the mean over every classifier's rows, so each one's gradient scales as
        // 1 / nets: rescaling the moments to the new count keeps each classifier's Adam steps
        // exactly as they would have been (up to Adam's ε).
        let ratio = nets as f32 / keep.len() as f32;
        let mut state = self.opt.state(device)?;
        for (moments, scale) in [(&mut state.m, ratio), (&mut state.v, ratio * ratio)] {
            for m in moments.iter_mut() {
                *m = select(m, nets, &keep).into_iter().map(|x| x * scale).collect();
            }
        }
        let active = keep.iter().map(|&h| self.active[h]).collect();
        Training::new(device, self.net.dim, active, &values, lr, Some(&state))
    }
}

/// Trains every classifier with its own early stopping and returns a network of all of them
/// with each one's best weights, and the epochs run.
fn train(
    device: &Device, data: &Data, theta_dim: usize, cfg: &Lc2stConfig,
) -> Result<(Tape, WideMlp, usize)> {
    let rng = &mut stream(cfg.seed, SPLIT_AND_BATCHES);
    let n = data.len();
    // The validation rows: the same share of each class (of the true labels).
    let mut val_idx = Vec::new();
    let mut fit_idx = Vec::new();
    for class in [0..n / 2, n / 2..n] {
        let mut idx: Vec<usize> = class.collect();
        idx.shuffle(rng);
        let n_val = ((idx.len() as f64 * cfg.mlp.validation_fraction).ceil() as usize)
            .clamp(1, idx.len() - 1);
        val_idx.extend_from_slice(&idx[..n_val]);
        fit_idx.extend_from_slice(&idx[n_val..]);
    }
    let init = WideMlp::init(data.nets, data.dim, cfg.mlp.hidden_multiplier * theta_dim, cfg.seed);
    let mut run =
        Training::new(device, data.dim, (0..data.nets).collect(), &init, cfg.mlp.lr, None)?;
    let mut best = Best {
        score: vec![f64::NEG_INFINITY; data.nets],
        stale: vec![0; data.nets],
        weights: init,
    };

    let (mut val_x, mut val_y, mut bx, mut by) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let batch = cfg.mlp.batch_size.min(fit_idx.len());
    let mut epochs = 0;
    while epochs < cfg.mlp.max_epochs {
        epochs += 1;
        fit_idx.shuffle(rng);
        for chunk in fit_idx.chunks(batch) {
            data.batch(chunk, &run.active, &mut bx, &mut by);
            let tape = &mut run.tape;
            tape.reset();
            let x = tape.input(&bx, &[chunk.len(), data.dim])?;
            let y = tape.input(&by, &[run.active.len(), chunk.len(), 1])?;
            let logits = run.net.forward(tape, x)?;
            let loss = tape.bce_with_logits(logits, y)?;
            tape.backward(loss)?;
            run.opt.step(tape.params_mut())?;
        }
        data.batch(&val_idx, &run.active, &mut val_x, &mut val_y);
        let logits = run.net.logits_of(&mut run.tape, &val_x, val_idx.len())?;
        let accuracy: Vec<f64> = logits
            .chunks(val_idx.len())
            .zip(val_y.chunks(val_idx.len()))
            .map(|(z, y)| {
                let right = z.iter().zip(y).filter(|(z, y)| (**z > 0.0) == (**y > 0.5)).count();
                right as f64 / z.len() as f64
            })
            .collect();
        best.update(&run, &accuracy)?;
        let stopped: Vec<bool> = best.stale.iter().map(|&s| s >= cfg.mlp.patience).collect();
        if run.active.iter().all(|&h| stopped[h]) {
            break;
        }
        if run.active.iter().any(|&h| stopped[h]) {
            run = run.without(device, &stopped, cfg.mlp.lr)?;
        }
    }
    let mut store = ParamStore::new(device);
    let net = WideMlp::new(&mut store, data.nets, data.dim, &best.weights)?;
    Ok((Tape::new(store), net, epochs))
}

/// Each classifier's best validation accuracy, its epochs since, and its weights then.
struct Best {
    score: Vec<f64>,
    stale: Vec<usize>,
    /// Every classifier's weights at its best epoch, `[nets, ..]` per layer.
    weights: HostLayers,
}

impl Best {
    /// Keeps the weights of every active classifier whose accuracy improved (strictly, as
    /// sklearn counts an improvement); the others age by one epoch.
    fn update(&mut self, run: &Training, accuracy: &[f64]) -> Result<()> {
        let mut improved = Vec::new();
        for (k, &h) in run.active.iter().enumerate() {
            if accuracy[k] > self.score[h] {
                self.score[h] = accuracy[k];
                self.stale[h] = 0;
                improved.push((k, h));
            } else {
                self.stale[h] += 1;
            }
        }
        if improved.is_empty() {
            return Ok(());
        }
        let nets = run.active.len();
        let total = self.score.len();
        for ((w, b), (best_w, best_b)) in run.values()?.iter().zip(&mut self.weights) {
            for (now, best) in [(w, best_w), (b, best_b)] {
                let per = now.len() / nets;
                debug_assert_eq!(best.len(), per * total);
                for &(k, h) in &improved {
                    best[h * per..(h + 1) * per].copy_from_slice(&now[k * per..(k + 1) * per]);
                }
            }
        }
        Ok(())
    }
}
