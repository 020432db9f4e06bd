//! One finite-difference check per tape op, on small odd shapes.

use rand::rngs::StdRng;
use rand::RngExt;

use crate::common::{normal, padding_mask, rng, uniform};
use crate::{cpu_tape, gradcheck, Input};

/// Values in ±[lo, hi]: kept away from 0 so ReLU's kink is further than ε from every input.
fn away_from_zero(rng: &mut StdRng, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..n)
        .map(|_| {
            let m = rng.random_range(lo..hi);
            if rng.random::<bool>() {
                m
            } else {
                -m
            }
        })
        .collect()
}

#[test]
fn linear_with_and_without_bias() {
    let mut r = rng(1);
    let inputs = [
        Input::normal(&mut r, &[3, 4]),
        Input::normal(&mut r, &[4, 5]),
        Input::normal(&mut r, &[5]),
    ];
    gradcheck("linear", &mut cpu_tape(), &inputs, |t, v| t.linear(v[0], v[1], Some(v[2])));
    gradcheck("linear, no bias", &mut cpu_tape(), &inputs[..2], |t, v| t.linear(v[0], v[1], None));
}

#[test]
fn linear_over_leading_axes() {
    let mut r = rng(2);
    let inputs = [Input::normal(&mut r, &[2, 3, 4]), Input::normal(&mut r, &[4, 1])];
    gradcheck("linear [2,3,4]", &mut cpu_tape(), &inputs, |t, v| t.linear(v[0], v[1], None));
}

#[test]
fn linear_relu_away_from_the_kink() {
    // Redraw until every pre-activation is at least 0.2 from zero. Perturbing one element of
    // x, W or b by ε moves a pre-activation by at most ε (all entries are within ±1), so no
    // finite difference crosses the kink.
    let (x, w, b) = (0..)
        .map(|seed| {
            let mut r = rng(100 + seed);
            let x = uniform(&mut r, 3 * 4, -1.0, 1.0);
            let w = uniform(&mut r, 4 * 5, -1.0, 1.0);
            let b = uniform(&mut r, 5, -1.0, 1.0);
            (x, w, b)
        })
        .find(|(x, w, b)| {
            (0..3).all(|i| {
                (0..5).all(|j| {
                    let z: f32 = b[j] + (0..4).map(|k| x[i * 4 + k] * w[k * 5 + j]).sum::<f32>();
                    z.abs() > 0.2
                })
            })
        })
        .unwrap();
    let inputs = [Input::new(x, &[3, 4]), Input::new(w, &[4, 5]), Input::new(b, &[5])];
    gradcheck("linear_relu", &mut cpu_tape(), &inputs, |t, v| t.linear_relu(v[0], v[1], v[2]));
}

#[test]
fn batched_linear_per_group_and_shared_x() {
    let mut r = rng(22);
    let inputs = [
        Input::normal(&mut r, &[3, 2, 4]),
        Input::normal(&mut r, &[3, 4, 5]),
        Input::normal(&mut r, &[3, 5]),
    ];
    gradcheck("batched_linear", &mut cpu_tape(), &inputs, |t, v| {
        t.batched_linear(v[0], v[1], Some(v[2]))
    });
    gradcheck("batched_linear, no bias", &mut cpu_tape(), &inputs[..2], |t, v| {
        t.batched_linear(v[0], v[1], None)
    });
    // A shared x is data: only the weights and biases get gradients.
    let x = normal(&mut r, 2 * 4);
    gradcheck("batched_linear, shared x", &mut cpu_tape(), &inputs[1..], |t, v| {
        let x = t.input(&x, &[2, 4])?;
        t.batched_linear(x, v[0], Some(v[1]))
    });
}

#[test]
fn relu() {
    let x = away_from_zero(&mut rng(3), 7, 0.1, 1.0);
    gradcheck("relu", &mut cpu_tape(), &[Input::new(x, &[7])], |t, v| t.relu(v[0]));
}

#[test]
fn add_accumulates_repeated_inputs() {
    let mut r = rng(4);
    let inputs = [Input::normal(&mut r, &[3, 5]), Input::normal(&mut r, &[3, 5])];
    gradcheck("add", &mut cpu_tape(), &inputs, |t, v| t.add(v[0], v[1]));
    // x feeds three uses: both operands of one add and a second add.
    gradcheck("add, x used three times", &mut cpu_tape(), &inputs, |t, v| {
        let xx = t.add(v[0], v[0])?;
        t.add(xx, v[1])
    });
}

#[test]
fn reshape() {
    let inputs = [Input::normal(&mut rng(5), &[2, 6])];
    gradcheck("reshape", &mut cpu_tape(), &inputs, |t, v| t.reshape(v[0], &[3, 4]));
}

