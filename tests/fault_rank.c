/*
 * A rank program for the several-hosts test (test_hosts.sh): it connects from the environment,
 * says "ready", then runs checked allreduces until one fails, and reports
 *   rank R: failed after MS ms: STATUS: DETAIL
 * MS counting from the failing call's start. It then keeps its context open for LINGER_MS
 * (argument 1, default 0) before exiting with status 1, so that its own exit does not become
 * the error its peers report: the test wants to see what each rank makes of the cut-off host.
 * Exits 2 when it cannot connect, 3 if a result is wrong.
 *
 * With "idle" as argument 2 nothing is in flight instead: the last rank sends nothing and
 * sleeps, and every other rank waits in one receive from it with a timeout of IDLE_WAIT_MS,
 * longer than the context's, so that only the connection's own liveness checks (keepalive)
 * can end that wait early when the last rank's host goes silent.
 */
#include <cgloo/cgloo.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { COUNT = 65536, IDLE_WAIT_MS = 60000 };

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* one_allreduce sums rank + 1 over the ranks in every element and checks it. */
static int one_allreduce(cgloo_context *ctx, float *v)
{
    int rank = cgloo_context_rank(ctx), size = cgloo_context_size(ctx);
    for (int i = 0; i < COUNT; i++)
        v[i] = (float)(rank + 1);
    int rc = cgloo_allreduce(ctx, v, v, COUNT, CGLOO_FLOAT32, CGLOO_SUM, NULL);
    if (rc == CGLOO_OK && (v[0] != size * (size + 1) / 2.0f || v[COUNT - 1] != v[0])) {
        fprintf(stderr, "rank %d: wrong allreduce result %g\n", rank, v[0]);
        exit(3);
    }
    return rc;
}

int main(int argc, char **argv)
{
    int linger_ms = argc > 1 ? atoi(argv[1]) : 0;
    cgloo_context *ctx;
    char detail[CGLOO_ERROR_MAX];
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc != CGLOO_OK) {
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "connect: %s: %s\n", cgloo_strerror(rc), detail);
        return 2;
    }
    int rank = cgloo_context_rank(ctx);
    printf("rank %d: ready\n", rank);
    fflush(stdout);
    float *v = malloc(COUNT * sizeof *v);
    int64_t start = now_ms();
    int last = cgloo_context_size(ctx) - 1;
    if (argc > 2 && strcmp(argv[2], "idle") == 0 && rank == last) {
        usleep((useconds_t)linger_ms * 1000);
        return 1;
    } else if (argc > 2 && strcmp(argv[2], "idle") == 0) {
        rc = cgloo_recv(ctx, v, sizeof(float), last, 1, IDLE_WAIT_MS, NULL);
    } else {
        do {
            start = now_ms();
            rc = one_allreduce(ctx, v);
        } while (rc == CGLOO_OK);
    }
    cgloo_context_last_error(ctx, detail, sizeof detail);
    printf("rank %d: failed after %lld ms: %s: %s\n", rank, (long long)(now_ms() - start),
           cgloo_status_name(rc), detail);
    fflush(stdout);
    usleep((useconds_t)linger_ms * 1000);
    free(v);
    return 1; /* without destroying the context: the peers see no goodbye */
}
