//! The whole model with functional inputs: the Fourier block reaches exactly the input tokens
//! (against f64, through an encoder made token-local by its weights), an input changes its own
//! set's velocities and no other set's, and every backend agrees with the CPU on velocities,
//! loss and gradients. A small model (width 16, one layer) keeps lavapipe fast.

use crate::common::{self, assert_close, rng, Sizes};
use tfmpe::model::tfmpe::{DeviceTokens, Tfmpe, TfmpeConfig};
use tfmpe::model::tokens::{Layout, TokenBatch};
use tfmpe::nn::LayerNorm;
use tfmpe::tape::{ParamStore, Tape};
use tfmpe::Device;

per_device!(
    fourier_block_reaches_input_tokens_and_zero_elsewhere,
    inputs_move_their_own_set_only,
    inputs_are_required_exactly_when_the_model_has_them
);

/// One scalar global, one scalar local and two observations per site, each observation at a
/// two-dimensional input (a sensor position, say).
pub const INPUT_DIM: usize = 2;

pub const SIZES: Sizes = Sizes { inputs: INPUT_DIM };

pub fn config(input_dim: usize) -> TfmpeConfig {
    TfmpeConfig {
        width: 16,
        layers: 1,
        heads: 2,
        n_ff: 2,
        label_dim: 4,
        pos_dim: 2,
        group_dim: 2,
        n_labels: 3,
        max_positions: 2,
        max_groups: 4,
        input_dim,
        fourier_dim: 6,
    }
}

/// Posterior sets of 2 sites and 1 site around a surrogate set (whose targets are the input
/// tokens): conditions and targets are both padded, and the surrogate's input rows (4 and 5)
/// sit between the two others'.
pub fn layouts() -> Vec<Layout> {
    vec![Layout::posterior(&SIZES, 2), Layout::surrogate(&SIZES), Layout::posterior(&SIZES, 1)]
}

/// The set that owns each input row of [`layouts`]: 4 observations, 2, 2.
const OWNER: [usize; 8] = [0, 0, 0, 0, 1, 1, 2, 2];

/// A packed batch with random values: condition values, x_t, one t per set, inputs in
/// [-1, 1] (standardised inputs are of that order) and a regression target u.
pub struct Batch {
    pub tb: TokenBatch,
    pub cond: Vec<f32>,
    pub xt: Vec<f32>,
    pub t: Vec<f32>,
    pub inputs: Vec<f32>,
    pub u: Vec<f32>,
}

impl Batch {
    pub fn new(layouts: &[Layout], seed: u64, input_range: f32) -> Batch {
        let tb = TokenBatch::pack(&layouts.iter().collect::<Vec<_>>()).unwrap();
        let mut r = rng(seed);
        let cond: Vec<Vec<f32>> =
            layouts.iter().map(|l| common::normal(&mut r, l.cond.len())).collect();
        let cond = tb.pack_cond(&cond.iter().map(Vec::as_slice).collect::<Vec<_>>()).unwrap();
        let xt = common::normal(&mut r, tb.batch * tb.n_target);
        let t = common::uniform(&mut r, tb.batch, 0.0, 1.0);
        let inputs = common::uniform(&mut r, tb.input_rows * INPUT_DIM, -input_range, input_range);
        let u = common::normal(&mut r, tb.batch * tb.n_target);
        Batch { tb, cond, xt, t, inputs, u }
    }
}

/// Records the velocity `[batch · n_target]` and, with `loss`, the masked MSE against u and
/// its backward pass; returns the velocity and the loss.
pub fn forward(
    tape: &mut Tape, model: &Tfmpe, tok: &DeviceTokens, batch: &Batch, loss: bool,
) -> (Vec<f32>, Option<f32>) {
    let tb = &batch.tb;
    let (b, m) = (tb.batch, tb.n_target);
    tape.reset();
    let cond = tape.input(&batch.cond, &[b, tb.n_cond]).unwrap();
    let xt = tape.input(&batch.xt, &[b, m]).unwrap();
    let t = tape.input(&batch.t, &[b]).unwrap();
    let inputs = tape.input(&batch.inputs, &[tb.input_rows, INPUT_DIM]).unwrap();
    let v = model.velocity(tape, tok, cond, xt, t, Some(inputs), None).unwrap();
    let velocity = tape.to_vec(v).unwrap();
    if !loss {
        return (velocity, None);
    }
    let u = tape.input(&batch.u, &[b * m, 1]).unwrap();
    let mask = tb.target_mask.as_ref().map(|mk| tape.input(mk, &[b * m, 1]).unwrap());
    let l = tape.mse(v, u, mask).unwrap();
    tape.backward(l).unwrap();
    (velocity, Some(tape.to_vec(l).unwrap()[0]))
}

