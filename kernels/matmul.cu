// matmul.cu: the matmul family of the kernel contract (src/backend/mod.rs): `gemm` (batched,
// transposes, alpha/beta, bias and bias+ReLU epilogues) and `bias_grad` (column sums).
//
// Entry points:
// - gemm_f32_128x128, gemm_f32_64x64: exact f32 (FMA) tiled GEMM, the default. Shared-memory
//   tiles double-buffered through registers (the next tile's global loads are in flight while
//   the current tile is multiplied), each thread owning an 8×8 or 4×4 block of C in registers.
//   Two tile shapes only, to keep compile time and the choice simple: 128×128 for large outputs,
//   64×64 when 128×128 would leave the GPU idle (the benchmark's 10100×64 outputs).
// - gemm_tf32_64x64: the same contract on tensor cores (mma.sync m16n8k8, inputs rounded to
//   TF32, f32 accumulation): about 10 bits of mantissa per product, so it is opt-in.
// - gemm_splitk_reduce: for outputs too small to fill the GPU with a long inner dimension
//   (weight gradients: 64×64 outputs, K = 10100 tokens), the GEMM kernels split K over
//   blockIdx.z and write raw partial products to a workspace; this kernel adds them in split
//   order (deterministic, no atomics) and applies beta and the epilogue.
// - bias_grad: deterministic column sums in two stages (fixed row chunks, then the chunk sums in
//   order by the last block).
#include "common.cuh"

#define EPI_NONE 0u
#define EPI_BIAS 1u
#define EPI_BIAS_RELU 2u

// The finished element of C from `v` (= alpha · A·B, already formed): the beta term (C is not
// read when beta == 0: it may hold NaN), then the epilogue. The ReLU is a select, so NaN stays
// NaN, as on the CPU.
__device__ __forceinline__ float gemm_finish(float v, const float* c_old, float beta,
                                             const float* bias, u32 col, u32 epilogue) {
    if (beta != 0.0f) v += beta * *c_old;
    if (epilogue != EPI_NONE) {
        v += bias[col];
        if (epilogue == EPI_BIAS_RELU && v < 0.0f) v = 0.0f;
    }
    return v;
}

// The K range of split `split`: whole `bk` tiles, so that splits meet on tile boundaries.
__device__ __forceinline__ void split_range(u32 K, u32 splits, u32 split, u32 bk, u32* begin,
                                            u32* end) {
    const u32 kc = ceil_div(ceil_div(K, splits), bk) * bk;
    *begin = min(K, split * kc);
    *end = min(K, *begin + kc);
}