#[test]
fn layer_norm_with_and_without_residual() {
    let mut r = rng(6);
    let inputs = [
        Input::normal(&mut r, &[4, 7]),
        Input::normal(&mut r, &[4, 7]),
        Input::new(uniform(&mut r, 7, 0.5, 1.5), &[7]),
        Input::normal(&mut r, &[7]),
    ];
    gradcheck("layer_norm", &mut cpu_tape(), &inputs, |t, v| {
        t.layer_norm(v[0], None, v[2], v[3], 1e-5)
    });
    gradcheck("layer_norm with residual", &mut cpu_tape(), &inputs, |t, v| {
        t.layer_norm(v[0], Some(v[1]), v[2], v[3], 1e-5)
    });
}

#[test]
fn attention_with_and_without_padding() {
    let (batch, tokens, heads, head_dim) = (2, 5, 2, 3);
    let mut r = rng(7);
    let mask = padding_mask(&mut r, batch, tokens);
    assert!(mask.contains(&0.0), "the case must include padding");
    let inputs = [Input::normal(&mut r, &[batch, tokens, 3 * heads * head_dim])];
    gradcheck("attention, masked", &mut cpu_tape(), &inputs, |t, v| {
        let m = t.input(&mask, &[batch, tokens])?;
        t.attention(v[0], Some(m), heads)
    });
    gradcheck("attention", &mut cpu_tape(), &inputs, |t, v| t.attention(v[0], None, heads));
}

#[test]
fn embedding_with_repeated_ids() {
    let ids = [3u32, 0, 3, 5, 1, 3, 0];
    let inputs = [Input::normal(&mut rng(8), &[6, 3])];
    gradcheck("embedding", &mut cpu_tape(), &inputs, |t, v| {
        let ids = t.input_u32(&ids, &[7])?;
        t.embedding(v[0], ids)
    });
}

#[test]
fn gather_rows() {
    let idx = [6u32, 1, 4, 7];
    let inputs = [Input::normal(&mut rng(9), &[2, 4, 3])];
    gradcheck("gather_rows", &mut cpu_tape(), &inputs, |t, v| {
        let idx = t.input_u32(&idx, &[2, 2])?;
        t.gather_rows(v[0], idx)
    });
}

#[test]
fn concat() {
    let mut r = rng(10);
    let inputs = [
        Input::normal(&mut r, &[2, 3, 1]),
        Input::normal(&mut r, &[2, 3, 3]),
        Input::normal(&mut r, &[2, 3, 2]),
    ];
    gradcheck("concat", &mut cpu_tape(), &inputs, |t, v| t.concat(&[v[0], v[1], v[2], v[0]]));
}

#[test]
fn fourier_features() {
    // Small inputs keep z = 2π x f at unit scale, so the third derivative (and with it the
    // truncation error of the finite difference) stays O(10).
    let mut r = rng(11);
    let x = uniform(&mut r, 5 * 2, -0.3, 0.3);
    let inputs = [Input::normal(&mut r, &[2, 3])];
    gradcheck("fourier", &mut cpu_tape(), &inputs, |t, v| {
        let x = t.input(&x, &[5, 2])?;
        t.fourier(x, v[0])
    });
}

#[test]
fn mse_masked_and_plain() {
    let mut r = rng(12);
    let mask: Vec<f32> = (0..11).map(|i| (i % 3 != 1) as u8 as f32).collect();
    let inputs = [Input::normal(&mut r, &[11]), Input::normal(&mut r, &[11, 1])];
    gradcheck("mse", &mut cpu_tape(), &inputs, |t, v| t.mse(v[0], v[1], None));
    gradcheck("mse, masked", &mut cpu_tape(), &inputs, |t, v| {
        let m = t.input(&mask, &[11])?;
        t.mse(v[0], v[1], Some(m))
    });
}

#[test]
fn bce_with_logits() {
    let mut r = rng(13);
    let targets: Vec<f32> = (0..9).map(|i| (i % 2) as f32).collect();
    let logits = Input::new(normal(&mut r, 9).iter().map(|z| 2.0 * z).collect(), &[9]);
    gradcheck("bce_with_logits", &mut cpu_tape(), &[logits], |t, v| {
        let y = t.input(&targets, &[9])?;
        t.bce_with_logits(v[0], y)
    });
}

#[test]
fn sum_and_mean() {
    let inputs = [Input::normal(&mut rng(14), &[3, 7])];
    gradcheck("sum", &mut cpu_tape(), &inputs, |t, v| t.sum(v[0]));
    gradcheck("mean", &mut cpu_tape(), &inputs, |t, v| t.mean(v[0]));
}