/// A fresh model with inputs on `dev` (seed 7), its tape and the batch's tokens.
fn model_on(dev: &Device, batch: &Batch) -> (Tape, Tfmpe, DeviceTokens) {
    let mut store = ParamStore::new(dev);
    let model = Tfmpe::new(&mut store, config(INPUT_DIM), 7).unwrap();
    let tok = DeviceTokens::upload(dev, &batch.tb).unwrap();
    (Tape::new(store), model, tok)
}

/// Weights that make the encoder token-local, so a target's velocity shows its own Fourier
/// block: the embedding reads only the Fourier columns (the others and the bias are zero), the
/// attention's output projection and the MLP's last layer are zero, so each block reduces to
/// its layer norm; norm scales are random, shifts zero. A token without inputs then has an
/// all-zero embedding, layer norms keep it zero, and its velocity is the head's bias exactly.
fn fourier_block_reaches_input_tokens_and_zero_elsewhere(dev: &Device) {
    let batch = Batch::new(&layouts(), 2100, 1.0);
    let (mut tape, model, tok) = model_on(dev, &batch);
    let (in_dim, width, four, half) = (model.config.in_dim(), 16, 6, 3);
    let mut r = rng(2101);
    let w_four = common::normal(&mut r, four * width);
    let mut w_embed = vec![0.0; (in_dim - four) * width];
    w_embed.extend_from_slice(&w_four);
    let gammas =
        [common::uniform(&mut r, width, 0.5, 1.5), common::uniform(&mut r, width, 0.5, 1.5)];
    let head = common::normal(&mut r, width);
    let head_bias = 0.375f32;
    let p = tape.params_mut();
    p.load("embed.linear.weight", &w_embed).unwrap();
    p.load("encoder.0.attn.out.weight", &vec![0.0; width * width]).unwrap();
    p.load("embed.linear.bias", &vec![0.0; width]).unwrap();
    p.load("encoder.0.ff.1.weight", &vec![0.0; width * width]).unwrap();
    p.load("encoder.0.ff.1.bias", &vec![0.0; width]).unwrap();
    p.load("encoder.0.norm1.weight", &gammas[0]).unwrap();
    p.load("encoder.0.norm2.weight", &gammas[1]).unwrap();
    p.load("head.weight", &head).unwrap();
    p.load("head.bias", &[head_bias]).unwrap();
    let freqs = p.to_vec(p.id("embed.fourier.freqs").unwrap()).unwrap();
    let (v, _) = forward(&mut tape, &model, &tok, &batch, false);

    let layer_norm = |h: &[f64], g: &[f32]| -> Vec<f64> {
        let mean = h.iter().sum::<f64>() / h.len() as f64;
        let var = h.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / h.len() as f64;
        let s = (var + LayerNorm::EPS as f64).sqrt();
        h.iter().zip(g).map(|(x, &g)| (x - mean) / s * g as f64).collect()
    };
    let m = batch.tb.n_target;
    let mut want = Vec::new();
    let mut got = Vec::new();
    for (set, slot) in (0..batch.tb.batch).flat_map(|s| (0..m).map(move |j| (s, j))) {
        // Only the surrogate's two targets carry inputs, rows 4 and 5 (after set 0's four).
        if set != 1 || slot >= 2 {
            let bits = v[set * m + slot].to_bits();
            assert_eq!(bits, head_bias.to_bits(), "set {set} target {slot}: a zero block");
            continue;
        }
        let x = &batch.inputs[(4 + slot) * INPUT_DIM..][..INPUT_DIM];
        let z: Vec<f64> = (0..half)
            .map(|k| {
                let dot: f64 =
                    (0..INPUT_DIM).map(|i| x[i] as f64 * freqs[i * half + k] as f64).sum();
                std::f64::consts::TAU * dot
            })
            .collect();
        let block: Vec<f64> = z.iter().map(|z| z.sin()).chain(z.iter().map(|z| z.cos())).collect();
        let h: Vec<f64> = (0..width)
            .map(|c| (0..four).map(|k| block[k] * w_four[k * width + c] as f64).sum())
            .collect();
        let h = layer_norm(&layer_norm(&h, &gammas[0]), &gammas[1]);
        let out = h.iter().zip(&head).map(|(h, &w)| h * w as f64).sum::<f64>() + head_bias as f64;
        want.push(out);
        got.push(v[set * m + slot]);
    }
    let worst = got.iter().zip(&want).map(|(&g, w)| (g as f64 - w).abs()).fold(0.0, f64::max);
    eprintln!("{}: velocity of the input tokens off f64 by {worst:.1e}", dev.name());
    // f32 phases of |z| up to ~20 carry ~1e-6 absolute, which the embedding and two layer
    // norms pass on at O(1) gain; a swapped sin/cos, a wrong row or a missing 2π is off by O(1).
    assert_close("velocity of the input tokens", &got, &want, 2e-5, 1e-5);
}

