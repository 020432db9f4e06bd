// memory.cu: the memory family of the kernel contract (src/backend/mod.rs, "memory"):
// fill, copy_cols, gather_rows, scatter_rows, and copy_words (a dtype-agnostic copy for when a
// device-to-device memcpy is not wanted, e.g. inside a captured graph). alloc, upload, download
// and plain copies are driver calls (alloc_zeros, htod, dtoh, memcpy_dtod), not kernels.
// Bandwidth-bound: one thread per element, grid-stride, consecutive threads on consecutive
// addresses.
#include "common.cuh"

// dst[i] = value for i < n.
extern "C" __global__ void fill(float* __restrict__ dst, u32 n, float value) {
    GRID_STRIDE(i, n) dst[i] = value;
}

// dst[i] = src[i] for i < n, 32-bit words of any dtype (offsets are applied to the pointers by
// the caller).
extern "C" __global__ void copy_words(const u32* __restrict__ src, u32* __restrict__ dst, u32 n) {
    GRID_STRIDE(i, n) dst[i] = src[i];
}

// dst[r, dst_offset + c] (+)= src[r, src_offset + c] for r < rows, c < width (CopyCols).
// src and dst are distinct buffers (the contract borrows them separately).
extern "C" __global__ void copy_cols(const float* __restrict__ src, float* __restrict__ dst,
                                     u32 rows, u32 width, u32 src_stride, u32 src_offset,
                                     u32 dst_stride, u32 dst_offset, u32 accumulate) {
    GRID_STRIDE(i, rows * width) {
        const u32 r = i / width, c = i - r * width;
        const float v = src[r * src_stride + src_offset + c];
        float* d = dst + r * dst_stride + dst_offset + c;
        *d = accumulate ? *d + v : v;
    }
}

// dst[i, :] = src[idx[i], :] for n = idx_len · row_len elements. An index past `table_rows`
// (src's row count) gives a row of 0: a kernel cannot return an error (the CPU backend reports
// it), and reading past the buffer would be worse.
extern "C" __global__ void gather_rows(const float* __restrict__ src, const u32* __restrict__ idx,
                                       float* __restrict__ dst, u32 n, u32 row_len,
                                       u32 table_rows) {
    GRID_STRIDE(i, n) {
        const u32 q = i / row_len;
        const u32 row = idx[q];
        dst[i] = row < table_rows ? src[row * row_len + (i - q * row_len)] : 0.0f;
    }
}

// dst[idx[i], :] = src[i, :] for n = idx_len · row_len elements; indices are distinct (the
// contract), so no two threads write one element. An index past `table_rows` (dst's row count)
// is skipped.
extern "C" __global__ void scatter_rows(const float* __restrict__ src, const u32* __restrict__ idx,
                                        float* __restrict__ dst, u32 n, u32 row_len,
                                        u32 table_rows) {
    GRID_STRIDE(i, n) {
        const u32 q = i / row_len;
        const u32 row = idx[q];
        if (row < table_rows) dst[row * row_len + (i - q * row_len)] = src[i];
    }
}
