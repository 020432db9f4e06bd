// Host stand-ins for cvt.rna.tf32.f32 and mma.sync.m16n8k8 (tf32), following the PTX ISA
// fragment layouts, so the kernel's fragment indexing is what gets tested.
inline u32 to_tf32(float x) {
    u32 b; std::memcpy(&b, &x, 4);
    if ((b & 0x7f800000u) != 0x7f800000u) b = (b + 0x1000u) & ~0x1fffu;  // round half away
    else b &= ~0x1fffu;
    return b;
}
inline float tf(u32 b) { float f; std::memcpy(&f, &b, 4); return f; }
inline u32 g_fa[32][32][4], g_fb[32][32][2];
inline void mma_tf32(float (&d)[4], const u32 (&a)[4], const u32 (&b)[2]) {
    const unsigned w = threadIdx.x / 32, l = threadIdx.x % 32;
    for (int i = 0; i < 4; ++i) g_fa[w][l][i] = a[i];
    for (int i = 0; i < 2; ++i) g_fb[w][l][i] = b[i];
    g_warp_bar[w]->arrive_and_wait();
    float A[16][8], B[8][8];
    for (int L = 0; L < 32; ++L) {
        int g = L >> 2, t = L & 3;
        A[g][t] = tf(g_fa[w][L][0]); A[g + 8][t] = tf(g_fa[w][L][1]);
        A[g][t + 4] = tf(g_fa[w][L][2]); A[g + 8][t + 4] = tf(g_fa[w][L][3]);
        B[t][g] = tf(g_fb[w][L][0]); B[t + 4][g] = tf(g_fb[w][L][1]);
    }
    g_warp_bar[w]->arrive_and_wait();
    int g = l >> 2, t = l & 3;
    int rr[4] = {g, g, g + 8, g + 8}, cc[4] = {2 * t, 2 * t + 1, 2 * t, 2 * t + 1};
    for (int q = 0; q < 4; ++q) {
        double s = d[q];
        for (int k = 0; k < 8; ++k) s += (double)A[rr[q]][k] * B[k][cc[q]];
        d[q] = (float)s;
    }
}
