//! Parity of the `matmul` kernels.
//!
//! Tolerance: an f32 dot product of length k accumulates rounding errors whose typical size is
//! `sqrt(k)·2^-24·Σ|a_l b_l|` (errors of blocked FMA sums are close to a random walk). Each case
//! allows 4 times that for the largest `Σ|a b|` of the case, plus the beta and bias terms.
//!
//! With `TFMPE_MATMUL=tf32` (gpu-check.sh runs this file once so) the CUDA backend rounds both
//! inputs to TF32 (round to nearest, 10 mantissa bits), so each product may be off by up to
//! 2^-10 of its size: the bound adds that worst case, 2^-10·Σ|a b|, which still catches any
//! wrong index or lost term.

use rand::rngs::StdRng;
use tfmpe::backend::{Epilogue, Gemm, Precision};
use tfmpe::{Device, Error};

use crate::common::{self, assert_close, backend, down, rng, uniform, up};

per_device!(
    gemm_all_transposes_betas_and_epilogues,
    gemm_batched_with_broadcast_and_padded_strides,
    gemm_training_shapes,
    gemm_with_empty_dimensions,
    gemm_rejects_short_buffers_and_bias_mistakes,
    bias_grad_column_sums,
    bias_grad_rejects_wrong_lengths,
    batched_linear_matches_f64_with_and_without_a_shared_x,
    gemm_bf16_is_f32_sums_of_rounded_operands_or_refused
);

const EPS: f64 = 1.0 / 16_777_216.0;

/// Inputs of one case, drawn to the lengths `p` needs (plus a tail that must not be read).
#[derive(Clone)]
struct Case {
    p: Gemm,
    a: Vec<f32>,
    b: Vec<f32>,
    bias: Option<Vec<f32>>,
    c: Vec<f32>,
}

fn span(batch: usize, stride: usize, len: usize) -> usize {
    (batch - 1) * stride + len
}

impl Case {
    fn new(r: &mut StdRng, p: Gemm) -> Self {
        let bias = (p.epilogue != Epilogue::None).then(|| uniform(r, p.n, -1.0, 1.0));
        Case {
            a: uniform(r, span(p.batch, p.stride_a, p.m * p.k) + 3, -1.0, 1.0),
            b: uniform(r, span(p.batch, p.stride_b, p.k * p.n) + 3, -1.0, 1.0),
            bias,
            // With beta = 0 C must not be read: NaN there would poison the result.
            c: if p.beta == 0.0 {
                vec![f32::NAN; span(p.batch, p.stride_c, p.m * p.n)]
            } else {
                uniform(r, span(p.batch, p.stride_c, p.m * p.n), -1.0, 1.0)
            },
            p,
        }
    }

    /// The f64 result, every element of C (gaps between output batches keep their input), and
    /// the tolerance for this case when each product may be off by `product_eps` relative.
    fn reference(&self, product_eps: f64) -> (Vec<f64>, f64) {
        let Gemm { m, n, k, .. } = self.p;
        let p = &self.p;
        let at = |bi: usize, i: usize, l: usize| {
            let off = bi * p.stride_a;
            self.a[off + if p.trans_a { l * m + i } else { i * k + l }] as f64
        };
        let bt = |bi: usize, l: usize, j: usize| {
            let off = bi * p.stride_b;
            self.b[off + if p.trans_b { j * k + l } else { l * n + j }] as f64
        };
        let mut c = common::to_f64(&self.c);
        let mut worst = 0.0f64;
        for bi in 0..p.batch {
            for i in 0..m {
                for j in 0..n {
                    let (mut dot, mut mag) = (0.0, 0.0);
                    for l in 0..k {
                        let t = at(bi, i, l) * bt(bi, l, j);
                        dot += t;
                        mag += t.abs();
                    }
                    let slot = &mut c[bi * p.stride_c + i * n + j];
                    let old = if p.beta == 0.0 { 0.0 } else { *slot };
                    let mut v = p.alpha as f64 * dot + p.beta as f64 * old;
                    if let Some(bias) = &self.bias {
                        v += bias[j] as f64;
                    }
                    if p.epilogue == Epilogue::BiasRelu {
                        v = v.max(0.0);
                    }
                    *slot = v;
                    worst = worst.max(p.alpha.abs() as f64 * mag + (p.beta as f64 * old).abs());
                }
            }
        }
        let tol = 4.0 * EPS * ((k as f64).sqrt() * worst + 2.0) + product_eps * worst;
        (c, tol)
    }

