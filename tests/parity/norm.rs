//! Parity of the `norm` kernels against layer norm and its analytic gradient in f64.

use crate::common::{self, assert_close, backend, down, up, zeros};
use tfmpe::backend::LayerNorm;
use tfmpe::Device;

per_device!(
    layer_norm_matches_reference,
    layer_norm_eps_counts_inside_the_root,
    layer_norm_is_deterministic,
    layer_norm_rejects_wrong_lengths
);

/// Forward and backward of `y = (h - mean) / sqrt(var + eps) · gamma + beta` in f64, per row.
struct Reference {
    h: Vec<f64>,
    y: Vec<f64>,
    mean: Vec<f64>,
    rstd: Vec<f64>,
    dh: Vec<f64>,
    dgamma: Vec<f64>,
    dbeta: Vec<f64>,
}

fn reference(
    p: &LayerNorm, x: &[f32], residual: Option<&[f32]>, gamma: &[f32], beta: &[f32], dy: &[f32],
) -> Reference {
    let (rows, c) = (p.rows, p.cols);
    let h: Vec<f64> =
        (0..rows * c).map(|i| x[i] as f64 + residual.map_or(0.0, |r| r[i] as f64)).collect();
    let mut r = Reference {
        y: vec![0.0; rows * c],
        mean: vec![0.0; rows],
        rstd: vec![0.0; rows],
        dh: vec![0.0; rows * c],
        dgamma: vec![0.0; c],
        dbeta: vec![0.0; c],
        h,
    };
    for i in 0..rows {
        let row = &r.h[i * c..(i + 1) * c];
        let mean = row.iter().sum::<f64>() / c as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / c as f64;
        let rstd = 1.0 / (var + p.eps as f64).sqrt();
        let xhat: Vec<f64> = row.iter().map(|v| (v - mean) * rstd).collect();
        let g: Vec<f64> = (0..c).map(|j| dy[i * c + j] as f64 * gamma[j] as f64).collect();
        let g_mean = g.iter().sum::<f64>() / c as f64;
        let gx_mean = g.iter().zip(&xhat).map(|(g, x)| g * x).sum::<f64>() / c as f64;
        for j in 0..c {
            r.y[i * c + j] = xhat[j] * gamma[j] as f64 + beta[j] as f64;
            r.dh[i * c + j] = rstd * (g[j] - g_mean - xhat[j] * gx_mean);
            r.dgamma[j] += dy[i * c + j] as f64 * xhat[j];
            r.dbeta[j] += dy[i * c + j] as f64;
        }
        (r.mean[i], r.rstd[i]) = (mean, rstd);
    }
    r
}

/// Rows of 1..101 columns (64 is the model width), and row counts that span several parallel
/// tasks (300) or leave a partial one.
const SHAPES: [(usize, usize); 7] =
    [(1, 1), (7, 7), (33, 64), (101, 33), (300, 64), (64, 101), (1, 64)];

// h has mean 3 and spread 2, so f32 rounds the statistics at ~1e-7 relative and a row sums at
// most 101 terms: the worst error seen in y, dh, mean and rstd is 1.5e-6.
const ATOL: f64 = 5e-6;
const RTOL: f64 = 5e-6;

/// The parameter gradients sum one O(1) term per row, each rounding by up to 2^-24 ≈ 6e-8 of
/// the running sum (worst seen 1e-5 at 300 rows).
fn param_atol(rows: usize) -> f64 {
    ATOL + 1e-7 * rows as f64
}

