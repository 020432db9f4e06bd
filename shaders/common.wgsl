// common.wgsl: prepended to every shader (the WGSL twin of kernels/common.cuh).
//
// Binding convention of every entry point (the Rust side in src/backend/wgpu/ relies on it):
//   @group(0) @binding(0) the kernel's parameters, a uniform struct of at most 16 words;
//   @group(0) @binding(1..) its buffers, in the order the Rust glue passes them.
// Pipelines use automatic layouts, which keep only the bindings an entry point uses, so every
// entry point must read its parameters and touch every buffer it is given.
//
// Dispatches are 2-D when they need more than 65 535 workgroups (the WebGPU limit per
// dimension): `group_index` gives the linear workgroup number, and kernels bound-check it.

const WG: u32 = 256u;

fn group_index(wid: vec3<u32>, nwg: vec3<u32>) -> u32 {
    return wid.x + wid.y * nwg.x;
}

// The global invocation number for a 1-D kernel of workgroup size WG.
fn thread_index(wid: vec3<u32>, nwg: vec3<u32>, lid: u32) -> u32 {
    return group_index(wid, nwg) * WG + lid;
}

// ---- double-float arithmetic, for fixed-order reductions (loss, optim, flow) ---------------
// WGSL has no f64, so sums that the CPU backend keeps in f64 are kept here as an unevaluated
// pair hi + lo of f32 (|lo| <= ulp(hi) / 2): about 48 bits of significand, enough that a sum
// of a million terms is still rounded only once, at the end.
//
// The error terms rely on every addition being rounded as written, but WGSL promises no such
// thing: "an implementation may reassociate operations" and may fuse them, and has no
// `precise`. Shader compilers do use that freedom (Mesa applies (a + b) - a = b; Metal compiles
// with fast math, which regroups chains of adds). So every rounded intermediate that another
// addition consumes passes through `opaque`, a multiplication by a 1.0 the compiler cannot see:
// no identity cancels through it and no chain of adds spans it. Every entry point that uses
// these functions (or `sincos`) first sets `df_one` from a parameter the host sets to 1.0.
// Exact either way: x · 1 = x, and a multiply-add fused with that product rounds as the add.

var<private> df_one: f32;

fn opaque(x: f32) -> f32 {
    return x * df_one;
}

// a + b exactly, as (rounded sum, rounding error) (Knuth's TwoSum: no ordering needed).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    let bb = opaque(s - a);
    return vec2<f32>(s, opaque(a - opaque(s - bb)) + opaque(b - bb));
}

// As two_sum when |a| >= |b| (Dekker's FastTwoSum), to renormalise a pair. `b` must come
// through `opaque` when it is itself a sum, or `a + b` could be regrouped with its terms.
fn quick_two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    return vec2<f32>(s, b - opaque(s - a));
}

fn df_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = two_sum(x.x, y.x);
    return quick_two_sum(s.x, opaque(s.y + opaque(x.y + y.y)));
}

fn df_add_f(x: vec2<f32>, b: f32) -> vec2<f32> {
    let s = two_sum(x.x, b);
    return quick_two_sum(s.x, opaque(s.y + x.y));
}

// (x.hi + x.lo) · s rounded to f32 (within about one ulp; exact products where fma is fused).
fn df_mul_f(x: vec2<f32>, s: f32) -> f32 {
    let p = opaque(x.x * s);
    return p + (fma(x.x, s, -p) + x.y * s);
}

// (x.hi + x.lo) / (y.hi + y.lo) rounded to f32, within about one ulp: one correction step on
// the f32 quotient, since WGSL allows a division 2.5 ulps of error.
fn df_div(x: vec2<f32>, y: vec2<f32>) -> f32 {
    let q = opaque(x.x / y.x);
    let r = (fma(-q, y.x, x.x) + x.y) - q * y.y;
    return q + r / y.x;
}

// ---- sin and cos to an ulp or so (random, Fourier features) ---------------------------------

// 2π rounded to f32 (std::f32::consts::TAU, 0x40c90fdb), written out exactly.
const TAU: f32 = 6.283185482025146484375;

// (sin x, cos x): Cephes' three-part reduction by π/2 (exact while |x| < 2^13 · π/2) and
// musl's single-precision kernels on [-π/4, π/4], an ulp or so on every adapter. WebGPU lets
// the built-in sin and cos be far looser (an absolute 2^-11 within [-π, π], nothing promised
// outside), and some drivers use that freedom.
fn sincos(x: f32) -> vec2<f32> {
    let q = round(x * 0.63661977236);
    // Each step through `opaque`: regrouped as x - q · (sum of the parts), the parts would fold
    // into one f32 π/2 and a large x would lose the reduction's precision.
    let r = opaque(opaque(x - q * 1.5703125) - q * 4.8375129699707031e-4)
        - q * 7.5497899548918821e-8;
    let z = r * r;
    let sv = z * r;
    let sin_r = (r + sv * (-0.166666666416265235595 + z * 0.0083333293858894631756))
        + sv * (z * z) * (-0.000198393348360966317347 + z * 0.0000027183114939898219064);
    let cos_r = ((1.0 + z * -0.499999997251031003120) + (z * z) * 0.0416666233237390631894)
        + (z * z) * z * (-0.00138867637746099294692 + z * 0.0000243904487962774090654);
    let quadrant = i32(q) & 3;
    switch quadrant {
        case 0: { return vec2<f32>(sin_r, cos_r); }
        case 1: { return vec2<f32>(cos_r, -sin_r); }
        case 2: { return vec2<f32>(-sin_r, -cos_r); }
        default: { return vec2<f32>(-cos_r, sin_r); }
    }
}
