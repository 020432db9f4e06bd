// elementwise.cu: the elementwise family of the kernel contract (src/backend/mod.rs):
// add, scale, axpy, relu_fwd, relu_bwd. One thread per element, grid-stride; bandwidth-bound,
// so nothing is gained from fusing more than the contract asks.
#include "common.cuh"

// out = a + b.
extern "C" __global__ void add(const float* __restrict__ a, const float* __restrict__ b,
                               float* __restrict__ out, u32 n) {
    GRID_STRIDE(i, n) out[i] = a[i] + b[i];
}

// out = alpha · x.
extern "C" __global__ void scale(const float* __restrict__ x, float* __restrict__ out, u32 n,
                                 float alpha) {
    GRID_STRIDE(i, n) out[i] = alpha * x[i];
}

// y += alpha · x. Written as a multiply then an add (no fused multiply-add), as the CPU does.
extern "C" __global__ void axpy(const float* __restrict__ x, float* __restrict__ y, u32 n,
                                float alpha) {
    GRID_STRIDE(i, n) y[i] = __fadd_rn(y[i], __fmul_rn(alpha, x[i]));
}

// out = max(x, 0), as a select so that NaN stays NaN and a diverging run shows in the loss.
extern "C" __global__ void relu_fwd(const float* __restrict__ x, float* __restrict__ out, u32 n) {
    GRID_STRIDE(i, n) {
        const float v = x[i];
        out[i] = v < 0.0f ? 0.0f : v;
    }
}

// dx (+)= dy · [y > 0], with y the ReLU's output.
extern "C" __global__ void relu_bwd(const float* __restrict__ y, const float* __restrict__ dy,
                                    float* __restrict__ dx, u32 n, u32 accumulate) {
    GRID_STRIDE(i, n) {
        const float g = y[i] > 0.0f ? dy[i] : 0.0f;
        dx[i] = accumulate ? dx[i] + g : g;
    }
}
