// norm.wgsl: layer norm forward (optionally fused with the residual add) and backward.
//
// Row kernels give each row `t` threads (a power of two: the column count rounded up, at most
// 256), so one workgroup of 256 holds 256 / t rows; a thread takes columns lane, lane + t, …
// and the row's threads add their sums in a fixed tree in workgroup memory. The parameter
// gradients are column sums over rows: `ln_param_partials` sums chunks of ROWS_PER_CHUNK rows
// per column, and `ln_param_finish` adds the chunks in a fixed tree, one workgroup per column.
// Every order depends on the shape only.

const ROWS_PER_CHUNK: u32 = 128u;

var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;
var<workgroup> red2: array<vec2<f32>, 256>;

// ---- forward ------------------------------------------------------------------------------

// residual: 1 when there is one; keep_sum: 1 when h is also written to fwd_sum (inference
// keeps no sum and binds a placeholder there).
struct Fwd { rows: u32, cols: u32, eps: f32, t: u32, residual: u32, keep_sum: u32 }
@group(0) @binding(0) var<uniform> fp: Fwd;
@group(0) @binding(1) var<storage, read> fwd_x: array<f32>;
@group(0) @binding(2) var<storage, read> fwd_res: array<f32>;
@group(0) @binding(3) var<storage, read> fwd_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> fwd_beta: array<f32>;
@group(0) @binding(5) var<storage, read_write> fwd_y: array<f32>;
@group(0) @binding(6) var<storage, read_write> fwd_mean: array<f32>;
@group(0) @binding(7) var<storage, read_write> fwd_rstd: array<f32>;
@group(0) @binding(8) var<storage, read_write> fwd_sum: array<f32>;

// h = x (+ residual), recomputed on each pass (the same f32 sum every time).
fn fwd_h(k: u32) -> f32 {
    var h = fwd_x[k];
    if (fp.residual != 0u) {
        h += fwd_res[k];
    }
    return h;
}

// Sums of the row segments of `red_a` into the segment's first slot.
fn segment_tree_a(lane: u32, lid: u32, t: u32) {
    workgroupBarrier();
    for (var s = t >> 1u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red_a[lid] += red_a[lid + s];
        }
        workgroupBarrier();
    }
}

fn segment_tree_b(lane: u32, lid: u32, t: u32) {
    workgroupBarrier();
    for (var s = t >> 1u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red_b[lid] += red_b[lid + s];
        }
        workgroupBarrier();
    }
}

// y = (h - mean) · rstd · gamma + beta with the biased variance and rstd = 1 / sqrt(var + eps),
// both from two passes over the row; h = x + residual is also written out where it is kept.
@compute @workgroup_size(256)
fn layer_norm_fwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = fp.t;
    let cols = fp.cols;
    let lane = lid % t;
    let row = group_index(wid, nwg) * (WG / t) + lid / t;
    let valid = row < fp.rows;
    let base = row * cols;

    var s = 0.0;
    if (valid) {
        for (var j = lane; j < cols; j += t) {
            let h = fwd_h(base + j);
            if (fp.keep_sum != 0u) {
                fwd_sum[base + j] = h;
            }
            s += h;
        }
    }
    red_a[lid] = s;
    segment_tree_a(lane, lid, t);
    let mean = red_a[lid - lane] / f32(cols);

    var q = 0.0;
    if (valid) {
        for (var j = lane; j < cols; j += t) {
            let d = fwd_h(base + j) - mean;
            q += d * d;
        }
    }
    red_b[lid] = q;
    segment_tree_b(lane, lid, t);
    let rstd = inverseSqrt(red_b[lid - lane] / f32(cols) + fp.eps);

    if (valid) {
        if (lane == 0u) {
            fwd_mean[row] = mean;
            fwd_rstd[row] = rstd;
        }
        for (var j = lane; j < cols; j += t) {
            fwd_y[base + j] = (fwd_h(base + j) - mean) * rstd * fwd_gamma[j] + fwd_beta[j];
        }
    }
}

// ---- backward: dh -------------------------------------------------------------------------

struct Bwd { rows: u32, cols: u32, t: u32 }
@group(0) @binding(0) var<uniform> bp: Bwd;
@group(0) @binding(1) var<storage, read> bwd_h: array<f32>;
@group(0) @binding(2) var<storage, read> bwd_dy: array<f32>;
@group(0) @binding(3) var<storage, read> bwd_gamma: array<f32>;
@group(0) @binding(4) var<storage, read> bwd_mean: array<f32>;
@group(0) @binding(5) var<storage, read> bwd_rstd: array<f32>;
@group(0) @binding(6) var<storage, read_write> bwd_dh: array<f32>;

