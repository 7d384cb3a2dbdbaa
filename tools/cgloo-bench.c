/*
 * cgloo-bench: the project's benchmark, a rank program run under cgloo-run.
 *
 *   cgloo-run -n 4 cgloo-bench --mode allreduce [--algorithm NAME] [--dtype float32]
 *       [--elements N | --min-elements N --max-elements N [--factor F]] [--inputs K]
 *       [--iteration-time-ms 500] [--iteration-count N] [--warmup 20] [--verify]
 *       [--nonblocking] [--csv | --json] [--quiet]
 *   cgloo-run -n 2 cgloo-bench --mode pingpong|stream [--min-bytes 8] [--max-bytes 4194304]
 *       [--window 16] [--iteration-time-ms 500] [--warmup 100] [--csv | --json]
 *
 * Over TLS: run it with CGLOO_TLS_CERT, CGLOO_TLS_KEY and CGLOO_TLS_CA set (cgloo-run passes
 * them on); bench/tls.sh measures TLS against plain TCP that way, in one run.
 *
 * Modes. pingpong: ranks 0 and 1 bounce a message; the row reports the round-trip time.
 * stream: rank 0 sends windows of messages to rank 1, which acknowledges each window with an
 * empty message; the row reports time per message and one-way bandwidth. The collective modes
 * (allreduce, reduce_scatter, allgather, broadcast, reduce, gather, scatter, alltoall, barrier)
 * run that collective on every rank, out of place, summing for the reductions, root 0 for the
 * rooted ones.
 *
 * Sizes follow nccl-tests. `elements` (and `bytes` = elements x dtype size) is the per-rank
 * buffer that the row's bandwidth is computed over:
 *   allreduce, broadcast, reduce     the vector (count = elements);
 *   reduce_scatter, alltoall, scatter  the send buffer of `ranks` blocks; gather and allgather
 *                                    the receive buffer of `ranks` blocks. The collective's
 *                                    count argument is elements / ranks, so elements is rounded
 *                                    down to a multiple of the ranks and a size with fewer
 *                                    elements than ranks is skipped.
 *   barrier                          no data: one row with bytes 0.
 * With --nonblocking every call is the non-blocking form followed at once by cgloo_wait, so the
 * row shows what the hand-off to the progress thread and back costs.
 * With --inputs K (allreduce only) every rank reduces K buffers of `elements` each through
 * cgloo_allreduce_multi, as Gloo's benchmark does; bytes is the size of one of them.
 *
 * Bandwidth, as nccl-tests define it: algbw = bytes / t, with t the row's p50 time, and
 * busbw = algbw x factor, the factor making busbw comparable with the link's bandwidth whatever
 * the algorithm: allreduce 2(n-1)/n; reduce_scatter, allgather, alltoall, gather, scatter
 * (n-1)/n; broadcast and reduce 1; barrier 0 (n ranks). GB/s are 1e9 bytes per second.
 *
 * Timing. For each size: one call (checked with --verify), then a warm-up (--warmup calls,
 * fewer if a quarter of --iteration-time-ms would not hold them), then rank 0 turns the median
 * warm-up time into an iteration count and broadcasts it, so every rank runs the same number
 * of calls and none stops early. Each timed call follows a barrier (untimed), so that every
 * call starts with all ranks present and measures the latency of one collective rather than
 * the throughput of calls that overlap (without it a broadcast root or the leaves of a gather
 * run ahead on eager messages); --no-barrier runs the calls back to back, as nccl-tests and
 * Gloo do. Each rank times every call on its own clock; the times are then combined with a
 * max-allreduce, outside the timed loop, so that sample i is the time of call i on the slowest
 * rank. min, p50, p99 and max are taken over those samples.
 *
 * --verify fills the inputs with small integers that every dtype holds exactly, even summed
 * over all ranks (and all inputs), checks every output element on every rank after the first
 * call and again after the timed loop, and exits with status 1 on any mismatch. A complex
 * element holds v - vi; bool holds v mod 2, and a sum of bools is checked as their or (it is
 * true when the integer sum is non-zero). The
 * collectives, the sizes, the values and the expected outputs are bench/bench_check.h's, which
 * the Open MPI and Gloo counterparts (bench/mpi_coll.c, bench/gloo_coll.cc) include too.
 */
#include <cgloo/cgloo.h>

#include "bench_check.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define TAG_DATA 1
#define TAG_CTRL 2
#define MAX_SAMPLES 200000
#define MIN_ITERS 5
#define MAX_INPUTS 64

