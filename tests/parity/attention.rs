//! Parity of the `attention` kernels against a naive f64 softmax attention and its analytic
//! gradient, written out here.

use crate::common::{self, assert_close, backend, down, up, zeros};
use rand::rngs::StdRng;
use rand::RngExt;
use tfmpe::backend::Attention;
use tfmpe::Device;

per_device!(
    attention_matches_reference_without_mask,
    attention_matches_reference_with_padding,
    attention_training_shape_with_one_padded_key,
    attention_fully_masked_rows_give_zeros,
    attention_is_stable_for_large_scores,
    attention_is_deterministic,
    attention_rejects_wrong_lengths
);

/// Reference outputs: `out [B, N, D]`, `lse [B, H, N]`, and `dqkv [B, N, 3D]` for `dout`.
struct Reference {
    out: Vec<f64>,
    lse: Vec<f64>,
    dqkv: Vec<f64>,
}

/// Softmax attention in f64, one (batch, head, query) row at a time, with the gradient
/// `dS = P ∘ (dP − rowsum(dout ∘ out))` derived from the softmax Jacobian.
fn reference(p: &Attention, qkv: &[f32], mask: Option<&[f32]>, dout: &[f32]) -> Reference {
    let (n, hd, d) = (p.tokens, p.head_dim, p.model_dim());
    let at = |b: usize, t: usize, part: usize, h: usize, c: usize| {
        (b * n + t) * 3 * d + part * d + h * hd + c
    };
    let x = |i: usize| qkv[i] as f64;
    let scale = p.scale as f64;
    let mut r = Reference {
        out: vec![0.0; p.batch * n * d],
        lse: vec![f64::NEG_INFINITY; p.batch * p.heads * n],
        dqkv: vec![0.0; p.batch * n * 3 * d],
    };
    for b in 0..p.batch {
        let keep: Vec<bool> = (0..n).map(|t| mask.is_none_or(|m| m[b * n + t] != 0.0)).collect();
        for h in 0..p.heads {
            for i in 0..n {
                let s: Vec<f64> = (0..n)
                    .map(|j| {
                        let dot: f64 =
                            (0..hd).map(|c| x(at(b, i, 0, h, c)) * x(at(b, j, 1, h, c))).sum();
                        if keep[j] {
                            scale * dot
                        } else {
                            f64::NEG_INFINITY
                        }
                    })
                    .collect();
                let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                if m == f64::NEG_INFINITY {
                    continue;
                }
                let e: Vec<f64> = s.iter().map(|s| (s - m).exp()).collect();
                let sum: f64 = e.iter().sum();
                let pr: Vec<f64> = e.iter().map(|e| e / sum).collect();
                r.lse[(b * p.heads + h) * n + i] = m + sum.ln();
                let o_at = |c: usize| (b * n + i) * d + h * hd + c;
                for c in 0..hd {
                    r.out[o_at(c)] = (0..n).map(|j| pr[j] * x(at(b, j, 2, h, c))).sum();
                }
                let g = |c: usize| dout[o_at(c)] as f64;
                let di: f64 = (0..hd).map(|c| g(c) * r.out[o_at(c)]).sum();
                for (j, &pr) in pr.iter().enumerate() {
                    let dp: f64 = (0..hd).map(|c| g(c) * x(at(b, j, 2, h, c))).sum();
                    let ds = pr * (dp - di);
                    for c in 0..hd {
                        r.dqkv[at(b, i, 0, h, c)] += scale * ds * x(at(b, j, 1, h, c));
                        r.dqkv[at(b, j, 1, h, c)] += scale * ds * x(at(b, i, 0, h, c));
                        r.dqkv[at(b, j, 2, h, c)] += pr * g(c);
                    }
                }
            }
        }
    }
    r
}

