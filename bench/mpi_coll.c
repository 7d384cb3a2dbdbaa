/*
 * The Open MPI counterpart of cgloo-bench's collective modes, so that both run on the same
 * machine in the same script and the report can give ratios. Same modes, sizes, values,
 * warm-up, iteration agreement (rank 0 decides and broadcasts), barrier before each timed call,
 * slowest-rank timing (a max-allreduce of the per-call times after the timed loop), bandwidth
 * definitions and CSV columns as tools/cgloo-bench.c, whose opening comment defines them; the
 * algorithm column reads "mpi" (Open MPI's tuned component chooses). The collectives, sizes,
 * values and expected results are bench_check.h's, which all three benchmarks include.
 *
 * Build: mpicc -O2 -o mpi_coll mpi_coll.c
 * Run:   mpirun -np 4 --mca btl tcp,self --mca btl_tcp_if_include lo ./mpi_coll --mode allreduce
 *            [--elements N | --min-elements N --max-elements N] [--factor F]
 *            [--dtype float32|float64|int32|int64] [--iteration-time-ms MS]
 *            [--iteration-count N] [--warmup N] [--no-barrier] [--verify] [--csv]
 */
#include "bench_check.h"

#include <mpi.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SAMPLES 200000
#define MIN_ITERS 5

/* The MPI handles themselves are set in main: they are not constants in every MPI. */
static const struct {
    const char *name;
    size_t size;
    long exact; /* values stay below this, so sums of them are exact */
} dtypes_init[] = {
    {"float32", 4, 1l << 24},
    {"float64", 8, 1l << 24},
    {"int32", 4, 1l << 24},
    {"int64", 8, 1l << 24},
};

typedef struct options {
    int mode, dtype, factor, iteration_time_ms, iteration_count, warmup;
    int no_barrier, verify, csv;
    size_t min_elems, max_elems;
} options;

typedef struct bench {
    const options *o;
    bench_case k; /* the collective, rank, size and the size being measured */
    MPI_Datatype type;
    size_t esize;
    char *send, *recv;
    double *t;
} bench;

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void)
{
    fprintf(stderr, "usage: mpi_coll --mode MODE [--elements N | --min-elements N "
                    "--max-elements N] [--factor F]\n"
                    "       [--dtype float32|float64|int32|int64] [--iteration-time-ms MS] "
                    "[--iteration-count N]\n"
                    "       [--warmup N] [--no-barrier] [--verify] [--csv]\n");
    MPI_Abort(MPI_COMM_WORLD, 2);
}

static int lookup_dtype(const char *v)
{
    for (int i = 0; i < (int)(sizeof dtypes_init / sizeof dtypes_init[0]); i++)
        if (strcmp(v, dtypes_init[i].name) == 0)
            return i;
    usage();
    return 0;
}

static void parse_valued(options *o, const char *a, const char *v)
{
    if (strcmp(a, "--mode") == 0)
        o->mode = bench_coll_find(v);
    else if (strcmp(a, "--dtype") == 0)
        o->dtype = lookup_dtype(v);
    else if (strcmp(a, "--elements") == 0)
        o->min_elems = o->max_elems = strtoull(v, NULL, 10);
    else if (strcmp(a, "--min-elements") == 0)
        o->min_elems = strtoull(v, NULL, 10);
    else if (strcmp(a, "--max-elements") == 0)
        o->max_elems = strtoull(v, NULL, 10);
    else if (strcmp(a, "--factor") == 0)
        o->factor = atoi(v);
    else if (strcmp(a, "--iteration-time-ms") == 0)
        o->iteration_time_ms = atoi(v);
    else if (strcmp(a, "--iteration-count") == 0)
        o->iteration_count = atoi(v);
    else if (strcmp(a, "--warmup") == 0)
        o->warmup = atoi(v);
    else
        usage();
}

static void parse_args(int argc, char **argv, options *o)
{
    *o = (options){
        .factor = 2, .iteration_time_ms = 500, .warmup = 20, .min_elems = 1, .max_elems = 1u << 20};
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--csv") == 0)
            o->csv = 1;
        else if (strcmp(argv[i], "--verify") == 0)
            o->verify = 1;
        else if (strcmp(argv[i], "--no-barrier") == 0)
            o->no_barrier = 1;
        else if (i + 1 < argc)
            parse_valued(o, argv[i], argv[i + 1]), i++;
        else
            usage();
    }
    if (o->mode < 0 || o->factor < 2 || o->warmup < 1 || o->warmup > MAX_SAMPLES ||
        o->iteration_time_ms < 1 || o->min_elems < 1 || o->max_elems < o->min_elems ||
        o->iteration_count < 0 || o->iteration_count > MAX_SAMPLES)
        usage();
}

