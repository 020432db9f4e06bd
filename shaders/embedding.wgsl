// embedding.wgsl: the deterministic scatter-add backward of lookups, and Fourier features
// (the twin of src/backend/cpu/embedding.rs; the lookup forward is memory.wgsl's gather_rows).

// ---- embedding_bwd ------------------------------------------------------------------------
//
// dtable[r, :] (+)= Σ_{i: ids[i] = r} dout[i, :], each element summed in order of i with no
// atomics, so the result is the in-order f32 sum bit for bit (the parity test checks this).
// Such a sum is one chain of dependent adds per element, so the parallelism is over table rows
// and columns: one workgroup per (row, tile of up to 32 columns). It walks ids in chunks of
// 4096, 16 consecutive ids per thread: each thread keeps a bit mask of its ids that name the
// row, a prefix sum over the threads' counts ranks the chunk's matches in order, all threads
// then fetch the matching rows of dout into workgroup memory (the k-th match is found by a
// binary search over the prefix sums), and one thread per column adds them up in order. Reads of dout
// are thus parallel and each gradient row is read once per column tile; only the adds are
// serial, which the in-order contract requires. An id past the table matches no row and is
// skipped (a kernel cannot return an error; the CPU backend reports it).

const EMB_PER_THREAD: u32 = 16u;
const EMB_CHUNK: u32 = 4096u; // 256 threads · EMB_PER_THREAD ids per pass
const EMB_TILE: u32 = 32u; // columns per workgroup
const EMB_VALS: u32 = 2048u; // dout values staged at once (8 KiB)

// `one` is 1.0, for `df_one` (common.wgsl): the in-order sum goes through `opaque`.
struct EmbParams { n_ids: u32, dim: u32, rows: u32, tiles: u32, accumulate: u32, one: f32 }
@group(0) @binding(0) var<uniform> ep: EmbParams;
@group(0) @binding(1) var<storage, read> emb_dout: array<f32>;
@group(0) @binding(2) var<storage, read> emb_ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> emb_dtable: array<f32>;

// Per thread of the chunk: its hit mask and the inclusive prefix sum of the hit counts.
var<workgroup> emb_mask: array<u32, 256>;
var<workgroup> emb_incl: array<u32, 256>;
// Totals of the 16 runs of 16 threads, for the two-level prefix sum.
var<workgroup> emb_runs: array<u32, 16>;
var<workgroup> emb_vals: array<f32, EMB_VALS>;
// Chunk positions of the batch's matches (at most EMB_POS per batch).
const EMB_POS: u32 = 1024u;
var<workgroup> emb_pos: array<u32, EMB_POS>;

// Position in the chunk of its k-th match (k < matched): the first thread whose inclusive
// count passes k, then the right set bit of that thread's mask.
fn emb_match(k: u32) -> u32 {
    var lo = 0u;
    var hi = 255u;
    while (lo < hi) {
        let mid = (lo + hi) / 2u;
        if (emb_incl[mid] > k) {
            hi = mid;
        } else {
            lo = mid + 1u;
        }
    }
    var m = emb_mask[lo];
    for (var skip = k - (emb_incl[lo] - countOneBits(m)); skip > 0u; skip--) {
        m &= m - 1u;
    }
    return lo * EMB_PER_THREAD + firstTrailingBit(m);
}

