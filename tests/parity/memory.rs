//! Parity of the `memory` kernels.
//!
//! Copies move bits, so every comparison here is exact (zero tolerance).

use rand::RngExt;
use tfmpe::backend::CopyCols;
use tfmpe::Error;

use crate::common::{self, backend, down, rng, uniform, up, up_u32};
use tfmpe::Device;

per_device!(
    copy_with_offsets,
    copy_rejects_bad_ranges_and_mixed_dtypes,
    copy_cols_concatenates_and_splits,
    copy_cols_rejects_blocks_outside_rows_or_buffers,
    fill_sets_every_element,
    gather_rows_with_repeats,
    scatter_rows_inverts_a_gather,
    row_kernels_reject_bad_indices_and_lengths
);

/// Odd sizes, plus one past the CPU backend's parallel threshold (2^16 elements).
const SIZES: [usize; 5] = [1, 7, 33, 101, 70_001];

fn exact(what: &str, got: &[f32], want: &[f32]) {
    common::assert_close(what, got, &common::to_f64(want), 0.0, 0.0);
}

fn copy_with_offsets(dev: &Device) {
    let be = backend(dev);
    for (case, n) in SIZES.into_iter().enumerate() {
        let mut r = rng(100 + case as u64);
        let src = uniform(&mut r, n + 5, -1.0, 1.0);
        let dst0 = uniform(&mut r, n + 9, -1.0, 1.0);
        let mut dst = up(dev, &dst0);
        be.copy(&up(dev, &src), 2, &mut dst, 6, n).unwrap();
        let mut want = dst0.clone();
        want[6..6 + n].copy_from_slice(&src[2..2 + n]);
        exact(&format!("copy n={n}"), &down(dev, &dst), &want);

        let ids: Vec<u32> = (0..n as u32).map(|i| i.wrapping_mul(2_654_435_761)).collect();
        let mut dst = up_u32(dev, &vec![0; n + 1]);
        be.copy(&up_u32(dev, &ids), 0, &mut dst, 1, n).unwrap();
        assert_eq!(be.download_u32(&dst).unwrap()[1..], ids[..], "copy u32 n={n}");
    }
}

fn copy_rejects_bad_ranges_and_mixed_dtypes(dev: &Device) {
    let be = backend(dev);
    let src = up(dev, &[1.0; 10]);
    let mut dst = up(dev, &[0.0; 10]);
    assert!(matches!(be.copy(&src, 5, &mut dst, 0, 6), Err(Error::Shape(_))));
    assert!(matches!(be.copy(&src, 0, &mut dst, 5, 6), Err(Error::Shape(_))));
    assert!(be.copy(&src, usize::MAX, &mut dst, 0, 2).is_err());
    let mut ids = up_u32(dev, &[0; 10]);
    assert!(be.copy(&src, 0, &mut ids, 0, 1).is_err());
    assert_eq!(down(dev, &dst), vec![0.0; 10], "dst untouched after errors");
}

fn ref_copy_cols(p: &CopyCols, src: &[f32], dst: &mut [f32]) {
    for r in 0..p.rows {
        for c in 0..p.width {
            let s = src[r * p.src_stride + p.src_offset + c];
            let d = &mut dst[r * p.dst_stride + p.dst_offset + c];
            *d = if p.accumulate { (*d as f64 + s as f64) as f32 } else { s };
        }
    }
}

fn copy_cols_concatenates_and_splits(dev: &Device) {
    let be = backend(dev);
    let mut r = rng(200);
    // (rows, width, src_stride, src_offset, dst_stride, dst_offset); the last one crosses
    // the parallel threshold and is the shape of a QKV split.
    let cases = [
        (1, 1, 1, 0, 3, 2),
        (7, 3, 5, 2, 8, 0),
        (33, 16, 16, 0, 48, 16),
        (101, 7, 9, 1, 33, 26),
        (10_100, 64, 64, 0, 192, 128),
    ];
    for (rows, width, ss, so, ds, dso) in cases {
        for accumulate in [false, true] {
            let p = CopyCols {
                rows,
                width,
                src_stride: ss,
                src_offset: so,
                dst_stride: ds,
                dst_offset: dso,
                accumulate,
            };
            // Buffers end right after the last row's block, not at a full stride.
            let src = uniform(&mut r, (rows - 1) * ss + so + width, -1.0, 1.0);
            let dst0 = uniform(&mut r, (rows - 1) * ds + dso + width, -1.0, 1.0);
            let mut dst = up(dev, &dst0);
            be.copy_cols(&p, &up(dev, &src), &mut dst).unwrap();
            let mut want = dst0.clone();
            ref_copy_cols(&p, &src, &mut want);
            // An f32 add of two f32 values rounds exactly as the f64 sum cast back does.
            exact(&format!("copy_cols {p:?}"), &down(dev, &dst), &want);
        }
    }
}

fn copy_cols_rejects_blocks_outside_rows_or_buffers(dev: &Device) {
    let be = backend(dev);
    let ok = CopyCols {
        rows: 4,
        width: 2,
        src_stride: 3,
        src_offset: 1,
        dst_stride: 4,
        dst_offset: 2,
        accumulate: false,
    };
    let src = up(dev, &[1.0; 12]);
    let mut dst = up(dev, &[0.0; 16]);
    be.copy_cols(&ok, &src, &mut dst).unwrap();
    for bad in [
        CopyCols { src_offset: 2, ..ok },
        CopyCols { dst_offset: 3, ..ok },
        CopyCols { rows: 5, ..ok },
        CopyCols { dst_stride: 5, ..ok },
    ] {
        assert!(matches!(be.copy_cols(&bad, &src, &mut dst), Err(Error::Shape(_))), "{bad:?}");
    }
}

