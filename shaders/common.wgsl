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
// The error terms rely on every addition being rounded as written, but WGSL has no `precise`
// and shader compilers apply real-number identities such as (a + b) - a = b (Mesa does), which
// would cancel them to 0. So the intermediates pass through `opaque`, a multiplication by a
// 1.0 that the compiler cannot see: every entry point that uses these functions first sets
// `df_one` from a parameter the host sets to 1.0. Exact either way: x · 1 = x.

var<private> df_one: f32;

fn opaque(x: f32) -> f32 {
    return x * df_one;
}

// a + b exactly, as (rounded sum, rounding error) (Knuth's TwoSum: no ordering needed).
fn two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    let bb = opaque(s - a);
    return vec2<f32>(s, (a - opaque(s - bb)) + (b - bb));
}

// As two_sum when |a| >= |b| (Dekker's FastTwoSum), to renormalise a pair.
fn quick_two_sum(a: f32, b: f32) -> vec2<f32> {
    let s = opaque(a + b);
    return vec2<f32>(s, b - opaque(s - a));
}

fn df_add(x: vec2<f32>, y: vec2<f32>) -> vec2<f32> {
    let s = two_sum(x.x, y.x);
    return quick_two_sum(s.x, s.y + (x.y + y.y));
}

fn df_add_f(x: vec2<f32>, b: f32) -> vec2<f32> {
    let s = two_sum(x.x, b);
    return quick_two_sum(s.x, s.y + x.y);
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