/* The modes: the collectives of bench/bench_check.h (BENCH_ALLREDUCE, ...), shared with the
 * Open MPI and Gloo benchmarks, then two of point-to-point. */
enum { MODE_PINGPONG = BENCH_COLL_COUNT, MODE_STREAM, MODE_COUNT };

static const char *mode_name(int m)
{
    if (m < BENCH_COLL_COUNT)
        return bench_colls[m].name;
    return m == MODE_PINGPONG ? "pingpong" : "stream";
}

typedef struct options {
    int mode; /* a bench_coll or a MODE_ */
    const char *algorithm;
    cgloo_dtype dtype;
    size_t min_bytes, max_bytes;     /* pingpong and stream */
    size_t min_elems, max_elems;     /* collectives; 0: from the byte range */
    int bytes_given, factor, inputs; /* factor: the sweep's step */
    int iteration_time_ms, iteration_count, warmup, window;
    int verify, csv, json, quiet;
    int no_barrier;  /* collectives: calls back to back, without a barrier before each */
    int nonblocking; /* collectives: cgloo_i<name> then cgloo_wait (the progress thread) */
} options;

/* One benchmark's state on one rank: buffers sized for the largest size, and this size. */
typedef struct bench {
    cgloo_context *ctx;
    const options *o;
    bench_case k; /* the collective, rank, size and the size being measured */
    size_t esize;
    cgloo_coll_opts copts;
    void *send[MAX_INPUTS], *recv[MAX_INPUTS];
    double *t;
} bench;

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
    fprintf(stderr,
            "usage: cgloo-bench [--mode MODE] [--algorithm NAME] [--dtype TYPE]\n"
            "         [--elements N | --min-elements N --max-elements N] [--factor F]\n"
            "         [--min-bytes N] [--max-bytes N] [--inputs K] [--window N]\n"
            "         [--iteration-time-ms MS] [--iteration-count N] [--warmup N]\n"
            "         [--no-barrier] [--nonblocking] [--verify] [--csv | --json] [--quiet]\n"
            "MODE: pingpong stream allreduce reduce_scatter allgather broadcast reduce\n"
            "      gather scatter alltoall barrier\n"
            "TYPE: int8 uint8 int16 uint16 int32 uint32 int64 uint64 float16 bfloat16\n"
            "      float32 float64 bool complex64 complex128\n");
    exit(2);
}

static int is_coll(int m)
{
    return m < BENCH_COLL_COUNT;
}

static size_t parse_size(const char *v)
{
    char *end;
    unsigned long long n = strtoull(v, &end, 10);
    if (*v == '-' || end == v || *end)
        usage();
    return (size_t)n;
}

static int parse_mode(const char *v)
{
    for (int m = 0; m < MODE_COUNT; m++)
        if (strcmp(v, mode_name(m)) == 0)
            return m;
    usage();
    return MODE_COUNT;
}

static cgloo_dtype parse_dtype(const char *v)
{
    for (int d = 0; d < CGLOO_DTYPE_COUNT; d++)
        if (strcmp(v, cgloo_dtype_name((cgloo_dtype)d)) == 0)
            return (cgloo_dtype)d;
    usage();
    return CGLOO_DTYPE_COUNT;
}

static int parse_flag(options *o, const char *a)
{
    int *flag = strcmp(a, "--csv") == 0           ? &o->csv
                : strcmp(a, "--json") == 0        ? &o->json
                : strcmp(a, "--verify") == 0      ? &o->verify
                : strcmp(a, "--quiet") == 0       ? &o->quiet
                : strcmp(a, "--no-barrier") == 0  ? &o->no_barrier
                : strcmp(a, "--nonblocking") == 0 ? &o->nonblocking
                                                  : NULL;
    if (flag)
        *flag = 1;
    return flag != NULL;
}

