// cuBLAS's default choice against the other algorithms cuBLASLt offers for the products of a decode
// step of 256 sequences in the single-pass mode (BF16 weights and inputs, FP32 sums; the output FP32
// or BF16 as the step writes it), on the 0.8B model's shapes. Each candidate is timed as 20 launches
// captured in a CUDA graph (as the step replays them), best of 7 replays; printed: the default's us a
// product, the best candidate's, its tile and split-K, and the ms a step both ways (times the
// product's count in one step). Run on a GPU machine:
//   nvcc -O2 -std=c++17 -gencode arch=compute_90a,code=sm_90a -o lt_algos bench/micro/lt_algos.cu -lcublasLt -lcublas
//   ./lt_algos [T (256)]
#include <cstdio>
#include <cstdlib>
#include <cublasLt.h>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define CK(x) do { auto e_ = (x); if ((int)e_ != 0) { printf("%s: %d (line %d)\n", #x, (int)e_, __LINE__); exit(1); } } while (0)

__global__ void k_fill(__nv_bfloat16 *x, size_t n, unsigned seed) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        unsigned h = (unsigned)i * 2654435761u ^ seed;
        h ^= h >> 15, h *= 2246822519u, h ^= h >> 13;
        x[i] = __float2bfloat16_rn((float)(h & 0xffff) / 65536.0f - 0.5f);
    }
}

static cudaStream_t st;
template <class F> static float time_graph(F launch) {
    cudaGraph_t gr;
    cudaGraphExec_t ex;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeRelaxed));
    for (int i = 0; i < 20; i++) launch();
    CK(cudaStreamEndCapture(st, &gr));
    if (cudaGraphInstantiate(&ex, gr, 0) != cudaSuccess) { cudaGetLastError(); cudaGraphDestroy(gr); return -1; }
    cudaEvent_t a, b;
    cudaEventCreate(&a), cudaEventCreate(&b);
    float best = 1e30f;
    for (int r = 0; r < 8; r++) {
        cudaEventRecord(a, st);
        cudaGraphLaunch(ex, st);
        cudaEventRecord(b, st);
        cudaEventSynchronize(b);
        float ms;
        cudaEventElapsedTime(&ms, a, b);
        if (r && ms < best) best = ms;
    }
    cudaEventDestroy(a), cudaEventDestroy(b);
    cudaGraphExecDestroy(ex);
    cudaGraphDestroy(gr);
    if (cudaGetLastError() != cudaSuccess) return -1;
    return best * 1000.0f / 20.0f; /* us a product */
}