fn fill_sets_every_element(dev: &Device) {
    for n in SIZES {
        let mut buf = up(dev, &vec![1.0; n]);
        backend(dev).fill(&mut buf, -2.5).unwrap();
        exact(&format!("fill n={n}"), &down(dev, &buf), &vec![-2.5; n]);
    }
}

fn gather_rows_with_repeats(dev: &Device) {
    let be = backend(dev);
    for (case, (rows, row_len, picks)) in
        [(1, 1, 1), (7, 3, 11), (33, 33, 7), (101, 5, 101), (300, 64, 2000)].into_iter().enumerate()
    {
        let mut r = rng(300 + case as u64);
        let src = uniform(&mut r, rows * row_len, -1.0, 1.0);
        let idx: Vec<u32> = (0..picks).map(|_| r.random_range(0..rows as u32)).collect();
        let mut dst = up(dev, &vec![f32::NAN; picks * row_len]);
        be.gather_rows(&up(dev, &src), &up_u32(dev, &idx), row_len, &mut dst).unwrap();
        let want: Vec<f32> = idx
            .iter()
            .flat_map(|&i| src[i as usize * row_len..][..row_len].iter().copied())
            .collect();
        exact(&format!("gather {rows}x{row_len}"), &down(dev, &dst), &want);
    }
}

/// Scatters a random selection of `picks` distinct rows of `rows` back and checks that the
/// named rows took the source and the others kept their contents.
fn scatter_rows_inverts_a_gather(dev: &Device) {
    let be = backend(dev);
    for (case, (rows, row_len, picks)) in
        [(1, 1, 1), (7, 3, 4), (33, 33, 33), (101, 5, 60)].into_iter().enumerate()
    {
        let mut r = rng(400 + case as u64);
        let mut order: Vec<u32> = (0..rows as u32).collect();
        for i in (1..rows).rev() {
            order.swap(i, r.random_range(0..=i));
        }
        let idx = &order[..picks];
        let src = uniform(&mut r, picks * row_len, -1.0, 1.0);
        let dst0 = uniform(&mut r, rows * row_len, -1.0, 1.0);
        let mut dst = up(dev, &dst0);
        be.scatter_rows(&up(dev, &src), &up_u32(dev, idx), row_len, &mut dst).unwrap();
        let mut want = dst0.clone();
        for (i, &t) in idx.iter().enumerate() {
            want[t as usize * row_len..][..row_len].copy_from_slice(&src[i * row_len..][..row_len]);
        }
        exact(&format!("scatter {rows}x{row_len}"), &down(dev, &dst), &want);
    }
}

/// Lengths are checked on every backend. Index values are checked where they live on the
/// host: the CPU backend rejects an index past the table (or a repeated scatter index), while
/// a GPU kernel, which cannot return an error, skips it (a gathered row reads as 0).
fn row_kernels_reject_bad_indices_and_lengths(dev: &Device) {
    let be = backend(dev);
    let on_host = dev.name() == "cpu";
    let table = up(dev, &[1.0; 12]); // 4 rows of 3
    let mut out = up(dev, &[0.0; 6]);
    assert!(be.gather_rows(&table, &up_u32(dev, &[1]), 3, &mut out).is_err());
    assert!(be.gather_rows(&table, &up_u32(dev, &[0, 1]), 5, &mut out).is_err());
    assert!(be.gather_rows(&table, &up_u32(dev, &[0, 1]), 0, &mut out).is_err());
    assert_eq!(down(dev, &out), vec![0.0; 6], "out untouched after errors");
    let bad = be.gather_rows(&table, &up_u32(dev, &[1, 4]), 3, &mut out);
    if on_host {
        let err = bad.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Invalid(_)), "{msg}");
        assert!(msg.contains('4') && msg.contains("4 rows"), "names index and rows: {msg}");
        assert_eq!(down(dev, &out), vec![0.0; 6], "out untouched after errors");
    } else {
        bad.unwrap();
        assert_eq!(down(dev, &out), [1.0, 1.0, 1.0, 0.0, 0.0, 0.0], "skipped row");
    }

    let src = up(dev, &[2.0; 6]);
    let mut dst = up(dev, &[0.0; 12]);
    assert!(be.scatter_rows(&src, &up_u32(dev, &[0]), 3, &mut dst).is_err());
    assert!(be.scatter_rows(&src, &up_u32(dev, &[0, 1]), 5, &mut dst).is_err());
    assert_eq!(down(dev, &dst), vec![0.0; 12], "dst untouched after errors");
    let bad = be.scatter_rows(&src, &up_u32(dev, &[0, 9]), 3, &mut dst);
    if on_host {
        let err = bad.unwrap_err();
        assert!(matches!(err, Error::Invalid(_)) && err.to_string().contains('9'), "{err}");
        let err = be.scatter_rows(&src, &up_u32(dev, &[2, 2]), 3, &mut dst).unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "duplicate: {err}");
        assert_eq!(down(dev, &dst), vec![0.0; 12], "dst untouched after errors");
    } else {
        bad.unwrap();
        let mut want = vec![0.0; 12];
        want[..3].fill(2.0);
        assert_eq!(down(dev, &dst), want, "skipped row");
    }
}
