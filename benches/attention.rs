//! Attention and layer norm through the kernel contract at the W1 shapes: the training step
//! (batch 100 of 101 tokens, 16 heads of 4, also 102 tokens with one padded key), inference
//! (batch 1000, forward only), and layer norm over the 100 · 101 token rows of width 64.
//!
//! The same cases run on wgpu (names prefixed `wgpu/`, each iteration waiting for the device)
//! when an adapter opens; on a CPU-type adapter such as lavapipe the figures are for
//! correctness only.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use tfmpe::backend::{Attention, Backend, BackendKind, Buffer, LayerNorm};
use tfmpe::Device;

/// Reproducible inputs without a random-number dependency: a scrambled sawtooth in [-1, 1).
fn data(len: usize, seed: u32) -> Vec<f32> {
    (0..len as u32)
        .map(|i| {
            let h = (i ^ seed).wrapping_mul(0x9e37_79b9).rotate_left(13);
            (h >> 8) as f32 / (1 << 23) as f32 - 1.0
        })
        .collect()
}

struct AttentionCase {
    p: Attention,
    qkv: Buffer,
    mask: Option<Buffer>,
    out: Buffer,
    lse: Buffer,
    dout: Buffer,
    dqkv: Buffer,
}

fn attention_case(be: &dyn Backend, batch: usize, tokens: usize, padded: bool) -> AttentionCase {
    let p = Attention { batch, tokens, heads: 16, head_dim: 4, scale: 0.5 };
    let n = batch * tokens * p.model_dim();
    let mask = padded.then(|| {
        let m: Vec<f32> =
            (0..batch * tokens).map(|i| if i % tokens == tokens - 1 { 0.0 } else { 1.0 }).collect();
        be.upload_f32(&m).unwrap()
    });
    let up = |v: Vec<f32>| be.upload_f32(&v).unwrap();
    let mut c = AttentionCase {
        p,
        qkv: up(data(3 * n, 1)),
        mask,
        out: up(vec![0.0; n]),
        lse: up(vec![0.0; batch * p.heads * tokens]),
        dout: up(data(n, 2)),
        dqkv: up(vec![0.0; 3 * n]),
    };
    be.attention_fwd(&c.p, &c.qkv, c.mask.as_ref(), &mut c.out, &mut c.lse).unwrap();
    c
}

/// Every device to measure, with the prefix of its benchmark names.
fn devices() -> Vec<(&'static str, Device)> {
    let mut devs = vec![("", Device::cpu())];
    match Device::open(BackendKind::Wgpu) {
        Ok((dev, _)) => devs.push(("wgpu/", dev)),
        Err(e) => eprintln!("wgpu skipped: {e}"),
    }
    devs
}

fn attention(cr: &mut Criterion) {
    for (prefix, dev) in devices() {
        attention_on(cr, prefix, dev.backend());
    }
}

fn attention_on(cr: &mut Criterion, prefix: &str, be: &dyn Backend) {
    for (name, batch, tokens, padded) in [
        ("b100_n101", 100, 101, false),
        ("b100_n102_padded", 100, 102, true),
        ("b1000_n101", 1000, 101, false),
    ] {
        let mut c = attention_case(be, batch, tokens, padded);
        cr.bench_function(&format!("{prefix}attention_fwd/{name}"), |bch| {
            bch.iter(|| {
                be.attention_fwd(&c.p, &c.qkv, c.mask.as_ref(), &mut c.out, &mut c.lse).unwrap();
                be.synchronize().unwrap();
                black_box(&c.out);
            })
        });
        if batch == 1000 {
            continue; // inference only: no backward at this shape
        }
        cr.bench_function(&format!("{prefix}attention_bwd/{name}"), |bch| {
            bch.iter(|| {
                be.attention_bwd(
                    &c.p,
                    &c.qkv,
                    c.mask.as_ref(),
                    &c.out,
                    &c.lse,
                    &c.dout,
                    &mut c.dqkv,
                )
                .unwrap();
                be.synchronize().unwrap();
                black_box(&c.dqkv);
            })
        });
    }
}

fn layer_norm(cr: &mut Criterion) {
    for (prefix, dev) in devices() {
        layer_norm_on(cr, prefix, dev.backend());
    }
}

fn layer_norm_on(cr: &mut Criterion, prefix: &str, be: &dyn Backend) {
    let p = LayerNorm { rows: 100 * 101, cols: 64, eps: 1e-5 };
    let n = p.rows * p.cols;
    let up = |v: Vec<f32>| be.upload_f32(&v).unwrap();
    let (x, res, dy) = (up(data(n, 3)), up(data(n, 4)), up(data(n, 5)));
    let (gamma, beta) = (up(vec![1.0; p.cols]), up(vec![0.0; p.cols]));
    let (mut y, mut sum, mut dh) = (up(vec![0.0; n]), up(vec![0.0; n]), up(vec![0.0; n]));
    let (mut mean, mut rstd) = (up(vec![0.0; p.rows]), up(vec![0.0; p.rows]));
    let (mut dgamma, mut dbeta) = (up(vec![0.0; p.cols]), up(vec![0.0; p.cols]));
    cr.bench_function(&format!("{prefix}layer_norm_fwd_residual/10100x64"), |bch| {
        bch.iter(|| {
            be.layer_norm_fwd(
                &p,
                &x,
                Some(&res),
                &gamma,
                &beta,
                &mut y,
                &mut mean,
                &mut rstd,
                Some(&mut sum),
            )
            .unwrap();
            be.synchronize().unwrap();
            black_box(&y);
        })
    });
    cr.bench_function(&format!("{prefix}layer_norm_bwd/10100x64"), |bch| {
        bch.iter(|| {
            be.layer_norm_bwd(
                &p,
                &sum,
                &dy,
                &gamma,
                &mean,
                &rstd,
                &mut dh,
                &mut dgamma,
                &mut dbeta,
                false,
            )
            .unwrap();
            be.synchronize().unwrap();
            black_box(&dh);
        })
    });
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(15)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = attention, layer_norm
}
criterion_main!(benches);