fn case(
    dev: &Device, seed: u64, rows: usize, cols: usize, eps: f32, with_residual: bool,
    accumulate: bool,
) {
    let be = backend(dev);
    let p = LayerNorm { rows, cols, eps };
    let n = rows * cols;
    let mut rng = common::rng(seed);
    let x: Vec<f32> = common::normal(&mut rng, n).iter().map(|v| 3.0 + 2.0 * v).collect();
    let residual = with_residual.then(|| common::normal(&mut rng, n));
    let gamma = common::uniform(&mut rng, cols, 0.5, 1.5);
    let beta = common::normal(&mut rng, cols);
    let dy = common::normal(&mut rng, n);
    let prior = common::normal(&mut rng, 2 * cols);
    let want = reference(&p, &x, residual.as_deref(), &gamma, &beta, &dy);

    // Outputs start as NaN so that an element left unwritten fails the comparison.
    let nan = |len| up(dev, &vec![f32::NAN; len]);
    let (x_b, gamma_b, beta_b) = (up(dev, &x), up(dev, &gamma), up(dev, &beta));
    let res_b = residual.as_deref().map(|r| up(dev, r));
    let (mut y, mut mean, mut rstd, mut sum) = (nan(n), nan(rows), nan(rows), nan(n));
    be.layer_norm_fwd(
        &p,
        &x_b,
        res_b.as_ref(),
        &gamma_b,
        &beta_b,
        &mut y,
        &mut mean,
        &mut rstd,
        Some(&mut sum),
    )
    .unwrap();
    let what = format!("{rows}x{cols} eps {eps} residual {with_residual}");
    assert_close(&format!("{what}: y"), &down(dev, &y), &want.y, ATOL, RTOL);
    assert_close(&format!("{what}: mean"), &down(dev, &mean), &want.mean, ATOL, RTOL);
    assert_close(&format!("{what}: rstd"), &down(dev, &rstd), &want.rstd, ATOL, RTOL);
    if with_residual {
        assert_close(&format!("{what}: sum_out"), &down(dev, &sum), &want.h, ATOL, RTOL);
        // Inference keeps no sum: the same outputs, bit for bit.
        let (mut y2, mut mean2, mut rstd2) = (nan(n), nan(rows), nan(rows));
        let (g, b) = (&gamma_b, &beta_b);
        be.layer_norm_fwd(&p, &x_b, res_b.as_ref(), g, b, &mut y2, &mut mean2, &mut rstd2, None)
            .unwrap();
        for (name, got, kept) in [("y", &y2, &y), ("mean", &mean2, &mean), ("rstd", &rstd2, &rstd)]
        {
            let same =
                down(dev, got).iter().zip(down(dev, kept)).all(|(a, b)| a.to_bits() == b.to_bits());
            assert!(same, "{what}: {name} without sum_out differs from {name} with it");
        }
    }

    // The backward reads h as the forward saw it: x itself, or the f32 sum it wrote.
    let h = if with_residual { sum } else { x_b };
    let (mut dh, mut dgamma, mut dbeta) =
        (nan(n), up(dev, &prior[..cols]), up(dev, &prior[cols..]));
    if !accumulate {
        (dgamma, dbeta) = (nan(cols), nan(cols));
    }
    let dy_b = up(dev, &dy);
    be.layer_norm_bwd(
        &p,
        &h,
        &dy_b,
        &gamma_b,
        &mean,
        &rstd,
        &mut dh,
        &mut dgamma,
        &mut dbeta,
        accumulate,
    )
    .unwrap();
    let base = |k: usize| if accumulate { prior[k] as f64 } else { 0.0 };
    let want_dgamma: Vec<f64> = (0..cols).map(|j| base(j) + want.dgamma[j]).collect();
    let want_dbeta: Vec<f64> = (0..cols).map(|j| base(cols + j) + want.dbeta[j]).collect();
    assert_close(&format!("{what}: dh"), &down(dev, &dh), &want.dh, ATOL, RTOL);
    assert_close(
        &format!("{what}: dgamma"),
        &down(dev, &dgamma),
        &want_dgamma,
        param_atol(rows),
        RTOL,
    );
    assert_close(
        &format!("{what}: dbeta"),
        &down(dev, &dbeta),
        &want_dbeta,
        param_atol(rows),
        RTOL,
    );
}

fn layer_norm_matches_reference(dev: &Device) {
    for (seed, &(rows, cols)) in SHAPES.iter().enumerate() {
        for (k, with_residual) in [false, true].into_iter().enumerate() {
            let accumulate = k == 1;
            case(dev, 10 * seed as u64 + k as u64, rows, cols, 1e-5, with_residual, accumulate);
        }
    }
}

fn layer_norm_eps_counts_inside_the_root(dev: &Device) {
    // eps = 4 is comparable with the variance (4), so its place in the formula shows.
    case(dev, 900, 33, 64, 4.0, true, false);
    case(dev, 901, 7, 33, 4.0, false, true);
}

fn layer_norm_is_deterministic(dev: &Device) {
    let be = backend(dev);
    let p = LayerNorm { rows: 1000, cols: 64, eps: 1e-5 };
    let mut rng = common::rng(950);
    let n = p.rows * p.cols;
    let (h, dy) = (up(dev, &common::normal(&mut rng, n)), up(dev, &common::normal(&mut rng, n)));
    let gamma = up(dev, &common::uniform(&mut rng, p.cols, 0.5, 1.5));
    let stats = |be: &dyn tfmpe::backend::Backend| {
        let (mut y, mut mean, mut rstd) = (zeros(dev, n), zeros(dev, p.rows), zeros(dev, p.rows));
        be.layer_norm_fwd(&p, &h, None, &gamma, &gamma, &mut y, &mut mean, &mut rstd, None)
            .unwrap();
        let (mut dh, mut dg, mut db) = (zeros(dev, n), zeros(dev, p.cols), zeros(dev, p.cols));
        be.layer_norm_bwd(&p, &h, &dy, &gamma, &mean, &rstd, &mut dh, &mut dg, &mut db, false)
            .unwrap();
        [y, dh, dg, db].map(|b| down(dev, &b))
    };
    let (first, again) = (stats(be), stats(be));
    for (a, b) in first.iter().zip(&again) {
        assert!(a.iter().zip(b).all(|(a, b)| a.to_bits() == b.to_bits()));
    }
}