// dh = rstd · (g - mean(g) - x̂ · mean(g x̂)) with g = dy · gamma and x̂ = (h - mean) · rstd.
@compute @workgroup_size(256)
fn layer_norm_bwd(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                  @builtin(local_invocation_index) lid: u32) {
    let t = bp.t;
    let cols = bp.cols;
    let lane = lid % t;
    let row = group_index(wid, nwg) * (WG / t) + lid / t;
    let valid = row < bp.rows;
    let base = row * cols;

    var mu = 0.0;
    var rs = 0.0;
    var acc = vec2<f32>(0.0);
    if (valid) {
        mu = bwd_mean[row];
        rs = bwd_rstd[row];
        for (var j = lane; j < cols; j += t) {
            let g = bwd_dy[base + j] * bwd_gamma[j];
            let xhat = (bwd_h[base + j] - mu) * rs;
            acc += vec2<f32>(g, g * xhat);
        }
    }
    red2[lid] = acc;
    workgroupBarrier();
    for (var s = t >> 1u; s > 0u; s >>= 1u) {
        if (lane < s) {
            red2[lid] += red2[lid + s];
        }
        workgroupBarrier();
    }
    let means = red2[lid - lane] / f32(cols);

    if (valid) {
        for (var j = lane; j < cols; j += t) {
            let g = bwd_dy[base + j] * bwd_gamma[j];
            let xhat = (bwd_h[base + j] - mu) * rs;
            bwd_dh[base + j] = rs * (g - means.x - xhat * means.y);
        }
    }
}

// ---- backward: dgamma, dbeta --------------------------------------------------------------

struct Par {
    rows: u32,
    cols: u32,
    t: u32,
    chunks: u32,
    colblocks: u32,
    // Whether the outputs are added to (only when they are dgamma and dbeta themselves).
    accumulate: u32,
}
@group(0) @binding(0) var<uniform> pap: Par;
@group(0) @binding(1) var<storage, read> par_h: array<f32>;
@group(0) @binding(2) var<storage, read> par_dy: array<f32>;
@group(0) @binding(3) var<storage, read> par_mean: array<f32>;
@group(0) @binding(4) var<storage, read> par_rstd: array<f32>;
@group(0) @binding(5) var<storage, read_write> par_g: array<f32>;
@group(0) @binding(6) var<storage, read_write> par_b: array<f32>;

// Workgroup (chunk, column block): out[chunk · cols + c] (+)= Σ over the chunk's rows of
// dy · x̂ (into par_g) and dy (into par_b). Thread (sub, lane) takes column block · t + lane
// and rows sub, sub + 256/t, … of the chunk; the sub-rows are then added in a fixed tree.
// With a single chunk the outputs are dgamma and dbeta themselves.
@compute @workgroup_size(256)
fn ln_param_partials(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(num_workgroups) nwg: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    let gi = group_index(wid, nwg);
    let chunk = gi / pap.colblocks;
    let t = pap.t;
    let lane = lid % t;
    let sub = lid / t;
    let subs = WG / t;
    let col = (gi % pap.colblocks) * t + lane;
    let cols = pap.cols;
    let valid = chunk < pap.chunks && col < cols;

    var acc = vec2<f32>(0.0);
    if (valid) {
        let end = min((chunk + 1u) * ROWS_PER_CHUNK, pap.rows);
        for (var row = chunk * ROWS_PER_CHUNK + sub; row < end; row += subs) {
            let k = row * cols + col;
            let dy = par_dy[k];
            let xhat = (par_h[k] - par_mean[row]) * par_rstd[row];
            acc += vec2<f32>(dy * xhat, dy);
        }
    }
    red2[lid] = acc;
    workgroupBarrier();
    for (var s = subs >> 1u; s > 0u; s >>= 1u) {
        if (sub < s) {
            red2[lid] += red2[lid + s * t];
        }
        workgroupBarrier();
    }
    if (valid && sub == 0u) {
        let o = chunk * cols + col;
        var total = red2[lid];
        if (pap.accumulate != 0u) {
            total += vec2<f32>(par_g[o], par_b[o]);
        }
        par_g[o] = total.x;
        par_b[o] = total.y;
    }
}

struct Fin { cols: u32, chunks: u32, accumulate: u32 }
@group(0) @binding(0) var<uniform> fin: Fin;
@group(0) @binding(1) var<storage, read> fin_pg: array<f32>;
@group(0) @binding(2) var<storage, read> fin_pb: array<f32>;
@group(0) @binding(3) var<storage, read_write> fin_dgamma: array<f32>;
@group(0) @binding(4) var<storage, read_write> fin_dbeta: array<f32>;

// Workgroup c: dgamma[c], dbeta[c] (+)= the sum of the chunks' partials for column c (zero
// chunks: a plain reset).
@compute @workgroup_size(256)
fn ln_param_finish(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    let col = group_index(wid, nwg);
    let cols = fin.cols;
    var acc = vec2<f32>(0.0);
    if (col < cols) {
        for (var k = lid; k < fin.chunks; k += WG) {
            acc += vec2<f32>(fin_pg[k * cols + col], fin_pb[k * cols + col]);
        }
    }
    red2[lid] = acc;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red2[lid] += red2[lid + s];
        }
        workgroupBarrier();
    }
    if (lid == 0u && col < cols) {
        var total = red2[0];
        if (fin.accumulate != 0u) {
            total += vec2<f32>(fin_dgamma[col], fin_dbeta[col]);
        }
        fin_dgamma[col] = total.x;
        fin_dbeta[col] = total.y;
    }
}