    fn run(&self, dev: &Device) -> tfmpe::Result<Vec<f32>> {
        let bias = self.bias.as_ref().map(|v| up(dev, v));
        let mut c = up(dev, &self.c);
        backend(dev).gemm(&self.p, &up(dev, &self.a), &up(dev, &self.b), bias.as_ref(), &mut c)?;
        Ok(down(dev, &c))
    }

    fn check(&self, dev: &Device, what: &str) -> Vec<f32> {
        let got = self.run(dev).unwrap();
        let (want, tol) = self.reference(product_eps(dev));
        common::assert_close(&format!("{} {what} {:?}", dev.name(), self.p), &got, &want, tol, 0.0);
        got
    }
}

/// The relative error of one product on `dev`: TF32 input rounding (2^-11 for each factor,
/// with a margin) when the device says it multiplies in TF32, else none beyond f32 sums.
fn product_eps(dev: &Device) -> f64 {
    if dev.backend().device_name().contains("matmul tf32") {
        1.01 / 1024.0
    } else {
        0.0
    }
}

fn shape(m: usize, n: usize, k: usize, ta: bool, tb: bool, beta: f32, epi: Epilogue) -> Gemm {
    Gemm {
        trans_a: ta,
        trans_b: tb,
        alpha: if beta == 0.0 { 1.0 } else { 0.75 },
        beta,
        epilogue: epi,
        ..Gemm::new(m, n, k)
    }
}

const EPILOGUES: [Epilogue; 3] = [Epilogue::None, Epilogue::Bias, Epilogue::BiasRelu];

fn gemm_all_transposes_betas_and_epilogues(dev: &Device) {
    let sizes = [
        (1, 1, 1),
        (7, 1, 33),
        (1, 7, 7),
        (7, 33, 1),
        (33, 7, 101),
        (101, 33, 7),
        (33, 101, 33),
        (300, 17, 65),
    ];
    let mut r = rng(1);
    for (m, n, k) in sizes {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            for beta in [0.0, 1.0] {
                for epi in EPILOGUES {
                    Case::new(&mut r, shape(m, n, k, ta, tb, beta, epi)).check(dev, "");
                }
            }
        }
    }
}

fn gemm_batched_with_broadcast_and_padded_strides(dev: &Device) {
    let mut r = rng(2);
    // The last size splits K on the wgpu backend (few tiles, long K), batches included.
    for (m, n, k) in [(1, 1, 1), (7, 33, 5), (33, 7, 101), (7, 5, 600)] {
        for (ta, tb) in [(false, false), (true, true), (false, true)] {
            for (sa, sb) in [(m * k, k * n), (0, k * n), (m * k + 2, 0)] {
                for beta in [0.0, 1.0] {
                    let p = Gemm {
                        batch: 3,
                        stride_a: sa,
                        stride_b: sb,
                        // A gap after each output batch, which must keep its contents.
                        stride_c: m * n + 5,
                        ..shape(m, n, k, ta, tb, beta, Epilogue::Bias)
                    };
                    let mut case = Case::new(&mut r, p);
                    if beta == 0.0 {
                        case.c = uniform(&mut r, case.c.len(), -1.0, 1.0);
                        for bi in 0..3 {
                            case.c[bi * p.stride_c..][..m * n].fill(f32::NAN);
                        }
                    }
                    case.check(dev, "batched");
                }
            }
        }
    }
}

