// flow.wgsl: the flow-matching interpolation (one thread per element) and the masked MSE
// loss, a fixed-order reduction shaped as in loss.wgsl.

// ---- fm_prepare ---------------------------------------------------------------------------

struct Prep { n: u32, per_sample: u32, keep: f32 }
@group(0) @binding(0) var<uniform> pp: Prep;
@group(0) @binding(1) var<storage, read> prep_x0: array<f32>;
@group(0) @binding(2) var<storage, read> prep_x1: array<f32>;
@group(0) @binding(3) var<storage, read> prep_t: array<f32>;
@group(0) @binding(4) var<storage, read_write> prep_xt: array<f32>;
@group(0) @binding(5) var<storage, read_write> prep_u: array<f32>;

// xt = (1 - (1 - σ_min) t) x0 + t x1 and u = x1 - (1 - σ_min) x0, with t per sample.
@compute @workgroup_size(256)
fn fm_prepare(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
              @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= pp.n) {
        return;
    }
    let t = prep_t[i / pp.per_sample];
    let a = 1.0 - pp.keep * t;
    let x0 = prep_x0[i];
    let x1 = prep_x1[i];
    prep_xt[i] = a * x0 + t * x1;
    prep_u[i] = x1 - pp.keep * x0;
}

// ---- fm_loss ------------------------------------------------------------------------------
// loss = Σ m (p - y)² / max(Σ m, 1), dpred = 2 m (p - y) / max(Σ m, 1).
//
// Without a mask the weight is n, known to the host: the first pass writes dpred as it
// reduces, and `fm_plain_finish` divides. With a mask, dpred needs the global Σ m: the first
// pass reduces (Σ m, Σ m d²) per group, and `fm_masked_apply` runs on the same groups, each
// adding all the partials in the same fixed order (so all agree to the bit) before writing
// dpred over its chunk; group 0 writes the loss. With one group, `fm_masked_apply` alone does
// both: two dispatches at most either way.

struct Red {
    n: u32,
    chunk: u32,
    groups: u32,
    // f32(2 / max(n, 1)): the unmasked gradient's factor.
    grad: f32,
    // max(n, 1) as a double-float: the unmasked weight.
    w_hi: f32,
    w_lo: f32,
    // 1.0, for `df_one` (common.wgsl).
    one: f32,
}
@group(0) @binding(0) var<uniform> rp: Red;

var<workgroup> red: array<vec2<f32>, 256>;
var<workgroup> red4: array<vec4<f32>, 256>;

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

// As `tree` for two double-floats at once, (a.hi, a.lo, b.hi, b.lo).
fn tree4(lid: u32, v: vec4<f32>) -> vec4<f32> {
    red4[lid] = v;
    workgroupBarrier();
    for (var s = WG / 2u; s > 0u; s >>= 1u) {
        if (lid < s) {
            let a = red4[lid];
            let b = red4[lid + s];
            red4[lid] = vec4<f32>(df_add(a.xy, b.xy), df_add(a.zw, b.zw));
        }
        workgroupBarrier();
    }
    return red4[0];
}

fn chunk_of(g: u32) -> vec2<u32> {
    let start = min(g * rp.chunk, rp.n);
    return vec2<u32>(start, min(start + rp.chunk, rp.n));
}

// -- unmasked

@group(0) @binding(1) var<storage, read> plain_pred: array<f32>;
@group(0) @binding(2) var<storage, read> plain_target: array<f32>;
@group(0) @binding(3) var<storage, read_write> plain_dpred: array<f32>;
@group(0) @binding(4) var<storage, read_write> plain_out: array<f32>;

@compute @workgroup_size(256)
fn fm_plain_partial(@builtin(workgroup_id) wid: vec3<u32>,
                    @builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    let g = wid.x;
    let r = chunk_of(g);
    var acc = vec2<f32>(0.0);
    for (var i = r.x + lid; i < r.y; i += WG) {
        let d = plain_pred[i] - plain_target[i];
        plain_dpred[i] = rp.grad * d;
        acc = df_add_f(acc, d * d);
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        if (rp.groups == 1u) {
            plain_out[0] = df_div(total, vec2<f32>(rp.w_hi, rp.w_lo));
        } else {
            plain_out[2u * g] = total.x;
            plain_out[2u * g + 1u] = total.y;
        }
    }
}

