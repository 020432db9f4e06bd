// random.wgsl: counter-based Philox4x32-10 normal and uniform fills, one invocation per
// 4-word block (the twin of src/backend/cpu/random.rs; the stream is defined on
// `Backend::normal_fill`).
//
// WGSL has neither 64-bit integers nor a high-half multiply, so the 32×32 → 64-bit products
// are built from 16-bit halves, and the 128-bit counter `offset + block` carries by hand.
// Everything up to the uniform u is integer arithmetic (u is built from its bits), so uniforms
// match the CPU backend bit for bit whatever the adapter's float rounding; normals use this
// file's own log and sin/cos, accurate to an ulp or two on every adapter, rather than the
// built-ins, whose precision WebGPU leaves loose (an absolute 2^-21 for log near 1 and 2^-11 for
// sin within [-π, π] are allowed, and drivers use them).

struct Params {
    n: u32,
    key_lo: u32,
    key_hi: u32,
    off_lo: u32,
    off_hi: u32,
    // uniform_fill's lo and hi - lo (formed on the host in f32, as the CPU backend does).
    lo: f32,
    width: f32,
    // Always 0: xor-ed into a product's bits so that no compiler can fuse it with the add that
    // follows into an fma (a fused result rounds once, the CPU backend rounds twice).
    zero: u32,
    // 1.0, for `df_one` (common.wgsl), which `sincos` uses.
    one: f32,
}
@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> dst: array<f32>;


// (hi, lo) words of the 64-bit product a · b.
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a0 = a & 0xffffu;
    let a1 = a >> 16u;
    let b0 = b & 0xffffu;
    let b1 = b >> 16u;
    let p00 = a0 * b0;
    let p01 = a0 * b1;
    let p10 = a1 * b0;
    let p11 = a1 * b1;
    // Bits 16..47 of the product, before the carry out of them: each term is below 2^16, so
    // their sum fits easily.
    let mid = (p00 >> 16u) + (p01 & 0xffffu) + (p10 & 0xffffu);
    let hi = p11 + (p01 >> 16u) + (p10 >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox4x32_10(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if (round > 0u) {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// The block for elements 4·b .. 4·b + 4: counter offset + b as a 128-bit integer.
fn block(b: u32) -> vec4<u32> {
    let w0 = p.off_lo + b;
    let carry0 = select(0u, 1u, w0 < b);
    let w1 = p.off_hi + carry0;
    let carry1 = select(0u, 1u, carry0 == 1u && w1 == 0u);
    return philox4x32_10(vec4<u32>(w0, w1, carry1, 0u), vec2<u32>(p.key_lo, p.key_hi));
}

// ((w >> 8) + 0.5) · 2^-24 rounded to f32 (to nearest, ties to even), as the CPU backend's
// f32 arithmetic gives it, but from integers: with m = w >> 8, (m + 0.5) needs 25 bits, so
// below 2^23 it is exact, (2m + 1) · 2^-25; from 2^23 on it is a tie between m and m + 1,
// and the even one wins. Converting a 24-bit integer and scaling by a power of two are exact.
fn to_unit(w: u32) -> f32 {
    let m = w >> 8u;
    if (m < 0x800000u) {
        return f32(2u * m + 1u) * (1.0 / 33554432.0);
    }
    return f32(m + (m & 1u)) * (1.0 / 16777216.0);
}

// ln x for a positive normal x (here (0, 1]): musl's logf. x = 2^e · m with m in
// [√2/2, √2), ln m = f - f²/2 + s(f²/2 + R(s²)) with f = m - 1 (exact), s = f / (2 + f).
fn ln_pos(x: f32) -> f32 {
    let bits = bitcast<u32>(x);
    var e = i32(bits >> 23u) - 127;
    var mb = (bits & 0x7fffffu) | 0x3f800000u;
    if (mb > 0x3fb504f3u) { // m > √2: halve it
        mb -= 0x800000u;
        e += 1;
    }
    let f = bitcast<f32>(mb) - 1.0;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (0.40000972152 + w * 0.24279078841);
    let t2 = z * (0.66666662693 + w * 0.28498786688);
    let r = t2 + t1;
    let hfsq = 0.5 * f * f;
    let dk = f32(e);
    return s * (hfsq + r) + dk * 9.0580006145e-06 - hfsq + f + dk * 6.9313812256e-01;
}

// Box–Muller on one pair: (r cos θ, r sin θ), r = sqrt(-2 ln ua), θ = 2π ub in f32.
fn box_muller(ua: f32, ub: f32) -> vec2<f32> {
    let r = sqrt(-2.0 * ln_pos(ua));
    // θ rounded to f32 as the CPU backend rounds it, kept apart from the reduction's subtract.
    let theta = bitcast<f32>(bitcast<u32>(TAU * ub) ^ p.zero);
    let sc = sincos(theta);
    return r * vec2<f32>(sc.y, sc.x);
}

@compute @workgroup_size(256)
fn normal_fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
               @builtin(local_invocation_index) lid: u32) {
    df_one = p.one;
    let b = thread_index(wid, nwg, lid);
    let first = 4u * b;
    if (b >= (p.n + 3u) / 4u) {
        return;
    }
    let w = block(b);
    let n01 = box_muller(to_unit(w.x), to_unit(w.y));
    let n23 = box_muller(to_unit(w.z), to_unit(w.w));
    var vals = array<f32, 4>(n01.x, n01.y, n23.x, n23.y);
    for (var j = 0u; j < 4u; j++) {
        if (first + j < p.n) {
            dst[first + j] = vals[j];
        }
    }
}

@compute @workgroup_size(256)
fn uniform_fill(@builtin(workgroup_id) wid: vec3<u32>, @builtin(num_workgroups) nwg: vec3<u32>,
                @builtin(local_invocation_index) lid: u32) {
    let b = thread_index(wid, nwg, lid);
    let first = 4u * b;
    if (b >= (p.n + 3u) / 4u) {
        return;
    }
    let w = block(b);
    var words = array<u32, 4>(w.x, w.y, w.z, w.w);
    for (var j = 0u; j < 4u; j++) {
        if (first + j < p.n) {
            // lo + width · u with two roundings, as on the CPU.
            let scaled = bitcast<f32>(bitcast<u32>(p.width * to_unit(words[j])) ^ p.zero);
            dst[first + j] = p.lo + scaled;
        }
    }
}