static void parse_valued(options *o, const char *a, const char *v)
{
    if (strcmp(a, "--mode") == 0)
        o->mode = parse_mode(v);
    else if (strcmp(a, "--algorithm") == 0)
        o->algorithm = v;
    else if (strcmp(a, "--dtype") == 0)
        o->dtype = parse_dtype(v);
    else if (strcmp(a, "--elements") == 0)
        o->min_elems = o->max_elems = parse_size(v);
    else if (strcmp(a, "--min-elements") == 0)
        o->min_elems = parse_size(v);
    else if (strcmp(a, "--max-elements") == 0)
        o->max_elems = parse_size(v);
    else if (strcmp(a, "--min-bytes") == 0)
        o->min_bytes = parse_size(v), o->bytes_given = 1;
    else if (strcmp(a, "--max-bytes") == 0)
        o->max_bytes = parse_size(v), o->bytes_given = 1;
    else if (strcmp(a, "--factor") == 0)
        o->factor = atoi(v);
    else if (strcmp(a, "--inputs") == 0)
        o->inputs = atoi(v);
    else if (strcmp(a, "--iteration-time-ms") == 0)
        o->iteration_time_ms = atoi(v);
    else if (strcmp(a, "--iteration-count") == 0)
        o->iteration_count = atoi(v);
    else if (strcmp(a, "--warmup") == 0)
        o->warmup = atoi(v);
    else if (strcmp(a, "--window") == 0)
        o->window = atoi(v);
    else
        usage();
}

static int algorithm_known(const options *o)
{
    const char *const *names = cgloo_algorithm_names(mode_name(o->mode));
    for (size_t i = 0; names && names[i]; i++)
        if (strcmp(names[i], o->algorithm) == 0)
            return 1;
    fprintf(stderr, "cgloo-bench: %s has no algorithm \"%s\"; it has:", mode_name(o->mode),
            o->algorithm);
    for (size_t i = 0; names && names[i]; i++)
        fprintf(stderr, " %s", names[i]);
    fprintf(stderr, "\n");
    return 0;
}

/* check_options validates the combination and derives the element range of a collective. */
static void check_options(options *o)
{
    int p2p = !is_coll(o->mode);
    if (o->window < 1 || o->window > 1024 || o->warmup < 1 || o->warmup > MAX_SAMPLES ||
        o->factor < 2 || o->inputs < 1 || o->inputs > MAX_INPUTS || o->iteration_time_ms < 1 ||
        o->iteration_count < 0 || o->iteration_count > MAX_SAMPLES || o->max_bytes < o->min_bytes ||
        (o->csv && o->json))
        usage();
    if ((o->inputs > 1 && o->mode != BENCH_ALLREDUCE) || (p2p && o->algorithm))
        usage();
    if (o->algorithm && !algorithm_known(o))
        exit(2);
    if (p2p)
        return;
    size_t es = cgloo_dtype_size(o->dtype);
    if (o->min_elems == 0 && o->max_elems == 0) {
        o->min_elems = o->bytes_given ? o->min_bytes / es : 1;
        o->max_elems = o->bytes_given ? o->max_bytes / es : 1u << 20;
    }
    if (o->min_elems == 0)
        o->min_elems = 1;
    if (o->max_elems < o->min_elems)
        usage();
}

static void parse_args(int argc, char **argv, options *o)
{
    *o = (options){.mode = MODE_PINGPONG,
                   .dtype = CGLOO_FLOAT32,
                   .min_bytes = 8,
                   .max_bytes = 4u << 20,
                   .factor = 2,
                   .inputs = 1,
                   .iteration_time_ms = 500,
                   .warmup = -1,
                   .window = 16};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
            usage();
        if (parse_flag(o, argv[i]))
            continue;
        if (i + 1 >= argc)
            usage();
        parse_valued(o, argv[i], argv[i + 1]);
        i++;
    }
    if (o->warmup == -1)
        o->warmup = is_coll(o->mode) ? 20 : 100;
    check_options(o);
}

static void die(cgloo_context *ctx, const char *what, int rc)
{
    char detail[CGLOO_ERROR_MAX] = "";
    if (ctx)
        cgloo_context_last_error(ctx, detail, sizeof detail);
    else
        cgloo_last_error(detail, sizeof detail);
    fprintf(stderr, "cgloo-bench: %s: %s %s\n", what, cgloo_strerror(rc), detail);
    exit(1);
}

#define CHECK_RC(ctx, what, expr)                                                                  \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != CGLOO_OK)                                                                       \
            die(ctx, what, rc_);                                                                   \
    } while (0)

/* ---- output ------------------------------------------------------------------------------- */

/* One result row. elements < 0 leaves the column empty (point-to-point rows). */
typedef struct row {
    const char *mode, *algorithm, *dtype;
    int ranks;
    size_t bytes;
    long long elements;
    double *t; /* samples, sorted by print_row */
    int count;
    double algbw, busbw; /* GB/s */
} row;

