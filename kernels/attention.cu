// attention.cu: the attention family of the kernel contract (src/backend/mod.rs, `Attention`):
// attention_fwd and attention_bwd, multi-head self-attention over packed QKV
// ([B, N, 3D]: Q, K, V column blocks, head h at columns h·hd..) with a key-padding mask.
//
// Flash-style: the [B, H, N, N] scores are never stored. Keys (forward, dQ) or queries (dK/dV)
// stream through shared memory in tiles of `kt` rows; each query (or key) keeps its running
// state in registers.
//
// Work split. A row (one query, or one key in the dK/dV pass) belongs to a group of `g` lanes
// (g a power of two, g ≤ 32), each lane holding P consecutive head dimensions
// (lane gl of the group holds dims gl·P .. gl·P + P): P = 4 for hd ≤ 4, P = 8 otherwise, and
// g = next_pow2(ceil(hd / P)), so one compiled kernel per P serves every hd ≤ 256 (the
// runtime check: the Rust side rejects larger hd). Dot products are P FMAs in a lane, then a
// butterfly over the group; every lane of the group gets the same bits. The benchmark's 16
// heads of 4 run one query per thread (g = 1); the reference's 4 heads of 32 run 4 lanes per
// query. Shared-memory rows have a pitch of g·P ≥ hd floats, zero-padded, so every lane reads
// whole float4s with no bounds checks, and the zero padding adds exactly 0 to every dot.
//
// Scores are kept in base 2 (q scaled by scale·log2 e), as on the CPU, so the softmax uses
// exp2f; lse is stored in natural units (m·ln 2 + ln l).
//
// Backward (no float atomics, deterministic):
// 1. attention_bwd_prep: delta[b, h, i] = Σ_c dout·out over the head's columns.
// 2. attention_bwd_p{4,8}: one launch with two kinds of blocks. The first half computes dQ
//    (per query, over all keys: dq = scale Σ_j dS_ij k_j), the second half dK and dV (per key,
//    over all queries: dv = Σ_i P_ij dout_i, dk = scale Σ_i dS_ij q_i), with
//    P_ij = exp(s_ij - lse_i) recomputed and dS_ij = P_ij (dout_i·v_j - delta_i). Each output
//    element is owned by one thread group and summed in a fixed order; the halves write
//    disjoint columns of dqkv (Q block / K and V blocks).
// Masked keys get dK = dV = 0; rows with lse = -inf (every key masked) get dQ = 0 and add nothing.
#include "common.cuh"

// Copies rows t0 .. t0 + len of one head (hd columns starting at `src` for token 0, rows
// `stride` floats apart) into `dst` with a pitch of 2^pshift floats, multiplied by `mul`,
// zero-padding columns hd .. pitch. The whole block calls it.
__device__ __forceinline__ void load_rows(float* dst, const float* __restrict__ src, u32 t0,
                                          u32 len, u32 stride, u32 hd, u32 pshift, float mul) {
    const u32 pmask = (1u << pshift) - 1;
    for (u32 idx = threadIdx.x; idx < (len << pshift); idx += blockDim.x) {
        const u32 j = idx >> pshift, c = idx & pmask;
        dst[idx] = c < hd ? src[(size_t)(t0 + j) * stride + c] * mul : 0.0f;
    }
}

// Σ_p a[p]·s[p] over a lane's P dims, in order; `s` is 16-byte aligned shared memory.
template <int P>
__device__ __forceinline__ float dot_lane(const float (&a)[P], const float* s) {
    float acc = 0.0f;
#pragma unroll
    for (int q = 0; q < P / 4; ++q) {
        const float4 v = reinterpret_cast<const float4*>(s)[q];
        acc = fmaf(a[4 * q], v.x, acc);
        acc = fmaf(a[4 * q + 1], v.y, acc);
        acc = fmaf(a[4 * q + 2], v.z, acc);
        acc = fmaf(a[4 * q + 3], v.w, acc);
    }
    return acc;
}

// acc[p] += w · s[p] over a lane's P dims.
template <int P>
__device__ __forceinline__ void axpy_lane(float (&acc)[P], float w, const float* s) {
#pragma unroll
    for (int q = 0; q < P / 4; ++q) {
        const float4 v = reinterpret_cast<const float4*>(s)[q];
        acc[4 * q] = fmaf(w, v.x, acc[4 * q]);
        acc[4 * q + 1] = fmaf(w, v.y, acc[4 * q + 1]);
        acc[4 * q + 2] = fmaf(w, v.z, acc[4 * q + 2]);
        acc[4 * q + 3] = fmaf(w, v.w, acc[4 * q + 3]);
    }
}