/// Runs forward then backward (fed the forward's own `out` and `lse`, as in training).
/// Outputs start as NaN so that an element the kernel forgets to write fails the comparison.
fn run(
    dev: &Device, p: &Attention, qkv: &[f32], mask: Option<&[f32]>, dout: &[f32],
) -> [Vec<f32>; 3] {
    let be = backend(dev);
    let n = p.batch * p.tokens * p.model_dim();
    let nan = |len: usize| up(dev, &vec![f32::NAN; len]);
    let (qkv_b, dout_b) = (up(dev, qkv), up(dev, dout));
    let mask_b = mask.map(|m| up(dev, m));
    let (mut out, mut lse, mut dqkv) = (nan(n), nan(p.batch * p.heads * p.tokens), nan(3 * n));
    be.attention_fwd(p, &qkv_b, mask_b.as_ref(), &mut out, &mut lse).unwrap();
    be.attention_bwd(p, &qkv_b, mask_b.as_ref(), &out, &lse, &dout_b, &mut dqkv).unwrap();
    [down(dev, &out), down(dev, &lse), down(dev, &dqkv)]
}

/// Compares all three results; `lse` is -inf exactly where the reference's is.
#[track_caller]
fn check(what: &str, got: &[Vec<f32>; 3], want: &Reference, atol: f64, rtol: f64) {
    assert_close(&format!("{what}: out"), &got[0], &want.out, atol, rtol);
    let finite: Vec<usize> = (0..want.lse.len()).filter(|&i| want.lse[i].is_finite()).collect();
    for (i, (&g, &w)) in got[1].iter().zip(&want.lse).enumerate() {
        if w == f64::NEG_INFINITY {
            assert_eq!(g, f32::NEG_INFINITY, "{what}: lse[{i}] of a fully masked row");
        }
    }
    let pick = |v: &[f32]| finite.iter().map(|&i| v[i]).collect::<Vec<_>>();
    let want_lse: Vec<f64> = finite.iter().map(|&i| want.lse[i]).collect();
    assert_close(&format!("{what}: lse"), &pick(&got[1]), &want_lse, atol, rtol);
    assert_close(&format!("{what}: dqkv"), &got[2], &want.dqkv, atol, rtol);
}

fn attention(batch: usize, tokens: usize, heads: usize, head_dim: usize) -> Attention {
    Attention { batch, tokens, heads, head_dim, scale: 1.0 / (head_dim as f32).sqrt() }
}

/// A mask with keys dropped anywhere in the row (not only at the end), at least one kept.
fn scattered_mask(rng: &mut StdRng, batch: usize, tokens: usize) -> Vec<f32> {
    let mut m: Vec<f32> = (0..batch * tokens)
        .map(|_| if rng.random_range(0.0..1.0) < 0.3 { 0.0 } else { 1.0 })
        .collect();
    for b in 0..batch {
        m[b * tokens + rng.random_range(0..tokens)] = 1.0;
    }
    m
}

/// The shapes: single token and head, odd head sizes, the training shape (16 heads of 4), and
/// wide heads: the reference default (32) and the widest the wgpu backend takes (64), whose
/// staged key and query tiles hold fewer than 64 rows (60 and 30), so the last tile is partial.
const SHAPES: [(usize, usize, usize, usize); 9] = [
    (1, 1, 1, 1),
    (1, 7, 1, 3),
    (3, 7, 2, 8),
    (4, 33, 3, 1),
    (3, 33, 16, 4),
    (1, 101, 1, 8),
    (3, 101, 16, 4),
    (2, 45, 4, 32),
    (1, 67, 1, 64),
];

// Inputs are O(1), so scores are O(1) and every result is a short f32 sum (at most 101 terms,
// each rounding by 2^-24 relative). The worst error seen is 1.3e-6 (dqkv at N = 101).
const ATOL: f64 = 5e-6;
const RTOL: f64 = 5e-6;

fn attention_matches_reference_without_mask(dev: &Device) {
    for (seed, &(b, n, h, hd)) in SHAPES.iter().enumerate() {
        let p = attention(b, n, h, hd);
        let mut rng = common::rng(100 + seed as u64);
        let qkv = common::normal(&mut rng, b * n * 3 * p.model_dim());
        let dout = common::normal(&mut rng, b * n * p.model_dim());
        let got = run(dev, &p, &qkv, None, &dout);
        check(&format!("{p:?}"), &got, &reference(&p, &qkv, None, &dout), ATOL, RTOL);
    }
}

