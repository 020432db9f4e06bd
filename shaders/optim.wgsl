// optim.wgsl: the sum of squares behind the global gradient norm (a fixed-order two-pass
// reduction shaped as in loss.wgsl), and the AdamW update, one thread per element.

struct Red {
    n: u32,
    chunk: u32,
    groups: u32,
    // Whether out[0] is added to the sum (the running total over parameter buffers).
    accumulate: u32,
    // 1.0, for `df_one` (common.wgsl).
    one: f32,
}
@group(0) @binding(0) var<uniform> rp: Red;
@group(0) @binding(1) var<storage, read> sq_x: array<f32>;
@group(0) @binding(2) var<storage, read_write> sq_out: array<f32>;

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

// Rounds the total (plus the running one) once.
fn finish(total: vec2<f32>) -> f32 {
    var t = total;
    if (rp.accumulate != 0u) {
        t = df_add_f(t, sq_out[0]);
    }
    return t.x + t.y;
}

// First pass of out[0] (+)= Σ x²: each square is rounded to f32, then summed in double-float.
@compute @workgroup_size(256)
fn sum_squares_partial(@builtin(workgroup_id) wid: vec3<u32>,
                       @builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    let g = wid.x;
    let start = min(g * rp.chunk, rp.n);
    let end = min(start + rp.chunk, rp.n);
    var acc = vec2<f32>(0.0);
    for (var i = start + lid; i < end; i += WG) {
        let v = sq_x[i];
        acc = df_add_f(acc, v * v);
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        if (rp.groups == 1u) {
            sq_out[0] = finish(total);
        } else {
            sq_out[2u * g] = total.x;
            sq_out[2u * g + 1u] = total.y;
        }
    }
}

// Second pass: the partials (binding 1) to out[0].
@compute @workgroup_size(256)
fn sum_squares_finish(@builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    var acc = vec2<f32>(0.0);
    for (var k = lid; k < rp.groups; k += WG) {
        acc = df_add(acc, vec2<f32>(sq_x[2u * k], sq_x[2u * k + 1u]));
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        sq_out[0] = finish(total);
    }
}

// ---- AdamW --------------------------------------------------------------------------------

// The per-call scalars come from the host, formed as the CPU backend forms them (the bias
// corrections in f64).
struct Adam {
    n: u32,
    lr_hat: f32,        // lr / (1 - β1^t)
    inv_sqrt_bc2: f32,  // 1 / sqrt(1 - β2^t)
    decay: f32,         // 1 - lr · weight_decay
    b1: f32,
    b2: f32,
    c1: f32,            // 1 - β1
    c2: f32,            // 1 - β2
    eps: f32,
    clip: u32,
    max_norm: f32,
}
@group(0) @binding(0) var<uniform> ap: Adam;
@group(0) @binding(1) var<storage, read_write> ad_param: array<f32>;
@group(0) @binding(2) var<storage, read> ad_grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> ad_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> ad_v: array<f32>;
@group(0) @binding(5) var<storage, read> ad_norm_sq: array<f32>;

// PyTorch's order: p ← p·(1 − lr·wd) − lr · m̂ / (√v̂ + eps), with the gradient first scaled
// by min(1, max_norm / ‖g‖) when clipping (‖g‖² read from the device: no read-back). A zero
// or NaN norm leaves the gradient as it is.
@compute @workgroup_size(256)
fn adamw(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
         @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= ap.n) {
        return;
    }
    var g_scale = 1.0;
    if (ap.clip != 0u) {
        let norm = sqrt(ad_norm_sq[0]);
        if (norm > ap.max_norm) {
            g_scale = ap.max_norm / norm;
        }
    }
    let g = ad_grad[i] * g_scale;
    let m = ap.b1 * ad_m[i] + ap.c1 * g;
    let v = ap.b2 * ad_v[i] + ap.c2 * (g * g);
    ad_m[i] = m;
    ad_v[i] = v;
    ad_param[i] = ad_param[i] * ap.decay - ap.lr_hat * m / (sqrt(v) * ap.inv_sqrt_bc2 + ap.eps);
}
