// Host references that add in the order a kernel documents, in the kernel's precision, so the
// emulator can compare bit for bit where the contract or the kernel's comment fixes that order
// (test.cpp, check_bits). Each mirrors one pattern of kernels/*.cu and names where it lives.
#pragma once
#include <array>
#include <vector>

// common.cuh, warp_sum: at each level lane l adds lane l ^ o's value to its own; lane 0's
// result (every lane holds the same bits).
template <class T> T butterfly_ref(std::array<T, 32> v) {
    for (int o = 16; o > 0; o >>= 1) {
        std::array<T, 32> w;
        for (int l = 0; l < 32; ++l) w[l] = v[l] + v[l ^ o];
        v = w;
    }
    return v[0];
}

// common.cuh, block_sum over a 256-thread block: the butterfly within each of the 8 warps, then
// the butterfly over the warp totals (lanes 8..31 hold 0).
inline double block_sum_ref(const std::vector<double>& per_thread) {
    std::array<double, 32> totals{};
    for (int w = 0; w < 8; ++w) {
        std::array<double, 32> lanes;
        for (int l = 0; l < 32; ++l) lanes[l] = per_thread[32 * w + l];
        totals[w] = butterfly_ref(lanes);
    }
    return butterfly_ref(totals);
}

// Thread t of a 256-thread block adds term(i) for i = begin + t, begin + t + 256, … < end, in
// f64 from 0, then block_sum: the loops of the scalar reductions.
template <class F> double block_strided_ref(u32 begin, u32 end, F term) {
    std::vector<double> acc(256, 0.0);
    for (u32 i = begin; i < end; ++i) acc[(i - begin) % 256] += term(i);
    return block_sum_ref(acc);
}

// common.cuh, reduction_chunk and grid_sum_last over G blocks of 256 threads: block b sums its
// chunk, the last block sums the block totals strided over its threads the same way.
template <class F> double grid_sum_ref(u32 n, u32 G, F term) {
    const u32 chunk = (((n + G - 1) / G) + 255) / 256 * 256;
    std::vector<double> partial(G);
    for (u32 b = 0; b < G; ++b) {
        const u32 begin = std::min(n, b * chunk), end = std::min(n, begin + chunk);
        partial[b] = block_strided_ref(begin, end, term);
    }
    return block_strided_ref(0, G, [&](u32 b) { return partial[b]; });
}

// matmul.cu, bias_grad with `chunks` runs of rows: warp w of run y adds rows w, w + 8, … of
// the run in f32, the 8 warp sums are added in warp order, the runs in order.
inline std::vector<float> bias_grad_ref(const std::vector<float>& dy, u32 rows, u32 cols, u32 chunks,
                                        const std::vector<float>& db, bool accumulate) {
    const u32 chunk = (rows + chunks - 1) / chunks;
    std::vector<float> out(cols);
    for (u32 j = 0; j < cols; ++j) {
        float t = 0.0f;
        for (u32 y = 0; y < chunks; ++y) {
            const u32 r0 = std::min(rows, y * chunk), r1 = std::min(rows, r0 + chunk);
            float run = 0.0f;
            for (u32 w = 0; w < 8; ++w) {
                float s = 0.0f;
                for (u32 r = r0 + w; r < r1; r += 8) s += dy[r * cols + j];
                run = w == 0 ? s : run + s;
            }
            t += run;
        }
        out[j] = accumulate ? db[j] + t : t;
    }
    return out;
}

// The contract's embedding_bwd (src/backend/mod.rs): each element starts from dtable
// (accumulate) or 0 and adds the rows of dout in order of i, one f32 add at a time.
inline std::vector<float> embedding_bwd_ref(const std::vector<float>& dout, const std::vector<u32>& ids,
                                            u32 dim, const std::vector<float>& dtable, bool accumulate) {
    const u32 rows = dtable.size() / dim;
    std::vector<float> out = accumulate ? dtable : std::vector<float>(dtable.size(), 0.0f);
    for (size_t q = 0; q < ids.size(); ++q)
        if (ids[q] < rows)
            for (u32 c = 0; c < dim; ++c) out[ids[q] * dim + c] += dout[q * dim + c];
    return out;
}

// embedding.cu, fourier_bwd over `chunks` runs of rows (accumulate off): z as fourier_phase
// forms it, the factor cos z · dsin − sin z · dcos in f32, then per run warp w adds
// x[r, i] · factor (an f32 product) over rows w, w + 8, … in f64, the 8 warp sums in warp order,
// the runs in order, and 2π last. sin and cos are the host's, as in the emulator's sincosf.
inline std::vector<float> fourier_bwd_ref(const std::vector<float>& x, const std::vector<float>& freqs,
                                          const std::vector<float>& dout, u32 rows, u32 in_dim, u32 half,
                                          u32 chunks) {
    std::vector<float> factor((size_t)rows * half);
    for (u32 r = 0; r < rows; ++r)
        for (u32 j = 0; j < half; ++j) {
            float dot = 0.0f;
            for (u32 i = 0; i < in_dim; ++i) dot += x[r * in_dim + i] * freqs[i * half + j];
            const float z = K_TAU * dot, s = sinf(z), c = cosf(z);
            const float* d = &dout[(size_t)r * 2 * half];
            factor[(size_t)r * half + j] = c * d[j] - s * d[half + j];
        }
    const u32 chunk = (rows + chunks - 1) / chunks;
    std::vector<float> out((size_t)in_dim * half);
    for (u32 i = 0; i < in_dim; ++i)
        for (u32 j = 0; j < half; ++j) {
            double t = 0.0;
            for (u32 b = 0; b < chunks; ++b) {
                const u32 r0 = std::min(rows, b * chunk), r1 = std::min(rows, r0 + chunk);
                double run = 0.0;
                for (u32 w = 0; w < 8; ++w) {
                    double s = 0.0;
                    for (u32 r = r0 + w; r < r1; r += 8) s += (double)(x[r * in_dim + i] * factor[(size_t)r * half + j]);
                    run = w == 0 ? s : run + s;
                }
                t += run;
            }
            out[(size_t)i * half + j] = (float)(t * 6.283185307179586);
        }
    return out;
}
