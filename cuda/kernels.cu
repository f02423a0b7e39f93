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