static void print_header(const options *o, const char *algorithm, int ranks)
{
    if (o->json)
        return;
    if (o->csv) {
        printf("mode,algorithm,ranks,bytes,elements,min_us,p50_us,p99_us,max_us,algbw_gbps,"
               "busbw_gbps,samples\n");
        return;
    }
    if (is_coll(o->mode))
        printf("# cgloo-bench %s: algorithm %s, %d ranks, dtype %s, inputs %d%s\n",
               mode_name(o->mode), algorithm, ranks, cgloo_dtype_name(o->dtype), o->inputs,
               o->no_barrier ? ", calls back to back" : ", a barrier before each call");
    else
        printf("# cgloo-bench %s: ranks 0 and 1 of %d\n", mode_name(o->mode), ranks);
    printf("%12s %11s %10s %10s %10s %10s %9s %9s %8s\n", "bytes", "elements", "min(us)", "p50(us)",
           "p99(us)", "max(us)", "algbw", "busbw", "samples");
    printf("%12s %11s %10s %10s %10s %10s %9s %9s %8s\n", "", "", "", "", "", "", "(GB/s)",
           "(GB/s)", "");
}

static void print_row(const options *o, row *r)
{
    qsort(r->t, (size_t)r->count, sizeof *r->t, cmp_double);
    double min = r->t[0], p50 = r->t[r->count / 2], max = r->t[r->count - 1];
    double p99 = r->t[(int)(r->count * 0.99)];
    char el[32] = "";
    if (r->elements >= 0)
        snprintf(el, sizeof el, "%lld", r->elements);
    if (o->csv)
        printf("%s,%s,%d,%zu,%s,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f,%d\n", r->mode, r->algorithm,
               r->ranks, r->bytes, el, min, p50, p99, max, r->algbw, r->busbw, r->count);
    else if (o->json)
        printf("{\"mode\":\"%s\",\"algorithm\":\"%s\",\"ranks\":%d,\"dtype\":\"%s\","
               "\"bytes\":%zu,\"elements\":%s,\"min_us\":%.2f,\"p50_us\":%.2f,\"p99_us\":%.2f,"
               "\"max_us\":%.2f,\"algbw_gbps\":%.3f,\"busbw_gbps\":%.3f,\"samples\":%d}\n",
               r->mode, r->algorithm, r->ranks, r->dtype, r->bytes, el[0] ? el : "null", min, p50,
               p99, max, r->algbw, r->busbw, r->count);
    else
        printf("%12zu %11s %10.2f %10.2f %10.2f %10.2f %9.3f %9.3f %8d\n", r->bytes,
               el[0] ? el : "-", min, p50, p99, max, r->algbw, r->busbw, r->count);
    fflush(stdout);
}

/* progress shows the size being measured on a terminal, on one line rewritten in place. */
static void progress(const options *o, const char *fmt, size_t a, size_t b)
{
    if (o->quiet || !isatty(STDERR_FILENO))
        return;
    char line[128];
    snprintf(line, sizeof line, fmt, a, b);
    fprintf(stderr, "\r%-70s\r", line);
    fflush(stderr);
}

/* ---- point-to-point modes ---------------------------------------------------------------- */

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

static double p2p_once(cgloo_context *ctx, const options *o, void *buf, size_t n)
{
    int rank = cgloo_context_rank(ctx);
    if (o->mode == MODE_PINGPONG)
        return pingpong_once(ctx, rank, buf, n);
    return stream_once(ctx, rank, buf, n, o->window);
}

/* iterations_for turns a typical call time into the agreed iteration count. */
static int iterations_for(const options *o, double per_call_us)
{
    if (o->iteration_count > 0)
        return o->iteration_count;
    double per = per_call_us > 0.01 ? per_call_us : 0.01;
    double iters = o->iteration_time_ms * 1000.0 / per;
    return iters < MIN_ITERS ? MIN_ITERS : iters > MAX_SAMPLES ? MAX_SAMPLES : (int)iters;
}

/* p2p_agree: rank 0 picks the count from the warm-up time and tells rank 1. */
static int p2p_agree(cgloo_context *ctx, const options *o, double warm_us_per_iter)
{
    int64_t iters = 0;
    if (cgloo_context_rank(ctx) == 0) {
        iters = iterations_for(o, warm_us_per_iter);
        CHECK_RC(ctx, "send", cgloo_send(ctx, &iters, sizeof iters, 1, TAG_CTRL, 0));
    } else {
        CHECK_RC(ctx, "recv", cgloo_recv(ctx, &iters, sizeof iters, 0, TAG_CTRL, 0, NULL));
    }
    return (int)iters;
}