/// The training shapes: the forward of a token-wise Linear with bias + ReLU, the input gradient
/// (B transposed) and the weight gradient (A transposed, K = 10100 tokens) accumulated into an
/// existing gradient, which takes the CPU backend's split-K path. Each runs twice and must give
/// the same bits.
fn gemm_training_shapes(dev: &Device) {
    let mut r = rng(3);
    let cases = [
        shape(10100, 64, 64, false, false, 0.0, Epilogue::BiasRelu),
        shape(10100, 64, 192, false, true, 0.0, Epilogue::None),
        shape(64, 192, 10100, true, false, 1.0, Epilogue::None),
        shape(7, 33, 6001, true, true, 0.0, Epilogue::BiasRelu),
        shape(33, 7, 5121, false, false, 1.0, Epilogue::Bias),
        // One row block with enough work for the gemm crate's own threads.
        shape(200, 300, 400, true, false, 1.0, Epilogue::BiasRelu),
    ];
    for p in cases {
        let case = Case::new(&mut r, p);
        let first = case.check(dev, "training shape");
        let again = case.run(dev).unwrap();
        assert!(
            first.iter().zip(&again).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{p:?}: two runs differ"
        );
    }
}

fn gemm_with_empty_dimensions(dev: &Device) {
    let mut r = rng(4);
    // k = 0: C = beta·C, then the epilogue. m = 0 or n = 0: nothing to do.
    for (m, n, k) in [(3, 4, 0), (0, 4, 3), (3, 0, 3)] {
        for beta in [0.0, 1.0] {
            Case::new(&mut r, shape(m, n, k, false, false, beta, Epilogue::None))
                .check(dev, "empty");
        }
    }
    Case::new(&mut r, shape(3, 4, 0, true, true, 0.0, Epilogue::BiasRelu)).check(dev, "k=0");
}

fn gemm_rejects_short_buffers_and_bias_mistakes(dev: &Device) {
    let mut r = rng(5);
    let p = Gemm { batch: 2, ..shape(5, 4, 3, false, false, 0.0, Epilogue::Bias) };
    let p = Gemm { stride_a: 15, stride_b: 12, stride_c: 20, ..p };
    let good = Case::new(&mut r, p);
    good.run(dev).unwrap();
    let shape_err = |c: &Case, name: &str| {
        let err = c.run(dev).unwrap_err();
        assert!(matches!(err, Error::Shape(_)), "{name}: {err}");
        assert!(err.to_string().contains(name), "names `{name}`: {err}");
    };
    let needs = [span(2, 15, 15), span(2, 12, 12), span(2, 20, 20)];
    for (i, (name, need)) in ["a", "b", "c"].into_iter().zip(needs).enumerate() {
        let mut c = good.clone();
        [&mut c.a, &mut c.b, &mut c.c][i].truncate(need - 1);
        shape_err(&c, name);
    }
    let c = Case { p: Gemm { stride_a: 30, ..p }, ..good.clone() };
    shape_err(&c, "a");
    let c = Case { bias: Some(vec![0.0; 3]), ..good.clone() };
    shape_err(&c, "bias");
    let c = Case { bias: None, ..good.clone() };
    assert!(matches!(c.run(dev), Err(Error::Invalid(_))), "missing bias");
    let c = Case { p: Gemm { epilogue: Epilogue::None, ..p }, ..good.clone() };
    assert!(matches!(c.run(dev), Err(Error::Invalid(_))), "bias without epilogue");
    let c = Case { p: Gemm { stride_c: 19, ..p }, ..good.clone() };
    assert!(matches!(c.run(dev), Err(Error::Invalid(_))), "overlapping outputs");
}