@compute @workgroup_size(256)
fn embedding_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                 @builtin(local_invocation_index) lid: u32) {
    df_one = ep.one;
    let group = group_index(wid, nwg);
    // The dispatch covers rows · tiles groups, and a 2-D split may add a few.
    if (group >= ep.rows * ep.tiles) {
        return;
    }
    let row = group / ep.tiles;
    let c0 = (group % ep.tiles) * EMB_TILE;
    let width = min(EMB_TILE, ep.dim - c0);
    let per_batch = min(EMB_VALS / width, EMB_POS);
    let out_at = row * ep.dim + c0 + lid;

    var acc = 0.0;
    if (lid < width && ep.accumulate != 0u) {
        acc = emb_dtable[out_at];
    }
    for (var base = 0u; base < ep.n_ids; base += EMB_CHUNK) {
        let first = base + EMB_PER_THREAD * lid;
        var hits = 0u;
        for (var q = 0u; q < EMB_PER_THREAD; q++) {
            if (first + q < ep.n_ids && emb_ids[first + q] == row) {
                hits |= 1u << q;
            }
        }
        // Two-level inclusive prefix sum of the counts: within runs of 16 threads, then the
        // runs' totals added on.
        emb_mask[lid] = hits;
        emb_incl[lid] = countOneBits(hits);
        workgroupBarrier();
        if (lid < 16u) {
            var run = 0u;
            for (var t = 16u * lid; t < 16u * lid + 16u; t++) {
                run += emb_incl[t];
                emb_incl[t] = run;
            }
            emb_runs[lid] = run;
        }
        workgroupBarrier();
        var before = 0u;
        for (var r = 0u; r < lid / 16u; r++) {
            before += emb_runs[r];
        }
        emb_incl[lid] += before;
        let matched = workgroupUniformLoad(&emb_incl[255]);
        // Stage the matching rows of dout, then add them in order, a batch at a time.
        for (var b0 = 0u; b0 < matched; b0 += per_batch) {
            let take = min(per_batch, matched - b0);
            for (var k = lid; k < take; k += 256u) {
                emb_pos[k] = base + emb_match(b0 + k);
            }
            workgroupBarrier();
            for (var e = lid; e < take * width; e += 256u) {
                emb_vals[e] = emb_dout[emb_pos[e / width] * ep.dim + c0 + e % width];
            }
            workgroupBarrier();
            if (lid < width) {
                // One rounding per add, in order: WGSL lets a compiler regroup a chain of
                // adds (and unroll this loop into several), which `opaque` rules out.
                for (var k = 0u; k < take; k++) {
                    acc = opaque(acc + emb_vals[k * width + lid]);
                }
            }
            workgroupBarrier();
        }
        // emb_mask and emb_incl are rewritten by the next chunk.
        workgroupBarrier();
    }
    if (lid < width) {
        emb_dtable[out_at] = acc;
    }
}

// ---- Fourier features -----------------------------------------------------------------------

// `one` is 1.0, for `df_one` (common.wgsl), which `sincos` uses.
struct FourierParams { rows: u32, in_dim: u32, half: u32, accumulate: u32, one: f32 }
@group(0) @binding(0) var<uniform> fp: FourierParams;
@group(0) @binding(1) var<storage, read> fx: array<f32>;
@group(0) @binding(2) var<storage, read> ffreqs: array<f32>;
@group(0) @binding(3) var<storage, read_write> fout: array<f32>;
// fourier_bwd: dout at 3, dfreqs at 4.
@group(0) @binding(3) var<storage, read> fdout: array<f32>;
@group(0) @binding(4) var<storage, read_write> fdfreqs: array<f32>;

// z = 2π · Σ_i x[r, i] · freqs[i, j], the dot product in order of i as on the CPU.
fn phase(r: u32, j: u32) -> f32 {
    var dot = 0.0;
    for (var i = 0u; i < fp.in_dim; i++) {
        dot += fx[r * fp.in_dim + i] * ffreqs[i * fp.half + j];
    }
    return TAU * dot;
}

// One thread per (row, frequency): out[r, j] = sin z, out[r, half + j] = cos z.
@compute @workgroup_size(256)
fn fourier_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    df_one = fp.one;
    let idx = thread_index(wid, nwg, lid);
    if (idx >= fp.rows * fp.half) {
        return;
    }
    let r = idx / fp.half;
    let j = idx % fp.half;
    let sc = sincos(phase(r, j));
    let o = r * 2u * fp.half + j;
    fout[o] = sc.x;
    fout[o + fp.half] = sc.y;
}

var<workgroup> fourier_part: array<f32, 256>;

// dfreqs[i, j] (+)= 2π Σ_r x[r, i] · (cos z · dsin − sin z · dcos), z = z[r, j]: one
// workgroup per element of dfreqs; each thread sums rows lid, lid + 256, … in order, then the
// 256 partial sums meet in a fixed tree. The grouping never depends on the adapter, so the
// result is deterministic; pairwise summation keeps its rounding near log2(rows) ulps.
@compute @workgroup_size(256)
fn fourier_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    df_one = fp.one;
    let group = group_index(wid, nwg);
    let live = group < fp.in_dim * fp.half;
    let i = group / max(fp.half, 1u);
    let j = group % max(fp.half, 1u);
    var part = 0.0;
    if (live) {
        for (var r = lid; r < fp.rows; r += 256u) {
            let sc = sincos(phase(r, j));
            let d = r * 2u * fp.half;
            let g = sc.y * fdout[d + j] - sc.x * fdout[d + fp.half + j];
            part += fx[r * fp.in_dim + i] * g;
        }
    }
    fourier_part[lid] = part;
    workgroupBarrier();
    for (var s = 128u; s > 0u; s >>= 1u) {
        if (lid < s) {
            fourier_part[lid] += fourier_part[lid + s];
        }
        workgroupBarrier();
    }
    if (live && lid == 0u) {
        let grad = TAU * fourier_part[0];
        if (fp.accumulate != 0u) {
            fdfreqs[group] += grad;
        } else {
            fdfreqs[group] = grad;
        }
    }
}
