// flow.cu: the flow-matching family of the kernel contract (src/backend/mod.rs): fm_prepare
// (x0, x1, t → x_t and the target u) and fm_loss (masked MSE and its gradient, one launch).
// Products and sums use round-to-nearest intrinsics in the CPU's order, so nvcc does not fuse
// them into FMAs the CPU does not have: x_t, u and dpred match the CPU bit for bit.
#include "common.cuh"

// x_t = (1 - (1 - σ_min)·t)·x0 + t·x1, u = x1 - (1 - σ_min)·x0, t = t[i / per_sample].
extern "C" __global__ void fm_prepare(const float* __restrict__ x0, const float* __restrict__ x1,
                                      const float* __restrict__ t, float* __restrict__ xt,
                                      float* __restrict__ u, u32 n, u32 per_sample,
                                      float sigma_min) {
    const float keep = 1.0f - sigma_min;
    GRID_STRIDE(i, n) {
        const float ts = t[i / per_sample];
        const float a = __fsub_rn(1.0f, __fmul_rn(keep, ts));
        const float v0 = x0[i], v1 = x1[i];
        xt[i] = __fadd_rn(__fmul_rn(a, v0), __fmul_rn(ts, v1));
        u[i] = __fsub_rn(v1, __fmul_rn(keep, v0));
    }
}

// loss[0] = Σ m (pred - target)² / max(Σ m, 1) and dpred = 2 m (pred - target) / max(Σ m, 1),
// in one launch (no mask: m = 1). The gradient needs the mask's total before any element is
// written, and there is no grid-wide barrier, so every block first adds the whole mask itself
// (the same f64 sum in the same fixed order in every block, mostly from L2: the mask is small
// next to the three streams); then each block writes dpred for its chunk and sums its
// m (pred - target)² terms (formed in f32 as on the CPU, summed in f64), and the last block adds
// the block sums in order (see grid_sum_last). partials: gridDim.x doubles.
extern "C" __global__ void __launch_bounds__(256)
    fm_loss(const float* __restrict__ pred, const float* __restrict__ target,
            const float* __restrict__ mask, float* __restrict__ loss, float* __restrict__ dpred,
            double* __restrict__ partials, u32* __restrict__ ticket, u32 n) {
    __shared__ double scratch[32];
    double weight = (double)n;
    if (mask) {
        double s = 0.0;
        for (u32 i = threadIdx.x; i < n; i += blockDim.x) s += (double)mask[i];
        weight = block_sum(s, scratch);
    }
    const double inv = 1.0 / fmax(weight, 1.0);  // an all-padding batch: loss 0, no NaN
    const float grad_scale = (float)(2.0 * inv);
    const u32 chunk = reduction_chunk(n);
    const u32 begin = min(n, blockIdx.x * chunk), end = min(n, begin + chunk);
    double acc = 0.0;
    for (u32 i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float d = __fsub_rn(pred[i], target[i]);
        if (mask) {
            const float m = mask[i];
            dpred[i] = __fmul_rn(__fmul_rn(grad_scale, m), d);
            acc += (double)__fmul_rn(__fmul_rn(m, d), d);
        } else {
            dpred[i] = __fmul_rn(grad_scale, d);
            acc += (double)__fmul_rn(d, d);
        }
    }
    double total;
    if (grid_sum_last(block_sum(acc, scratch), partials, ticket, &total, scratch) &&
        threadIdx.x == 0)
        loss[0] = (float)(total * inv);
}
