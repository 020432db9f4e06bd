// loss.wgsl: binary cross-entropy with logits and scaled sums, as fixed-order reductions.
//
// Every reduction here (and in optim.wgsl and flow.wgsl) has one shape, chosen on the host
// from the length n alone (`reduction` in src/backend/wgpu/loss.rs): `groups` workgroups
// (at most 1024) each reduce a chunk of `chunk` consecutive elements, every thread summing a
// strided share in double-float and the workgroup adding those in a fixed tree; each writes
// its pair to partials[2g], partials[2g + 1]. A one-workgroup `*_finish` pass then adds the
// partials in the same way and writes the result. With a single group the first pass writes
// the result itself. Nothing depends on scheduling, so every bit is the same run to run.

struct Red {
    n: u32,
    chunk: u32,
    groups: u32,
    // 0: out = total · scale (reduce_sum); 1: out = total / (n_hi + n_lo) (mean BCE).
    mode: u32,
    scale: f32,
    n_hi: f32,
    n_lo: f32,
    // 1/n rounded to f32: the BCE gradient's factor.
    grad: f32,
    // 1.0, for `df_one` (common.wgsl).
    one: f32,
}
@group(0) @binding(0) var<uniform> rp: Red;

var<workgroup> red: array<vec2<f32>, 256>;

// The double-float sum of every thread's `v`, in a fixed tree; every thread gets it.
// Called once per invocation (a second call would overwrite red[0] while others read it).
fn tree(lid: u32, v: vec2<f32>) -> vec2<f32> {
    red[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            red[lid] = df_add(red[lid], red[lid + s]);
        }
        workgroupBarrier();
    }
    return red[0];
}

// [start, end) of group g's chunk.
fn chunk_of(g: u32) -> vec2<u32> {
    let start = min(g * rp.chunk, rp.n);
    return vec2<u32>(start, min(start + rp.chunk, rp.n));
}

fn finish(total: vec2<f32>) -> f32 {
    if (rp.mode == 0u) {
        return df_mul_f(total, rp.scale);
    }
    return df_div(total, vec2<f32>(rp.n_hi, rp.n_lo));
}

// ---- reduce_sum and the shared second pass ------------------------------------------------

@group(0) @binding(1) var<storage, read> sum_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sum_out: array<f32>;

// First pass of out[0] = scale · Σ x.
@compute @workgroup_size(256)
fn sum_partial(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    let g = wid.x;
    let r = chunk_of(g);
    var acc = vec2<f32>(0.0);
    for (var i = r.x + lid; i < r.y; i += WG) {
        acc = df_add_f(acc, sum_x[i]);
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        if (rp.groups == 1u) {
            sum_out[0] = finish(total);
        } else {
            sum_out[2u * g] = total.x;
            sum_out[2u * g + 1u] = total.y;
        }
    }
}

// Second pass of reduce_sum and bce_with_logits: partials (binding 1) to out[0].
@compute @workgroup_size(256)
fn sum_finish(@builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    var acc = vec2<f32>(0.0);
    for (var k = lid; k < rp.groups; k += WG) {
        acc = df_add(acc, vec2<f32>(sum_x[2u * k], sum_x[2u * k + 1u]));
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        sum_out[0] = finish(total);
    }
}

// ---- BCE with logits ----------------------------------------------------------------------

@group(0) @binding(1) var<storage, read> bce_z: array<f32>;
@group(0) @binding(2) var<storage, read> bce_y: array<f32>;
@group(0) @binding(3) var<storage, read_write> bce_dz: array<f32>;
@group(0) @binding(4) var<storage, read_write> bce_out: array<f32>;

// e^x for x <= 0, to about one ulp (WGSL's exp may be 3 + 2|x| ulps off): Cody–Waite range
// reduction by ln 2 and Cephes' polynomial on [-ln2/2, ln2/2].
fn exp_nonpositive(x: f32) -> f32 {
    if (x < -104.0) {
        return 0.0;
    }
    let k = round(x * 1.44269504088896341);
    // ln 2 = 0.693359375 - 2.12194440e-4: k times the first part is exact. `opaque` keeps the
    // two parts from being regrouped into k · (one f32 ln 2) (see common.wgsl).
    let r = opaque(x - k * 0.693359375) + k * 2.12194440e-4;
    let r2 = r * r;
    var p = 1.9875691500e-4;
    p = p * r + 1.3981999507e-3;
    p = p * r + 8.3334519073e-3;
    p = p * r + 4.1665795894e-2;
    p = p * r + 1.6666665459e-1;
    p = p * r + 5.0000001201e-1;
    let e = p * r2 + r + 1.0;
    return ldexp(e, i32(k));
}

// ln(1 + e) for 0 <= e <= 1 (WGSL has no log1p, and log may be 2^-21 off near 1):
// 2 atanh(s) with s = e / (2 + e) <= 1/3, as 2s + 2s·(s²/3 + s⁴/5 + …).
fn log1p_unit(e: f32) -> f32 {
    // 2 + e and its rounding error, then s with one correction step.
    let d = opaque(2.0 + e);
    let d_err = opaque(2.0 - d) + e;
    let s0 = e / d;
    let s = s0 + ((fma(-s0, d, e) - s0 * d_err) / d);
    let t = s * s;
    var q = 1.0 / 17.0;
    q = q * t + 1.0 / 15.0;
    q = q * t + 1.0 / 13.0;
    q = q * t + 1.0 / 11.0;
    q = q * t + 1.0 / 9.0;
    q = q * t + 1.0 / 7.0;
    q = q * t + 1.0 / 5.0;
    q = q * t + 1.0 / 3.0;
    let s2 = 2.0 * s;
    return s2 + s2 * t * q;
}

// First pass of the mean BCE: writes dlogits and reduces
// max(z, 0) - z y + ln(1 + e^-|z|) = z (1 - y) or -z y, plus the log term, both >= 0 for
// y in [0, 1], so the f32 terms carry only relative errors into the sum.
@compute @workgroup_size(256)
fn bce_partial(@builtin(workgroup_id) wid: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    let g = wid.x;
    let r = chunk_of(g);
    var acc = vec2<f32>(0.0);
    for (var i = r.x + lid; i < r.y; i += WG) {
        let z = bce_z[i];
        let y = bce_y[i];
        // e^-|z| never overflows; σ(z) is formed from it on either side of 0.
        let e = exp_nonpositive(-abs(z));
        let sigmoid = select(e, 1.0, z >= 0.0) / (1.0 + e);
        bce_dz[i] = (sigmoid - y) * rp.grad;
        let linear = select(-z * y, z * (1.0 - y), z > 0.0);
        acc = df_add_f(df_add_f(acc, linear), log1p_unit(e));
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        if (rp.groups == 1u) {
            bce_out[0] = finish(total);
        } else {
            bce_out[2u * g] = total.x;
            bce_out[2u * g + 1u] = total.y;
        }
    }
}
