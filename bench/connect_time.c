/*
 * cgloo-connect-time: how long a job takes to set up. Run under cgloo-run; every rank times
 * cgloo_context_create_from_env (the store connection and the full-mesh connect, with its
 * handshakes) followed by one barrier, and rank 0 prints, in ms, the span from the first rank's
 * start to the last rank's end (wall clock, one host) and the slowest rank's own time.
 *   cgloo-run -n 64 cgloo-connect-time        bench/connect_time.sh runs it with and without
 *                                             a job secret and gives the medians
 */
#include <cgloo/cgloo.h>

#include <stdint.h>
#include <stdio.h>
#include <time.h>

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

int main(void)
{
    int64_t start = now_us();
    cgloo_context *ctx;
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc == CGLOO_OK)
        rc = cgloo_barrier(ctx, NULL);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "cgloo-connect-time: %s (%s)\n", cgloo_strerror(rc), detail);
        return 1;
    }
    int64_t end = now_us(), own = end - start, first = start, last = end, slowest = own;
    rc = cgloo_allreduce(ctx, &start, &first, 1, CGLOO_INT64, CGLOO_MIN, NULL);
    if (rc == CGLOO_OK)
        rc = cgloo_allreduce(ctx, &end, &last, 1, CGLOO_INT64, CGLOO_MAX, NULL);
    if (rc == CGLOO_OK)
        rc = cgloo_allreduce(ctx, &own, &slowest, 1, CGLOO_INT64, CGLOO_MAX, NULL);
    if (rc == CGLOO_OK && cgloo_context_rank(ctx) == 0)
        printf("ranks %d span_ms %.1f slowest_rank_ms %.1f\n", cgloo_context_size(ctx),
               (double)(last - first) / 1000, (double)slowest / 1000);
    cgloo_context_destroy(ctx);
    return rc == CGLOO_OK ? 0 : 1;
}
