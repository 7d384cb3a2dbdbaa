/*
 * cgloo-first-call: what a job's first collective costs, for comparing lazy connections
 * (CGLOO_LAZY=1) with the full mesh. Run under cgloo-run; every rank times
 * cgloo_context_create_from_env (the rendezvous, and with the full mesh every connection), then
 * a 4-byte allreduce straight after it (the first call: with lazy connections it opens the
 * pairs its algorithm uses), then a barrier, a second allreduce and, with --alltoall, an
 * alltoall of 4 bytes per peer (every pair). Rank 0 prints, in ms, the largest time over the
 * ranks of each step, the span from the first rank's start to the last rank's end, and the most
 * connections a rank holds before the alltoall and at the end.
 *   cgloo-run -n 64 cgloo-first-call            bench/lazy.sh runs it both ways
 *   CGLOO_LAZY=1 cgloo-run -n 64 cgloo-first-call
 */
#include <cgloo/cgloo.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int fail(const char *what, int rc)
{
    char detail[CGLOO_ERROR_MAX];
    cgloo_last_error(detail, sizeof detail);
    fprintf(stderr, "cgloo-first-call: %s: %s (%s)\n", what, cgloo_strerror(rc), detail);
    return 1;
}

enum { T_START, T_CONNECT, T_FIRST, T_BARRIER, T_SECOND, T_ALLTOALL, T_N };

int main(int argc, char **argv)
{
    int alltoall = argc > 1 && strcmp(argv[1], "--alltoall") == 0;
    int64_t t[T_N] = {now_us()};
    cgloo_context *ctx;
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc != CGLOO_OK)
        return fail("connect", rc);
    t[T_CONNECT] = now_us();
    int32_t one = 1, sum = 0;
    if ((rc = cgloo_allreduce(ctx, &one, &sum, 1, CGLOO_INT32, CGLOO_SUM, NULL)) != CGLOO_OK)
        return fail("first allreduce", rc);
    t[T_FIRST] = now_us();
    if ((rc = cgloo_barrier(ctx, NULL)) != CGLOO_OK)
        return fail("barrier", rc);
    t[T_BARRIER] = now_us();
    if ((rc = cgloo_allreduce(ctx, &one, &sum, 1, CGLOO_INT32, CGLOO_SUM, NULL)) != CGLOO_OK)
        return fail("second allreduce", rc);
    t[T_SECOND] = now_us();
    t[T_ALLTOALL] = t[T_SECOND];
    int64_t before = cgloo_context_connections(ctx), most_before;
    int size = cgloo_context_size(ctx);
    if (alltoall) {
        int32_t *in = calloc((size_t)size, 4), *out = calloc((size_t)size, 4);
        rc = in && out ? cgloo_alltoall(ctx, in, out, 1, CGLOO_INT32, NULL) : CGLOO_ENOMEM;
        free(in);
        free(out);
        if (rc != CGLOO_OK)
            return fail("alltoall", rc);
        t[T_ALLTOALL] = now_us();
    }
    /* Per step the slowest rank; and the span from the earliest start to the latest end. */
    int64_t step[T_N] = {-t[T_START]}, worst[T_N];
    for (int i = 1; i < T_N; i++)
        step[i] = t[i] - t[i - 1];
    int64_t conns = cgloo_context_connections(ctx), most;
    rc = cgloo_allreduce(ctx, step, worst, T_N, CGLOO_INT64, CGLOO_MAX, NULL);
    if (rc == CGLOO_OK)
        rc = cgloo_allreduce(ctx, &conns, &most, 1, CGLOO_INT64, CGLOO_MAX, NULL);
    if (rc == CGLOO_OK)
        rc = cgloo_allreduce(ctx, &before, &most_before, 1, CGLOO_INT64, CGLOO_MAX, NULL);
    int64_t end = t[T_ALLTOALL], last;
    if (rc == CGLOO_OK)
        rc = cgloo_allreduce(ctx, &end, &last, 1, CGLOO_INT64, CGLOO_MAX, NULL);
    if (rc != CGLOO_OK)
        return fail("gathering the times", rc);
    if (cgloo_context_rank(ctx) == 0)
        printf("ranks %d span_ms %.1f connect_ms %.1f first_allreduce_ms %.2f barrier_ms %.2f "
               "second_allreduce_ms %.3f alltoall_ms %.2f "
               "connections_before_alltoall %lld max_connections %lld\n",
               size, (double)(last + worst[T_START]) / 1000, (double)worst[T_CONNECT] / 1000,
               (double)worst[T_FIRST] / 1000, (double)worst[T_BARRIER] / 1000,
               (double)worst[T_SECOND] / 1000, (double)worst[T_ALLTOALL] / 1000,
               (long long)most_before, (long long)most);
    cgloo_context_destroy(ctx);
    return 0;
}
