// Precise products at T = 256 rows of input (a decode step of 256 sequences): cuBLAS's two passes (hi,
// then lo with beta 1, as gemm_k ran them) against one pass over [hi; lo] stacked (2T rows) plus an
// add of the halves, on the 0.8B model's shapes, each the best of 7 rounds of 4, and the ms a step
// (times the product's count in one step). Run on a GPU machine:
//   nvcc -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -o precise_gemm bench/micro/precise_gemm.cu -lcublas
//   ./precise_gemm            (docs/performance.md, 19:58 UTC section)
#include <cstdio>
#include <cstdlib>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define CK(x) do { auto e_ = (x); if ((int)e_ != 0) { printf("%s: %d\n", #x, (int)e_); exit(1); } } while (0)

__global__ void k_add(float4 *y, const float4 *a, const float4 *b, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        float4 x = a[i], z = b[i];
        y[i] = make_float4(x.x + z.x, x.y + z.y, x.z + z.z, x.w + z.w);
    }
}

int main() {
    const int T = 256;
    struct { const char *name; int rows, cols, per_step; } sh[] = {
        {"qkv 6144x1024", 6144, 1024, 18}, {"z 2048x1024", 2048, 1024, 18}, {"b 16x1024", 16, 1024, 36},
        {"qkvzba 8224x1024", 8224, 1024, 18}, {"gdn out 1024x2048", 1024, 2048, 24}, {"gate 3584x1024", 3584, 1024, 48},
        {"gate+up 7168x1024", 7168, 1024, 24}, {"down 1024x3584", 1024, 3584, 24}, {"attn q 4096x1024", 4096, 1024, 6},
        {"attn k 512x1024", 512, 1024, 12}, {"lm_head 248320x1024", 248320, 1024, 1}};
    cublasHandle_t h;
    CK(cublasCreate(&h));
    void *W, *X;
    float *Y, *Y2;
    CK(cudaMalloc(&W, (size_t)248320 * 1024 * 2)); /* the largest product: the lm_head */
    CK(cudaMalloc(&X, (size_t)2 * T * 3584 * 2));
    CK(cudaMalloc(&Y, (size_t)248320 * T * 4));
    CK(cudaMalloc(&Y2, (size_t)248320 * 2 * T * 4));
    cudaMemset(W, 0, (size_t)248320 * 1024 * 2);
    cudaMemset(X, 0, (size_t)2 * T * 3584 * 2);
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    const float one = 1, zero = 0;
    for (auto &s : sh) {
        float best[2] = {1e9, 1e9};
        void *lo = (char *)X + (size_t)T * s.cols * 2;
        for (int mode = 0; mode < 2; mode++)
            for (int it = 0; it < 8; it++) {
                cudaEventRecord(e0);
                for (int rep = 0; rep < 4; rep++) {
                    if (mode == 0) {
                        CK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.rows, T, s.cols, &one, W, CUDA_R_16BF, s.cols, X,
                                        CUDA_R_16BF, s.cols, &zero, Y, CUDA_R_32F, s.rows, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
                        CK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.rows, T, s.cols, &one, W, CUDA_R_16BF, s.cols, lo,
                                        CUDA_R_16BF, s.cols, &one, Y, CUDA_R_32F, s.rows, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
                    } else {
                        CK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.rows, 2 * T, s.cols, &one, W, CUDA_R_16BF, s.cols,
                                        X, CUDA_R_16BF, s.cols, &zero, Y2, CUDA_R_32F, s.rows, CUBLAS_COMPUTE_32F,
                                        CUBLAS_GEMM_DEFAULT));
                        size_t n4 = (size_t)s.rows * T / 4;
                        k_add<<<264, 512>>>((float4 *)Y, (float4 *)Y2, (float4 *)(Y2 + (size_t)s.rows * T), n4);
                    }
                }
                cudaEventRecord(e1);
                CK(cudaEventSynchronize(e1));
                float ms;
                cudaEventElapsedTime(&ms, e0, e1);
                if (it && ms / 4 < best[mode]) best[mode] = ms / 4;
            }
        double fl = 2.0 * 2 * T * (double)s.rows * s.cols;
        printf("%-22s two passes %.4f ms (%.0f TF/s)  stacked+add %.4f ms (%.0f TF/s)  x%d a step: %.3f / %.3f ms\n", s.name,
               best[0], fl / best[0] / 1e9, best[1], fl / best[1] / 1e9, s.per_step, best[0] * s.per_step,
               best[1] * s.per_step);
    }
    return 0;
}