@group(0) @binding(1) var<storage, read> fin_partials: array<f32>;
@group(0) @binding(2) var<storage, read_write> fin_loss: array<f32>;

@compute @workgroup_size(256)
fn fm_plain_finish(@builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    var acc = vec2<f32>(0.0);
    for (var k = lid; k < rp.groups; k += WG) {
        acc = df_add(acc, vec2<f32>(fin_partials[2u * k], fin_partials[2u * k + 1u]));
    }
    let total = tree(lid, acc);
    if (lid == 0u) {
        fin_loss[0] = df_div(total, vec2<f32>(rp.w_hi, rp.w_lo));
    }
}

// -- masked

@group(0) @binding(1) var<storage, read> mask_pred: array<f32>;
@group(0) @binding(2) var<storage, read> mask_target: array<f32>;
@group(0) @binding(3) var<storage, read> mask_m: array<f32>;
@group(0) @binding(4) var<storage, read_write> mask_partials: array<f32>;
// In fm_masked_apply the partials are only read.
@group(0) @binding(4) var<storage, read> apply_partials: array<f32>;
@group(0) @binding(5) var<storage, read_write> apply_dpred: array<f32>;
@group(0) @binding(6) var<storage, read_write> apply_loss: array<f32>;

// This thread's (Σ m, Σ m d²) over its strided share of group g's chunk.
fn masked_sums(g: u32, lid: u32) -> vec4<f32> {
    let r = chunk_of(g);
    var w = vec2<f32>(0.0);
    var l = vec2<f32>(0.0);
    for (var i = r.x + lid; i < r.y; i += WG) {
        let m = mask_m[i];
        let d = mask_pred[i] - mask_target[i];
        w = df_add_f(w, m);
        l = df_add_f(l, m * d * d);
    }
    return vec4<f32>(w, l);
}

@compute @workgroup_size(256)
fn fm_masked_partial(@builtin(workgroup_id) wid: vec3<u32>,
                     @builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    let g = wid.x;
    let total = tree4(lid, masked_sums(g, lid));
    if (lid == 0u) {
        mask_partials[4u * g] = total.x;
        mask_partials[4u * g + 1u] = total.y;
        mask_partials[4u * g + 2u] = total.z;
        mask_partials[4u * g + 3u] = total.w;
    }
}

@compute @workgroup_size(256)
fn fm_masked_apply(@builtin(workgroup_id) wid: vec3<u32>,
                   @builtin(local_invocation_index) lid: u32) {
    df_one = rp.one;
    let g = wid.x;
    var part = vec4<f32>(0.0);
    if (rp.groups == 1u) {
        part = masked_sums(0u, lid);
    } else {
        for (var k = lid; k < rp.groups; k += WG) {
            let q = vec4<f32>(apply_partials[4u * k], apply_partials[4u * k + 1u],
                              apply_partials[4u * k + 2u], apply_partials[4u * k + 3u]);
            part = vec4<f32>(df_add(part.xy, q.xy), df_add(part.zw, q.zw));
        }
    }
    let total = tree4(lid, part);
    // max(Σ m, 1): an all-padding batch gives loss 0 and zero gradients, not NaN.
    var w = total.xy;
    if (w.x < 1.0) {
        w = vec2<f32>(1.0, 0.0);
    }
    let grad = df_div(vec2<f32>(2.0, 0.0), w);
    if (g == 0u && lid == 0u) {
        apply_loss[0] = df_div(total.zw, w);
    }
    let r = chunk_of(g);
    for (var i = r.x + lid; i < r.y; i += WG) {
        let d = mask_pred[i] - mask_target[i];
        apply_dpred[i] = grad * mask_m[i] * d;
    }
}
