/*
 * cgloo-kernel-bench: single-thread bandwidth of the reduction kernels, each instruction set
 * beside a plain float32 `a[i] += b[i]` loop (the reference, built -O3 -march=native like
 * ../shared/tools/limits/membw.c).
 *
 *   cmake --build build --target cgloo-kernel-bench
 *   build/tools/cgloo-kernel-bench [samples [dtype]]
 *
 * Accounting is membw.c's: GB/s = bytes of the inout vector / time. The memory traffic is three
 * times that (read inout, read in, write inout); the traffic column shows it. Each figure is
 * the median of `samples` (default 20) timings, each of enough calls to last a few ms.
 */
#include "reduce/kernels.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Thread CPU time: the same as wall time on an idle machine, and not inflated by time spent
 * descheduled when other work shares the processors. */
static double bench_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int bench_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The reference: the loop membw.c times. */
__attribute__((noinline)) static void bench_reference(void *restrict inout, const void *restrict in,
                                                      size_t n)
{
    float *restrict a = inout;
    const float *restrict b = in;
    for (size_t i = 0; i < n; i++)
        a[i] += b[i];
}

/* bench_fill writes values whose sums stay normal and finite for thousands of calls. */
static void bench_fill(void *buf, size_t n, cgloo_dtype t, double v)
{
    for (size_t i = 0; i < n; i++) {
        switch (t) {
        case CGLOO_FLOAT16:
            ((uint16_t *)buf)[i] = cgloo__float_to_half((float)v);
            break;
        case CGLOO_BFLOAT16:
            ((uint16_t *)buf)[i] = cgloo__float_to_bf16((float)v);
            break;
        case CGLOO_FLOAT32:
            ((float *)buf)[i] = (float)v;
            break;
        case CGLOO_FLOAT64:
            ((double *)buf)[i] = v;
            break;
        default:
            ((int32_t *)buf)[i] = (int32_t)(i & 7);
            break;
        }
    }
}

typedef struct bench_buf {
    cgloo__reduce_kernel k;
    size_t n;
    void *a, *b;
    double *times;
} bench_buf;

static void bench_setup(bench_buf *x, cgloo__reduce_kernel k, cgloo_dtype t, size_t bytes,
                        int samples)
{
    x->k = k;
    x->n = bytes / cgloo_dtype_size(t);
    x->a = aligned_alloc(64, bytes);
    x->b = aligned_alloc(64, bytes);
    x->times = calloc((size_t)samples, sizeof *x->times);
    if (!x->a || !x->b || !x->times) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    bench_fill(x->a, x->n, t, 0.0);
    bench_fill(x->b, x->n, t, 1e-3);
}

/* bench_sample times `inner` calls and returns seconds per call. */
static double bench_sample(bench_buf *x, long inner)
{
    double t0 = bench_now();
    for (long i = 0; i < inner; i++) {
        x->k(x->a, x->b, x->n);
        __asm__ volatile("" : : "r"(x->a) : "memory");
    }
    return (bench_now() - t0) / (double)inner;
}

static double bench_median_gbps(bench_buf *x, size_t bytes, int samples)
{
    qsort(x->times, (size_t)samples, sizeof *x->times, bench_cmp);
    double gbps = (double)bytes / x->times[samples / 2] / 1e9;
    free(x->a);
    free(x->b);
    free(x->times);
    return gbps;
}

/* bench_pair times kernel k on dtype t and the reference loop on the same number of bytes,
 * sample for sample in turn (so that both see the same machine load), and returns the
 * median GB/s of each. */
static void bench_pair(cgloo__reduce_kernel k, cgloo_dtype t, size_t bytes, int samples,
                       double *gbps, double *ref_gbps)
{
    bench_buf x, r;
    bench_setup(&x, k, t, bytes, samples);
    bench_setup(&r, bench_reference, CGLOO_FLOAT32, bytes, samples);
    long inner = (long)(4e9 / (double)bytes) / 20;
    inner = inner > 0 ? inner : 1;
    bench_sample(&x, inner); /* warm up: page faults, caches, clocks */
    bench_sample(&r, inner);
    for (int s = 0; s < samples; s++) {
        x.times[s] = bench_sample(&x, inner);
        r.times[s] = bench_sample(&r, inner);
    }
    *gbps = bench_median_gbps(&x, bytes, samples);
    *ref_gbps = bench_median_gbps(&r, bytes, samples);
}

int main(int argc, char **argv)
{
    int samples = argc > 1 ? atoi(argv[1]) : 20;
    if (samples < 1)
        samples = 20;
    const cgloo_dtype dtypes[] = {CGLOO_FLOAT32, CGLOO_FLOAT16, CGLOO_BFLOAT16, CGLOO_INT32,
                                  CGLOO_FLOAT64};
    const size_t sizes[] = {1u << 20, 64u << 20};
    const char *only = argc > 2 ? argv[2] : NULL; /* a dtype name: bench only that one */
    printf("# sum kernels, one thread, median of %d; GB/s = bytes of inout / time "
           "(traffic is 3x: read inout, read in, write inout)\n",
           samples);
    printf("# dispatched instruction set: %s\n",
           cgloo__reduce_isa_name(cgloo__reduce_isa_active()));
    printf(
        "# ref = the float32 a[i] += b[i] loop on the same bytes, timed in turn with each row\n");
    printf("%-9s %-10s %-8s %8s %12s %8s %8s\n", "bytes", "dtype", "kernel", "GB/s", "traffic_GB/s",
           "ref_GB/s", "vs_ref");
    for (size_t s = 0; s < CGLOO_ARRAY_LEN(sizes); s++)
        for (size_t d = 0; d < CGLOO_ARRAY_LEN(dtypes); d++)
            for (int i = 0; i < CGLOO_REDUCE_ISA_COUNT; i++) {
                cgloo__reduce_isa isa = (cgloo__reduce_isa)i;
                cgloo__reduce_kernel k = cgloo__reduce_kernel_isa(CGLOO_SUM, dtypes[d], isa);
                if (!k || (only && strcmp(only, cgloo_dtype_name(dtypes[d])) != 0))
                    continue;
                double g, ref;
                bench_pair(k, dtypes[d], sizes[s], samples, &g, &ref);
                printf("%-9zu %-10s %-8s %8.2f %12.2f %8.2f %8.2f\n", sizes[s],
                       cgloo_dtype_name(dtypes[d]), cgloo__reduce_isa_name(isa), g, 3 * g, ref,
                       g / ref);
                fflush(stdout);
            }
    return 0;
}