/* ---- the call ------------------------------------------------------------------------------ */

static void run_coll(bench *b)
{
    int n = (int)b->k.count;
    MPI_Comm w = MPI_COMM_WORLD;
    switch (b->k.coll) {
    case BENCH_ALLREDUCE:
        MPI_Allreduce(b->send, b->recv, n, b->type, MPI_SUM, w);
        break;
    case BENCH_REDUCE_SCATTER:
        MPI_Reduce_scatter_block(b->send, b->recv, n, b->type, MPI_SUM, w);
        break;
    case BENCH_ALLGATHER:
        MPI_Allgather(b->send, n, b->type, b->recv, n, b->type, w);
        break;
    case BENCH_BROADCAST:
        MPI_Bcast(b->recv, n, b->type, 0, w);
        break;
    case BENCH_REDUCE:
        MPI_Reduce(b->send, b->recv, n, b->type, MPI_SUM, 0, w);
        break;
    case BENCH_GATHER:
        MPI_Gather(b->send, n, b->type, b->recv, n, b->type, 0, w);
        break;
    case BENCH_SCATTER:
        MPI_Scatter(b->send, n, b->type, b->recv, n, b->type, 0, w);
        break;
    case BENCH_ALLTOALL:
        MPI_Alltoall(b->send, n, b->type, b->recv, n, b->type, w);
        break;
    default:
        MPI_Barrier(w);
        break;
    }
}

/* ---- values and verification: bench_check.h's, in this program's dtypes ------------------ */

static void put_value(const bench *b, void *p, long v)
{
    switch (b->o->dtype) {
    case 0: {
        float f = (float)v;
        memcpy(p, &f, sizeof f);
        break;
    }
    case 1: {
        double d = (double)v;
        memcpy(p, &d, sizeof d);
        break;
    }
    case 2: {
        int32_t x = (int32_t)v;
        memcpy(p, &x, sizeof x);
        break;
    }
    default: {
        int64_t x = v;
        memcpy(p, &x, sizeof x);
        break;
    }
    }
}

static void fill(const bench *b, char *buf, long src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        put_value(b, buf + i * b->esize, bench_value(&b->k, src, i));
}

/* fill_inputs writes this rank's input for this size (root 0 for broadcast and scatter). */
static void fill_inputs(bench *b)
{
    fill(b, b->k.coll == BENCH_BROADCAST ? b->recv : b->send, bench_input_source(&b->k, 0),
         bench_input_len(&b->k));
}

static long check_outputs(const bench *b)
{
    char want[8];
    long bad = 0;
    for (size_t i = 0; i < bench_output_len(&b->k); i++) {
        long v = bench_expected(&b->k, i);
        if (v < 0)
            continue;
        put_value(b, want, v);
        if (memcmp(b->recv + i * b->esize, want, b->esize) != 0 && bad++ < 5)
            fprintf(stderr, "mpi_coll: rank %d: %s: element %zu is wrong (expected %ld)\n",
                    b->k.rank, bench_colls[b->k.coll].name, i, v);
    }
    return bad;
}

