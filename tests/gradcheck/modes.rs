//! The tape's behaviour around the ops: inference mode, buffer reuse, repeated backward
//! passes, parameters a loss does not use.

use tfmpe::nn::{Linear, Transformer, TransformerConfig};
use tfmpe::tape::{ParamStore, Tape, Var};
use tfmpe::Device;

use crate::common::{normal, padding_mask, rng};

const CONFIG: TransformerConfig = TransformerConfig { width: 8, layers: 2, heads: 2, n_ff: 2 };

fn transformer(seed: u64) -> (Tape, Transformer) {
    let mut store = ParamStore::new(&Device::cpu());
    let model = Transformer::new(&mut store, "encoder", CONFIG, &mut rng(seed)).unwrap();
    (Tape::new(store), model)
}

/// Records the transformer on a `[3, 5, 8]` batch with padding; returns the output.
fn forward(tape: &mut Tape, model: &Transformer) -> Var {
    let mut r = rng(77);
    let x = tape.input(&normal(&mut r, 3 * 5 * 8), &[3, 5, 8]).unwrap();
    let mask = tape.input(&padding_mask(&mut r, 3, 5), &[3, 5]).unwrap();
    model.forward(tape, x, Some(mask)).unwrap()
}

#[test]
fn inference_matches_training_and_keeps_no_activations() {
    let (mut tape, model) = transformer(1);
    let y = forward(&mut tape, &model);
    let trained = tape.to_vec(y).unwrap();
    let recorded = tape.live_buffers();

    tape.reset();
    tape.set_inference(true).unwrap();
    let y = forward(&mut tape, &model);
    assert_eq!(tape.to_vec(y).unwrap(), trained, "same kernels, same numbers");
    // The input, the mask and the output: every intermediate went back to the pool.
    assert_eq!(tape.live_buffers(), 3, "recording kept {recorded}");
    assert!(tape.backward(y).is_err(), "nothing was recorded");
}

#[test]
fn reset_reuses_every_buffer() {
    let (mut tape, model) = transformer(2);
    let backend_allocs = |t: &Tape| t.device().backend().buffers_allocated();
    let mut counts = Vec::new();
    for _ in 0..3 {
        tape.reset();
        let y = forward(&mut tape, &model);
        let loss = tape.mean(y).unwrap();
        tape.backward(loss).unwrap();
        counts.push(backend_allocs(&tape));
    }
    assert_eq!(counts[1], counts[2], "allocations per step: {counts:?}");
}

#[test]
fn backward_twice_replaces_gradients() {
    let (mut tape, model) = transformer(3);
    let y = forward(&mut tape, &model);
    let loss = tape.mean(y).unwrap();
    let grads = |t: &Tape| -> Vec<Vec<f32>> {
        t.params()
            .iter()
            .map(|p| {
                let g = t.params().grad(p.id).unwrap();
                t.device().backend().download_f32(g).unwrap()
            })
            .collect()
    };
    tape.backward(loss).unwrap();
    let first = grads(&tape);
    tape.backward(loss).unwrap();
    assert_eq!(grads(&tape), first);
}

#[test]
fn unused_parameters_and_inputs_get_no_gradient() {
    let mut store = ParamStore::new(&Device::cpu());
    let used = Linear::new(&mut store, "used", 2, 1, true, &mut rng(4)).unwrap();
    let unused = Linear::new(&mut store, "unused", 2, 1, true, &mut rng(5)).unwrap();
    let mut tape = Tape::new(store);
    let x = tape.variable(&[1.0, 2.0], &[1, 2]).unwrap();
    let other = tape.variable(&[3.0], &[1]).unwrap();
    // A stale gradient from a step that did use the layer must not survive.
    let y = unused.forward(&mut tape, x).unwrap();
    tape.backward(y).unwrap();
    let y = used.forward(&mut tape, x).unwrap();
    tape.backward(y).unwrap();
    let down = |b| tape.device().backend().download_f32(b).unwrap();
    assert_eq!(down(tape.params().grad(unused.weight).unwrap()), [0.0, 0.0]);
    assert_eq!(down(tape.params().grad(used.weight).unwrap()), [1.0, 2.0]);
    assert!(tape.grad(other).unwrap().is_none());
    assert!(tape.grad(x).unwrap().is_some());
}

#[test]
fn data_ops_give_data() {
    let mut tape = crate::cpu_tape();
    let x0 = tape.randn(&[2, 3], 9, 0).unwrap();
    let x1 = tape.input(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).unwrap();
    let t = tape.rand_uniform(&[2], 9, 100, 0.0, 1.0).unwrap();
    let (xt, u) = tape.fm_prepare(x0, x1, t, 1e-3).unwrap();
    let (x0v, x1v, tv) =
        (tape.to_vec(x0).unwrap(), tape.to_vec(x1).unwrap(), tape.to_vec(t).unwrap());
    assert!(tv.iter().all(|&t| 0.0 < t && t < 1.0));
    let (xt, u) = (tape.to_vec(xt).unwrap(), tape.to_vec(u).unwrap());
    for i in 0..6 {
        let (a, b, s) = (x0v[i] as f64, x1v[i] as f64, tv[i / 3] as f64);
        let want_xt = (1.0 - (1.0 - 1e-3) * s) * a + s * b;
        // A few f32 roundings of values below 10.
        let close = |got: f32, want: f64| (got as f64 - want).abs() <= 1e-6 * (1.0 + want.abs());
        assert!(close(xt[i], want_xt), "x_t[{i}]");
        assert!(close(u[i], b - (1.0 - 1e-3) * a), "u[{i}]");
    }

    // Device buffers in: copied (the caller keeps the source) or taken.
    let src = tape.device().backend().upload_f32(&x1v).unwrap();
    let copied = tape.input_copy(&src, &[3, 2]).unwrap();
    let taken = tape.input_buffer(src, &[6]).unwrap();
    assert_eq!(tape.to_vec(copied).unwrap(), x1v);
    assert_eq!(tape.to_vec(taken).unwrap(), x1v);
    assert_eq!(tape.shape(copied).unwrap(), [3, 2]);
}
