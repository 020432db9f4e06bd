//! Bad input gives typed errors, never a panic.

use tfmpe::nn::{AdamW, AdamWConfig, Linear, MultiHeadAttention};
use tfmpe::tape::{ParamStore, Tape};
use tfmpe::{Device, Error};

use crate::common::rng;
use crate::cpu_tape;

#[track_caller]
fn shape_err<T: std::fmt::Debug>(r: tfmpe::Result<T>) {
    assert!(matches!(r, Err(Error::Shape(_))), "expected a shape error, got {r:?}");
}

#[track_caller]
fn invalid<T: std::fmt::Debug>(r: tfmpe::Result<T>) {
    assert!(matches!(r, Err(Error::Invalid(_))), "expected an invalid-argument error, got {r:?}");
}

#[track_caller]
fn wrong_buffer<T: std::fmt::Debug>(r: tfmpe::Result<T>) {
    assert!(matches!(r, Err(Error::Buffer(_))), "expected a wrong-buffer error, got {r:?}");
}

#[test]
fn shape_mismatches() {
    let mut t = cpu_tape();
    let x = t.input(&[0.0; 12], &[3, 4]).unwrap();
    let w = t.input(&[0.0; 10], &[5, 2]).unwrap();
    let b3 = t.input(&[0.0; 3], &[3]).unwrap();
    shape_err(t.linear(x, w, None));
    let w = t.input(&[0.0; 8], &[4, 2]).unwrap();
    shape_err(t.linear(x, w, Some(b3)));
    let y = t.input(&[0.0; 12], &[4, 3]).unwrap();
    shape_err(t.add(x, y));
    shape_err(t.reshape(x, &[5, 2]));
    shape_err(t.layer_norm(x, None, b3, b3, 1e-5));
    shape_err(t.layer_norm(x, Some(y), b3, b3, 1e-5));
    shape_err(t.mse(x, b3, None));
    shape_err(t.concat(&[x, b3]));
    shape_err(t.input(&[0.0; 5], &[2, 3]));

    let qkv = t.input(&[0.0; 2 * 3 * 12], &[2, 3, 12]).unwrap();
    shape_err(t.attention(qkv, None, 3));
    shape_err(t.attention(x, None, 2));
    let mask = t.input(&[1.0; 3], &[3]).unwrap();
    shape_err(t.attention(qkv, Some(mask), 2));
    let freqs = t.input(&[0.0; 6], &[3, 2]).unwrap();
    shape_err(t.fourier(x, freqs));
}

#[test]
fn wrong_buffer_types_and_indices() {
    let mut t = cpu_tape();
    let x = t.input(&[0.0; 12], &[3, 4]).unwrap();
    let ids = t.input_u32(&[0, 1, 2], &[3]).unwrap();
    wrong_buffer(t.linear(ids, x, None));
    wrong_buffer(t.embedding(x, x));
    let past = t.input_u32(&[0, 7], &[2]).unwrap();
    assert!(t.embedding(x, past).is_err(), "an id past the table");
    assert!(t.gather_rows(x, past).is_err(), "a row past the input");
}

#[test]
fn stale_and_foreign_handles() {
    let mut t = cpu_tape();
    let x = t.input(&[1.0; 4], &[2, 2]).unwrap();
    t.reset();
    invalid(t.relu(x));
    invalid(t.shape(x));

    let mut other = cpu_tape();
    let y = other.input(&[1.0; 4], &[2, 2]).unwrap();
    invalid(t.relu(y));

    let mut store = ParamStore::new(&Device::cpu());
    let foreign = Linear::new(&mut store, "l", 2, 2, true, &mut rng(1)).unwrap();
    invalid(t.param(foreign.weight));
    invalid(AdamW::new(&store, AdamWConfig::default()).unwrap().step(t.params_mut()));
}

#[test]
fn losses_only_at_the_root() {
    let mut t = cpu_tape();
    let x = t.variable(&[1.0, -2.0, 3.0], &[3]).unwrap();
    let s = t.sum(x).unwrap();
    invalid(t.add(s, s));
    shape_err(t.backward(x));
    assert!(t.backward(s).is_ok());
}

#[test]
fn data_operands_refuse_gradients() {
    let mut t = cpu_tape();
    let x = t.variable(&[0.5; 4], &[4, 1]).unwrap();
    let freqs = t.variable(&[1.0; 2], &[1, 2]).unwrap();
    invalid(t.fourier(x, freqs));
    invalid(t.bce_with_logits(freqs, x));
    let qkv = t.input(&[0.0; 6], &[1, 1, 6]).unwrap();
    invalid(t.attention(qkv, Some(freqs), 1));
}

#[test]
fn inference_mode_rules() {
    let mut store = ParamStore::new(&Device::cpu());
    let attn = MultiHeadAttention::new(&mut store, "a", 4, 2, &mut rng(2)).unwrap();
    let mut t = Tape::new(store);
    let x = t.input(&[0.1; 8], &[1, 2, 4]).unwrap();
    invalid(t.set_inference(true));
    t.reset();
    t.set_inference(true).unwrap();
    let x2 = t.input(&[0.1; 8], &[1, 2, 4]).unwrap();
    let y = attn.forward(&mut t, x2, None).unwrap();
    t.release(x2).unwrap();
    invalid(t.relu(x2));
    invalid(t.backward(y));
    invalid(t.relu(x));
}

#[test]
fn parameter_store_names_and_sizes() {
    let mut store = ParamStore::new(&Device::cpu());
    store.add("w", &[2, 2], &[0.0; 4]).unwrap();
    invalid(store.add("w", &[1], &[0.0]));
    shape_err(store.add("v", &[2, 2], &[0.0; 3]));
    shape_err(store.load("w", &[0.0; 3]));
    invalid(store.load("nope", &[0.0; 4]));
    invalid(MultiHeadAttention::new(&mut store, "a", 6, 4, &mut rng(3)));
}