// ---- exact f32 SIMT GEMM ---------------------------------------------------------------------
//
// Block tile BM×BN, K in steps of BK; (BM/TM)·(BN/TN) threads, each owning TM×TN elements of C:
// rows q·(BM·4/TM) + ty·4 + u and columns q·(BN·4/TN) + tx·4 + u (u < 4), i.e. groups of four
// spread over the tile, so that a warp's fragment loads are float4 broadcasts (A) or one
// contiguous 256-byte run (B): no shared-memory bank conflicts in the inner loop.
//
// Both tiles are stored k-major (As[k][m], Bs[k][n]), padded by 4 floats per row, which keeps
// float4 alignment and spreads the transposing stores over the banks. Global loads are mapped
// so that consecutive threads read consecutive addresses whichever operand is transposed.
template <int BM, int BN, int BK, int TM, int TN>
__device__ __forceinline__ void gemm_simt(const float* __restrict__ A, const float* __restrict__ B,
                                          const float* __restrict__ bias, float* __restrict__ C,
                                          float* __restrict__ ws, u32 M, u32 N, u32 K,
                                          u32 trans_a, u32 trans_b, float alpha, float beta,
                                          u32 stride_a, u32 stride_b, u32 stride_c, u32 epilogue,
                                          u32 splits) {
    constexpr int TX = BN / TN, TY = BM / TM, NT = TX * TY;
    constexpr int A_LD = BM * BK / NT, B_LD = BK * BN / NT;
    constexpr int AQ = TM / 4, BQ = TN / 4;              // float4 groups per thread
    constexpr int A_STEP = BM / AQ, B_STEP = BN / BQ;    // distance between a thread's groups
    static_assert(BM * BK % NT == 0 && BK * BN % NT == 0, "tile loads must divide evenly");
    static_assert(TM % 4 == 0 && TN % 4 == 0 && TY * 4 == A_STEP && TX * 4 == B_STEP,
                  "thread layout");
    __shared__ __align__(16) float As[2][BK][BM + 4];
    __shared__ __align__(16) float Bs[2][BK][BN + 4];

    const u32 tid = threadIdx.x, tx = tid % TX, ty = tid / TX;
    const u32 z = blockIdx.z, batch = z / splits, split = z - batch * splits;
    const u32 row0 = blockIdx.y * BM, col0 = blockIdx.x * BN;
    u32 k_begin, k_end;
    split_range(K, splits, split, BK, &k_begin, &k_end);
    A += (size_t)batch * stride_a;
    B += (size_t)batch * stride_b;

    float ra[A_LD], rb[B_LD];
    // Element (r, kk) of the A tile for load slot l; kk fastest when A is stored m×k (so the
    // warp reads along k), r fastest when stored k×m.
    auto a_slot = [&](int l, u32& r, u32& kk) {
        const u32 e = tid + l * NT;
        if (trans_a) { r = e % BM; kk = e / BM; } else { kk = e % BK; r = e / BK; }
    };
    auto b_slot = [&](int l, u32& kk, u32& c) {
        const u32 e = tid + l * NT;
        if (trans_b) { kk = e % BK; c = e / BK; } else { c = e % BN; kk = e / BN; }
    };
    auto load = [&](u32 k0) {
#pragma unroll
        for (int l = 0; l < A_LD; ++l) {
            u32 r, kk;
            a_slot(l, r, kk);
            const u32 gr = row0 + r, gk = k0 + kk;
            ra[l] = (gr < M && gk < k_end) ? (trans_a ? A[gk * M + gr] : A[gr * K + gk]) : 0.0f;
        }
#pragma unroll
        for (int l = 0; l < B_LD; ++l) {
            u32 kk, c;
            b_slot(l, kk, c);
            const u32 gc = col0 + c, gk = k0 + kk;
            rb[l] = (gc < N && gk < k_end) ? (trans_b ? B[gc * K + gk] : B[gk * N + gc]) : 0.0f;
        }
    };
    auto store = [&](u32 buf) {
#pragma unroll
        for (int l = 0; l < A_LD; ++l) {
            u32 r, kk;
            a_slot(l, r, kk);
            As[buf][kk][r] = ra[l];
        }
#pragma unroll
        for (int l = 0; l < B_LD; ++l) {
            u32 kk, c;
            b_slot(l, kk, c);
            Bs[buf][kk][c] = rb[l];
        }
    };

    float acc[TM][TN];
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] = 0.0f;

    const u32 tiles = ceil_div(k_end - k_begin, BK);
    if (tiles > 0) {
        load(k_begin);
        store(0);
    }
    __syncthreads();
    for (u32 t = 0; t < tiles; ++t) {
        const u32 buf = t & 1;
        if (t + 1 < tiles) load(k_begin + (t + 1) * BK);  // in flight during the products
#pragma unroll
        for (int kk = 0; kk < BK; ++kk) {
            float a[TM], b[TN];
#pragma unroll
            for (int q = 0; q < AQ; ++q) {
                const float4 v = *reinterpret_cast<const float4*>(&As[buf][kk][q * A_STEP + ty * 4]);
                a[4 * q] = v.x; a[4 * q + 1] = v.y; a[4 * q + 2] = v.z; a[4 * q + 3] = v.w;
            }
#pragma unroll
            for (int q = 0; q < BQ; ++q) {
                const float4 v = *reinterpret_cast<const float4*>(&Bs[buf][kk][q * B_STEP + tx * 4]);
                b[4 * q] = v.x; b[4 * q + 1] = v.y; b[4 * q + 2] = v.z; b[4 * q + 3] = v.w;
            }
#pragma unroll
            for (int i = 0; i < TM; ++i)
#pragma unroll
                for (int j = 0; j < TN; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        // The other buffer was last read in iteration t - 1, which every thread finished
        // before the barrier that ended it; this iteration's barrier publishes the store.
        if (t + 1 < tiles) store(buf ^ 1);
        __syncthreads();
    }

    const bool partial = splits > 1;
    float* out = partial ? ws + (size_t)z * M * N : C + (size_t)batch * stride_c;
#pragma unroll
    for (int i = 0; i < TM; ++i) {
        const u32 r = row0 + (i / 4) * A_STEP + ty * 4 + (i % 4);
        if (r >= M) continue;
#pragma unroll
        for (int j = 0; j < TN; ++j) {
            const u32 c = col0 + (j / 4) * B_STEP + tx * 4 + (j % 4);
            if (c >= N) continue;
            const u32 o = r * N + c;
            const float v = alpha * acc[i][j];
            out[o] = partial ? v : gemm_finish(v, out + o, beta, bias, c, epilogue);
        }
    }
}

// C[b] = alpha · op(A[b]) · op(B[b]) + beta · C[b], then the epilogue (see the README for the
// grid, and for `splits` / `ws`).
#define GEMM_F32_ENTRY(NAME, BM, BN, BK, TM, TN)                                                  \
    extern "C" __global__ void __launch_bounds__((BM / TM) * (BN / TN))                           \
        NAME(const float* __restrict__ A, const float* __restrict__ B,                            \
             const float* __restrict__ bias, float* __restrict__ C, float* __restrict__ ws,       \
             u32 M, u32 N, u32 K, u32 trans_a, u32 trans_b, float alpha, float beta,              \
             u32 stride_a, u32 stride_b, u32 stride_c, u32 epilogue, u32 splits) {                \
        gemm_simt<BM, BN, BK, TM, TN>(A, B, bias, C, ws, M, N, K, trans_a, trans_b, alpha, beta, \
                                      stride_a, stride_b, stride_c, epilogue, splits);           \
    }

GEMM_F32_ENTRY(gemm_f32_128x128, 128, 128, 8, 8, 8)
GEMM_F32_ENTRY(gemm_f32_64x64, 64, 64, 16, 4, 4)

// ---- TF32 tensor-core GEMM -------------------------------------------------------------------
//
// Block tile 64×64, K steps of 16, 4 warps in a 2×2 layout, each warp 32×32 of C as 2×4
// mma.sync.m16n8k8 tiles (32 f32 accumulators per thread). Operands are rounded to TF32
// (cvt.rna) when they are stored to shared memory. As is [m][k] with a row pitch of 20 words
// and Bs is [k][n] with a pitch of 72: with those pitches the fragment loads
// (a: row g, col t; b: row t, col g, for g = lane / 4, t = lane % 4) hit 32 distinct banks.
#define TC_BM 64
#define TC_BN 64
#define TC_BK 16
#define TC_THREADS 128

__device__ __forceinline__ u32 to_tf32(float x) {
    u32 r;
    asm("cvt.rna.tf32.f32 %0, %1;" : "=r"(r) : "f"(x));
    return r;
}

__device__ __forceinline__ void mma_tf32(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
    asm volatile(
        "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 "
        "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

extern "C" __global__ void __launch_bounds__(TC_THREADS)
    gemm_tf32_64x64(const float* __restrict__ A, const float* __restrict__ B,
                    const float* __restrict__ bias, float* __restrict__ C, float* __restrict__ ws,
                    u32 M, u32 N, u32 K, u32 trans_a, u32 trans_b, float alpha, float beta,
                    u32 stride_a, u32 stride_b, u32 stride_c, u32 epilogue, u32 splits) {
    constexpr int A_LD = TC_BM * TC_BK / TC_THREADS, B_LD = TC_BK * TC_BN / TC_THREADS;
    __shared__ __align__(16) u32 As[2][TC_BM][TC_BK + 4];
    __shared__ __align__(16) u32 Bs[2][TC_BK][TC_BN + 8];

    const u32 tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const u32 wm = warp >> 1, wn = warp & 1, g = lane >> 2, t4 = lane & 3;
    const u32 z = blockIdx.z, batch = z / splits, split = z - batch * splits;
    const u32 row0 = blockIdx.y * TC_BM, col0 = blockIdx.x * TC_BN;
    u32 k_begin, k_end;
    split_range(K, splits, split, TC_BK, &k_begin, &k_end);
    A += (size_t)batch * stride_a;
    B += (size_t)batch * stride_b;

    float ra[A_LD], rb[B_LD];
    auto a_slot = [&](int l, u32& r, u32& kk) {
        const u32 e = tid + l * TC_THREADS;
        if (trans_a) { r = e % TC_BM; kk = e / TC_BM; } else { kk = e % TC_BK; r = e / TC_BK; }
    };
    auto b_slot = [&](int l, u32& kk, u32& c) {
        const u32 e = tid + l * TC_THREADS;
        if (trans_b) { kk = e % TC_BK; c = e / TC_BK; } else { c = e % TC_BN; kk = e / TC_BN; }
    };
    auto load = [&](u32 k0) {
#pragma unroll
        for (int l = 0; l < A_LD; ++l) {
            u32 r, kk;
            a_slot(l, r, kk);
            const u32 gr = row0 + r, gk = k0 + kk;
            ra[l] = (gr < M && gk < k_end) ? (trans_a ? A[gk * M + gr] : A[gr * K + gk]) : 0.0f;
        }
#pragma unroll
        for (int l = 0; l < B_LD; ++l) {
            u32 kk, c;
            b_slot(l, kk, c);
            const u32 gc = col0 + c, gk = k0 + kk;
            rb[l] = (gc < N && gk < k_end) ? (trans_b ? B[gc * K + gk] : B[gk * N + gc]) : 0.0f;
        }
    };
    auto store = [&](u32 buf) {
#pragma unroll
        for (int l = 0; l < A_LD; ++l) {
            u32 r, kk;
            a_slot(l, r, kk);
            As[buf][r][kk] = to_tf32(ra[l]);
        }
#pragma unroll
        for (int l = 0; l < B_LD; ++l) {
            u32 kk, c;
            b_slot(l, kk, c);
            Bs[buf][kk][c] = to_tf32(rb[l]);
        }
    };

    float acc[2][4][4];
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q) acc[mi][ni][q] = 0.0f;

    const u32 tiles = ceil_div(k_end - k_begin, TC_BK);
    if (tiles > 0) {
        load(k_begin);
        store(0);
    }
    __syncthreads();
    for (u32 t = 0; t < tiles; ++t) {
        const u32 buf = t & 1;
        if (t + 1 < tiles) load(k_begin + (t + 1) * TC_BK);
#pragma unroll
        for (int ks = 0; ks < TC_BK; ks += 8) {
            u32 a[2][4], b[4][2];
#pragma unroll
            for (int mi = 0; mi < 2; ++mi) {
                const u32 rb0 = wm * 32 + mi * 16 + g;
                a[mi][0] = As[buf][rb0][ks + t4];
                a[mi][1] = As[buf][rb0 + 8][ks + t4];
                a[mi][2] = As[buf][rb0][ks + t4 + 4];
                a[mi][3] = As[buf][rb0 + 8][ks + t4 + 4];
            }
#pragma unroll
            for (int ni = 0; ni < 4; ++ni) {
                const u32 cb = wn * 32 + ni * 8 + g;
                b[ni][0] = Bs[buf][ks + t4][cb];
                b[ni][1] = Bs[buf][ks + t4 + 4][cb];
            }
#pragma unroll
            for (int mi = 0; mi < 2; ++mi)
#pragma unroll
                for (int ni = 0; ni < 4; ++ni) mma_tf32(acc[mi][ni], a[mi], b[ni]);
        }
        if (t + 1 < tiles) store(buf ^ 1);
        __syncthreads();
    }

    const bool partial = splits > 1;
    float* out = partial ? ws + (size_t)z * M * N : C + (size_t)batch * stride_c;
#pragma unroll
    for (int mi = 0; mi < 2; ++mi)
#pragma unroll
        for (int ni = 0; ni < 4; ++ni)
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                // Accumulator q of an m16n8 tile: row g (+8 for q >= 2), column 2t (+1 for odd q).
                const u32 r = row0 + wm * 32 + mi * 16 + g + (q >> 1) * 8;
                const u32 c = col0 + wn * 32 + ni * 8 + t4 * 2 + (q & 1);
                if (r >= M || c >= N) continue;
                const u32 o = r * N + c;
                const float v = alpha * acc[mi][ni][q];
                out[o] = partial ? v : gemm_finish(v, out + o, beta, bias, c, epilogue);
            }
}

// C[b] = Σ_s ws[b, s] (s in order) + beta · C[b], then the epilogue, for every element of the
// `batch` outputs of M×N. ws is [batch, splits, M, N] as the GEMM kernels write it.
extern "C" __global__ void gemm_splitk_reduce(const float* __restrict__ ws,
                                              const float* __restrict__ bias, float* __restrict__ C,
                                              u32 M, u32 N, u32 batch, u32 splits, float beta,
                                              u32 stride_c, u32 epilogue) {
    const u32 mn = M * N;
    GRID_STRIDE(i, batch * mn) {
        const u32 b = i / mn, o = i - b * mn;
        const float* p = ws + (size_t)b * splits * mn + o;
        float v = 0.0f;
        for (u32 s = 0; s < splits; ++s) v += p[(size_t)s * mn];
        float* c = C + (size_t)b * stride_c + o;
        *c = gemm_finish(v, c, beta, bias, o % N, epilogue);
    }
}

// db[j] (+)= Σ_i dy[i, j]. Grid (ceil(cols / 32), chunks), 256 threads: block (x, y) owns
// columns 32x .. 32x + 32 and the y-th of `chunks` equal runs of rows; warp w adds rows w,
// w + 8, … of the run for its 32 columns (one coalesced 128-byte read per row), the eight warp
// sums are added in warp order into partials[y, j], and the last block adds those over y in
// order. partials holds chunks × cols floats.
extern "C" __global__ void __launch_bounds__(256)
    bias_grad(const float* __restrict__ dy, float* __restrict__ db, float* __restrict__ partials,
              u32* __restrict__ ticket, u32 rows, u32 cols, u32 accumulate) {
    __shared__ float part[8][33];
    const u32 lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const u32 col = blockIdx.x * 32 + lane;
    const u32 chunk = ceil_div(rows, gridDim.y);
    const u32 r_begin = min(rows, blockIdx.y * chunk), r_end = min(rows, r_begin + chunk);
    float s = 0.0f;
    if (col < cols)
        for (u32 r = r_begin + warp; r < r_end; r += 8) s += dy[r * cols + col];
    part[warp][lane] = s;
    __syncthreads();
    if (warp == 0 && col < cols) {
        float t = part[0][lane];
#pragma unroll
        for (int w = 1; w < 8; ++w) t += part[w][lane];
        partials[blockIdx.y * cols + col] = t;
    }
    if (!grid_last_block(ticket)) return;
    for (u32 j = threadIdx.x; j < cols; j += blockDim.x) {
        float t = 0.0f;
        for (u32 y = 0; y < gridDim.y; ++y) t += __ldcg(partials + y * cols + j);
        db[j] = accumulate ? db[j] + t : t;
    }
}
