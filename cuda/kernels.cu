// Device kernels of package cuda. NVRTC compiles this file to PTX
// (go generate ./cuda, see gpu.go); kernels_ptx.go embeds the result so a
// binary needs only the driver and cuBLAS at run time. Integer arguments are
// long long because the Go side passes 8-byte values.

#define BLOCK 256

// blockMax returns the maximum of v over the block to every thread.
__device__ float blockMax(float v) {
    __shared__ float sh[32];
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffff, v, o));
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (blockDim.x >> 5) ? sh[lane] : __int_as_float(0xff800000);
        for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_down_sync(0xffffffff, v, o));
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

// blockSum returns the sum of v over the block to every thread.
__device__ float blockSum(float v) {
    __shared__ float sh[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) sh[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < (blockDim.x >> 5) ? sh[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffff, v, o);
        if (lane == 0) sh[0] = v;
    }
    __syncthreads();
    v = sh[0];
    __syncthreads();
    return v;
}

// rowMaxScore: out[i] = 1 - max_j c[i*m + j], one block of BLOCK threads per row.
extern "C" __global__ void rowMaxScore(const float* c, long long n, long long m, float* out) {
    long long i = blockIdx.x;
    if (i >= n) return;
    const float* row = c + i * m;
    float mx = __int_as_float(0xff800000);
    for (long long j = threadIdx.x; j < m; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = blockMax(mx);
    if (threadIdx.x == 0) out[i] = 1.0f - mx;
}

// buildZ writes z[i] = [x_i^2 | x_i | 1] (rows of 2d+1): the trailing one
// makes the statistics GEMM return the responsibility sums as its last column.
extern "C" __global__ void buildZ(const float* x, long long n, long long d, float* z) {
    long long w = 2 * d + 1;
    long long total = n * d;
    for (long long t = (long long)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (long long)gridDim.x * blockDim.x) {
        long long i = t / d, j = t - i * d;
        float v = x[t];
        z[i * w + j] = v * v;
        z[i * w + d + j] = v;
        if (j == 0) z[i * w + 2 * d] = 1.0f;
    }
}

// responsibilities: row i of l (k log-density products) plus the constants c
// becomes its responsibilities by log-sum-exp; ll[i] = max + log(sum).
// One block of BLOCK threads per row.
extern "C" __global__ void responsibilities(float* l, const float* c, long long n, long long k, float* ll) {
    long long i = blockIdx.x;
    if (i >= n) return;
    float* row = l + i * k;
    float mx = __int_as_float(0xff800000);
    for (long long j = threadIdx.x; j < k; j += blockDim.x) {
        float v = row[j] + c[j];
        row[j] = v;
        mx = fmaxf(mx, v);
    }
    mx = blockMax(mx);
    float s = 0.0f;
    for (long long j = threadIdx.x; j < k; j += blockDim.x) {
        float e = expf(row[j] - mx);
        row[j] = e;
        s += e;
    }
    s = blockSum(s);
    float inv = 1.0f / s;
    for (long long j = threadIdx.x; j < k; j += blockDim.x) row[j] *= inv;
    if (threadIdx.x == 0) ll[i] = mx + logf(s);
}

// ---------------------------------------------------------------------------
// DINOv2 forward pass (vit.go). Activations that feed a GEMM are stored as T:
// float (fp32, tf32) or bf16 (the upper 16 bits of a float, rounded to
// nearest even); the residual stream, GEMM outputs and softmax inputs stay
// float. Each kernel exists as NAME_f32 and NAME_bf16.

typedef unsigned short bf16_t;

__device__ __forceinline__ float ld(const float* p) { return *p; }
__device__ __forceinline__ float ld(const bf16_t* p) { return __uint_as_float(((unsigned int)*p) << 16); }
__device__ __forceinline__ void st(float* p, float v) { *p = v; }
__device__ __forceinline__ void st(bf16_t* p, float v) {
    unsigned int u = __float_as_uint(v);
    if ((u & 0x7fffffffu) > 0x7f800000u) { *p = (bf16_t)0x7fc0; return; } // NaN stays NaN
    u += 0x7fffu + ((u >> 16) & 1u);
    *p = (bf16_t)(u >> 16);
}

__device__ __forceinline__ float warpSum(float v) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

// GRID_STRIDE loops i over [0, total) in 32-bit arithmetic: 64-bit division
// is emulated and slow, and the host refuses buffers of 2^32 elements or more
// (Embedder.reserve), so every index below fits.
typedef unsigned int u32;
#define GRID_STRIDE(i, total) \
    for (u32 i = blockIdx.x * blockDim.x + threadIdx.x; i < (u32)(total); i += gridDim.x * blockDim.x)

// im2col: x [b,3,h,w] -> cols [b*gh*gw, 3*p*p], column c*p*p + ky*p + kx, the
// order of the Conv weight [D,3,p,p] flattened.
template <typename T>
__device__ void im2colT(const float* x, long long b, long long h, long long w, long long p, T* cols) {
    u32 P = p, W = w, H = h, gw = W / P, np = (H / P) * gw, k = 3 * P * P;
    GRID_STRIDE(i, b * np * k) {
        u32 row = i / k, col = i - row * k;
        u32 n = row / np, patch = row - n * np;
        u32 py = patch / gw, px = patch - py * gw;
        u32 c = col / (P * P), r = col - c * P * P;
        u32 ky = r / P, kx = r - ky * P;
        st(cols + i, x[((n * 3 + c) * h + py * p + ky) * w + px * p + kx]);
    }
}

// assemble builds the token sequence h [b, t, d], t = 1 + r + np: CLS plus its
// position, the r registers, then the patch projections plus the Conv bias and
// the resampled position grid.
__device__ void assembleF(const float* patches, const float* convBias, const float* cls, const float* clsPos,
                          const float* regs, const float* pos, long long b, long long np, long long r, long long d, float* out) {
    u32 D = d, R = r, NP = np, t = 1 + R + NP;
    GRID_STRIDE(i, b * t * d) {
        u32 rowi = i / D, e = i - rowi * D, n = rowi / t, tok = rowi - n * t;
        float v;
        if (tok == 0) v = cls[e] + clsPos[e];
        else if (tok <= R) v = regs[(tok - 1) * D + e];
        else {
            u32 q = tok - 1 - R;
            v = patches[(n * NP + q) * D + e] + convBias[e] + pos[q * D + e];
        }
        out[i] = v;
    }
}

// layerNorm: one warp per row of x [rows, d]; y = (x - mean) / sqrt(var + eps) * g + beta.
template <typename T>
__device__ void layerNormT(const float* x, const float* g, const float* beta, long long rows, long long d, float eps, T* y) {
    long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const float* xr = x + row * d;
    float s = 0.0f;
    for (long long i = lane; i < d; i += 32) s += xr[i];
    float mean = warpSum(s) / (float)d;
    float v = 0.0f;
    for (long long i = lane; i < d; i += 32) { float c = xr[i] - mean; v += c * c; }
    float inv = rsqrtf(warpSum(v) / (float)d + eps);
    T* yr = y + row * d;
    for (long long i = lane; i < d; i += 32) st(yr + i, (xr[i] - mean) * inv * g[i] + beta[i]);
}

// splitHeads: qkv [b*t, 3d] plus its bias -> q, k, v [b, heads, t, hd], one
// after another in out.
template <typename T>
__device__ void splitHeadsT(const float* qkv, const float* bias, long long b, long long t, long long heads, long long hd, T* out) {
    u32 HD = hd, HEADS = heads, TT = t, D = HEADS * HD, N = b * TT;
    GRID_STRIDE(i, N * 3 * D) {
        u32 row = i / (3 * D), c = i - row * 3 * D;
        u32 which = c / D, within = c - which * D;
        u32 head = within / HD, e = within - head * HD;
        u32 bi = row / TT, tok = row - bi * TT;
        st(out + which * N * D + ((bi * HEADS + head) * TT + tok) * HD + e, qkv[i] + bias[c]);
    }
}

__device__ __forceinline__ float warpMax(float v) {
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// SOFTMAX_PER is the most elements of a row each lane of softmaxWarp holds in
// registers: rows up to 32 * SOFTMAX_PER = 2048 (1029 tokens at 448 px).
#define SOFTMAX_PER 64

// softmaxWarp: one warp per row of s [rows, t] (already scaled) into p, the
// row read once into registers. p may be s (bf16 scores, in place).
template <typename S, typename T>
__device__ void softmaxWarpT(const S* s, long long rows, long long t, T* p) {
    long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    const S* sr = s + row * t;
    float v[SOFTMAX_PER];
    float mx = __int_as_float(0xff800000);
#pragma unroll
    for (int i = 0; i < SOFTMAX_PER; i++) {
        long long j = lane + 32 * i;
        v[i] = j < t ? ld(sr + j) : __int_as_float(0xff800000);
        mx = fmaxf(mx, v[i]);
    }
    mx = warpMax(mx);
    float sum = 0.0f;
#pragma unroll
    for (int i = 0; i < SOFTMAX_PER; i++) {
        long long j = lane + 32 * i;
        v[i] = j < t ? expf(v[i] - mx) : 0.0f;
        sum += v[i];
    }
    float inv = 1.0f / warpSum(sum);
    T* pr = p + row * t;
#pragma unroll
    for (int i = 0; i < SOFTMAX_PER; i++) {
        long long j = lane + 32 * i;
        if (j < t) st(pr + j, v[i] * inv);
    }
}

// softmax: one block per row, for rows longer than softmaxWarp holds.
template <typename S, typename T>
__device__ void softmaxT(const S* s, long long rows, long long t, T* p) {
    long long row = blockIdx.x;
    if (row >= rows) return;
    const S* sr = s + row * t;
    float mx = __int_as_float(0xff800000);
    for (long long j = threadIdx.x; j < t; j += blockDim.x) mx = fmaxf(mx, ld(sr + j));
    mx = blockMax(mx);
    float sum = 0.0f;
    for (long long j = threadIdx.x; j < t; j += blockDim.x) sum += expf(ld(sr + j) - mx);
    float inv = 1.0f / blockSum(sum);
    __syncthreads(); // every read of the row is done before p (maybe s) is written
    T* pr = p + row * t;
    for (long long j = threadIdx.x; j < t; j += blockDim.x) st(pr + j, expf(ld(sr + j) - mx) * inv);
}

// mergeHeads: ctx [b, heads, t, hd] -> out [b, t, heads*hd].
template <typename T>
__device__ void mergeHeadsT(const float* ctx, long long b, long long t, long long heads, long long hd, T* out) {
    u32 HD = hd, HEADS = heads, TT = t, D = HEADS * HD;
    GRID_STRIDE(i, b * t * D) {
        u32 rowi = i / D, c = i - rowi * D, n = rowi / TT, tok = rowi - n * TT;
        u32 head = c / HD, e = c - head * HD;
        st(out + i, ctx[((n * HEADS + head) * TT + tok) * HD + e]);
    }
}

// biasGelu: y = gelu(x + bias) (exact, erf), x [rows, m].
template <typename T>
__device__ void biasGeluT(const float* x, const float* bias, long long rows, long long m, T* y) {
    GRID_STRIDE(i, rows * m) {
        float v = x[i] + bias[i % (u32)m];
        st(y + i, 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)));
    }
}