fn bias_grad_column_sums(dev: &Device) {
    let mut r = rng(6);
    // 101 000 rows (the large training batch) take three passes on wgpu.
    let shapes = [1, 7, 33, 101, 10100]
        .into_iter()
        .flat_map(|rows| [1, 7, 33, 64, 192].map(|cols| (rows, cols)))
        .chain([(101_000, 3)]);
    for (rows, cols) in shapes {
        let dy = uniform(&mut r, rows * cols, -1.0, 1.0);
        let db0 = uniform(&mut r, cols, -1.0, 1.0);
        for accumulate in [false, true] {
            let mut db = up(dev, &db0);
            backend(dev).bias_grad(&up(dev, &dy), rows, cols, &mut db, accumulate).unwrap();
            let want: Vec<f64> = (0..cols)
                .map(|j| {
                    let s: f64 = (0..rows).map(|i| dy[i * cols + j] as f64).sum();
                    s + if accumulate { db0[j] as f64 } else { 0.0 }
                })
                .collect();
            // Each of the `rows` additions rounds by ε times a partial sum, typically
            // sqrt(rows) for terms in [-1, 1]; as a random walk that totals about
            // ε·rows. Allow 8 times that.
            let tol = 8.0 * EPS * (rows as f64 + 1.0);
            let what = format!("bias_grad {rows}x{cols} accumulate={accumulate}");
            common::assert_close(&what, &down(dev, &db), &want, tol, 0.0);
        }
    }
}

fn bias_grad_rejects_wrong_lengths(dev: &Device) {
    let be = backend(dev);
    let dy = up(dev, &[1.0; 12]);
    let mut db = up(dev, &[0.0; 4]);
    assert!(matches!(be.bias_grad(&dy, 4, 4, &mut db, false), Err(Error::Shape(_))));
    assert!(matches!(be.bias_grad(&dy, 4, 3, &mut db, false), Err(Error::Shape(_))));
    be.bias_grad(&dy, 3, 4, &mut db, false).unwrap();
    assert_eq!(down(dev, &db), vec![3.0; 4]);
}

/// The tape's `batched_linear` (G layers as one batched GEMM plus a rank-one bias update) and
/// its gradients, for a per-group and a shared x, with and without a bias, against f64 sums:
/// the loss is `Σ r ⊙ y`, so `dy = r`, `dW[g] = x[g]ᵀ r[g]`, `db[g] = Σ_rows r[g]` and
/// `dx[g] = r[g] W[g]ᵀ`.
fn batched_linear_matches_f64_with_and_without_a_shared_x(dev: &Device) {
    use tfmpe::tape::{ParamStore, Tape};
    let (g, rows, inp, out) = (3, 5, 4, 7);
    let mut r = rng(40);
    let w = uniform(&mut r, g * inp * out, -1.0, 1.0);
    let b = uniform(&mut r, g * out, -1.0, 1.0);
    let weights = uniform(&mut r, g * rows * out, -1.0, 1.0);
    for (shared, biased) in [(false, true), (true, true), (false, false)] {
        let x = uniform(&mut r, if shared { rows * inp } else { g * rows * inp }, -1.0, 1.0);
        let xg = |k: usize, i: usize, l: usize| {
            f64::from(x[if shared { 0 } else { k * rows * inp } + i * inp + l])
        };
        let mut tape = Tape::new(ParamStore::new(dev));
        let xv = if shared {
            tape.input(&x, &[rows, inp]).unwrap()
        } else {
            tape.variable(&x, &[g, rows, inp]).unwrap()
        };
        let wv = tape.variable(&w, &[g, inp, out]).unwrap();
        let bv = biased.then(|| tape.variable(&b, &[g, out]).unwrap());
        let y = tape.batched_linear(xv, wv, bv).unwrap();
        let flat = tape.reshape(y, &[1, g * rows * out]).unwrap();
        let rv = tape.input(&weights, &[g * rows * out, 1]).unwrap();
        let loss = tape.linear(flat, rv, None).unwrap();
        let got_y = tape.to_vec(y).unwrap();
        tape.backward(loss).unwrap();
        let grad = |v| down(dev, tape.grad(v).unwrap().unwrap());

        let (mut want_y, mut dw, mut db) =
            (vec![0.0; g * rows * out], vec![0.0; g * inp * out], vec![0.0; g * out]);
        let mut dx = vec![0.0; g * rows * inp];
        for k in 0..g {
            for i in 0..rows {
                for j in 0..out {
                    let rij = f64::from(weights[(k * rows + i) * out + j]);
                    let wkj = |l: usize| f64::from(w[(k * inp + l) * out + j]);
                    let bias = if biased { f64::from(b[k * out + j]) } else { 0.0 };
                    want_y[(k * rows + i) * out + j] =
                        bias + (0..inp).map(|l| xg(k, i, l) * wkj(l)).sum::<f64>();
                    db[k * out + j] += rij;
                    for l in 0..inp {
                        dw[(k * inp + l) * out + j] += xg(k, i, l) * rij;
                        dx[(k * rows + i) * inp + l] += rij * wkj(l);
                    }
                }
            }
        }
        let what = format!("{} x, bias {biased}", if shared { "shared" } else { "per-group" });
        assert_close(&format!("batched_linear, {what}: y"), &got_y, &want_y, 1e-5, 1e-5);
        assert_close(&format!("{what}: dW"), &grad(wv), &dw, 1e-5, 1e-5);
        if let Some(bv) = bv {
            assert_close(&format!("{what}: db"), &grad(bv), &db, 1e-5, 1e-5);
        }
        if !shared {
            assert_close(&format!("{what}: dx"), &grad(xv), &dx, 1e-5, 1e-5);
        }
    }
}