fn attention_matches_reference_with_padding(dev: &Device) {
    for (seed, &(b, n, h, hd)) in SHAPES.iter().enumerate() {
        // At least two batch elements, so that one is padded (`padding_mask` pads odd ones).
        let p = attention(b.max(2), n, h, hd);
        let mut rng = common::rng(200 + seed as u64);
        let qkv = common::normal(&mut rng, p.batch * n * 3 * p.model_dim());
        let dout = common::normal(&mut rng, p.batch * n * p.model_dim());
        for mask in
            [common::padding_mask(&mut rng, p.batch, n), scattered_mask(&mut rng, p.batch, n)]
        {
            let got = run(dev, &p, &qkv, Some(&mask), &dout);
            check(&format!("{p:?}"), &got, &reference(&p, &qkv, Some(&mask), &dout), ATOL, RTOL);
        }
    }
}

fn attention_training_shape_with_one_padded_key(dev: &Device) {
    let p = Attention { batch: 2, tokens: 102, heads: 16, head_dim: 4, scale: 0.5 };
    let mut rng = common::rng(300);
    let qkv = common::uniform(&mut rng, p.batch * p.tokens * 3 * p.model_dim(), -2.0, 2.0);
    let dout = common::normal(&mut rng, p.batch * p.tokens * p.model_dim());
    let mut mask = vec![1.0; p.batch * p.tokens];
    mask[p.tokens - 1] = 0.0;
    mask[2 * p.tokens - 1] = 0.0;
    let got = run(dev, &p, &qkv, Some(&mask), &dout);
    check("one padded key", &got, &reference(&p, &qkv, Some(&mask), &dout), ATOL, RTOL);
}

fn attention_fully_masked_rows_give_zeros(dev: &Device) {
    let p = attention(3, 7, 2, 4);
    let mut rng = common::rng(400);
    let qkv = common::normal(&mut rng, p.batch * p.tokens * 3 * p.model_dim());
    let dout = common::normal(&mut rng, p.batch * p.tokens * p.model_dim());
    let mut mask = common::padding_mask(&mut rng, p.batch, p.tokens);
    mask[p.tokens..2 * p.tokens].fill(0.0);
    let got = run(dev, &p, &qkv, Some(&mask), &dout);
    let want = reference(&p, &qkv, Some(&mask), &dout);
    check("fully masked batch element", &got, &want, ATOL, RTOL);
    let rows = p.tokens * 3 * p.model_dim();
    assert!(got[2][rows..2 * rows].iter().all(|&g| g == 0.0), "its dqkv is exactly 0");
}

fn attention_is_stable_for_large_scores(dev: &Device) {
    let p = Attention { batch: 2, tokens: 33, heads: 3, head_dim: 4, scale: 0.5 };
    let mut rng = common::rng(500);
    // Scores reach about ±50 (a sum of four products of U(-6, 6)): exp of an unshifted
    // score would lose everything past e^±88.
    let qkv = common::uniform(&mut rng, p.batch * p.tokens * 3 * p.model_dim(), -6.0, 6.0);
    let dout = common::normal(&mut rng, p.batch * p.tokens * p.model_dim());
    let mask = common::padding_mask(&mut rng, p.batch, p.tokens);
    let got = run(dev, &p, &qkv, Some(&mask), &dout);
    let want = reference(&p, &qkv, Some(&mask), &dout);
    assert!(want.lse.iter().any(|l| l.abs() > 40.0), "the case reaches large scores");
    // A score of 50 carries an f32 rounding of ~50·2^-24·4 ≈ 1e-5 (absolute), which the
    // exponential turns into that relative error of P; the outputs are O(6). The worst
    // error seen is 2e-5 (dqkv).
    check("large scores", &got, &want, 2e-4, 1e-4);
}