fn layer_norm_rejects_wrong_lengths(dev: &Device) {
    let be = backend(dev);
    let p = LayerNorm { rows: 3, cols: 5, eps: 1e-5 };
    let (n, r, c) = (15, 3, 5);
    let z = |len: usize| zeros(dev, len);
    let (x, g, b) = (z(n), z(c), z(c));
    let (mut y, mut m, mut s, mut sum) = (z(n), z(r), z(r), z(n));
    assert!(be.layer_norm_fwd(&p, &z(n - 1), None, &g, &b, &mut y, &mut m, &mut s, None).is_err());
    assert!(be
        .layer_norm_fwd(&p, &x, Some(&z(n + 1)), &g, &b, &mut y, &mut m, &mut s, Some(&mut sum))
        .is_err());
    assert!(be.layer_norm_fwd(&p, &x, None, &z(c + 1), &b, &mut y, &mut m, &mut s, None).is_err());
    assert!(be.layer_norm_fwd(&p, &x, None, &g, &z(c - 1), &mut y, &mut m, &mut s, None).is_err());
    assert!(be.layer_norm_fwd(&p, &x, None, &g, &b, &mut z(n - 1), &mut m, &mut s, None).is_err());
    assert!(be.layer_norm_fwd(&p, &x, None, &g, &b, &mut y, &mut z(r + 1), &mut s, None).is_err());
    assert!(be.layer_norm_fwd(&p, &x, None, &g, &b, &mut y, &mut m, &mut z(r - 1), None).is_err());
    assert!(be
        .layer_norm_fwd(&p, &x, Some(&x), &g, &b, &mut y, &mut m, &mut s, Some(&mut z(n - 1)))
        .is_err());
    // Without sum_out (inference) the residual is still checked.
    let short = z(n - 1);
    assert!(be.layer_norm_fwd(&p, &x, Some(&short), &g, &b, &mut y, &mut m, &mut s, None).is_err());
    assert!(be.layer_norm_fwd(&p, &x, Some(&x), &g, &b, &mut y, &mut m, &mut s, None).is_ok());
    assert!(be
        .layer_norm_fwd(&p, &x, Some(&x), &g, &b, &mut y, &mut m, &mut s, Some(&mut sum))
        .is_ok());

    let (mut dh, mut dg, mut db) = (z(n), z(c), z(c));
    let (h, dy) = (z(n), z(n));
    assert!(be
        .layer_norm_bwd(&p, &z(n - 1), &dy, &g, &m, &s, &mut dh, &mut dg, &mut db, false)
        .is_err());
    assert!(be
        .layer_norm_bwd(&p, &h, &z(n + 1), &g, &m, &s, &mut dh, &mut dg, &mut db, false)
        .is_err());
    assert!(be
        .layer_norm_bwd(&p, &h, &dy, &z(c - 1), &m, &s, &mut dh, &mut dg, &mut db, false)
        .is_err());
    assert!(be
        .layer_norm_bwd(&p, &h, &dy, &g, &z(r - 1), &s, &mut dh, &mut dg, &mut db, false)
        .is_err());
    assert!(be
        .layer_norm_bwd(&p, &h, &dy, &g, &m, &z(r + 1), &mut dh, &mut dg, &mut db, false)
        .is_err());
    assert!(be
        .layer_norm_bwd(&p, &h, &dy, &g, &m, &s, &mut z(n - 1), &mut dg, &mut db, false)
        .is_err());
    assert!(be
        .layer_norm_bwd(&p, &h, &dy, &g, &m, &s, &mut dh, &mut z(c + 1), &mut db, false)
        .is_err());
    assert!(be
        .layer_norm_bwd(&p, &h, &dy, &g, &m, &s, &mut dh, &mut dg, &mut z(c - 1), false)
        .is_err());
    assert!(be.layer_norm_bwd(&p, &h, &dy, &g, &m, &s, &mut dh, &mut dg, &mut db, false).is_ok());
}