// Where a block works: which (batch, head), which row of the tile this thread's group owns.
struct AttnPlace {
    u32 b, h, bh;     // bh = b·H + h
    u32 gl;           // lane within the group
    u32 row;          // query (or key) row, clamped to N - 1 for the tail's idle groups
    bool valid;       // false for groups past the last row: they compute but never write
    u32 pshift;       // log2 of the shared-memory pitch g·P
};

template <int P>
__device__ __forceinline__ AttnPlace attn_place(u32 blk, u32 N, u32 H, u32 g) {
    AttnPlace a;
    const u32 rows_per_block = blockDim.x / g;
    const u32 tiles = ceil_div(N, rows_per_block);
    a.bh = blk / tiles;
    const u32 tile = blk - a.bh * tiles;
    a.b = a.bh / H;
    a.h = a.bh - a.b * H;
    a.gl = threadIdx.x & (g - 1);
    const u32 r = tile * rows_per_block + threadIdx.x / g;
    a.valid = r < N;
    a.row = a.valid ? r : N - 1;
    a.pshift = __ffs(g * P) - 1;
    return a;
}

// ---- forward ---------------------------------------------------------------------------------
//
// Online softmax per query: running max m (base 2), running sum l and the unnormalised output o,
// rescaled when the max grows. Masked keys are skipped (the mask is the same for every thread of
// the block, so the branch is uniform).
template <int P>
__device__ __forceinline__ void attn_fwd(const float* __restrict__ qkv,
                                         const float* __restrict__ mask, float* __restrict__ out,
                                         float* __restrict__ lse, u32 N, u32 H, u32 hd,
                                         float scale, u32 g, u32 kt) {
    extern __shared__ float4 smem4[];
    const AttnPlace a = attn_place<P>(blockIdx.x, N, H, g);
    const u32 pitch = 1u << a.pshift, D = H * hd, row3 = 3 * D;
    float* Ks = reinterpret_cast<float*>(smem4);
    float* Vs = Ks + kt * pitch;
    float* Ms = Vs + kt * pitch;
    const float* base = qkv + (size_t)a.b * N * row3 + a.h * hd;  // Q of token 0, this head
    const float qscale = scale * K_LOG2E;

    float q[P], o[P];
#pragma unroll
    for (int p = 0; p < P; ++p) {
        const u32 c = a.gl * P + p;
        q[p] = c < hd ? base[(size_t)a.row * row3 + c] * qscale : 0.0f;
        o[p] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    const float* kl = Ks + a.gl * P;
    const float* vl = Vs + a.gl * P;
    for (u32 k0 = 0; k0 < N; k0 += kt) {
        const u32 len = min(kt, N - k0);
        __syncthreads();  // the previous tile has been used by every thread
        load_rows(Ks, base + D, k0, len, row3, hd, a.pshift, 1.0f);
        load_rows(Vs, base + 2 * D, k0, len, row3, hd, a.pshift, 1.0f);
        for (u32 j = threadIdx.x; j < len; j += blockDim.x)
            Ms[j] = mask ? mask[(size_t)a.b * N + k0 + j] : 1.0f;
        __syncthreads();
        for (u32 j = 0; j < len; ++j) {
            if (Ms[j] == 0.0f) continue;  // uniform: every thread reads the same flag
            const float s = group_sum(dot_lane<P>(q, kl + (j << a.pshift)), g);
            if (s > m) {
                const float corr = exp2f(m - s);  // m = -inf gives 0: nothing to rescale yet
                l *= corr;
#pragma unroll
                for (int p = 0; p < P; ++p) o[p] *= corr;
                m = s;
            }
            // A score of -inf (only from infinite inputs) weighs 0, as on the CPU.
            const float w = s == -INFINITY ? 0.0f : exp2f(s - m);
            l += w;
            axpy_lane<P>(o, w, vl + (j << a.pshift));
        }
    }
    if (!a.valid) return;
    float* orow = out + ((size_t)a.b * N + a.row) * D + a.h * hd;
    const bool empty = m == -INFINITY;  // every key masked: output 0, lse -inf
    const float inv = empty ? 0.0f : __frcp_rn(l);  // 1 / l, correctly rounded
#pragma unroll
    for (int p = 0; p < P; ++p) {
        const u32 c = a.gl * P + p;
        if (c < hd) orow[c] = o[p] * inv;
    }
    if (a.gl == 0) lse[(size_t)a.bh * N + a.row] = empty ? -INFINITY : m * K_LN2 + logf(l);
}

// ---- backward --------------------------------------------------------------------------------

// delta[b, h, i] = Σ_c dout[b, i, h·hd + c] · out[b, i, h·hd + c]; one thread per (b, i, h),
// h fastest, so consecutive threads read consecutive columns.
extern "C" __global__ void attention_bwd_prep(const float* __restrict__ out,
                                              const float* __restrict__ dout,
                                              float* __restrict__ delta, u32 B, u32 N, u32 H,
                                              u32 hd) {
    const u32 D = H * hd;
    GRID_STRIDE(t, B * N * H) {
        const u32 bi = t / H, h = t - bi * H;  // bi = b·N + i
        const u32 b = bi / N, i = bi - b * N;
        const float* o = out + (size_t)bi * D + h * hd;
        const float* g = dout + (size_t)bi * D + h * hd;
        float s = 0.0f;
        for (u32 c = 0; c < hd; ++c) s = fmaf(g[c], o[c], s);
        delta[((size_t)b * H + h) * N + i] = s;
    }
}

template <int P>
__device__ __forceinline__ void attn_bwd(const float* __restrict__ qkv,
                                         const float* __restrict__ mask,
                                         const float* __restrict__ lse,
                                         const float* __restrict__ delta,
                                         const float* __restrict__ dout, float* __restrict__ dqkv,
                                         u32 N, u32 H, u32 hd, float scale, u32 g, u32 kt) {
    extern __shared__ float4 smem4[];
    const u32 half = gridDim.x / 2;
    const bool key_side = blockIdx.x >= half;
    const AttnPlace a = attn_place<P>(key_side ? blockIdx.x - half : blockIdx.x, N, H, g);
    const u32 pitch = 1u << a.pshift, D = H * hd, row3 = 3 * D;
    float* S0 = reinterpret_cast<float*>(smem4);  // K (dQ blocks) or scaled Q (dK/dV blocks)
    float* S1 = S0 + kt * pitch;                   // V, or dout
    float* X = S1 + kt * pitch;                    // key mask, or lse in base 2
    float* Y = X + kt;                             // (unused), or delta
    const float* base = qkv + (size_t)a.b * N * row3 + a.h * hd;
    const float* gbase = dout + (size_t)a.b * N * D + a.h * hd;
    const float* lse_bh = lse + (size_t)a.bh * N;
    const float* delta_bh = delta + (size_t)a.bh * N;
    const float qscale = scale * K_LOG2E;
    const float* l0 = S0 + a.gl * P;
    const float* l1 = S1 + a.gl * P;
    float* drow = dqkv + ((size_t)a.b * N + a.row) * row3 + a.h * hd;

    if (!key_side) {
        // dQ of query `row`: its scaled q and its dout in registers, keys and values streamed.
        float qs[P], go[P], dq[P];
#pragma unroll
        for (int p = 0; p < P; ++p) {
            const u32 c = a.gl * P + p;
            qs[p] = c < hd ? base[(size_t)a.row * row3 + c] * qscale : 0.0f;
            go[p] = c < hd ? gbase[(size_t)a.row * D + c] : 0.0f;
            dq[p] = 0.0f;
        }
        const float lse_i = lse_bh[a.row];
        const float l2 = lse_i * K_LOG2E, di = delta_bh[a.row];
        for (u32 k0 = 0; k0 < N; k0 += kt) {
            const u32 len = min(kt, N - k0);
            __syncthreads();
            load_rows(S0, base + D, k0, len, row3, hd, a.pshift, 1.0f);
            load_rows(S1, base + 2 * D, k0, len, row3, hd, a.pshift, 1.0f);
            for (u32 j = threadIdx.x; j < len; j += blockDim.x)
                X[j] = mask ? mask[(size_t)a.b * N + k0 + j] : 1.0f;
            __syncthreads();
            for (u32 j = 0; j < len; ++j) {
                if (X[j] == 0.0f) continue;  // uniform
                const float* kj = l0 + (j << a.pshift);
                const float s = group_sum(dot_lane<P>(qs, kj), g);
                const float dp = group_sum(dot_lane<P>(go, l1 + (j << a.pshift)), g);
                const float pr = exp2f(s - l2);
                axpy_lane<P>(dq, pr * (dp - di), kj);
            }
        }
        if (!a.valid) return;
        const bool empty = lse_i == -INFINITY;
#pragma unroll
        for (int p = 0; p < P; ++p) {
            const u32 c = a.gl * P + p;
            if (c < hd) drow[c] = empty ? 0.0f : dq[p] * scale;
        }
    } else {
        // dK and dV of key `row`: its k and v in registers, queries (scaled q, dout, lse, delta)
        // streamed. dK is summed against the base-2-scaled q, hence the final ln 2.
        float k[P], v[P], dk[P], dv[P];
#pragma unroll
        for (int p = 0; p < P; ++p) {
            const u32 c = a.gl * P + p;
            k[p] = c < hd ? base[(size_t)a.row * row3 + D + c] : 0.0f;
            v[p] = c < hd ? base[(size_t)a.row * row3 + 2 * D + c] : 0.0f;
            dk[p] = 0.0f;
            dv[p] = 0.0f;
        }
        for (u32 i0 = 0; i0 < N; i0 += kt) {
            const u32 len = min(kt, N - i0);
            __syncthreads();
            load_rows(S0, base, i0, len, row3, hd, a.pshift, qscale);
            load_rows(S1, gbase, i0, len, D, hd, a.pshift, 1.0f);
            for (u32 i = threadIdx.x; i < len; i += blockDim.x) {
                X[i] = lse_bh[i0 + i] * K_LOG2E;
                Y[i] = delta_bh[i0 + i];
            }
            __syncthreads();
            for (u32 i = 0; i < len; ++i) {
                const float l2 = X[i];
                if (l2 == -INFINITY) continue;  // uniform; a fully masked row adds nothing
                const float* qi = l0 + (i << a.pshift);
                const float* gi = l1 + (i << a.pshift);
                const float s = group_sum(dot_lane<P>(k, qi), g);
                const float dp = group_sum(dot_lane<P>(v, gi), g);
                const float pr = exp2f(s - l2);
                axpy_lane<P>(dv, pr, gi);
                axpy_lane<P>(dk, pr * (dp - Y[i]), qi);
            }
        }
        if (!a.valid) return;
        const bool kept = !mask || mask[(size_t)a.b * N + a.row] != 0.0f;
#pragma unroll
        for (int p = 0; p < P; ++p) {
            const u32 c = a.gl * P + p;
            if (c < hd) {
                drow[D + c] = kept ? dk[p] * K_LN2 : 0.0f;
                drow[2 * D + c] = kept ? dv[p] : 0.0f;
            }
        }
    }
}

// No __launch_bounds__ on these entries (they are launched with at most 128 threads): ptxas's
// own allocation needs at most 56 registers and never spills, whereas with a bound it either
// aimed at full occupancy (sm_90, 32 registers for attention_fwd_p8, with spills) or, given a
// minimum of blocks per SM, filled that register cap to the brim and spilled at its edge.
#define ATTN_ENTRIES(P)                                                                       \
    extern "C" __global__ void attention_fwd_p##P(                                            \
        const float* __restrict__ qkv, const float* __restrict__ mask, float* __restrict__ out, \
        float* __restrict__ lse, u32 N, u32 H, u32 hd, float scale, u32 g, u32 kt) {          \
        attn_fwd<P>(qkv, mask, out, lse, N, H, hd, scale, g, kt);                             \
    }                                                                                         \
    extern "C" __global__ void attention_bwd_p##P(                                            \
        const float* __restrict__ qkv, const float* __restrict__ mask,                        \
        const float* __restrict__ lse, const float* __restrict__ delta,                       \
        const float* __restrict__ dout, float* __restrict__ dqkv, u32 N, u32 H, u32 hd,       \
        float scale, u32 g, u32 kt) {                                                         \
        attn_bwd<P>(qkv, mask, lse, delta, dout, dqkv, N, H, hd, scale, g, kt);               \
    }

ATTN_ENTRIES(4)
ATTN_ENTRIES(8)
