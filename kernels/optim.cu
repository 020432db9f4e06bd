// optim.cu: the optimiser family of the kernel contract (src/backend/mod.rs): sum_squares (the
// squared global gradient norm, accumulated on the device over every gradient buffer) and
// adamw_step (bias-corrected AdamW, decoupled weight decay, optional clipping whose scale is
// read from that device scalar, so clipping needs no read-back).
#include "common.cuh"

// out[0] (+)= Σ x². Each square is rounded to f32 and summed in f64, as on the CPU: block b sums
// its chunk, the last block adds the block sums in order. partials: gridDim.x doubles.
extern "C" __global__ void __launch_bounds__(256)
    sum_squares(const float* __restrict__ x, float* __restrict__ out,
                double* __restrict__ partials, u32* __restrict__ ticket, u32 n, u32 accumulate) {
    __shared__ double scratch[32];
    const u32 chunk = reduction_chunk(n);
    const u32 begin = min(n, blockIdx.x * chunk), end = min(n, begin + chunk);
    double acc = 0.0;
    for (u32 i = begin + threadIdx.x; i < end; i += blockDim.x) {
        const float v = x[i];
        acc += (double)(v * v);
    }
    double total;
    if (grid_sum_last(block_sum(acc, scratch), partials, ticket, &total, scratch) &&
        threadIdx.x == 0)
        out[0] = (float)((accumulate ? (double)out[0] : 0.0) + total);
}

// One AdamW step over n parameters, PyTorch's order:
//   g ← g · clip, m ← β1 m + (1 - β1) g, v ← β2 v + (1 - β2) g²,
//   p ← p · decay - lr_hat · m / (sqrt(v) · inv_sqrt_bc2 + eps).
// The per-call scalars come from the host, computed as the CPU does (bias corrections in f64):
// lr_hat = lr / (1 - β1^t), inv_sqrt_bc2 = 1 / sqrt(1 - β2^t), decay = 1 - lr · wd.
// clip = min(1, max_norm / sqrt(norm_sq[0])) when norm_sq is not null (a zero or NaN norm leaves
// the gradient alone). Round-to-nearest intrinsics keep the CPU's rounding (no FMA), so a step
// matches the CPU bit for bit.
extern "C" __global__ void adamw_step(float* __restrict__ param, const float* __restrict__ grad,
                                      float* __restrict__ m, float* __restrict__ v,
                                      const float* __restrict__ norm_sq, u32 n, float lr_hat,
                                      float inv_sqrt_bc2, float decay, float beta1, float beta2,
                                      float eps, float max_norm) {
    float clip = 1.0f;
    if (norm_sq) {
        const float norm = sqrtf(norm_sq[0]);
        if (norm > max_norm) clip = max_norm / norm;
    }
    const float c1 = 1.0f - beta1, c2 = 1.0f - beta2;
    GRID_STRIDE(i, n) {
        const float g = __fmul_rn(grad[i], clip);
        const float mi = __fadd_rn(__fmul_rn(beta1, m[i]), __fmul_rn(c1, g));
        const float vi = __fadd_rn(__fmul_rn(beta2, v[i]), __fmul_rn(c2, __fmul_rn(g, g)));
        const float denom = __fadd_rn(__fmul_rn(sqrtf(vi), inv_sqrt_bc2), eps);
        param[i] = __fsub_rn(__fmul_rn(param[i], decay), __fdiv_rn(__fmul_rn(lr_hat, mi), denom));
        m[i] = mi;
        v[i] = vi;
    }
}