extern "C" __global__ void im2col_f32(const float* x, long long b, long long h, long long w, long long p, float* cols) { im2colT(x, b, h, w, p, cols); }
extern "C" __global__ void im2col_bf16(const float* x, long long b, long long h, long long w, long long p, bf16_t* cols) { im2colT(x, b, h, w, p, cols); }
extern "C" __global__ void layerNorm_f32(const float* x, const float* g, const float* beta, long long rows, long long d, float eps, float* y) { layerNormT(x, g, beta, rows, d, eps, y); }
extern "C" __global__ void layerNorm_bf16(const float* x, const float* g, const float* beta, long long rows, long long d, float eps, bf16_t* y) { layerNormT(x, g, beta, rows, d, eps, y); }
extern "C" __global__ void splitHeads_f32(const float* qkv, const float* bias, long long b, long long t, long long heads, long long hd, float* out) { splitHeadsT(qkv, bias, b, t, heads, hd, out); }
extern "C" __global__ void splitHeads_bf16(const float* qkv, const float* bias, long long b, long long t, long long heads, long long hd, bf16_t* out) { splitHeadsT(qkv, bias, b, t, heads, hd, out); }
extern "C" __global__ void softmax_f32(const float* s, long long rows, long long t, float* p) { softmaxT(s, rows, t, p); }
extern "C" __global__ void softmax_bf16(const bf16_t* s, long long rows, long long t, bf16_t* p) { softmaxT(s, rows, t, p); }
extern "C" __global__ void softmaxWarp_f32(const float* s, long long rows, long long t, float* p) { softmaxWarpT(s, rows, t, p); }
extern "C" __global__ void softmaxWarp_bf16(const bf16_t* s, long long rows, long long t, bf16_t* p) { softmaxWarpT(s, rows, t, p); }
extern "C" __global__ void mergeHeads_f32(const float* ctx, long long b, long long t, long long heads, long long hd, float* out) { mergeHeadsT(ctx, b, t, heads, hd, out); }
extern "C" __global__ void mergeHeads_bf16(const float* ctx, long long b, long long t, long long heads, long long hd, bf16_t* out) { mergeHeadsT(ctx, b, t, heads, hd, out); }
extern "C" __global__ void biasGelu_f32(const float* x, const float* bias, long long rows, long long m, float* y) { biasGeluT(x, bias, rows, m, y); }
extern "C" __global__ void biasGelu_bf16(const float* x, const float* bias, long long rows, long long m, bf16_t* y) { biasGeluT(x, bias, rows, m, y); }