int main(int argc, char **argv) {
    const int T = argc > 1 ? atoi(argv[1]) : 256;
    struct { const char *name; int rows, cols, per_step, bf16_out; } sh[] = {
        {"qkvzba 8224x1024 f32", 8224, 1024, 18, 0}, {"gdn out 1024x2048 f32", 1024, 2048, 18, 0},
        {"gate+up 7168x1024 bf16", 7168, 1024, 24, 1}, {"down 1024x3584 f32", 1024, 3584, 24, 0},
        {"attn q+gate 4096x1024 f32", 4096, 1024, 6, 0}, {"attn k 512x1024 f32", 512, 1024, 12, 0}, {"attn o 1024x2048 f32", 1024, 2048, 6, 0},
        {"lm_head 248320x1024 bf16", 248320, 1024, 1, 1}};
    CK(cudaStreamCreate(&st));
    cublasHandle_t h;
    cublasLtHandle_t lt;
    CK(cublasCreate(&h));
    CK(cublasSetStream(h, st));
    CK(cublasLtCreate(&lt));
    const size_t wsb = 32u << 20;
    void *W, *X, *Y, *ws;
    CK(cudaMalloc(&W, (size_t)248320 * 1024 * 2));
    CK(cudaMalloc(&X, (size_t)T * 4096 * 2));
    CK(cudaMalloc(&Y, (size_t)T * 248320 * 4));
    CK(cudaMalloc(&ws, wsb));
    k_fill<<<1024, 256>>>((__nv_bfloat16 *)W, (size_t)248320 * 1024, 1);
    k_fill<<<1024, 256>>>((__nv_bfloat16 *)X, (size_t)T * 4096, 2);
    CK(cudaDeviceSynchronize());
    const float one = 1.0f, zero = 0.0f;
    double step_def = 0, step_best = 0;
    printf("T = %d\n%-28s %9s %9s  %-34s %s\n", T, "product", "default", "best", "best's tile / stages / split-K", "candidates (us)");
    for (auto &s : sh) {
        const cudaDataType_t ot = s.bf16_out ? CUDA_R_16BF : CUDA_R_32F;
        const float d = time_graph([&] {
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, s.rows, T, s.cols, &one, W, CUDA_R_16BF, s.cols, X, CUDA_R_16BF,
                         s.cols, &zero, Y, ot, s.rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        });
        cublasLtMatmulDesc_t op;
        CK(cublasLtMatmulDescCreate(&op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
        cublasOperation_t ta = CUBLAS_OP_T, tb = CUBLAS_OP_N;
        CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
        CK(cublasLtMatmulDescSetAttribute(op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
        cublasLtMatrixLayout_t A, B, C;
        CK(cublasLtMatrixLayoutCreate(&A, CUDA_R_16BF, s.cols, s.rows, s.cols));
        CK(cublasLtMatrixLayoutCreate(&B, CUDA_R_16BF, s.cols, T, s.cols));
        CK(cublasLtMatrixLayoutCreate(&C, ot, s.rows, T, s.rows));
        cublasLtMatmulPreference_t pref;
        CK(cublasLtMatmulPreferenceCreate(&pref));
        CK(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsb, sizeof wsb));
        cublasLtMatmulHeuristicResult_t res[32];
        int n = 0;
        CK(cublasLtMatmulAlgoGetHeuristic(lt, op, A, B, C, C, pref, 32, res, &n));
        float best = 1e30f;
        int bi = -1;
        char cand[512] = "";
        for (int i = 0; i < n; i++) {
            if (res[i].state != CUBLAS_STATUS_SUCCESS) continue;
            const float u = time_graph([&] {
                cublasLtMatmul(lt, op, &one, W, A, X, B, &zero, Y, C, Y, C, &res[i].algo, ws, wsb, st);
            });
            char b[24];
            snprintf(b, sizeof b, " %.1f", u);
            if (strlen(cand) + strlen(b) < sizeof cand) strcat(cand, b);
            if (u > 0 && u < best) best = u, bi = i;
        }
        char desc[96] = "-";
        if (bi >= 0) {
            int tile = 0, stages = 0, splitk = 0;
            size_t w;
            cublasLtMatmulAlgoConfigGetAttribute(&res[bi].algo, CUBLASLT_ALGO_CONFIG_TILE_ID, &tile, sizeof tile, &w);
            cublasLtMatmulAlgoConfigGetAttribute(&res[bi].algo, CUBLASLT_ALGO_CONFIG_STAGES_ID, &stages, sizeof stages, &w);
            cublasLtMatmulAlgoConfigGetAttribute(&res[bi].algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &splitk, sizeof splitk, &w);
            snprintf(desc, sizeof desc, "#%d of %d: tile %d stages %d split %d ws %zu", bi, n, tile, stages, splitk,
                     res[bi].workspaceSize);
        }
        printf("%-28s %9.2f %9.2f  %-34s%s\n", s.name, d, best, desc, cand);
        step_def += d * s.per_step / 1000.0, step_best += best * s.per_step / 1000.0;
        cublasLtMatmulPreferenceDestroy(pref);
        cublasLtMatrixLayoutDestroy(A), cublasLtMatrixLayoutDestroy(B), cublasLtMatrixLayoutDestroy(C);
        cublasLtMatmulDescDestroy(op);
    }
    printf("a step's products (ms): default %.3f, best candidates %.3f\n", step_def, step_best);
    return 0;
}