fn inputs_move_their_own_set_only(dev: &Device) {
    let mut batch = Batch::new(&layouts(), 2200, 1.0);
    let (mut tape, model, tok) = model_on(dev, &batch);
    let (base, _) = forward(&mut tape, &model, &tok, &batch, false);
    let m = batch.tb.n_target;
    for (row, &owner) in OWNER.iter().enumerate() {
        let old = batch.inputs[row * INPUT_DIM];
        batch.inputs[row * INPUT_DIM] = old + 0.5;
        let (v, _) = forward(&mut tape, &model, &tok, &batch, false);
        batch.inputs[row * INPUT_DIM] = old;
        for set in 0..batch.tb.batch {
            let (now, before) = (&v[set * m..][..m], &base[set * m..][..m]);
            if set != owner {
                // Sets never attend to each other, and every kernel works row by row.
                assert_eq!(now, before, "input row {row} of set {owner} moved set {set}");
                continue;
            }
            // The surrogate's input rows are its own targets: that token's velocity moves.
            let watched = if owner == 1 { row - 4..row - 3 } else { 0..m };
            let moved = watched.map(|j| (now[j] - before[j]).abs()).fold(0.0, f32::max);
            assert!(moved > 1e-3, "input row {row} moved set {owner} by {moved} only");
        }
    }
}

fn inputs_are_required_exactly_when_the_model_has_them(dev: &Device) {
    let batch = Batch::new(&layouts(), 2300, 1.0);
    let tb = &batch.tb;
    let tok = DeviceTokens::upload(dev, tb).unwrap();
    for (input_dim, give) in [(INPUT_DIM, false), (0, true)] {
        let mut store = ParamStore::new(dev);
        let model = Tfmpe::new(&mut store, config(input_dim), 7).unwrap();
        let mut tape = Tape::new(store);
        let cond = tape.input(&batch.cond, &[tb.batch, tb.n_cond]).unwrap();
        let xt = tape.input(&batch.xt, &[tb.batch, tb.n_target]).unwrap();
        let t = tape.input(&batch.t, &[tb.batch]).unwrap();
        let inputs = tape.input(&batch.inputs, &[tb.input_rows, INPUT_DIM]).unwrap();
        let got = model.velocity(&mut tape, &tok, cond, xt, t, give.then_some(inputs), None);
        assert!(got.is_err(), "input_dim {input_dim}, inputs given: {give}");
    }
}

/// Tests that compare two backends with each other.
mod across_devices {
    use super::*;

    /// Velocities, loss and every gradient, `embed.fourier.freqs` first among them, of one
    /// training step on `dev`.
    fn step(dev: &Device) -> Vec<(String, Vec<f32>)> {
        let batch = Batch::new(&layouts(), 2400, 1.0);
        let (mut tape, model, tok) = model_on(dev, &batch);
        let (v, loss) = forward(&mut tape, &model, &tok, &batch, true);
        let mut out = vec![("velocity".to_string(), v), ("loss".to_string(), vec![loss.unwrap()])];
        let params = tape.params();
        let freqs = params.id("embed.fourier.freqs").unwrap();
        let mut ids: Vec<_> = params.iter().map(|p| p.id).collect();
        ids.sort_by_key(|&id| id != freqs);
        for id in ids {
            let grad = dev.backend().download_f32(params.grad(id).unwrap()).unwrap();
            out.push((format!("grad {}", params.name(id).unwrap()), grad));
        }
        out
    }

