// ode.wgsl: the fused Runge–Kutta stage, the Dopri5 error norm and its step control (the twin
// of src/backend/cpu/ode.rs). Samples are runs of `per_sample` elements with one step h each.

// Up to 7 stage coefficients ride in the parameter block as two vec4s (uniform arrays would
// need a 16-byte stride per element).
struct OdeParams {
    n: u32,
    per_sample: u32,
    count: u32,
    samples: u32,
    c0: vec4<f32>,
    c1: vec4<f32>,
    rtol: f32,
    atol: f32,
}
@group(0) @binding(0) var<uniform> op: OdeParams;

fn coeff(j: u32) -> f32 {
    if (j < 4u) {
        return op.c0[j];
    }
    return op.c1[j - 4u];
}

// Σ_j coeffs[j] · k[j·n + i] over the non-zero coefficients, in order of j as on the CPU (a
// zero coefficient skips its stage, so an inf or NaN there stays out). Written out once per
// binding of k, since WGSL passes no pointers to storage.
fn combine_stage(i: u32) -> f32 {
    var acc = 0.0;
    for (var j = 0u; j < op.count; j++) {
        let c = coeff(j);
        if (c != 0.0) {
            acc += c * st_k[j * op.n + i];
        }
    }
    return acc;
}

fn combine_err(i: u32) -> f32 {
    var acc = 0.0;
    for (var j = 0u; j < op.count; j++) {
        let c = coeff(j);
        if (c != 0.0) {
            acc += c * er_k[j * op.n + i];
        }
    }
    return acc;
}

// ---- ode_stage: out[i] = x[i] + h[i / per_sample] · Σ_j coeffs[j] · k[j·n + i] ----------------
@group(0) @binding(1) var<storage, read> st_x: array<f32>;
@group(0) @binding(2) var<storage, read> st_k: array<f32>;
@group(0) @binding(3) var<storage, read> st_h: array<f32>;
@group(0) @binding(4) var<storage, read_write> st_out: array<f32>;

@compute @workgroup_size(256)
fn ode_stage(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
             @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= op.n) {
        return;
    }
    st_out[i] = st_x[i] + st_h[i / op.per_sample] * combine_stage(i);
}

// ---- dopri5_error ----------------------------------------------------------------------------
// err[s] = |h_s| · sqrt(mean_i (e_i / (atol + rtol · max(|x_i|, |x_new_i|)))²) with
// e_i = Σ_j c_j k[j, i] (h multiplies once at the end, as on the CPU).
//
// One workgroup of 64 per sample: in the benchmark a sample is 101 elements and there are
// thousands of samples, so a workgroup per sample keeps every lane busy on one or two elements
// with coalesced reads, where one invocation per sample would have neighbouring lanes read 101
// floats apart through 7 stages and leave the GPU mostly idle. Each lane sums its elements in
// order and the 64 partial sums meet in a fixed tree: deterministic, and pairwise summation
// keeps the f32 rounding of the mean near log2(64) ulps (the CPU sums in f64).
const ERR_WG: u32 = 64u;
@group(0) @binding(1) var<storage, read> er_x: array<f32>;
@group(0) @binding(2) var<storage, read> er_x_new: array<f32>;
@group(0) @binding(3) var<storage, read> er_k: array<f32>;
@group(0) @binding(4) var<storage, read> er_h: array<f32>;
@group(0) @binding(5) var<storage, read_write> er_err: array<f32>;

var<workgroup> er_part: array<f32, ERR_WG>;

@compute @workgroup_size(ERR_WG)
fn dopri5_error(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let s = group_index(wid, nwg);
    let live = s < op.samples;
    var sum = 0.0;
    if (live) {
        let end = (s + 1u) * op.per_sample;
        for (var i = s * op.per_sample + lid; i < end; i += ERR_WG) {
            let scale = op.atol + op.rtol * max(abs(er_x[i]), abs(er_x_new[i]));
            let e = combine_err(i) / scale;
            sum += e * e;
        }
    }
    er_part[lid] = sum;
    workgroupBarrier();
    for (var w = ERR_WG / 2u; w > 0u; w >>= 1u) {
        if (lid < w) {
            er_part[lid] += er_part[lid + w];
        }
        workgroupBarrier();
    }
    if (live && lid == 0u) {
        er_err[s] = abs(er_h[s]) * sqrt(er_part[0] / f32(op.per_sample));
    }
}

// ---- dopri5_accept ---------------------------------------------------------------------------
// Two kernels, in this order: accept_x copies the accepted samples' x_new over x (one thread
// per element), then accept_clock moves t and h (one thread per sample). Both decide from the
// same err and the h from before the step, which accept_clock alone rewrites.
struct AcceptParams { n: u32, per_sample: u32, samples: u32, t_end: f32, snap: f32 }
@group(0) @binding(0) var<uniform> ap: AcceptParams;

fn is_nan(v: f32) -> bool {
    // On the bits: WGSL lets a compiler assume floats are never NaN.
    return (bitcast<u32>(v) & 0x7fffffffu) > 0x7f800000u;
}

// A running sample (h > 0) takes its step where err <= 1 (a NaN error is rejected).
fn accepted(e: f32, h: f32) -> bool {
    return !(h <= 0.0) && !is_nan(e) && e <= 1.0;
}

@group(0) @binding(1) var<storage, read_write> ax_x: array<f32>;
@group(0) @binding(2) var<storage, read> ax_x_new: array<f32>;
@group(0) @binding(3) var<storage, read> ax_err: array<f32>;
@group(0) @binding(4) var<storage, read> ax_h: array<f32>;

@compute @workgroup_size(256)
fn accept_x(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
            @builtin(local_invocation_index) lid: u32) {
    let i = thread_index(wid, nwg, lid);
    if (i >= ap.n) {
        return;
    }
    let s = i / ap.per_sample;
    if (accepted(ax_err[s], ax_h[s])) {
        ax_x[i] = ax_x_new[i];
    }
}

@group(0) @binding(1) var<storage, read> ac_err: array<f32>;
@group(0) @binding(2) var<storage, read_write> ac_t: array<f32>;
@group(0) @binding(3) var<storage, read_write> ac_h: array<f32>;

// h = min(h · clamp(0.9 · err^(-1/5), 0.2, 10), t_end - t), at least 0. err = 0 gives the
// largest factor, 10 (as does a subnormal one, which a GPU may flush to 0); a NaN, infinite or negative err the smallest, 0.2 (the CPU backend's
// max/min give the same). Those cases are caught on the bits, since pow is undefined at 0 and
// WGSL lets compilers assume no NaN or infinity.
@compute @workgroup_size(256)
fn accept_clock(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let s = thread_index(wid, nwg, lid);
    if (s >= ap.samples) {
        return;
    }
    let h = ac_h[s];
    if (h <= 0.0) {
        return;
    }
    let e = ac_err[s];
    var t = ac_t[s];
    if (accepted(e, h)) {
        t += h;
        if (ap.t_end - t <= ap.snap) {
            t = ap.t_end;
        }
        ac_t[s] = t;
    }
    let bits = bitcast<u32>(e);
    var factor = 0.2;
    if (bits < 0x800000u || bits == 0x80000000u) { // ±0 or subnormal: err^(-1/5) > 10/0.9
        factor = 10.0;
    } else if (bits < 0x7f800000u) { // positive and finite
        factor = min(max(0.9 * pow(e, -0.2), 0.2), 10.0);
    }
    ac_h[s] = max(min(h * factor, ap.t_end - t), 0.0);
}