static void p2p_size(cgloo_context *ctx, const options *o, void *buf, size_t n, double *t)
{
    int warm = o->warmup;
    if (n >= (1u << 20))
        warm = warm / 10 + 1;
    double t0 = now_us();
    for (int i = 0; i < warm; i++)
        p2p_once(ctx, o, buf, n);
    int iters = p2p_agree(ctx, o, (now_us() - t0) / warm);
    for (int i = 0; i < iters; i++)
        t[i] = p2p_once(ctx, o, buf, n);
    if (cgloo_context_rank(ctx) != 0)
        return;
    row r = {mode_name(o->mode), "", "bytes", cgloo_context_size(ctx), n, -1, t, iters, 0, 0};
    qsort(t, (size_t)iters, sizeof *t, cmp_double);
    /* pingpong reports the round trip; bandwidth is one way, half a round trip per message */
    double p50 = t[iters / 2], one_way = o->mode == MODE_PINGPONG ? p50 / 2 : p50;
    r.algbw = r.busbw = one_way > 0 ? n / one_way / 1e3 : 0;
    print_row(o, &r);
}

static void run_p2p(cgloo_context *ctx, const options *o)
{
    int rank = cgloo_context_rank(ctx);
    if (rank <= 1) {
        void *buf = calloc(1, o->max_bytes ? o->max_bytes : 1);
        double *t = malloc(MAX_SAMPLES * sizeof *t);
        if (!buf || !t)
            die(NULL, "allocating buffers", CGLOO_ENOMEM);
        for (size_t n = o->min_bytes;; n = n ? n * 2 : 1) {
            progress(o, "cgloo-bench: %zu of %zu bytes", n, o->max_bytes);
            p2p_size(ctx, o, buf, n, t);
            if (n >= o->max_bytes)
                break;
        }
        progress(o, "", 0, 0);
        free(buf);
        free(t);
    }
    /* every rank waits here for rank 0 so that none leaves while others still measure */
    if (rank == 0)
        for (int r = 1; r < cgloo_context_size(ctx); r++)
            CHECK_RC(ctx, "done", cgloo_send(ctx, NULL, 0, r, TAG_CTRL, 0));
    else
        CHECK_RC(ctx, "done", cgloo_recv(ctx, NULL, 0, 0, TAG_CTRL, 600000, NULL));
}

/* ---- collective modes: the call --------------------------------------------------------- */

/* wait_started waits for a non-blocking collective that started (rc OK). */
static int wait_started(int rc, cgloo_request **req)
{
    return rc != CGLOO_OK ? rc : cgloo_wait(*req, 0, NULL);
}

/* CALL(name, args...) runs cgloo_<name>(args...), or with --nonblocking cgloo_i<name>(args...)
 * and waits for it. */