/// f32 → bf16 → f32, round to nearest, ties to even (the inputs here are finite).
fn round_bf16(x: f32) -> f32 {
    let u = x.to_bits();
    f32::from_bits(((u + 0x7fff + ((u >> 16) & 1)) >> 16) << 16)
}

/// `Precision::Bf16`: where a backend has it, the result is the f64 product of the operands
/// rounded to bf16, within an f32 summation's error (a sequential one, √k times the blocked), far
/// tighter than the rounding itself moves it (about 2^-9 of a product), so operands left
/// unrounded fail. Odd sizes: `k` odd (a pair padded with zero), `n` past a 32-column panel,
/// `m` past an 8-row tile; transposes, batches, beta and every epilogue. Elsewhere the call is
/// refused with the fix named, and C is left alone.
fn gemm_bf16_is_f32_sums_of_rounded_operands_or_refused(dev: &Device) {
    let mut r = rng(9);
    if !dev.backend().supports(Precision::Bf16) {
        let case = Case::new(&mut r, Gemm { precision: Precision::Bf16, ..Gemm::new(5, 4, 3) });
        let err = case.run(dev).unwrap_err().to_string();
        assert!(err.contains("--precision bf16") && err.contains("--backend cpu"), "{err}");
        return;
    }
    let sizes = [(1, 1, 1), (9, 33, 7), (17, 65, 64), (300, 100, 65), (8, 32, 2), (1000, 192, 64)];
    for (i, &(m, n, k)) in sizes.iter().enumerate() {
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let beta = (i % 2) as f32;
            let epi = EPILOGUES[i % 3];
            let p = Gemm { precision: Precision::Bf16, ..shape(m, n, k, ta, tb, beta, epi) };
            let mut case = Case::new(&mut r, p);
            let got = case.run(dev).unwrap();
            case.a.iter_mut().for_each(|x| *x = round_bf16(*x));
            case.b.iter_mut().for_each(|x| *x = round_bf16(*x));
            let (want, tol) = case.reference(0.0);
            // The reference's bound is for blocked sums (√k); these are sequential (k).
            let tol = tol * (k as f64).sqrt().max(1.0);
            assert_close(&format!("{} bf16 {p:?}", dev.name()), &got, &want, tol, 0.0);
        }
    }
    // Batched, with a shared A and a gap after each output batch.
    let p = Gemm {
        batch: 3,
        stride_a: 0,
        stride_c: 7 * 40 + 5,
        precision: Precision::Bf16,
        ..shape(7, 40, 9, false, false, 1.0, Epilogue::Bias)
    };
    let mut case = Case::new(&mut r, p);
    let got = case.run(dev).unwrap();
    case.a.iter_mut().for_each(|x| *x = round_bf16(*x));
    case.b.iter_mut().for_each(|x| *x = round_bf16(*x));
    let (want, tol) = case.reference(0.0);
    assert_close(&format!("{} bf16 batched", dev.name()), &got, &want, tol * 3.0, 0.0);
}