fn attention_is_deterministic(dev: &Device) {
    let p = attention(5, 33, 4, 4);
    let mut rng = common::rng(600);
    let qkv = common::normal(&mut rng, p.batch * p.tokens * 3 * p.model_dim());
    let dout = common::normal(&mut rng, p.batch * p.tokens * p.model_dim());
    let mask = common::padding_mask(&mut rng, p.batch, p.tokens);
    let first = run(dev, &p, &qkv, Some(&mask), &dout);
    let again = run(dev, &p, &qkv, Some(&mask), &dout);
    for (a, b) in first.iter().zip(&again) {
        assert!(a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

fn attention_rejects_wrong_lengths(dev: &Device) {
    let be = backend(dev);
    let p = attention(2, 5, 2, 3);
    let n = p.batch * p.tokens * p.model_dim();
    let lse_len = p.batch * p.heads * p.tokens;
    let (qkv, out, lse, dout) =
        (zeros(dev, 3 * n), zeros(dev, n), zeros(dev, lse_len), zeros(dev, n));
    let mask = zeros(dev, p.batch * p.tokens);
    let short = |len: usize| zeros(dev, len - 1);
    let (mut o, mut l, mut g) = (zeros(dev, n), zeros(dev, lse_len), zeros(dev, 3 * n));

    assert!(be.attention_fwd(&p, &short(3 * n), None, &mut o, &mut l).is_err());
    assert!(be.attention_fwd(&p, &qkv, Some(&short(p.batch * p.tokens)), &mut o, &mut l).is_err());
    assert!(be.attention_fwd(&p, &qkv, None, &mut short(n), &mut l).is_err());
    assert!(be.attention_fwd(&p, &qkv, None, &mut o, &mut short(lse_len)).is_err());
    let no_heads = Attention { heads: 0, ..p };
    assert!(be
        .attention_fwd(&no_heads, &zeros(dev, 0), None, &mut zeros(dev, 0), &mut zeros(dev, 0))
        .is_err());

    assert!(be.attention_bwd(&p, &short(3 * n), Some(&mask), &out, &lse, &dout, &mut g).is_err());
    assert!(be
        .attention_bwd(&p, &qkv, Some(&short(p.batch * p.tokens)), &out, &lse, &dout, &mut g)
        .is_err());
    assert!(be.attention_bwd(&p, &qkv, None, &short(n), &lse, &dout, &mut g).is_err());
    assert!(be.attention_bwd(&p, &qkv, None, &out, &short(lse_len), &dout, &mut g).is_err());
    assert!(be.attention_bwd(&p, &qkv, None, &out, &lse, &short(n), &mut g).is_err());
    assert!(be.attention_bwd(&p, &qkv, None, &out, &lse, &dout, &mut short(3 * n)).is_err());
    // The well-formed calls succeed, so the errors above come from the lengths.
    assert!(be.attention_fwd(&p, &qkv, Some(&mask), &mut o, &mut l).is_ok());
    assert!(be.attention_bwd(&p, &qkv, Some(&mask), &out, &lse, &dout, &mut g).is_ok());
}

/// The wgpu kernels hold a head row in registers, up to 64 wide; a wider head is an error there
/// (not a wrong result), while the CPU backend takes any width.
#[test]
fn wgpu_rejects_heads_past_its_limit() {
    let Some(dev) = common::wgpu() else { return };
    let be = backend(&dev);
    let p = attention(1, 3, 1, 65);
    let n = p.batch * p.tokens * p.model_dim();
    let (qkv, out, lse, dout) =
        (zeros(&dev, 3 * n), zeros(&dev, n), zeros(&dev, p.tokens), zeros(&dev, n));
    let (mut o, mut l, mut g) = (zeros(&dev, n), zeros(&dev, p.tokens), zeros(&dev, 3 * n));
    let err = be.attention_fwd(&p, &qkv, None, &mut o, &mut l).unwrap_err().to_string();
    assert!(err.contains("head_dim"), "{err}");
    assert!(be.attention_bwd(&p, &qkv, None, &out, &lse, &dout, &mut g).is_err());
}
