//! Parity of the `embedding` kernels: the deterministic scatter-add backward of lookups and the
//! Fourier features (the lookup forward is `gather_rows`, tested with `memory`).

use crate::common::{self, assert_close, backend, down, rng, up, up_u32, zeros};
use rand::RngExt;
use tfmpe::{Device, Error};

per_device!(
    embedding_bwd_matches_f64_and_sums_in_order,
    embedding_bwd_rejects_bad_input_without_writing,
    fourier_fwd_matches_f64,
    fourier_bwd_matches_f64,
    fourier_kernels_reject_wrong_lengths
);

const U: f64 = f32::EPSILON as f64 / 2.0;

/// Asserts each element against its own error bound (plus one rounding to f32).
#[track_caller]
fn assert_within(what: &str, got: &[f32], want: &[(f64, f64)]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (&g, &(w, bound))) in got.iter().zip(want).enumerate() {
        assert_close(&format!("{what}[{i}]"), &[g], &[w], bound, U);
    }
}

fn embedding_bwd(
    dev: &Device, dout: &[f32], ids: &[u32], dim: usize, start: &[f32], acc: bool,
) -> Vec<f32> {
    let mut dtable = up(dev, start);
    backend(dev).embedding_bwd(&up(dev, dout), &up_u32(dev, ids), dim, &mut dtable, acc).unwrap();
    down(dev, &dtable)
}

fn embedding_bwd_matches_f64_and_sums_in_order(dev: &Device) {
    // (ids, table rows, dim): one id, repeats into few rows, more rows than ids (so most
    // are unused), and ~10 000 ids into 100 rows (the training shape).
    for (case, (n, rows, dim)) in
        [(1, 1, 1), (7, 3, 8), (33, 101, 7), (101, 13, 32), (10_007, 100, 16)]
            .into_iter()
            .enumerate()
    {
        let mut r = rng(1400 + case as u64);
        // Every third row is never named, whatever the table size.
        let ids: Vec<u32> = (0..n)
            .map(|_| {
                let id = r.random_range(0..rows as u32);
                if rows > 1 && id % 3 == 2 {
                    id - 1
                } else {
                    id
                }
            })
            .collect();
        let dout = common::normal(&mut r, n * dim);
        let start = common::normal(&mut r, rows * dim);
        for accumulate in [false, true] {
            let got = embedding_bwd(dev, &dout, &ids, dim, &start, accumulate);
            // Recursive f32 summation is off by at most u·Σ_k |S_k| over its partial sums.
            let mut want = vec![(0.0, 0.0); rows * dim];
            for (row, w) in want.chunks_mut(dim).enumerate() {
                for (c, (sum, bound)) in w.iter_mut().enumerate() {
                    if accumulate {
                        *sum = start[row * dim + c] as f64;
                    }
                    for (i, _) in ids.iter().enumerate().filter(|&(_, &id)| id as usize == row) {
                        *sum += dout[i * dim + c] as f64;
                        *bound += U * sum.abs();
                    }
                }
            }
            assert_within("embedding_bwd", &got, &want);
            if !accumulate {
                // The contract fixes the order (ids in order of position), so an f32
                // replica of it matches bit for bit.
                let mut replica = vec![0.0f32; rows * dim];
                for (i, &id) in ids.iter().enumerate() {
                    for c in 0..dim {
                        replica[id as usize * dim + c] += dout[i * dim + c];
                    }
                }
                assert_eq!(got, replica, "embedding_bwd must sum in order of position");
            }
        }
    }
}

fn embedding_bwd_rejects_bad_input_without_writing(dev: &Device) {
    let b = backend(dev);
    let dout = up(dev, &[1.0; 6]);
    let start = [5.0f32; 8];
    let mut dtable = up(dev, &start);
    // A table of 4 rows of 2: id 4 is past it. Only the CPU backend can see that before
    // writing; a GPU kernel cannot return an error, so it skips the id (as gather_rows and
    // scatter_rows do, see memory.rs) and the call writes the rows the valid ids name.
    let bad = b.embedding_bwd(&dout, &up_u32(dev, &[0, 4, 1]), 2, &mut dtable, false);
    if dev.name() == "cpu" {
        let err = bad.unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{err}");
        assert_eq!(down(dev, &dtable), start, "an invalid call must leave dtable alone");
    } else {
        bad.unwrap();
        assert_eq!(
            down(dev, &dtable),
            [1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0],
            "the id past the table is skipped"
        );
        dtable = up(dev, &start);
    }
    let ids = up_u32(dev, &[0, 3, 1]);
    assert!(b.embedding_bwd(&dout, &ids, 3, &mut dtable, false).is_err()); // dout is 3 x 2
    assert!(b.embedding_bwd(&dout, &up_u32(dev, &[0, 1]), 2, &mut dtable, false).is_err());
    assert!(b.embedding_bwd(&dout, &ids, 2, &mut zeros(dev, 7), false).is_err());
    assert!(b.embedding_bwd(&zeros(dev, 0), &up_u32(dev, &[]), 0, &mut dtable, false).is_err());
}

/// (rows, in_dim, half): odd sizes, and a functional input of 10 000 rows.
const FOURIER: [(usize, usize, usize); 5] =
    [(1, 1, 1), (7, 2, 3), (33, 3, 8), (101, 1, 16), (10_007, 2, 16)];

