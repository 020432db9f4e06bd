// random.cu: the random family of the kernel contract (src/backend/mod.rs): normal_fill and
// uniform_fill from counter-based Philox4x32-10, the same stream as src/backend/cpu/random.rs.
//
// Element i comes from word i % 4 of the block for counter `offset + i / 4` (a 128-bit integer,
// little-endian words [lo, hi, carry, 0]) under key (seed lo, seed hi). One thread makes one
// block, i.e. four consecutive elements. The Philox words and the uniforms are bit-identical to
// the CPU's (integer arithmetic, exact conversions, and the uniform's `lo + width · u` done with
// round-to-nearest intrinsics so that nvcc does not fuse it into an FMA the CPU does not have).
// The normals go through logf/sqrtf/sincosf, which may differ from the host libm in the last
// ulp or two.
#include "common.cuh"

#define PHILOX_MUL0 0xD2511F53u
#define PHILOX_MUL1 0xCD9E8D57u
#define PHILOX_WEYL0 0x9E3779B9u
#define PHILOX_WEYL1 0xBB67AE85u

// One Philox4x32-10 block: ten rounds, the key bumped by the Weyl constants between rounds.
__device__ __forceinline__ uint4 philox4x32_10(uint4 c, u32 k0, u32 k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += PHILOX_WEYL0;
            k1 += PHILOX_WEYL1;
        }
        const u32 lo0 = PHILOX_MUL0 * c.x, hi0 = __umulhi(PHILOX_MUL0, c.x);
        const u32 lo1 = PHILOX_MUL1 * c.z, hi1 = __umulhi(PHILOX_MUL1, c.z);
        c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
    }
    return c;
}

// The words feeding elements 4·blk .. 4·blk + 4 of the stream for (seed, offset).
__device__ __forceinline__ uint4 philox_block(u64 seed, u64 offset, u64 blk) {
    const u64 lo = offset + blk;
    const u32 carry = lo < offset ? 1u : 0u;  // the counter is 128-bit: carry, never wrap
    const uint4 ctr = make_uint4((u32)lo, (u32)(lo >> 32), carry, 0u);
    return philox4x32_10(ctr, (u32)seed, (u32)(seed >> 32));
}

// The word's top 24 bits as a uniform in (0, 1); every step is exact.
__device__ __forceinline__ float to_unit(u32 w) {
    return __fmul_rn(__fadd_rn((float)(w >> 8), 0.5f), 1.0f / 16777216.0f);
}

// Box–Muller on one pair of uniforms: (r cos 2πu_b, r sin 2πu_b), r = sqrt(-2 ln u_a).
__device__ __forceinline__ float2 box_muller(float ua, float ub) {
    const float r = sqrtf(__fmul_rn(-2.0f, logf(ua)));
    float s, c;
    sincosf(__fmul_rn(K_TAU, ub), &s, &c);
    return make_float2(r * c, r * s);
}

// Writes the four values of block `blk` (fewer for a partial last block).
__device__ __forceinline__ void store4(float* dst, u32 n, u32 blk, float4 v) {
    const u32 i = blk * 4;
    if (i + 3 < n && ((size_t)(dst + i) & 15) == 0) {
        *reinterpret_cast<float4*>(dst + i) = v;
    } else {
        dst[i] = v.x;
        if (i + 1 < n) dst[i + 1] = v.y;
        if (i + 2 < n) dst[i + 2] = v.z;
        if (i + 3 < n) dst[i + 3] = v.w;
    }
}

// dst[i] ~ N(0, 1) for i < n, as normal_fill.
extern "C" __global__ void normal_fill(float* __restrict__ dst, u32 n, u64 seed, u64 offset) {
    GRID_STRIDE(blk, ceil_div(n, 4)) {
        const uint4 w = philox_block(seed, offset, blk);
        const float2 a = box_muller(to_unit(w.x), to_unit(w.y));
        const float2 b = box_muller(to_unit(w.z), to_unit(w.w));
        store4(dst, n, blk, make_float4(a.x, a.y, b.x, b.y));
    }
}

// dst[i] = lo + (hi - lo) · u_i for i < n, as uniform_fill.
extern "C" __global__ void uniform_fill(float* __restrict__ dst, u32 n, u64 seed, u64 offset,
                                        float lo, float hi) {
    const float width = hi - lo;
    GRID_STRIDE(blk, ceil_div(n, 4)) {
        const uint4 w = philox_block(seed, offset, blk);
        store4(dst, n, blk,
               make_float4(__fadd_rn(lo, __fmul_rn(width, to_unit(w.x))),
                           __fadd_rn(lo, __fmul_rn(width, to_unit(w.y))),
                           __fadd_rn(lo, __fmul_rn(width, to_unit(w.z))),
                           __fadd_rn(lo, __fmul_rn(width, to_unit(w.w)))));
    }
}