extern "C" __global__ void assemble(const float* patches, const float* convBias, const float* cls, const float* clsPos,
                                    const float* regs, const float* pos, long long b, long long np, long long r, long long d, float* out) {
    assembleF(patches, convBias, cls, clsPos, regs, pos, b, np, r, d, out);
}

// residual: h += ls * (y + bias), h and y [rows, d].
extern "C" __global__ void residual(float* h, const float* y, const float* bias, const float* ls, long long rows, long long d) {
    GRID_STRIDE(i, rows * d) {
        u32 e = i % (u32)d;
        h[i] += ls[e] * (y[i] + bias[e]);
    }
}

// patchTokens: the final LayerNorm of the patch rows of h [b, t, d] (t = 1 +
// r + np), each row then scaled to unit length, into out [b*np, d]. One warp
// per output row.
extern "C" __global__ void patchTokens(const float* h, const float* g, const float* beta, long long b, long long np,
                                       long long r, long long d, float eps, float* out) {
    long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= b * np) return;
    long long n = row / np, q = row - n * np;
    const float* xr = h + (n * (1 + r + np) + 1 + r + q) * d;
    float s = 0.0f;
    for (long long i = lane; i < d; i += 32) s += xr[i];
    float mean = warpSum(s) / (float)d;
    float v = 0.0f;
    for (long long i = lane; i < d; i += 32) { float c = xr[i] - mean; v += c * c; }
    float inv = rsqrtf(warpSum(v) / (float)d + eps);
    float ss = 0.0f;
    for (long long i = lane; i < d; i += 32) { float y = (xr[i] - mean) * inv * g[i] + beta[i]; ss += y * y; }
    ss = warpSum(ss);
    float scale = ss > 0.0f ? rsqrtf(ss) : 0.0f;
    float* yr = out + row * d;
    for (long long i = lane; i < d; i += 32) yr[i] = ((xr[i] - mean) * inv * g[i] + beta[i]) * scale;
}