/// Inputs of a Fourier case: x in [-1, 1] and N(0, 1) frequencies, so |z| reaches ~20.
fn fourier_inputs(
    case: usize, rows: usize, in_dim: usize, half: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut r = rng(1500 + case as u64);
    let x = common::uniform(&mut r, rows * in_dim, -1.0, 1.0);
    let freqs = common::normal(&mut r, in_dim * half);
    let dout = common::normal(&mut r, rows * 2 * half);
    (x, freqs, dout)
}

/// z in f64 and a bound on the kernel's f32 z: 2π times an in_dim-term dot product, each step
/// off by at most u of its magnitude.
fn phase_ref(x: &[f32], freqs: &[f32], half: usize, j: usize) -> (f64, f64) {
    let terms = x.iter().enumerate().map(|(i, &x)| x as f64 * freqs[i * half + j] as f64);
    let size: f64 = terms.clone().map(f64::abs).sum();
    (
        std::f64::consts::TAU * terms.sum::<f64>(),
        (x.len() + 2) as f64 * U * std::f64::consts::TAU * size,
    )
}

fn fourier_fwd_matches_f64(dev: &Device) {
    for (case, &(rows, in_dim, half)) in FOURIER.iter().enumerate() {
        let (x, freqs, _) = fourier_inputs(case, rows, in_dim, half);
        let mut out = zeros(dev, rows * 2 * half);
        backend(dev)
            .fourier_fwd(&up(dev, &x), &up(dev, &freqs), rows, in_dim, half, &mut out)
            .unwrap();
        let mut want = Vec::with_capacity(rows * 2 * half);
        for r in 0..rows {
            let zs: Vec<_> =
                (0..half).map(|j| phase_ref(&x[r * in_dim..][..in_dim], &freqs, half, j)).collect();
            // sin and cos are 1-Lipschitz, so z's error carries over; plus libm's ulp.
            want.extend(zs.iter().map(|&(z, dz)| (z.sin(), dz + U)));
            want.extend(zs.iter().map(|&(z, dz)| (z.cos(), dz + U)));
        }
        assert_within("fourier_fwd", &down(dev, &out), &want);
    }
}

fn fourier_bwd_matches_f64(dev: &Device) {
    for (case, &(rows, in_dim, half)) in FOURIER.iter().enumerate() {
        let (x, freqs, dout) = fourier_inputs(case, rows, in_dim, half);
        let start = common::normal(&mut rng(1600 + case as u64), in_dim * half);
        for accumulate in [false, true] {
            let mut dfreqs = up(dev, &start);
            backend(dev)
                .fourier_bwd(
                    &up(dev, &x),
                    &up(dev, &freqs),
                    &up(dev, &dout),
                    rows,
                    in_dim,
                    half,
                    &mut dfreqs,
                    accumulate,
                )
                .unwrap();
            let mut want = vec![(0.0, 0.0); in_dim * half];
            for (idx, (sum, bound)) in want.iter_mut().enumerate() {
                let (i, j) = (idx / half, idx % half);
                for r in 0..rows {
                    let (z, dz) = phase_ref(&x[r * in_dim..][..in_dim], &freqs, half, j);
                    let (ds, dc) =
                        (dout[r * 2 * half + j] as f64, dout[r * 2 * half + half + j] as f64);
                    let xi = x[r * in_dim + i] as f64;
                    *sum += std::f64::consts::TAU * xi * (z.cos() * ds - z.sin() * dc);
                    // The row factor moves by z's error (and libm's and its own f32
                    // roundings) times |ds| + |dc|; the f64 sum over rows adds nothing visible.
                    *bound +=
                        std::f64::consts::TAU * xi.abs() * (dz + 4.0 * U) * (ds.abs() + dc.abs());
                }
                if accumulate {
                    *sum += start[idx] as f64;
                }
            }
            assert_within("fourier_bwd", &down(dev, &dfreqs), &want);
        }
    }
}

fn fourier_kernels_reject_wrong_lengths(dev: &Device) {
    let b = backend(dev);
    // rows 3, in_dim 2, half 4.
    let (x, freqs, dout) = (zeros(dev, 6), zeros(dev, 8), zeros(dev, 24));
    let (mut out, mut dfreqs) = (zeros(dev, 24), zeros(dev, 8));
    assert!(b.fourier_fwd(&zeros(dev, 5), &freqs, 3, 2, 4, &mut out).is_err());
    assert!(b.fourier_fwd(&x, &zeros(dev, 7), 3, 2, 4, &mut out).is_err());
    assert!(b.fourier_fwd(&x, &freqs, 3, 2, 4, &mut zeros(dev, 12)).is_err());
    assert!(b.fourier_bwd(&x, &freqs, &zeros(dev, 12), 3, 2, 4, &mut dfreqs, false).is_err());
    assert!(b.fourier_bwd(&x, &freqs, &dout, 3, 2, 4, &mut zeros(dev, 4), false).is_err());
    assert!(b.fourier_bwd(&x, &zeros(dev, 4), &dout, 3, 2, 4, &mut dfreqs, true).is_err());
    assert!(b.fourier_fwd(&x, &freqs, 3, 2, 4, &mut out).is_ok());
}
