/*
 * cgloo-bench: the project's benchmark, a rank program run under cgloo-run.
 *
 *   cgloo-run -n 2 cgloo-bench --mode pingpong [--min-bytes 8] [--max-bytes 4194304]
 *       [--iteration-time-ms 500] [--warmup 100] [--window 16] [--csv]
 *
 * pingpong: ranks 0 and 1 bounce a message; the row reports the round-trip time.
 * stream:   rank 0 sends windows of messages to rank 1, which acknowledges each window with an
 *           empty message; the row reports time per message and one-way bandwidth.
 * Rank 0 calibrates the iteration count from the warm-up and tells rank 1, so both ranks run
 * the same number of iterations and neither stops early. Other ranks only join and leave.
 */
#include <cgloo/cgloo.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TAG_DATA 1
#define TAG_CTRL 2
#define MAX_SAMPLES 200000

typedef struct options {
    const char *mode;
    size_t min_bytes, max_bytes;
    int iteration_time_ms, warmup, window;
    int csv;
} options;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    fprintf(stderr, "usage: cgloo-bench [--mode pingpong|stream] [--min-bytes N] [--max-bytes N]\n"
                    "                   [--iteration-time-ms MS] [--warmup N] [--window N] "
                    "[--csv]\n");
    exit(2);
}

static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){"pingpong", 8, 4u << 20, 500, 100, 16, 0};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--csv") == 0) {
            o->csv = 1;
            continue;
        }
        if (!v)
            usage();
        i++;
        if (strcmp(a, "--mode") == 0)
            o->mode = v;
        else if (strcmp(a, "--min-bytes") == 0)
            o->min_bytes = strtoull(v, NULL, 10);
        else if (strcmp(a, "--max-bytes") == 0)
            o->max_bytes = strtoull(v, NULL, 10);
        else if (strcmp(a, "--iteration-time-ms") == 0)
            o->iteration_time_ms = atoi(v);
        else if (strcmp(a, "--warmup") == 0)
            o->warmup = atoi(v);
        else if (strcmp(a, "--window") == 0)
            o->window = atoi(v);
        else
            usage();
    }
    if (strcmp(o->mode, "pingpong") != 0 && strcmp(o->mode, "stream") != 0)
        usage();
    if (o->window < 1 || o->window > 1024 || o->warmup < 1 || o->max_bytes < o->min_bytes)
        usage();
    return 0;
}

static void die(cgloo_context *ctx, const char *what, int rc)
{
    char detail[512] = "";
    if (ctx)
        cgloo_context_last_error(ctx, detail, sizeof detail);
    fprintf(stderr, "cgloo-bench: %s: %s %s\n", what, cgloo_strerror(rc), detail);
    exit(1);
}

#define CHECK_RC(ctx, what, expr)                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != CGLOO_OK)                                                                       \
            die(ctx, what, rc_);                                                                   \
    } while (0)

/* One iteration of the mode for rank 0 or 1; returns the time per reported unit in µs. */
static double pingpong_once(cgloo_context *ctx, int rank, void *buf, size_t n)
{
    double t0 = now_us();
    if (rank == 0) {
        CHECK_RC(ctx, "send", cgloo_send(ctx, buf, n, 1, TAG_DATA, 0));
        CHECK_RC(ctx, "recv", cgloo_recv(ctx, buf, n, 1, TAG_DATA, 0, NULL));
    } else {
        CHECK_RC(ctx, "recv", cgloo_recv(ctx, buf, n, 0, TAG_DATA, 0, NULL));
        CHECK_RC(ctx, "send", cgloo_send(ctx, buf, n, 0, TAG_DATA, 0));
    }
    return now_us() - t0;
}

static double stream_once(cgloo_context *ctx, int rank, void *buf, size_t n, int window)
{
    cgloo_request *reqs[1024];
    double t0 = now_us();
    for (int w = 0; w < window; w++) {
        if (rank == 0)
            CHECK_RC(ctx, "isend", cgloo_isend(ctx, buf, n, 1, TAG_DATA, &reqs[w]));
        else
            CHECK_RC(ctx, "irecv", cgloo_irecv(ctx, buf, n, 0, TAG_DATA, &reqs[w]));
    }
    for (int w = 0; w < window; w++)
        CHECK_RC(ctx, "wait", cgloo_wait(reqs[w], 0, NULL));
    if (rank == 0)
        CHECK_RC(ctx, "ack", cgloo_recv(ctx, NULL, 0, 1, TAG_CTRL, 0, NULL));
    else
        CHECK_RC(ctx, "ack", cgloo_send(ctx, NULL, 0, 0, TAG_CTRL, 0));
    return (now_us() - t0) / window;
}