static void verify(bench *b, int first)
{
    if (first) {
        if (!bench_output_is_input(&b->k))
            memset(b->recv, 0xff, bench_output_len(&b->k) * b->esize);
        run_coll(b);
    }
    long bad = check_outputs(b), total = 0;
    MPI_Allreduce(&bad, &total, 1, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
    if (total == 0)
        return;
    if (b->k.rank == 0)
        fprintf(stderr, "mpi_coll: %s, %zu elements: %ld wrong output elements\n",
                bench_colls[b->k.coll].name, b->k.elements, total);
    MPI_Finalize();
    exit(1);
}

/* ---- timing, as in cgloo-bench -------------------------------------------------------------- */

static double time_call(bench *b)
{
    if (!b->o->no_barrier)
        MPI_Barrier(MPI_COMM_WORLD);
    double t0 = MPI_Wtime();
    run_coll(b);
    return (MPI_Wtime() - t0) * 1e6;
}

static double timed_wall(bench *b)
{
    double t0 = MPI_Wtime();
    time_call(b);
    return (MPI_Wtime() - t0) * 1e6;
}

static long iterations_for(const options *o, double per_call_us)
{
    if (o->iteration_count > 0)
        return o->iteration_count;
    double per = per_call_us > 0.01 ? per_call_us : 0.01;
    double iters = o->iteration_time_ms * 1000.0 / per;
    return iters < MIN_ITERS ? MIN_ITERS : iters > MAX_SAMPLES ? MAX_SAMPLES : (long)iters;
}

static long warm_up(bench *b)
{
    double first = timed_wall(b);
    long warm = 0, iters = 0;
    if (b->k.rank == 0) {
        double cap = b->o->iteration_time_ms * 1000.0 / 4 / (first > 1 ? first : 1);
        warm = cap < 1 ? 1 : cap < b->o->warmup ? (long)cap : b->o->warmup;
    }
    MPI_Bcast(&warm, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    for (long i = 0; i < warm; i++)
        b->t[i] = timed_wall(b);
    if (b->k.rank == 0) {
        qsort(b->t, (size_t)warm, sizeof *b->t, cmp_double);
        iters = iterations_for(b->o, b->t[warm / 2]);
    }
    MPI_Bcast(&iters, 1, MPI_LONG, 0, MPI_COMM_WORLD);
    return iters;
}

static void report(bench *b, long iters)
{
    double *t = b->t;
    qsort(t, (size_t)iters, sizeof *t, cmp_double);
    size_t bytes = b->k.elements * b->esize;
    double p50 = t[iters / 2];
    double algbw = p50 > 0 ? bytes / p50 / 1e3 : 0;
    double busbw = algbw * bench_bus_factor(b->k.coll, b->k.size);
    const char *fmt = b->o->csv ? "%s,mpi,%d,%zu,%zu,%.2f,%.2f,%.2f,%.2f,%.3f,%.3f,%ld\n"
                                : "%s mpi %d ranks %12zu B %11zu el  min %.2f p50 %.2f p99 %.2f "
                                  "max %.2f us  algbw %.3f busbw %.3f GB/s  %ld samples\n";
    printf(fmt, bench_colls[b->k.coll].name, b->k.size, bytes, b->k.elements, t[0], p50,
           t[(long)(iters * 0.99)], t[iters - 1], algbw, busbw, iters);
    fflush(stdout);
}

static void bench_size(bench *b)
{
    bench_set_modulus(&b->k, dtypes_init[b->o->dtype].exact);
    fill_inputs(b);
    if (b->o->verify)
        verify(b, 1);
    long iters = warm_up(b);
    MPI_Barrier(MPI_COMM_WORLD);
    for (long i = 0; i < iters; i++)
        b->t[i] = time_call(b);
    MPI_Allreduce(MPI_IN_PLACE, b->t, (int)iters, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
    if (b->o->verify)
        verify(b, 0);
    if (b->k.rank == 0)
        report(b, iters);
}

/* set_size: bench_check.h's, for sizes whose count fits MPI's int. */
static int set_size(bench *b, size_t elements)
{
    return bench_set_size(&b->k, elements) && b->k.count <= 0x7fffffff;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    options o;
    parse_args(argc, argv, &o);
    MPI_Datatype types[] = {MPI_FLOAT, MPI_DOUBLE, MPI_INT32_T, MPI_INT64_T};
    int rank, size;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    bench b = {.o = &o, .type = types[o.dtype], .esize = dtypes_init[o.dtype].size};
    b.k = bench_case_make((bench_coll)o.mode, rank, size, 1);
    b.send = calloc(1, o.max_elems * b.esize);
    b.recv = calloc(1, o.max_elems * b.esize);
    b.t = malloc(MAX_SAMPLES * sizeof *b.t);
    if (!b.send || !b.recv || !b.t)
        MPI_Abort(MPI_COMM_WORLD, 1);
    if (b.k.rank == 0 && o.csv)
        printf("mode,algorithm,ranks,bytes,elements,min_us,p50_us,p99_us,max_us,algbw_gbps,"
               "busbw_gbps,samples\n");
    for (size_t n = o.min_elems;; n *= (size_t)o.factor) {
        if (set_size(&b, n))
            bench_size(&b);
        if (o.mode == BENCH_BARRIER || n > o.max_elems / (size_t)o.factor)
            break;
    }
    free(b.send);
    free(b.recv);
    free(b.t);
    MPI_Finalize();
    return 0;
}
