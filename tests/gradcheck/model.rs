//! The whole TFMPE velocity with functional inputs under the flow-matching loss: every
//! parameter's gradient, `embed.fourier.freqs` among them, on a padded batch.

use tfmpe::model::tfmpe::{DeviceTokens, Tfmpe, TfmpeConfig};
use tfmpe::model::tokens::{Layout, TokenBatch};
use tfmpe::tape::{ParamStore, Tape};
use tfmpe::Device;

use crate::common::{normal, rng, uniform, Sizes};
use crate::gradcheck;

/// One scalar global, one local and two observations per site, each at a 2-d input.
const SIZES: Sizes = Sizes { inputs: 2 };

const WIDTH: usize = 8;

fn norm(v: impl Iterator<Item = f32>) -> f32 {
    v.map(|x| x * x).sum::<f32>().sqrt()
}

/// Column norms of a `[WIDTH, WIDTH]` weight.
fn col_norms(w: &[f32]) -> Vec<f32> {
    (0..WIDTH).map(|k| norm((0..WIDTH).map(|i| w[i * WIDTH + k]))).collect()
}

/// Biases that keep every MLP pre-activation at least 1 above ReLU's kink, whatever the
/// tokens: the MLP reads a layer norm's output, whose norm is at most √WIDTH (scales 1,
/// shifts 0), so |x·W₀[:, k]| ≤ √WIDTH‖W₀[:, k]‖, and the second layer reads the first's
/// output, bounded in turn. Every perturbation of the check moves a pre-activation by far
/// less than 1, so no central difference straddles a kink.
fn lift_mlp_biases(tape: &mut Tape) {
    let p = tape.params_mut();
    let w0 = p.to_vec(p.id("encoder.0.ff.0.weight").unwrap()).unwrap();
    let w1 = p.to_vec(p.id("encoder.0.ff.1.weight").unwrap()).unwrap();
    let reach0: Vec<f32> = col_norms(&w0).iter().map(|n| (WIDTH as f32).sqrt() * n).collect();
    let b0: Vec<f32> = reach0.iter().map(|r| r + 1.0).collect();
    let h1 = norm(reach0.iter().map(|r| 2.0 * r + 1.0));
    let b1: Vec<f32> = col_norms(&w1).iter().map(|n| h1 * n + 1.0).collect();
    p.load("encoder.0.ff.0.bias", &b0).unwrap();
    p.load("encoder.0.ff.1.bias", &b1).unwrap();
}

#[test]
fn velocity_with_functional_inputs_under_the_masked_loss() {
    let config = TfmpeConfig {
        width: WIDTH,
        layers: 1,
        heads: 2,
        n_ff: 2,
        label_dim: 3,
        pos_dim: 2,
        group_dim: 2,
        n_labels: 3,
        max_positions: 2,
        max_groups: 3,
        input_dim: 2,
        fourier_dim: 4,
    };
    let mut store = ParamStore::new(&Device::cpu());
    let model = Tfmpe::new(&mut store, config, 11).unwrap();
    let mut tape = Tape::new(store);
    lift_mlp_biases(&mut tape);

    // Two sites and one: conditions and targets are padded in the second set.
    let layouts = [Layout::posterior(&SIZES, 2), Layout::posterior(&SIZES, 1)];
    let tb = TokenBatch::pack(&layouts.iter().collect::<Vec<_>>()).unwrap();
    assert!(tb.target_mask.is_some(), "the case must include padding");
    let tok = DeviceTokens::upload(&Device::cpu(), &tb).unwrap();
    let (b, m, rows) = (tb.batch, tb.n_target, tb.input_rows);
    let mut r = rng(3000);
    let cond = tb.pack_cond(&[&normal(&mut r, 4), &normal(&mut r, 2)]).unwrap();
    let xt = normal(&mut r, b * m);
    let t = uniform(&mut r, b, 0.0, 1.0);
    // The third derivative in a frequency is (2πx)³ times the rest, so inputs of |x| ≤ 0.3
    // keep the difference quotient's truncation error near ε²/6 · 7, within the tolerance.
    let inputs = uniform(&mut r, rows * 2, -0.3, 0.3);
    let u = normal(&mut r, b * m);
    let mask = tb.target_mask.clone().unwrap();
    gradcheck("tfmpe velocity with inputs", &mut tape, &[], |tp, _| {
        let cond = tp.input(&cond, &[b, tb.n_cond])?;
        let xt = tp.input(&xt, &[b, m])?;
        let t = tp.input(&t, &[b])?;
        let x = tp.input(&inputs, &[rows, 2])?;
        let v = model.velocity(tp, &tok, cond, xt, t, Some(x), None)?;
        let u = tp.input(&u, &[b * m, 1])?;
        let mask = tp.input(&mask, &[b * m, 1])?;
        tp.mse(v, u, Some(mask))
    });
    // The check means something only if the frequencies matter: their gradient must stand
    // far above the tolerance's floor (ATOL), which a lost Fourier backward would not.
    let p = tape.params();
    let grad = p.grad(p.id("embed.fourier.freqs").unwrap()).unwrap();
    let grad = tape.device().backend().download_f32(grad).unwrap();
    let largest = grad.iter().fold(0.0f32, |a, g| a.max(g.abs()));
    eprintln!("largest d loss / d freqs: {largest:.3e}");
    assert!(largest as f64 > 50.0 * crate::ATOL, "d loss / d freqs is at most {largest}");
}
