// Can a decode step of 256 sequences hide its products under the delta rule's state traffic? A model of
// the step's two largest parts, 18 linear layers each of: the stacked input projection (8,224 x 1,024),
// a kernel of k_gdn_dec's form over the sequences' FP32 states (16 heads of 128 x 128, read and written),
// the out projection (1,024 x 2,048), the MLP's gate + up (7,168 x 1,024, BF16 out) and down (1,024 x
// 3,584); every layer its own weights and states. Each form captured as a CUDA graph, the best of 10
// replays:
//   serial 256     one stream, every kernel over 256 rows (today's step)
//   serial 2x128   one stream, the halves one after the other in every layer
//   two streams    half A's layers on one stream, half B's on another (fork and join)
//   + priorities   the same, the products' nodes at the higher priority and the state kernel's at the
//                  lower (the graph instantiated to use node priorities), so products take SMs first
// Run on a GPU machine:
//   nvcc -O2 -std=c++17 -gencode arch=compute_90,code=sm_90 -o decode_overlap bench/micro/decode_overlap.cu -lcublas
//   ./decode_overlap
#include <cstdio>
#include <cstdlib>
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#define CK(x) do { auto e_ = (x); if ((int)e_ != 0) { printf("%s:%d %s: %d\n", __FILE__, __LINE__, #x, (int)e_); exit(1); } } while (0)

constexpr int NL = 18, NV = 16, DK = 128, DV = 128, H = 1024, R = 32;

__global__ void __launch_bounds__(128) k_dec(float *o, float *S, const float *q, const float *k, const float *v,
                                             const float *g, const float *beta) {
    __shared__ float ks[DK], qs[DK], red[4][32], red2[4][32];
    const int h = blockIdx.y, lane = threadIdx.x, w = threadIdx.y;
    const long t = blockIdx.z, th = t * NV + h;
    const int j = blockIdx.x * 32 + lane;
    float *Sp = S + (th * DK + (size_t)w * R) * DV + j;
    float Sr[R];
#pragma unroll
    for (int r = 0; r < R; r++) Sr[r] = __ldcg(Sp + (size_t)r * DV);
    const int tid = w * 32 + lane;
    ks[tid] = k[t * DK + tid];
    qs[tid] = q[t * DK + tid];
    const float gt = g[th], b = beta[th], vt = v[th * DV + j];
    __syncthreads();
    const float decay = expf(gt);
    float part = 0.f;
#pragma unroll
    for (int r = 0; r < R; r++) { Sr[r] *= decay; part += Sr[r] * ks[w * R + r]; }
    red[w][lane] = part;
    __syncthreads();
    const float delta = (vt - (red[0][lane] + red[1][lane] + red[2][lane] + red[3][lane])) * b;
    float p2 = 0.f;
#pragma unroll
    for (int r = 0; r < R; r++) { Sr[r] += ks[w * R + r] * delta; p2 += Sr[r] * qs[w * R + r]; }
    red2[w][lane] = p2;
#pragma unroll
    for (int r = 0; r < R; r++) __stcg(Sp + (size_t)r * DV, Sr[r]);
    __syncthreads();
    if (w == 0) o[th * DV + j] = red2[0][lane] + red2[1][lane] + red2[2][lane] + red2[3][lane];
}

struct layer { void *w1, *w2, *w3, *w4; float *S; };
struct part { cublasHandle_t h; cudaStream_t s; int t0, T; void *xb, *ab, *gb; float *y, *o, *q, *k, *v, *g, *b; };