    /// Each tensor within 1e-4 of its largest CPU magnitude: f32 rounding (~1e-7) grown through
    /// one layer and a softmax over at most 8 keys, in another summation order, stays far below;
    /// a kernel that mishandles the Fourier block or its padding is off by O(1).
    fn matches_the_cpu(gpu: &Device) {
        let want = step(&Device::cpu());
        let got = step(gpu);
        let freqs = &want[2].1;
        assert!(freqs.iter().any(|&g| g != 0.0), "the loss depends on the frequencies");
        for ((name, w), (_, g)) in want.iter().zip(&got) {
            let scale = w.iter().fold(0.0f32, |a, x| a.max(x.abs())) as f64;
            let worst = w.iter().zip(g).map(|(w, g)| (w - g).abs()).fold(0.0f32, f32::max);
            eprintln!("{}: {name}: worst {:.1e} of the scale", gpu.name(), worst as f64 / scale);
            let w: Vec<f64> = w.iter().map(|&x| x as f64).collect();
            assert_close(&format!("{}: {name}", gpu.name()), g, &w, 1e-4 * scale, 0.0);
        }
    }

    #[test]
    fn wgpu_matches_the_cpu_backend() {
        if let Some(gpu) = common::wgpu() {
            matches_the_cpu(&gpu);
        }
    }

    #[test]
    fn cuda_matches_the_cpu_backend() {
        if let Some(gpu) = common::cuda() {
            matches_the_cpu(&gpu);
        }
    }
}

/// A model without functional inputs is the model from before they existed (a37ce83).
mod before_inputs {
    use super::*;

    const PLAIN: Sizes = Sizes { inputs: 0 };

    /// The same parameters, in the same order (so a seed draws the same weights and old
    /// checkpoints load), and on the CPU the same velocities: the values were printed by this
    /// case run against a37ce83. They are compared to 1e-5 relative, not to the bit, since the
    /// last bits depend on the CPU's vector width (the GEMM micro-kernels sum in another order
    /// with AVX-512 than with AVX2); other weights would change them entirely.
    #[test]
    fn the_model_without_inputs_is_unchanged() {
        let dev = Device::cpu();
        let config = TfmpeConfig {
            width: 16,
            layers: 1,
            heads: 2,
            n_labels: 3,
            max_positions: 2,
            max_groups: 4,
            ..TfmpeConfig::reference()
        };
        let mut store = ParamStore::new(&dev);
        let model = Tfmpe::new(&mut store, config, 5).unwrap();
        let names: Vec<String> = store.iter().map(|p| p.name.to_string()).collect();
        let encoder = ["attn.qkv.weight", "attn.out.weight", "norm1.weight", "norm1.bias"]
            .into_iter()
            .chain(["ff.0.weight", "ff.0.bias", "ff.1.weight", "ff.1.bias"])
            .chain(["norm2.weight", "norm2.bias"])
            .map(|n| format!("encoder.0.{n}"));
        let want: Vec<String> = ["label.weight", "position.weight", "group.weight"]
            .into_iter()
            .chain(["linear.weight", "linear.bias"])
            .map(|n| format!("embed.{n}"))
            .chain(encoder)
            .chain(["head.weight".into(), "head.bias".into()])
            .collect();
        assert_eq!(names, want);

        let mut tape = Tape::new(store);
        let layouts = [Layout::posterior(&PLAIN, 2), Layout::posterior(&PLAIN, 1)];
        let tb = TokenBatch::pack(&layouts.iter().collect::<Vec<_>>()).unwrap();
        assert!(tb.input_index.is_none() && tb.input_rows == 0);
        let tok = DeviceTokens::upload(&dev, &tb).unwrap();
        let mut r = rng(2500);
        let (b, m) = (tb.batch, tb.n_target);
        let cond = tb.pack_cond(&[&common::normal(&mut r, 4), &common::normal(&mut r, 2)]);
        let cond = tape.input(&cond.unwrap(), &[b, tb.n_cond]).unwrap();
        let xt = tape.input(&common::normal(&mut r, b * m), &[b, m]).unwrap();
        let t = tape.input(&common::uniform(&mut r, b, 0.0, 1.0), &[b]).unwrap();
        let v = model.velocity(&mut tape, &tok, cond, xt, t, None, None).unwrap();
        let got = tape.to_vec(v).unwrap();
        let pinned = [0xbfcd1c68, 0xbe60ba18, 0xbe29177e, 0xbfab0d91, 0xbea1fa82, 0xbfaa1f46];
        for (&g, &p) in got.iter().zip(&pinned) {
            let p = f32::from_bits(p);
            assert!((g - p).abs() <= 1e-5 * p.abs(), "velocities {got:?}, pinned {p} among them");
        }
        assert_eq!(got.len(), pinned.len());
    }
}
