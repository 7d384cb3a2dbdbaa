/*
 * cgloo-demo: what `make demo` runs under the launcher. A token travels around the ring of
 * ranks for a number of laps; every rank adds its rank to it, and rank 0 prints the value and
 * the time per lap and per hop. Then every rank contributes a vector of a million floats
 * (rank + 1 in every element) to an allreduce, and rank 0 prints the sum and the time of a small
 * and of the large allreduce. Run: cgloo-run -n 4 cgloo-demo [laps]
 */
#include <cgloo/cgloo.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int fail(cgloo_context *ctx, const char *what, int rc)
{
    char detail[CGLOO_ERROR_MAX] = "";
    if (ctx)
        cgloo_context_last_error(ctx, detail, sizeof detail);
    else
        cgloo_last_error(detail, sizeof detail);
    fprintf(stderr, "cgloo-demo: %s failed: %s. %s\n", what, cgloo_strerror(rc), detail);
    cgloo_context_destroy(ctx);
    return 1;
}

/* allreduce_demo sums rank + 1 over the ranks in every element, small and large. */
static int allreduce_demo(cgloo_context *ctx)
{
    int rank = cgloo_context_rank(ctx), size = cgloo_context_size(ctx);
    size_t n = 1u << 20;
    float *v = malloc(n * sizeof *v);
    if (!v)
        return fail(ctx, "allocating", CGLOO_ENOMEM);
    float one = (float)(rank + 1);
    double t0 = now_us();
    int rc = cgloo_allreduce(ctx, &one, &one, 1, CGLOO_FLOAT32, CGLOO_SUM, NULL);
    double small_us = now_us() - t0;
    for (size_t i = 0; i < n && rc == CGLOO_OK; i++)
        v[i] = (float)(rank + 1);
    t0 = now_us();
    if (rc == CGLOO_OK)
        rc = cgloo_allreduce(ctx, v, v, n, CGLOO_FLOAT32, CGLOO_SUM, NULL);
    double large_us = now_us() - t0;
    float want = (float)size * (size + 1) / 2;
    int ok = rc == CGLOO_OK && one == want && v[0] == want && v[n - 1] == want;
    if (rc == CGLOO_OK && rank == 0) {
        printf("allreduce of 1 float: %g (expected %g), %.1f us\n", one, want, small_us);
        printf("allreduce of %zu floats: every element %g (expected %g) %s, %.0f us\n", n, v[0],
               want, ok ? "OK" : "WRONG", large_us);
    }
    free(v);
    if (rc != CGLOO_OK)
        return fail(ctx, "allreduce", rc);
    cgloo_context_destroy(ctx);
    return ok ? 0 : 1;
}

int main(int argc, char **argv)
{
    int laps = argc > 1 ? atoi(argv[1]) : 1000;
    cgloo_context *ctx;
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc != CGLOO_OK)
        return fail(NULL, "connecting", rc);
    int rank = cgloo_context_rank(ctx), size = cgloo_context_size(ctx);
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    printf("rank %d of %d connected\n", rank, size);
    fflush(stdout);

    int64_t token = 0;
    double t0 = now_us();
    for (int lap = 0; lap < laps && size > 1; lap++) {
        if (rank == 0) {
            token += rank;
            if ((rc = cgloo_send(ctx, &token, sizeof token, next, 1, 0)) ||
                (rc = cgloo_recv(ctx, &token, sizeof token, prev, 1, 0, NULL)))
                return fail(ctx, "token pass", rc);
        } else {
            if ((rc = cgloo_recv(ctx, &token, sizeof token, prev, 1, 0, NULL)))
                return fail(ctx, "token pass", rc);
            token += rank;
            if ((rc = cgloo_send(ctx, &token, sizeof token, next, 1, 0)))
                return fail(ctx, "token pass", rc);
        }
    }
    double us = now_us() - t0;
    if (rank == 0) {
        int64_t expect = (int64_t)laps * size * (size - 1) / 2;
        printf("token after %d laps around %d ranks: %lld (expected %lld) %s\n", laps, size,
               (long long)token, (long long)expect, token == expect ? "OK" : "WRONG");
        printf("%.2f us per lap, %.2f us per hop\n", us / laps, us / laps / size);
        if (token != expect) {
            cgloo_context_destroy(ctx);
            return 1;
        }
    }
    return allreduce_demo(ctx);
}