static double run_once(cgloo_context *ctx, const options *o, void *buf, size_t n)
{
    int rank = cgloo_context_rank(ctx);
    if (strcmp(o->mode, "pingpong") == 0)
        return pingpong_once(ctx, rank, buf, n);
    return stream_once(ctx, rank, buf, n, o->window);
}

/* agree_iterations: rank 0 picks the count from the warm-up time and tells rank 1. */
static int agree_iterations(cgloo_context *ctx, const options *o, double warm_us_per_iter)
{
    int64_t iters = 0;
    if (cgloo_context_rank(ctx) == 0) {
        double per = warm_us_per_iter > 0.01 ? warm_us_per_iter : 0.01;
        iters = (int64_t)(o->iteration_time_ms * 1000.0 / per);
        iters = iters < 10 ? 10 : iters > MAX_SAMPLES ? MAX_SAMPLES : iters;
        CHECK_RC(ctx, "send", cgloo_send(ctx, &iters, sizeof iters, 1, TAG_CTRL, 0));
    } else {
        CHECK_RC(ctx, "recv", cgloo_recv(ctx, &iters, sizeof iters, 0, TAG_CTRL, 0, NULL));
    }
    return (int)iters;
}

static void print_row(const options *o, int ranks, size_t n, double *t, int count)
{
    qsort(t, (size_t)count, sizeof *t, cmp_double);
    double p50 = t[count / 2], p99 = t[(int)(count * 0.99)];
    /* pingpong reports the round trip; bandwidth is one way, half a round trip per message */
    double one_way = strcmp(o->mode, "pingpong") == 0 ? p50 / 2 : p50;
    double gbps = one_way > 0 ? n / one_way / 1e3 : 0;
    if (o->csv)
        printf("%s,,%d,%zu,,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f,%d\n", o->mode, ranks, n, t[0], p50, p99,
               t[count - 1], gbps, gbps, count);
    else
        printf("%-9s %10zu %9.2f %9.2f %9.2f %10.2f %9.3f %8d\n", o->mode, n, t[0], p50, p99,
               t[count - 1], gbps, count);
    fflush(stdout);
}

static void bench_size(cgloo_context *ctx, const options *o, void *buf, size_t n, double *t)
{
    int warm = o->warmup;
    if (n >= (1u << 20))
        warm = warm / 10 + 1;
    double t0 = now_us();
    for (int i = 0; i < warm; i++)
        run_once(ctx, o, buf, n);
    int iters = agree_iterations(ctx, o, (now_us() - t0) / warm);
    for (int i = 0; i < iters; i++)
        t[i] = run_once(ctx, o, buf, n);
    if (cgloo_context_rank(ctx) == 0)
        print_row(o, cgloo_context_size(ctx), n, t, iters);
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    cgloo_context *ctx;
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc != CGLOO_OK) {
        fprintf(stderr, "cgloo-bench: no context from the environment (run under cgloo-run): %s\n",
                cgloo_strerror(rc));
        return 1;
    }
    if (cgloo_context_size(ctx) < 2) {
        fprintf(stderr, "cgloo-bench: needs at least 2 ranks\n");
        return 2;
    }
    int rank = cgloo_context_rank(ctx);
    if (rank == 0 && o.csv)
        printf("mode,algorithm,ranks,bytes,elements,min_us,p50_us,p99_us,max_us,algbw_gbps,"
               "busbw_gbps,samples\n");
    else if (rank == 0)
        printf("%-9s %10s %9s %9s %9s %10s %9s %8s\n", "mode", "bytes", "min_us", "p50_us",
               "p99_us", "max_us", "GB/s", "samples");
    if (rank <= 1) {
        void *buf = calloc(1, o.max_bytes ? o.max_bytes : 1);
        double *t = malloc(MAX_SAMPLES * sizeof *t);
        if (!buf || !t)
            die(NULL, "allocating buffers", CGLOO_ENOMEM);
        for (size_t n = o.min_bytes;; n = n ? n * 2 : 1) {
            bench_size(ctx, &o, buf, n, t);
            if (n >= o.max_bytes)
                break;
        }
        free(buf);
        free(t);
    }
    /* every rank waits here for rank 0 so that none leaves while others still measure */
    if (rank == 0)
        for (int r = 1; r < cgloo_context_size(ctx); r++)
            CHECK_RC(ctx, "done", cgloo_send(ctx, NULL, 0, r, TAG_CTRL, 0));
    else
        CHECK_RC(ctx, "done", cgloo_recv(ctx, NULL, 0, 0, TAG_CTRL, 600000, NULL));
    cgloo_context_destroy(ctx);
    return 0;
}