#define CALL(name, ...)                                                                            \
    (b->o->nonblocking ? wait_started(cgloo_i##name(__VA_ARGS__, &req), &req)                      \
                       : cgloo_##name(__VA_ARGS__))

static void run_coll(bench *b)
{
    cgloo_request *req = NULL;
    cgloo_context *ctx = b->ctx;
    const cgloo_coll_opts *co = &b->copts;
    cgloo_dtype dt = b->o->dtype;
    size_t n = b->k.count;
    const char *name = mode_name(b->o->mode);
    switch (b->k.coll) {
    case BENCH_ALLREDUCE:
        if (b->o->inputs == 1)
            CHECK_RC(ctx, name, CALL(allreduce, ctx, b->send[0], b->recv[0], n, dt, CGLOO_SUM, co));
        else
            CHECK_RC(ctx, name,
                     CALL(allreduce_multi, ctx, (const void *const *)b->send, (size_t)b->o->inputs,
                          b->recv, (size_t)b->o->inputs, n, dt, CGLOO_SUM, co));
        break;
    case BENCH_REDUCE_SCATTER:
        CHECK_RC(ctx, name,
                 CALL(reduce_scatter, ctx, b->send[0], b->recv[0], n, dt, CGLOO_SUM, co));
        break;
    case BENCH_ALLGATHER:
        CHECK_RC(ctx, name, CALL(allgather, ctx, b->send[0], b->recv[0], n, dt, co));
        break;
    case BENCH_BROADCAST:
        CHECK_RC(ctx, name, CALL(broadcast, ctx, b->recv[0], n, dt, 0, co));
        break;
    case BENCH_REDUCE:
        CHECK_RC(ctx, name, CALL(reduce, ctx, b->send[0], b->recv[0], n, dt, CGLOO_SUM, 0, co));
        break;
    case BENCH_GATHER:
        CHECK_RC(ctx, name, CALL(gather, ctx, b->send[0], b->recv[0], n, dt, 0, co));
        break;
    case BENCH_SCATTER:
        CHECK_RC(ctx, name, CALL(scatter, ctx, b->send[0], b->recv[0], n, dt, 0, co));
        break;
    case BENCH_ALLTOALL:
        CHECK_RC(ctx, name, CALL(alltoall, ctx, b->send[0], b->recv[0], n, dt, co));
        break;
    default:
        CHECK_RC(ctx, name, CALL(barrier, ctx, co));
        break;
    }
}

/* ---- collective modes: verification values ---------------------------------------------- */

/* The largest integer the dtype holds exactly (and that its reductions keep exact). */
static long dtype_exact_limit(cgloo_dtype d)
{
    switch (d) {
    case CGLOO_INT8:
        return 127;
    case CGLOO_UINT8:
    case CGLOO_BFLOAT16:
        return 255;
    case CGLOO_FLOAT16:
        return 2048;
    case CGLOO_INT16:
        return 32767;
    case CGLOO_UINT16:
        return 65535;
    default: /* float32 and complex64's parts; the wider types hold more */
        return 1l << 24;
    }
}

static uint16_t half_bits(long v)
{
    if (v == 0)
        return 0;
    int e = 0;
    while ((v >> (e + 1)) != 0)
        e++;
    return (uint16_t)(((e + 15) << 10) | ((v << (10 - e)) & 0x3ff));
}

/* put_complex stores v - vi: a part dropped or swapped shows, and sums stay exact. */
static void put_complex(cgloo_dtype d, void *p, long v)
{
    float f[2] = {(float)v, -(float)v};
    double x[2] = {(double)v, -(double)v};
    if (d == CGLOO_COMPLEX64)
        memcpy(p, f, sizeof f);
    else
        memcpy(p, x, sizeof x);
}

/* put_value stores the small non-negative integer v as one element of dtype d. */
static void put_value(cgloo_dtype d, void *p, long v)
{
    float f = (float)v;
    uint32_t fb;
    switch (d) {
    case CGLOO_INT8:
    case CGLOO_UINT8:
        *(uint8_t *)p = (uint8_t)v;
        break;
    case CGLOO_BOOL:
        *(uint8_t *)p = v != 0;
        break;
    case CGLOO_INT16:
    case CGLOO_UINT16:
        *(uint16_t *)p = (uint16_t)v;
        break;
    case CGLOO_INT32:
    case CGLOO_UINT32:
        *(uint32_t *)p = (uint32_t)v;
        break;
    case CGLOO_INT64:
    case CGLOO_UINT64:
        *(uint64_t *)p = (uint64_t)v;
        break;
    case CGLOO_FLOAT16:
        *(uint16_t *)p = half_bits(v);
        break;
    case CGLOO_BFLOAT16:
        memcpy(&fb, &f, sizeof fb);
        *(uint16_t *)p = (uint16_t)(fb >> 16);
        break;
    case CGLOO_FLOAT32:
        memcpy(p, &f, sizeof f);
        break;
    case CGLOO_FLOAT64:
        *(double *)p = (double)v;
        break;
    default:
        put_complex(d, p, v);
        break;
    }
}

static void fill(const bench *b, void *buf, long src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_value(b->o->dtype, (uint8_t *)buf + i * b->esize, bench_value(&b->k, src, i));
}

/* fill_inputs writes this rank's inputs for this size (bench_check.h says which). */
static void fill_inputs(bench *b)
{
    size_t n = bench_input_len(&b->k);
    for (int j = 0; n > 0 && j < b->k.inputs; j++)
        fill(b, b->k.coll == BENCH_BROADCAST ? b->recv[j] : b->send[j],
             bench_input_source(&b->k, j), n);
}

/* outputs: how many output buffers a call fills (allreduce: one per input). */
static int outputs(const bench *b)
{
    return b->k.coll == BENCH_ALLREDUCE ? b->k.inputs : 1;
}

/* clear_outputs fills the outputs with bytes no expected value has (NaN, -1, the maximum). */
static void clear_outputs(bench *b)
{
    for (int k = 0; k < outputs(b) && !bench_output_is_input(&b->k); k++)
        memset(b->recv[k], 0xff, bench_output_len(&b->k) * b->esize);
}

static long check_outputs(const bench *b)
{
    uint8_t want[16]; /* the widest element, complex128 */
    long bad = 0;
    for (size_t i = 0; i < bench_output_len(&b->k); i++) {
        long v = bench_expected(&b->k, i);
        if (v < 0)
            continue;
        put_value(b->o->dtype, want, v);
        for (int k = 0; k < outputs(b); k++) {
            if (memcmp((uint8_t *)b->recv[k] + i * b->esize, want, b->esize) == 0)
                continue;
            if (bad++ < 5)
                fprintf(stderr,
                        "cgloo-bench: rank %d: %s %zu elements: output %d element %zu "
                        "is wrong (expected %ld)\n",
                        b->k.rank, mode_name(b->o->mode), b->k.elements, k, i, v);
        }
    }
    return bad;
}

/* verify_agree: every rank learns the total of mismatches, so that all exit together. */
static void verify_agree(bench *b, long local_bad, const char *when)
{
    int64_t bad = local_bad;
    CHECK_RC(b->ctx, "verify",
             cgloo_allreduce(b->ctx, &bad, &bad, 1, CGLOO_INT64, CGLOO_SUM, NULL));
    if (bad == 0)
        return;
    if (b->k.rank == 0)
        fprintf(stderr, "cgloo-bench: %s, %zu elements: %lld wrong output elements %s\n",
                mode_name(b->o->mode), b->k.elements, (long long)bad, when);
    cgloo_context_destroy(b->ctx);
    exit(1);
}

/* ---- collective modes: timing ----------------------------------------------------------- */

/* time_call times one call on this rank's clock, after a barrier unless --no-barrier. */
static double time_call(bench *b)
{
    if (!b->o->no_barrier)
        CHECK_RC(b->ctx, "barrier", cgloo_barrier(b->ctx, NULL));
    double t0 = now_us();
    run_coll(b);
    return now_us() - t0;
}

/* bcast_i64: rank 0's value, on every rank. */
static int64_t bcast_i64(bench *b, int64_t v)
{
    CHECK_RC(b->ctx, "broadcast", cgloo_broadcast(b->ctx, &v, 1, CGLOO_INT64, 0, NULL));
    return v;
}

/* timed_wall: one iteration as the timed loop runs it (barrier included), by the wall clock. */
static double timed_wall(bench *b)
{
    double t0 = now_us();
    time_call(b);
    return now_us() - t0;
}

/* warm_up runs the agreed warm-up and returns the agreed count of timed iterations: rank 0
 * fits the median warm-up iteration into --iteration-time-ms and broadcasts the count. */
static int warm_up(bench *b)
{
    double first = timed_wall(b);
    int64_t warm = 0;
    if (b->k.rank == 0) {
        double cap = b->o->iteration_time_ms * 1000.0 / 4 / (first > 1 ? first : 1);
        warm = cap < 1 ? 1 : cap < b->o->warmup ? (int64_t)cap : b->o->warmup;
    }
    warm = bcast_i64(b, warm);
    for (int64_t i = 0; i < warm; i++)
        b->t[i] = timed_wall(b);
    int64_t iters = 0;
    if (b->k.rank == 0) {
        qsort(b->t, (size_t)warm, sizeof *b->t, cmp_double);
        iters = iterations_for(b->o, b->t[warm / 2]);
    }
    return (int)bcast_i64(b, iters);
}

/* report prints rank 0's row: the samples are already the slowest rank's. */
static void report(bench *b, const char *algorithm, int iters)
{
    const options *o = b->o;
    size_t bytes = b->k.elements * b->esize;
    row r = {mode_name(o->mode),
             algorithm,
             cgloo_dtype_name(o->dtype),
             b->k.size,
             bytes,
             (long long)b->k.elements,
             b->t,
             iters,
             0,
             0};
    qsort(b->t, (size_t)iters, sizeof *b->t, cmp_double);
    double p50 = b->t[iters / 2];
    r.algbw = p50 > 0 ? bytes / p50 / 1e3 : 0;
    r.busbw = r.algbw * bench_bus_factor(b->k.coll, b->k.size);
    print_row(o, &r);
}

static void bench_size(bench *b, const char *algorithm)
{
    bench_set_modulus(&b->k, dtype_exact_limit(b->o->dtype));
    if (b->o->dtype == CGLOO_BOOL) /* values 0 and 1 in turn, not almost always true */
        b->k.modulus = 2;
    fill_inputs(b);
    if (b->o->verify) {
        clear_outputs(b);
        run_coll(b);
        verify_agree(b, check_outputs(b), "after the first call");
    }
    int iters = warm_up(b);
    CHECK_RC(b->ctx, "barrier", cgloo_barrier(b->ctx, NULL));
    for (int i = 0; i < iters; i++)
        b->t[i] = time_call(b);
    /* sample i becomes the slowest rank's time of call i */
    CHECK_RC(b->ctx, "max-allreduce",
             cgloo_allreduce(b->ctx, b->t, b->t, (size_t)iters, CGLOO_FLOAT64, CGLOO_MAX, NULL));
    if (b->o->verify)
        verify_agree(b, check_outputs(b), "after the timed calls");
    if (b->k.rank == 0)
        report(b, algorithm, iters);
}

/* ---- collective modes: set-up and sweep ------------------------------------------------- */

static void bench_alloc(bench *b)
{
    size_t bytes = b->o->max_elems * b->esize;
    for (int k = 0; k < b->o->inputs; k++) {
        b->send[k] = calloc(1, bytes ? bytes : 1);
        b->recv[k] = calloc(1, bytes ? bytes : 1);
        if (!b->send[k] || !b->recv[k])
            die(NULL, "allocating buffers", CGLOO_ENOMEM);
    }
    b->t = malloc(MAX_SAMPLES * sizeof *b->t);
    if (!b->t)
        die(NULL, "allocating samples", CGLOO_ENOMEM);
}

static void bench_free(bench *b)
{
    for (int k = 0; k < b->o->inputs; k++) {
        free(b->send[k]);
        free(b->recv[k]);
    }
    free(b->t);
}

/* algorithm_label: the name asked for, by flag or environment, else "auto" (the selector). */
static const char *algorithm_label(const options *o)
{
    if (o->algorithm)
        return o->algorithm;
    char var[64] = "CGLOO_";
    size_t len = strlen(var);
    for (const char *p = mode_name(o->mode); *p && len + 1 < sizeof var - 10; p++)
        var[len++] = (char)(*p >= 'a' && *p <= 'z' ? *p - 'a' + 'A' : *p);
    snprintf(var + len, sizeof var - len, "_ALGORITHM");
    const char *env = getenv(var);
    return env && *env ? env : "auto";
}

static void run_colls(cgloo_context *ctx, const options *o)
{
    bench b = {.ctx = ctx, .o = o};
    b.k = bench_case_make((bench_coll)o->mode, cgloo_context_rank(ctx), cgloo_context_size(ctx),
                          o->inputs);
    b.esize = cgloo_dtype_size(o->dtype);
    b.copts.algorithm = o->algorithm;
    const char *label = algorithm_label(o);
    bench_alloc(&b);
    for (size_t n = o->min_elems;; n *= (size_t)o->factor) {
        if (b.k.rank == 0)
            progress(o, "cgloo-bench: %zu of %zu elements", n, o->max_elems);
        if (bench_set_size(&b.k, n))
            bench_size(&b, label);
        if (o->mode == BENCH_BARRIER || n > o->max_elems / (size_t)o->factor)
            break;
    }
    if (b.k.rank == 0)
        progress(o, "", 0, 0);
    CHECK_RC(ctx, "barrier", cgloo_barrier(ctx, NULL));
    bench_free(&b);
}

int main(int argc, char **argv)
{
    options o;
    parse_args(argc, argv, &o);
    cgloo_context *ctx;
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "cgloo-bench: no context from the environment: %s: %s\n",
                cgloo_strerror(rc), detail);
        return 1;
    }
    if (!is_coll(o.mode) && cgloo_context_size(ctx) < 2) {
        fprintf(stderr, "cgloo-bench: %s needs at least 2 ranks\n", mode_name(o.mode));
        return 2;
    }
    if (cgloo_context_rank(ctx) == 0)
        print_header(&o, is_coll(o.mode) ? algorithm_label(&o) : "-", cgloo_context_size(ctx));
    if (is_coll(o.mode))
        run_colls(ctx, &o);
    else
        run_p2p(ctx, &o);
    cgloo_context_destroy(ctx);
    return 0;
}