static void gemm(part &c, void *W, int rows, int cols, const void *x, void *y, bool bf16_out) {
    const float one = 1, zero = 0;
    CK(cublasGemmEx(c.h, CUBLAS_OP_T, CUBLAS_OP_N, rows, c.T, cols, &one, W, CUDA_R_16BF, cols, x, CUDA_R_16BF, cols,
                    &zero, y, bf16_out ? CUDA_R_16BF : CUDA_R_32F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
}

static int prio_low, prio_high;

static void layer_of(part &c, layer &L, bool low_prio) {
    gemm(c, L.w1, 8224, H, c.xb, c.y, false);
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3(DV / 32, NV, c.T);
    cfg.blockDim = dim3(32, DK / R);
    cfg.stream = c.s;
    cudaLaunchAttribute at;
    at.id = cudaLaunchAttributePriority;
    at.val.priority = low_prio ? prio_low : prio_high;
    cfg.attrs = &at;
    cfg.numAttrs = 1;
    float *S = L.S + (size_t)c.t0 * NV * DK * DV;
    CK(cudaLaunchKernelEx(&cfg, k_dec, c.o, S, (const float *)c.q, (const float *)c.k, (const float *)c.v,
                          (const float *)c.g, (const float *)c.b));
    gemm(c, L.w2, H, 2048, c.ab, c.y, false);
    gemm(c, L.w3, 7168, H, c.xb, c.gb, true);
    gemm(c, L.w4, H, 3584, c.gb, c.y, false);
}

static part make_half(int t0, int T, int prio) {
    part c;
    c.t0 = t0, c.T = T;
    CK(cudaStreamCreateWithPriority(&c.s, cudaStreamNonBlocking, prio));
    CK(cublasCreate(&c.h));
    CK(cublasSetStream(c.h, c.s));
    void *ws;
    CK(cudaMalloc(&ws, 32 << 20));
    CK(cublasSetWorkspace(c.h, ws, 32 << 20));
    CK(cudaMalloc(&c.xb, (size_t)T * H * 2)); CK(cudaMalloc(&c.ab, (size_t)T * 2048 * 2));
    CK(cudaMalloc(&c.gb, (size_t)T * 7168 * 2)); CK(cudaMalloc(&c.y, (size_t)T * 8224 * 4));
    CK(cudaMalloc(&c.o, (size_t)T * NV * DV * 4)); CK(cudaMalloc(&c.q, (size_t)T * DK * 4));
    CK(cudaMalloc(&c.k, (size_t)T * DK * 4)); CK(cudaMalloc(&c.v, (size_t)T * NV * DV * 4));
    CK(cudaMalloc(&c.g, (size_t)T * NV * 4)); CK(cudaMalloc(&c.b, (size_t)T * NV * 4));
    cudaMemset(c.xb, 0, (size_t)T * H * 2); cudaMemset(c.ab, 0, (size_t)T * 2048 * 2);
    cudaMemset(c.q, 0, (size_t)T * DK * 4); cudaMemset(c.k, 0, (size_t)T * DK * 4);
    cudaMemset(c.v, 0, (size_t)T * NV * DV * 4); cudaMemset(c.g, 0, (size_t)T * NV * 4); cudaMemset(c.b, 0, (size_t)T * NV * 4);
    return c;
}

/* mode 0: one stream over 256; 1: one stream, halves in turn; 2: two streams; 3: two streams, priorities */
static float time_mode(int mode, layer *L, part &full, part &a, part &b, cudaStream_t main_s) {
    cudaGraph_t graph;
    cudaEvent_t fork, join;
    CK(cudaEventCreateWithFlags(&fork, cudaEventDisableTiming));
    CK(cudaEventCreateWithFlags(&join, cudaEventDisableTiming));
    part *A = &a, *B = &b;
    if (mode == 0) {
        CK(cudaStreamBeginCapture(full.s, cudaStreamCaptureModeRelaxed));
        for (int l = 0; l < NL; l++) layer_of(full, L[l], false);
        CK(cudaStreamEndCapture(full.s, &graph));
    } else {
        CK(cudaStreamBeginCapture(main_s, cudaStreamCaptureModeRelaxed));
        CK(cudaEventRecord(fork, main_s));
        CK(cudaStreamWaitEvent(A->s, fork));
        CK(cudaStreamWaitEvent(B->s, fork));
        for (int l = 0; l < NL; l++) {
            layer_of(*A, L[l], mode == 3);
            if (mode == 1) { /* B's layer after A's, on A's stream order */
                CK(cudaEventRecord(join, A->s));
                CK(cudaStreamWaitEvent(B->s, join));
                layer_of(*B, L[l], false);
                CK(cudaEventRecord(join, B->s));
                CK(cudaStreamWaitEvent(A->s, join));
            }
        }
        if (mode != 1)
            for (int l = 0; l < NL; l++) layer_of(*B, L[l], mode == 3);
        CK(cudaEventRecord(join, A->s));
        CK(cudaStreamWaitEvent(main_s, join));
        CK(cudaEventRecord(join, B->s));
        CK(cudaStreamWaitEvent(main_s, join));
        CK(cudaStreamEndCapture(main_s, &graph));
    }
    if (mode == 3) { /* every kernel node's priority set: the state kernel's low, the products' high */
        size_t n = 0;
        CK(cudaGraphGetNodes(graph, NULL, &n));
        cudaGraphNode_t *nodes = (cudaGraphNode_t *)malloc(n * sizeof *nodes);
        CK(cudaGraphGetNodes(graph, nodes, &n));
        int nlow = 0;
        for (size_t i = 0; i < n; i++) {
            cudaGraphNodeType ty;
            CK(cudaGraphNodeGetType(nodes[i], &ty));
            if (ty != cudaGraphNodeTypeKernel) continue;
            cudaKernelNodeParams kp;
            const bool dec = cudaGraphKernelNodeGetParams(nodes[i], &kp) == cudaSuccess && kp.func == (void *)k_dec;
            cudaGetLastError();
            cudaKernelNodeAttrValue v;
            v.priority = dec ? prio_low : prio_high;
            nlow += dec;
            CK(cudaGraphKernelNodeSetAttribute(nodes[i], cudaLaunchAttributePriority, &v));
        }
        free(nodes);
        if (nlow != 2 * NL) printf("(found %d state kernels of %d)\n", nlow, 2 * NL);
    }
    cudaGraphExec_t ex;
    CK(cudaGraphInstantiateWithFlags(&ex, graph, mode == 3 ? cudaGraphInstantiateFlagUseNodePriority : 0));
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0);
    cudaEventCreate(&e1);
    float best = 1e9, worst = 0;
    for (int it = 0; it < 11; it++) {
        CK(cudaEventRecord(e0, main_s));
        CK(cudaGraphLaunch(ex, main_s));
        CK(cudaEventRecord(e1, main_s));
        CK(cudaEventSynchronize(e1));
        float ms;
        cudaEventElapsedTime(&ms, e0, e1);
        if (it) best = ms < best ? ms : best, worst = ms > worst ? ms : worst;
    }
    cudaGraphExecDestroy(ex);
    cudaGraphDestroy(graph);
    static const char *name[] = {"serial 256", "serial 2x128", "two streams", "two streams + priorities"};
    printf("%-26s %.3f ms a step (worst %.3f)\n", name[mode], best, worst);
    return best;
}

int main() {
    CK(cudaDeviceGetStreamPriorityRange(&prio_low, &prio_high));
    layer L[NL];
    const size_t wb = ((size_t)8224 * H + (size_t)H * 2048 + (size_t)7168 * H + (size_t)H * 3584) * 2;
    const size_t sb = (size_t)256 * NV * DK * DV * 4;
    for (int l = 0; l < NL; l++) {
        char *w;
        CK(cudaMalloc(&w, wb));
        cudaMemset(w, 0, wb);
        L[l].w1 = w, L[l].w2 = w + (size_t)8224 * H * 2, L[l].w3 = (char *)L[l].w2 + (size_t)H * 2048 * 2;
        L[l].w4 = (char *)L[l].w3 + (size_t)7168 * H * 2;
        CK(cudaMalloc(&L[l].S, sb));
        cudaMemset(L[l].S, 0, sb);
    }
    printf("%d layers: weights %.0f MB, states %.0f MB read and written a step\n", NL, NL * wb / 1e6, 2.0 * NL * sb / 1e6);
    part full = make_half(0, 256, prio_low), a = make_half(0, 128, prio_high), b = make_half(128, 128, prio_high);
    cudaStream_t main_s;
    CK(cudaStreamCreateWithPriority(&main_s, cudaStreamNonBlocking, prio_high));
    CK(cudaDeviceSynchronize());
    for (int round = 0; round < 3; round++)
        for (int mode = 0; mode < 4; mode++) time_mode(mode, L, full, a, b, main_s);
    return 0;
}
