/*
 * cgloo-soak: a long run of random collectives whose every result is checked, watching the
 * process's memory and file descriptors (docs/RELIABILITY.md, "Soak").
 *
 *   cgloo-run -n 4 cgloo-soak [--seconds S] [--seed N] [--max-bytes B] [--rss-slack-mib M]
 *   cgloo-run -n 4 cgloo-soak --ops N [--die-rank R --die-at-op K]
 *   cgloo-soak --contexts N [--ranks P] [--ops N]
 *
 * Every rank derives the same sequence from the seed, so all ranks call the same collective
 * with the same arguments: every collective of the library (allreduce with every algorithm,
 * reduce_scatter(v), allgather(v), broadcast, reduce, gather(v), scatter(v), alltoall(v),
 * barrier) and a ring of sends and receives, with sizes from 0 to --max-bytes (log-uniform),
 * every dtype with the ops it has, random roots, algorithms forced by name a third of the time
 * each, in place now and then, and batches of up to four non-blocking collectives in flight
 * at once (on up to three tags, so that several progress threads run). Inputs are small
 * non-negative integers that every dtype holds exactly even reduced over all ranks, so a
 * result is compared byte for byte with the expectation each rank computes for itself from
 * every rank's inputs (with cgloo_reduce_local, the kernels tests/test_reduce.c checks).
 *
 * Memory and descriptors: after a warm-up (a quarter of the run, at most 15 s: long enough to
 * have run every collective at full size), each rank samples its resident set
 * (/proc/self/statm) and its open descriptors (/proc/self/fd), again every 10 s and at the
 * end, and fails when the resident set grew by more than --rss-slack-mib, the heap in use
 * (mallinfo2) by more than HEAP_SLACK_KIB, or a descriptor is left open. Large blocks are
 * always mapped (M_MMAP_THRESHOLD) and every thread shares one malloc arena (M_ARENA_MAX), so
 * that what is measured is what the program holds, not where malloc's adaptive threshold
 * happens to be or how many arenas it made for threads that came and went (with glibc's
 * default of up to 8 per core, the resident set of --contexts grew by about 10 KiB a context
 * while the heap in use stayed flat); per-thread caches of freed blocks are off too
 * (malloc_exact).
 *
 * --die-rank R --die-at-op K: rank R kills itself with SIGKILL just before operation K, and
 * every other rank must fail naming it (tests/soak_restart.sh runs this in a loop).
 *
 * --contexts N: one process makes and destroys N contexts in turn, ranks 0 to P-2 as threads
 * and rank P-1 as a child process, over a TCP store server started for each context; every
 * other context's child kills itself mid-run, so half of the contexts end with a failure. The
 * resident set and descriptors must stay flat across them.
 *
 * Exit status: 0 when every result was right and nothing grew; 1 a wrong result or growth; 2
 * bad usage; 3 a collective failed (the line says which, with the library's detail).
 */
#define _GNU_SOURCE
#include <cgloo/cgloo.h>

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define SAMPLE_EVERY_S 10
#define WARMUP_MAX_S 15
#define STOP_CHECK_EVERY 16 /* operations between the votes on whether time is up */
#define BATCH_MAX 4
#define RANKS_MAX 64
/* Large blocks are mapped rather than carved from the heap, and so given back when freed. */
#define MMAP_THRESHOLD (256 * 1024)
/* A sanitizer's allocator holds freed blocks back (ASan's quarantine) and reports no heap: the
 * growth bounds mean nothing there, where LeakSanitizer checks for leaks instead. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define GROWTH_CHECKED 0
#else
#define GROWTH_CHECKED 1
#endif
/* How much the heap in use may grow from the start to the end (mallinfo2's uordblks). */
#define HEAP_SLACK_KIB 1024

/* ---- the sequence every rank derives ---------------------------------------------------- */

enum kind {
    K_ALLREDUCE,
    K_REDUCE_SCATTER,
    K_REDUCE_SCATTERV,
    K_ALLGATHER,
    K_ALLGATHERV,
    K_BROADCAST,
    K_REDUCE,
    K_GATHER,
    K_GATHERV,
    K_SCATTER,
    K_SCATTERV,
    K_ALLTOALL,
    K_ALLTOALLV,
    K_BARRIER,
    K_SENDRECV,
    K_COUNT
};

/* What cgloo_algorithm_names takes; "sendrecv" is the ring of point-to-point messages. */
static const char *const kind_names[K_COUNT] = {
    "allreduce", "reduce_scatter", "reduce_scatterv", "allgather", "allgatherv",
    "broadcast", "reduce",         "gather",          "gatherv",   "scatter",
    "scatterv",  "alltoall",       "alltoallv",       "barrier",   "sendrecv"};

static bool kind_reduces(int k)
{
    return k == K_ALLREDUCE || k == K_REDUCE_SCATTER || k == K_REDUCE_SCATTERV || k == K_REDUCE;
}

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static size_t rng_below(uint64_t *s, size_t n)
{
    return n ? (size_t)(rng_next(s) % n) : 0;
}

/* One operation, the same on every rank. counts: the v forms' per-rank counts; matrix:
 * alltoallv's elements rank i sends rank j at [i * size + j]. */
typedef struct plan {
    int kind;
    cgloo_dtype dtype;
    cgloo_op op;
    int root;
    const char *algorithm; /* NULL: the library's choice */
    bool in_place;
    uint64_t tag;
    size_t count;
    size_t counts[RANKS_MAX];
    size_t *matrix;
    uint64_t seed; /* of the inputs */
} plan;

static bool op_valid(cgloo_dtype dt, cgloo_op op)
{
    bool floating =
        dt == CGLOO_FLOAT16 || dt == CGLOO_BFLOAT16 || dt == CGLOO_FLOAT32 || dt == CGLOO_FLOAT64;
    bool complex = dt == CGLOO_COMPLEX64 || dt == CGLOO_COMPLEX128;
    bool bitwise = op == CGLOO_BAND || op == CGLOO_BOR || op == CGLOO_BXOR;
    if (complex)
        return op == CGLOO_SUM || op == CGLOO_PRODUCT;
    return !(floating && bitwise);
}

static const char *pick_algorithm(uint64_t *s, const char *name)
{
    const char *const *names = cgloo_algorithm_names(name);
    size_t n = 0;
    while (names && names[n])
        n++;
    if (n == 0 || rng_below(s, 3) == 0)
        return NULL;
    return names[rng_below(s, n)];
}

/* pick_bytes: log-uniform from 0 to max, and 0 itself one time in sixteen. */
static size_t pick_bytes(uint64_t *s, size_t max)
{
    if (rng_below(s, 16) == 0)
        return 0;
    int bits = 0;
    while (bits < 62 && ((size_t)2 << bits) <= max)
        bits++;
    size_t top = (size_t)1 << rng_below(s, (size_t)bits + 1);
    return rng_below(s, top + 1);
}

static void plan_make(plan *p, uint64_t *s, int size, size_t max_bytes)
{
    memset(p, 0, sizeof *p);
    p->kind = (int)rng_below(s, K_COUNT);
    do {
        p->dtype = (cgloo_dtype)rng_below(s, CGLOO_DTYPE_COUNT);
        p->op = (cgloo_op)rng_below(s, CGLOO_OP_COUNT);
    } while (!op_valid(p->dtype, p->op));
    p->root = (int)rng_below(s, (size_t)size);
    p->algorithm = p->kind == K_SENDRECV ? NULL : pick_algorithm(s, kind_names[p->kind]);
    p->in_place = rng_below(s, 4) == 0;
    p->seed = rng_next(s);
    size_t elems = pick_bytes(s, max_bytes) / cgloo_dtype_size(p->dtype);
    bool blocked = p->kind == K_REDUCE_SCATTER || p->kind == K_ALLGATHER || p->kind == K_GATHER ||
                   p->kind == K_SCATTER || p->kind == K_ALLTOALL;
    p->count = blocked ? elems / (size_t)size : elems;
    for (int r = 0; r < size; r++)
        p->counts[r] = rng_below(s, 2 * (elems / (size_t)size) + 1);
    if (p->kind == K_ALLTOALLV) {
        p->matrix = malloc((size_t)size * (size_t)size * sizeof *p->matrix);
        for (int i = 0; i < size * size; i++)
            p->matrix[i] = rng_below(s, 2 * (elems / (size_t)size / (size_t)size) + 1);
    }
}

/* ---- inputs and expectations -------------------------------------------------------------- */

static uint32_t value_hash(uint64_t seed, int src, size_t i)
{
    uint32_t h = (uint32_t)seed ^ (uint32_t)(seed >> 32);
    h += (uint32_t)src * 0x9E3779B1u + (uint32_t)i * 0x85EBCA77u;
    h ^= h >> 15;
    h *= 0x2C1B3C6Du;
    h ^= h >> 12;
    return h;
}

static uint16_t half_of(unsigned v) /* a small non-negative integer, exactly, as float16 */
{
    if (v == 0)
        return 0;
    int e = 31 - __builtin_clz(v);
    return (uint16_t)(((e + 15) << 10) | ((v << (10 - e)) & 0x3ff));
}

static uint16_t bf16_of(unsigned v)
{
    float f = (float)v;
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    return (uint16_t)(bits >> 16);
}

/* put stores v at element i of buf. A complex element gets v and a second value. */
static void put(cgloo_dtype dt, void *buf, size_t i, unsigned v, unsigned v2)
{
    switch (dt) {
    case CGLOO_INT8:
    case CGLOO_UINT8:
        ((uint8_t *)buf)[i] = (uint8_t)v;
        break;
    case CGLOO_BOOL:
        ((uint8_t *)buf)[i] = (uint8_t)(v & 1);
        break;
    case CGLOO_INT16:
    case CGLOO_UINT16:
        ((uint16_t *)buf)[i] = (uint16_t)v;
        break;
    case CGLOO_INT32:
    case CGLOO_UINT32:
        ((uint32_t *)buf)[i] = v;
        break;
    case CGLOO_INT64:
    case CGLOO_UINT64:
        ((uint64_t *)buf)[i] = v;
        break;
    case CGLOO_FLOAT16:
        ((uint16_t *)buf)[i] = half_of(v);
        break;
    case CGLOO_BFLOAT16:
        ((uint16_t *)buf)[i] = bf16_of(v);
        break;
    case CGLOO_FLOAT32:
        ((float *)buf)[i] = (float)v;
        break;
    case CGLOO_FLOAT64:
        ((double *)buf)[i] = (double)v;
        break;
    case CGLOO_COMPLEX64:
        ((float *)buf)[2 * i] = (float)v;
        ((float *)buf)[2 * i + 1] = (float)v2;
        break;
    case CGLOO_COMPLEX128:
        ((double *)buf)[2 * i] = (double)v;
        ((double *)buf)[2 * i + 1] = (double)v2;
        break;
    default:
        break;
    }
}

/* fill writes rank src's n input elements: 0 to 3 where they are reduced (1 or 2 for a
 * product), so that any order of reduction over up to 64 ranks is exact in every dtype, and 0
 * to 250 where they are only moved, so that a misplaced block shows. */
static void fill(const plan *p, int src, void *buf, size_t n)
{
    unsigned mod = kind_reduces(p->kind) ? (p->op == CGLOO_PRODUCT ? 2 : 4) : 251;
    unsigned base = kind_reduces(p->kind) && p->op == CGLOO_PRODUCT ? 1 : 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t h = value_hash(p->seed, src, i);
        put(p->dtype, buf, i, base + h % mod, base + (h >> 16) % mod);
    }
}

static size_t sum_counts(const size_t *c, int n)
{
    size_t s = 0;
    for (int i = 0; i < n; i++)
        s += c[i];
    return s;
}

/* ---- one operation on one rank ------------------------------------------------------------ */

typedef struct op_run {
    plan p;
    int rank, size;
    size_t esize;
    uint8_t *send, *recv, *expect;
    size_t recv_len; /* bytes of recv that are checked (0: none) */
    size_t sendcounts[RANKS_MAX], recvcounts[RANKS_MAX];
    cgloo_request *req;
    cgloo_coll_opts opts;
    void *owned[3]; /* what op_free frees besides expect and the plan's matrix */
} op_run;

static void *xalloc(size_t n)
{
    void *b = malloc(n ? n : 1);
    if (!b) {
        fprintf(stderr, "cgloo-soak: out of memory (%zu bytes)\n", n);
        exit(1);
    }
    return b;
}

/* own records a buffer of o's for op_free, and returns it. */
static uint8_t *own(op_run *o, uint8_t *b)
{
    for (size_t i = 0; i < sizeof o->owned / sizeof o->owned[0]; i++)
        if (!o->owned[i]) {
            o->owned[i] = b;
            return b;
        }
    abort(); /* a bug of this program: more buffers than slots */
}

/* input_of: a fresh buffer with rank src's n inputs (the caller frees it). */
static uint8_t *input_of(const op_run *o, int src, size_t n)
{
    uint8_t *b = xalloc(n * o->esize);
    fill(&o->p, src, b, n);
    return b;
}

/* expect_reduced: the reduction over every rank of elements [off, off + n) of its input of
 * total elements. */
static void expect_reduced(op_run *o, size_t total, size_t off, size_t n)
{
    o->expect = xalloc(n * o->esize);
    for (int src = 0; src < o->size; src++) {
        uint8_t *in = input_of(o, src, total);
        if (src == 0)
            memcpy(o->expect, in + off * o->esize, n * o->esize);
        else
            cgloo_reduce_local(o->expect, in + off * o->esize, n, o->p.dtype, o->p.op);
        free(in);
    }
    o->recv_len = n * o->esize;
}

/* expect_blocks: the expectation is block `blk` of each source's input (n_of(src) elements
 * at off_of(src) of a total_of(src)-element input), one after another. */
static void expect_blocks(op_run *o, const size_t *totals, const size_t *offs, const size_t *ns)
{
    size_t all = sum_counts(ns, o->size) * o->esize, at = 0;
    o->expect = xalloc(all);
    for (int src = 0; src < o->size; src++) {
        uint8_t *in = input_of(o, src, totals[src]);
        memcpy(o->expect + at, in + offs[src] * o->esize, ns[src] * o->esize);
        at += ns[src] * o->esize;
        free(in);
    }
    o->recv_len = all;
}

static void prepare_reduce(op_run *o)
{
    const plan *p = &o->p;
    int r = o->rank, P = o->size;
    size_t c = p->count;
    switch (p->kind) {
    case K_ALLREDUCE:
    case K_REDUCE:
        o->send = own(o, input_of(o, r, c));
        o->recv = p->in_place ? o->send : own(o, xalloc(c * o->esize));
        expect_reduced(o, c, 0, c);
        if (p->kind == K_REDUCE && r != p->root)
            o->recv_len = 0;
        break;
    case K_REDUCE_SCATTER:
        o->send = own(o, input_of(o, r, c * (size_t)P));
        o->recv = p->in_place ? o->send : own(o, xalloc(c * o->esize));
        expect_reduced(o, c * (size_t)P, c * (size_t)r, c);
        break;
    default: /* K_REDUCE_SCATTERV */
        o->send = own(o, input_of(o, r, sum_counts(p->counts, P)));
        o->recv = p->in_place ? o->send : own(o, xalloc(p->counts[r] * o->esize));
        expect_reduced(o, sum_counts(p->counts, P), sum_counts(p->counts, r), p->counts[r]);
        break;
    }
}

/* prepare_gathers: allgather(v), gather(v). */
static void prepare_gathers(op_run *o)
{
    const plan *p = &o->p;
    int r = o->rank, P = o->size;
    bool v = p->kind == K_ALLGATHERV || p->kind == K_GATHERV;
    size_t totals[RANKS_MAX], offs[RANKS_MAX], ns[RANKS_MAX];
    for (int i = 0; i < P; i++) {
        ns[i] = totals[i] = v ? p->counts[i] : p->count;
        offs[i] = 0;
    }
    expect_blocks(o, totals, offs, ns);
    o->recv = own(o, xalloc(o->recv_len));
    memset(o->recv, 0xee, o->recv_len);
    size_t mine = ns[r] * o->esize;
    if (p->in_place) { /* the input already in place in the output */
        o->send = o->recv + sum_counts(ns, r) * o->esize;
        memcpy(o->send, o->expect + sum_counts(ns, r) * o->esize, mine);
    } else {
        o->send = own(o, input_of(o, r, ns[r]));
    }
    bool rooted = p->kind == K_GATHER || p->kind == K_GATHERV;
    if (rooted && r != p->root)
        o->recv_len = 0;
}

/* prepare_scatters: scatter(v), broadcast. The root's input is the only one. */
static void prepare_scatters(op_run *o)
{
    const plan *p = &o->p;
    int r = o->rank, P = o->size, root = p->root;
    if (p->kind == K_BROADCAST) {
        o->expect = input_of(o, root, p->count);
        o->recv_len = p->count * o->esize;
        o->recv = own(o, r == root ? input_of(o, root, p->count) : xalloc(o->recv_len));
        if (r != root)
            memset(o->recv, 0xee, o->recv_len);
        return;
    }
    bool v = p->kind == K_SCATTERV;
    size_t mine = v ? p->counts[r] : p->count;
    size_t total = v ? sum_counts(p->counts, P) : p->count * (size_t)P;
    size_t off = v ? sum_counts(p->counts, r) : p->count * (size_t)r;
    uint8_t *in = input_of(o, root, total);
    o->expect = xalloc(mine * o->esize);
    memcpy(o->expect, in + off * o->esize, mine * o->esize);
    o->recv_len = mine * o->esize;
    if (r == root) {
        o->send = own(o, in);
        o->recv = p->in_place ? in + off * o->esize : own(o, xalloc(o->recv_len));
    } else {
        free(in);
        o->recv = own(o, xalloc(o->recv_len));
    }
}

static void prepare_alltoall(op_run *o)
{
    const plan *p = &o->p;
    int r = o->rank, P = o->size;
    size_t totals[RANKS_MAX], offs[RANKS_MAX], ns[RANKS_MAX];
    for (int i = 0; i < P; i++) {
        if (p->kind == K_ALLTOALL) {
            totals[i] = p->count * (size_t)P;
            offs[i] = p->count * (size_t)r;
            ns[i] = p->count;
        } else {
            totals[i] = sum_counts(&p->matrix[i * P], P);
            offs[i] = sum_counts(&p->matrix[i * P], r);
            ns[i] = p->matrix[i * P + r];
            o->sendcounts[i] = p->matrix[r * P + i];
            o->recvcounts[i] = p->matrix[i * P + r];
        }
    }
    expect_blocks(o, totals, offs, ns);
    o->send = own(o, input_of(o, r, totals[r]));
    /* in place needs equal send and receive layouts: alltoall's always are */
    bool in_place = p->in_place && p->kind == K_ALLTOALL;
    o->recv = in_place ? o->send : own(o, xalloc(o->recv_len));
}

static void op_prepare(op_run *o, const plan *p, int rank, int size)
{
    memset(o, 0, sizeof *o);
    o->p = *p;
    o->rank = rank;
    o->size = size;
    o->esize = cgloo_dtype_size(p->dtype);
    o->opts.algorithm = p->algorithm;
    o->opts.tag = p->tag;
    switch (p->kind) {
    case K_ALLREDUCE:
    case K_REDUCE:
    case K_REDUCE_SCATTER:
    case K_REDUCE_SCATTERV:
        return prepare_reduce(o);
    case K_ALLGATHER:
    case K_ALLGATHERV:
    case K_GATHER:
    case K_GATHERV:
        return prepare_gathers(o);
    case K_BROADCAST:
    case K_SCATTER:
    case K_SCATTERV:
        return prepare_scatters(o);
    case K_ALLTOALL:
    case K_ALLTOALLV:
        return prepare_alltoall(o);
    case K_SENDRECV: {
        int prev = (rank + size - 1) % size;
        o->send = own(o, input_of(o, rank, p->count));
        o->expect = input_of(o, prev, p->count);
        o->recv_len = p->count * o->esize;
        o->recv = own(o, xalloc(o->recv_len));
        return;
    }
    default: /* K_BARRIER */
        return;
    }
}

/* sendrecv: a ring, each rank to the next, with a tag of the user's range. */
static int sendrecv(op_run *o, cgloo_context *ctx)
{
    int next = (o->rank + 1) % o->size, prev = (o->rank + o->size - 1) % o->size;
    size_t n = o->recv_len;
    cgloo_request *rr, *sr;
    int rc = cgloo_irecv(ctx, o->recv, n, prev, 77, &rr);
    if (rc != CGLOO_OK)
        return rc;
    rc = cgloo_isend(ctx, o->send, n, next, 77, &sr);
    if (rc != CGLOO_OK) {
        cgloo_cancel(rr);
        return rc;
    }
    cgloo_completion c;
    int rs = cgloo_wait(sr, 0, NULL);
    int rv = cgloo_wait(rr, 0, &c);
    if (rv == CGLOO_OK && c.bytes != n)
        o->recv_len = SIZE_MAX; /* a wrong length: never equal */
    return rs != CGLOO_OK ? rs : rv;
}

/* op_start calls the collective: blocking, or its cgloo_i form when req is non-NULL. */
static int op_start(op_run *o, cgloo_context *ctx, cgloo_request **req)
{
    const plan *p = &o->p;
    const cgloo_coll_opts *opt = &o->opts;
    cgloo_dtype dt = p->dtype;
    size_t c = p->count;
    int root = p->root;
#define CALL(name, ...)                                                                            \
    (req ? cgloo_i##name(ctx, __VA_ARGS__, req) : cgloo_##name(ctx, __VA_ARGS__))
    switch (p->kind) {
    case K_ALLREDUCE:
        return CALL(allreduce, o->send, o->recv, c, dt, p->op, opt);
    case K_REDUCE_SCATTER:
        return CALL(reduce_scatter, o->send, o->recv, c, dt, p->op, opt);
    case K_REDUCE_SCATTERV:
        return CALL(reduce_scatterv, o->send, o->recv, p->counts, dt, p->op, opt);
    case K_ALLGATHER:
        return CALL(allgather, o->send, o->recv, c, dt, opt);
    case K_ALLGATHERV:
        return CALL(allgatherv, o->send, p->counts[o->rank], o->recv, p->counts, dt, opt);
    case K_BROADCAST:
        return CALL(broadcast, o->recv, c, dt, root, opt);
    case K_REDUCE:
        return CALL(reduce, o->send, o->recv, c, dt, p->op, root, opt);
    case K_GATHER:
        return CALL(gather, o->send, o->recv, c, dt, root, opt);
    case K_GATHERV:
        return CALL(gatherv, o->send, p->counts[o->rank], o->recv, p->counts, dt, root, opt);
    case K_SCATTER:
        return CALL(scatter, o->send, o->recv, c, dt, root, opt);
    case K_SCATTERV:
        return CALL(scatterv, o->send, p->counts, o->recv, p->counts[o->rank], dt, root, opt);
    case K_ALLTOALL:
        return CALL(alltoall, o->send, o->recv, c, dt, opt);
    case K_ALLTOALLV:
        return CALL(alltoallv, o->send, o->sendcounts, o->recv, o->recvcounts, dt, opt);
    case K_BARRIER:
        return req ? cgloo_ibarrier(ctx, opt, req) : cgloo_barrier(ctx, opt);
    default:
        return sendrecv(o, ctx);
    }
#undef CALL
}

static bool op_correct(const op_run *o)
{
    return o->recv_len == 0 ||
           (o->recv_len != SIZE_MAX && o->expect && memcmp(o->recv, o->expect, o->recv_len) == 0);
}

static void op_free(op_run *o)
{
    for (size_t i = 0; i < sizeof o->owned / sizeof o->owned[0]; i++)
        free(o->owned[i]);
    free(o->expect);
    free(o->p.matrix);
}

static void op_describe(const op_run *o, char *buf, size_t len)
{
    const plan *p = &o->p;
    snprintf(buf, len, "%s(%s) %s %s, count %zu, root %d, tag %" PRIu64 "%s", kind_names[p->kind],
             p->algorithm ? p->algorithm : "auto", cgloo_dtype_name(p->dtype), cgloo_op_name(p->op),
             p->count, p->root, p->tag, p->in_place ? ", in place" : "");
}

/* ---- samples of the process --------------------------------------------------------------- */

static long rss_kib(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

/* rss_anon_kib: the resident set without file pages (the program's own code, paged in as
 * new paths run, is file pages): what a leak would grow. */
static long rss_anon_kib(void)
{
    char line[256];
    long kib = -1;
    FILE *f = fopen("/proc/self/status", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "RssAnon: %ld kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    return kib;
}

static int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* the directory's own */
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* ---- the run ---------------------------------------------------------------------------- */

typedef struct config {
    double seconds; /* 0: run ops operations */
    long ops;
    uint64_t seed;
    size_t max_bytes;
    long rss_slack_kib;
    int die_rank;
    long die_at_op;
    bool quiet; /* no progress lines (threads of --contexts) */
} config;

typedef struct stats {
    long ops, nonblocking, wrong;
    double bytes;
    long rss_start, rss_end, rss_max;
    long heap_start, heap_end; /* KiB malloc has handed out and not had back */
    int fds_start, fds_end;
    int status;        /* of the collective that failed, or OK */
    char failed[1400]; /* which operation failed and why */
} stats;

static int fail_op(stats *st, cgloo_context *ctx, const op_run *o, long index, int rc)
{
    char what[256], detail[CGLOO_ERROR_MAX];
    op_describe(o, what, sizeof what);
    cgloo_context_last_error(ctx, detail, sizeof detail);
    snprintf(st->failed, sizeof st->failed, "op %ld, %s: %s: %s", index, what,
             cgloo_status_name(rc), detail);
    st->status = rc;
    return rc;
}

/* --corrupt-every N flips a received byte of every Nth checked operation before the check, to
 * show that the checks catch a wrong result (tests/CMakeLists.txt runs it). */
static long corrupt_every;

static void count_result(stats *st, op_run *o, long index, int rank)
{
    st->ops++;
    if (corrupt_every && st->ops % corrupt_every == 0 && o->recv_len && o->recv_len != SIZE_MAX)
        o->recv[o->recv_len / 2] ^= 0x10;
    st->bytes += (double)o->recv_len;
    if (!op_correct(o)) {
        char what[256];
        op_describe(o, what, sizeof what);
        fprintf(stderr, "cgloo-soak: rank %d: op %ld, %s: wrong result\n", rank, index, what);
        st->wrong++;
    }
}

/* run_batch issues n plans as non-blocking collectives, all in flight at once, then waits for
 * them (in reverse order every other batch: completion order is the library's business). */
static int run_batch(cgloo_context *ctx, const plan *plans, int n, long first, stats *st)
{
    int rank = cgloo_context_rank(ctx), size = cgloo_context_size(ctx), rc = CGLOO_OK;
    op_run runs[BATCH_MAX];
    int started = 0;
    for (int i = 0; i < n; i++)
        op_prepare(&runs[i], &plans[i], rank, size);
    for (; started < n && rc == CGLOO_OK; started++)
        rc = op_start(&runs[started], ctx, &runs[started].req);
    if (rc != CGLOO_OK) {
        started--;
        fail_op(st, ctx, &runs[started], first + started, rc);
    }
    for (int k = 0; k < started; k++) {
        int i = first % 2 ? started - 1 - k : k;
        int w = cgloo_wait(runs[i].req, 0, NULL);
        if (w != CGLOO_OK && rc == CGLOO_OK)
            rc = fail_op(st, ctx, &runs[i], first + i, w);
        else if (w == CGLOO_OK) {
            count_result(st, &runs[i], first + i, rank);
            st->nonblocking++;
        }
    }
    for (int i = 0; i < n; i++)
        op_free(&runs[i]);
    return rc;
}

static int run_one(cgloo_context *ctx, const plan *p, long index, stats *st)
{
    op_run o;
    op_prepare(&o, p, cgloo_context_rank(ctx), cgloo_context_size(ctx));
    int rc = op_start(&o, ctx, NULL);
    if (rc == CGLOO_OK)
        count_result(st, &o, index, o.rank);
    else
        fail_op(st, ctx, &o, index, rc);
    op_free(&o);
    return rc;
}

/* time_is_up: rank 0's clock decides for all, by a broadcast every STOP_CHECK_EVERY ops. */
static int time_is_up(cgloo_context *ctx, double until, bool *up)
{
    int32_t flag = now_s() >= until;
    int rc = cgloo_broadcast(ctx, &flag, 1, CGLOO_INT32, 0, NULL);
    *up = flag != 0;
    return rc;
}

/* heap_kib is the heap in use (mallinfo2's uordblks), or 0 under a sanitizer: its allocator
 * replaces glibc's, whose mallinfo2 then walks arenas that may not exist (a crash seen under
 * ASan); the sanitizer builds check leaks themselves and skip the growth bounds. */
static long heap_kib(void)
{
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    return 0;
#else
    return (long)(mallinfo2().uordblks / 1024);
#endif
}

static void sample(stats *st, bool first)
{
    long rss = rss_kib(), heap = heap_kib();
    int fds = open_fds();
    if (first) {
        st->rss_start = st->rss_max = rss;
        st->heap_start = heap;
        st->fds_start = fds;
    }
    st->rss_end = rss;
    st->heap_end = heap;
    st->fds_end = fds;
    if (rss > st->rss_max)
        st->rss_max = rss;
}

/* soak_run runs the sequence on ctx until time is up (cfg->seconds) or cfg->ops operations
 * are done; returns the status of a collective that failed, else OK. */
static int soak_run(cgloo_context *ctx, const config *cfg, stats *st)
{
    int rank = cgloo_context_rank(ctx), size = cgloo_context_size(ctx);
    uint64_t s = cfg->seed;
    double t0 = now_s(), until = t0 + cfg->seconds;
    double warm_until = t0 + (cfg->seconds / 4 < WARMUP_MAX_S ? cfg->seconds / 4 : WARMUP_MAX_S);
    double next_sample = 0;
    bool sampled = false;
    long index = 0;
    for (;;) {
        if (cfg->seconds > 0 && index % STOP_CHECK_EVERY == 0) {
            bool up;
            int rc = time_is_up(ctx, until, &up);
            if (rc != CGLOO_OK) {
                op_run none = {.p = {.kind = K_BROADCAST, .dtype = CGLOO_INT32}};
                return fail_op(st, ctx, &none, index, rc);
            }
            if (up)
                break;
        }
        if (cfg->seconds == 0 && index >= cfg->ops)
            break;
        double now = now_s();
        if (!sampled && (now >= warm_until || cfg->seconds == 0)) {
            sample(st, true);
            sampled = true;
            next_sample = now + SAMPLE_EVERY_S;
        } else if (sampled && now >= next_sample) {
            sample(st, false);
            next_sample = now + SAMPLE_EVERY_S;
            if (rank == 0 && !cfg->quiet)
                printf("cgloo-soak: %.0f s: %ld ops, rss %ld KiB, heap in use %ld KiB, fds %d\n",
                       now - t0, st->ops, st->rss_end, st->heap_end, st->fds_end);
            fflush(stdout);
        }
        plan batch[BATCH_MAX];
        int n = 1;
        bool nonblocking = false;
        plan_make(&batch[0], &s, size, cfg->max_bytes);
        if (batch[0].kind != K_SENDRECV && rng_below(&s, 4) == 0) {
            nonblocking = true;
            n = 1 + (int)rng_below(&s, BATCH_MAX);
            batch[0].tag = rng_below(&s, 3);
            for (int i = 1; i < n; i++) {
                do {
                    plan_make(&batch[i], &s, size, cfg->max_bytes);
                } while (batch[i].kind == K_SENDRECV);
                batch[i].tag = rng_below(&s, 3);
            }
        }
        if (rank == cfg->die_rank && index <= cfg->die_at_op && cfg->die_at_op < index + n)
            raise(SIGKILL); /* a crash: no goodbye to the peers */
        /* the runs own the plans' matrices from here */
        int rc =
            nonblocking ? run_batch(ctx, batch, n, index, st) : run_one(ctx, &batch[0], index, st);
        index += n;
        if (rc != CGLOO_OK)
            return rc;
    }
    if (cfg->seconds == 0) { /* every rank gets this far, or every other rank fails */
        int rc = cgloo_barrier(ctx, NULL);
        if (rc != CGLOO_OK) {
            op_run last = {.p = {.kind = K_BARRIER, .dtype = CGLOO_UINT8}};
            return fail_op(st, ctx, &last, index, rc);
        }
    }
    sample(st, !sampled);
    return CGLOO_OK;
}

/* ---- one job's rank (under cgloo-run) ------------------------------------------------------ */

static void print_summary(int rank, const stats *st, double seconds)
{
    printf("cgloo-soak: rank %d: %ld ops (%ld non-blocking), %.1f MiB checked, %ld wrong, "
           "rss start %ld KiB end %ld KiB (max %ld), heap in use start %ld KiB end %ld KiB, "
           "fds start %d end %d, %.0f s\n",
           rank, st->ops, st->nonblocking, st->bytes / (1 << 20), st->wrong, st->rss_start,
           st->rss_end, st->rss_max, st->heap_start, st->heap_end, st->fds_start, st->fds_end,
           seconds);
}

/* grew: the resident set or the descriptors grew beyond the bounds (and says so). */
static bool grew(const char *who, const stats *st, long slack_kib)
{
    bool bad = false;
    if (st->rss_end - st->rss_start > slack_kib) {
        fprintf(stderr, "cgloo-soak: %s: the resident set grew by %ld KiB (bound %ld)\n", who,
                st->rss_end - st->rss_start, slack_kib);
        bad = true;
    }
    if (st->heap_end - st->heap_start > HEAP_SLACK_KIB) {
        fprintf(stderr, "cgloo-soak: %s: the heap in use grew by %ld KiB (bound %d)\n", who,
                st->heap_end - st->heap_start, HEAP_SLACK_KIB);
        bad = true;
    }
    if (st->fds_end > st->fds_start) {
        fprintf(stderr, "cgloo-soak: %s: %d file descriptors more at the end than at the start\n",
                who, st->fds_end - st->fds_start);
        bad = true;
    }
    return bad;
}

static int job_rank(const config *cfg)
{
    cgloo_context *ctx;
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "cgloo-soak: cannot connect: %s: %s\n", cgloo_strerror(rc), detail);
        return 3;
    }
    int rank = cgloo_context_rank(ctx);
    stats st = {0};
    double t0 = now_s();
    rc = soak_run(ctx, cfg, &st);
    if (rc != CGLOO_OK) {
        printf("cgloo-soak: rank %d: failed at %s\n", rank, st.failed);
        fflush(stdout);
        cgloo_context_destroy(ctx);
        return 3;
    }
    cgloo_context_destroy(ctx);
    if (!cfg->quiet)
        print_summary(rank, &st, now_s() - t0);
    char who[32];
    snprintf(who, sizeof who, "rank %d", rank);
    bool bad = cfg->seconds > 0 && GROWTH_CHECKED && grew(who, &st, cfg->rss_slack_kib);
    return st.wrong || bad ? 1 : 0;
}

/* ---- many contexts in one process (--contexts) --------------------------------------------- */

typedef struct thread_rank {
    const config *cfg;
    int rank, size, port;
    stats st;
    pthread_t th;
} thread_rank;

static void *thread_rank_main(void *arg)
{
    thread_rank *t = arg;
    cgloo_store *store = NULL;
    cgloo_device *dev = NULL;
    cgloo_context *ctx = NULL;
    static const cgloo_tcp_attr loopback = {.hostname = "127.0.0.1"};
    cgloo_context_attr attr = {.timeout_ms = 10000, .name = "soak"};
    int rc = cgloo_store_tcp_connect("127.0.0.1", t->port, 10000, &store);
    if (rc == CGLOO_OK)
        rc = cgloo_device_tcp_create(&loopback, &dev);
    if (rc == CGLOO_OK)
        rc = cgloo_context_create(t->rank, t->size, &attr, &ctx);
    if (rc == CGLOO_OK && (rc = cgloo_context_connect(ctx, store, dev)) != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(ctx, detail, sizeof detail);
        snprintf(t->st.failed, sizeof t->st.failed, "connect: %s", detail);
        t->st.status = rc;
    }
    if (rc == CGLOO_OK)
        soak_run(ctx, t->cfg, &t->st);
    else if (t->st.status == CGLOO_OK)
        t->st.status = rc;
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(store);
    return NULL;
}

/* spawn_child starts this program as rank size - 1 of the context on the store at port;
 * it kills itself before operation die_at_op unless that is negative. */
static pid_t spawn_child(const char *self, const config *cfg, int size, int port, long die_at_op)
{
    char ops[32], seed[32], maxb[32], die[32], dier[32];
    snprintf(ops, sizeof ops, "%ld", cfg->ops);
    snprintf(seed, sizeof seed, "%" PRIu64, cfg->seed);
    snprintf(maxb, sizeof maxb, "%zu", cfg->max_bytes);
    snprintf(die, sizeof die, "%ld", die_at_op);
    snprintf(dier, sizeof dier, "%d", die_at_op >= 0 ? size - 1 : -1);
    char *argv[] = {(char *)self, "--ops", ops,           "--seed", seed,      "--max-bytes", maxb,
                    "--die-rank", dier,    "--die-at-op", die,      "--quiet", NULL};
    size_t n = 0;
    while (environ[n])
        n++;
    char **env = calloc(n + 8, sizeof *env);
    char vars[5][128];
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CGLOO_", 6) != 0 || strncmp(environ[i], "CGLOO_LOG", 9) == 0)
            env[k++] = environ[i];
    snprintf(vars[0], sizeof vars[0], "CGLOO_RANK=%d", size - 1);
    snprintf(vars[1], sizeof vars[1], "CGLOO_SIZE=%d", size);
    snprintf(vars[2], sizeof vars[2], "CGLOO_STORE=tcp://127.0.0.1:%d", port);
    snprintf(vars[3], sizeof vars[3], "CGLOO_CONTEXT_NAME=soak");
    snprintf(vars[4], sizeof vars[4], "CGLOO_TIMEOUT_MS=10000");
    for (int i = 0; i < 5; i++)
        env[k++] = vars[i];
    pid_t pid;
    int err = posix_spawn(&pid, self, NULL, NULL, argv, env);
    free(env);
    return err ? -1 : pid;
}

/* names_rank: the failure text names rank r (as "rank r" or "peer r"). */
static bool names_rank(const char *text, int r)
{
    char names[2][32];
    snprintf(names[0], sizeof names[0], "rank %d", r);
    snprintf(names[1], sizeof names[1], "peer %d", r);
    for (int k = 0; k < 2; k++)
        for (const char *at = text; (at = strstr(at, names[k])); at++) {
            char next = at[strlen(names[k])];
            if (next < '0' || next > '9')
                return true;
        }
    return false;
}

/* one_context runs one context of size ranks; returns false when it did not end as planned
 * (dies: the child kills itself and every thread must fail naming it). */
static bool one_context(const char *self, const config *cfg, int size, long it, bool dies,
                        stats *sum)
{
    cgloo_store_server *server;
    if (cgloo_store_server_start(NULL, 0, &server) != CGLOO_OK) {
        fprintf(stderr, "cgloo-soak: context %ld: cannot start a store server\n", it);
        return false;
    }
    int port = cgloo_store_server_port(server);
    uint64_t s = cfg->seed + (uint64_t)it;
    long die_at = dies ? (long)rng_below(&s, (size_t)cfg->ops) : -1;
    config c = *cfg;
    c.seed = cfg->seed + (uint64_t)it * 7919;
    c.quiet = true;
    pid_t child = spawn_child(self, &c, size, port, die_at);
    thread_rank t[RANKS_MAX];
    for (int r = 0; r < size - 1; r++) {
        t[r] = (thread_rank){.cfg = &c, .rank = r, .size = size, .port = port};
        pthread_create(&t[r].th, NULL, thread_rank_main, &t[r]);
    }
    bool ok = child > 0;
    for (int r = 0; r < size - 1; r++) {
        pthread_join(t[r].th, NULL);
        sum->ops += t[r].st.ops;
        sum->wrong += t[r].st.wrong;
        bool failed = t[r].st.status != CGLOO_OK;
        if (failed != dies || (dies && !names_rank(t[r].st.failed, size - 1))) {
            fprintf(stderr, "cgloo-soak: context %ld: rank %d %s%s\n", it, r,
                    failed ? "failed: " : "did not fail", t[r].st.failed);
            ok = false;
        }
    }
    int wstatus = 0;
    if (child > 0 && waitpid(child, &wstatus, 0) == child) {
        bool as_planned = dies ? WIFSIGNALED(wstatus) && WTERMSIG(wstatus) == SIGKILL
                               : WIFEXITED(wstatus) && WEXITSTATUS(wstatus) == 0;
        if (!as_planned) {
            fprintf(stderr, "cgloo-soak: context %ld: the child rank ended with status 0x%x\n", it,
                    wstatus);
            ok = false;
        }
    }
    cgloo_store_server_stop(server);
    return ok;
}

static int contexts_mode(const char *self, const config *cfg, long contexts, int size)
{
    stats st = {0};
    long bad = 0, died = 0, warm = contexts / 10 > 3 ? contexts / 10 : 3;
    double t0 = now_s();
    for (long it = 0; it < contexts; it++) {
        if (it == warm || (it == 0 && contexts <= warm))
            sample(&st, true);
        bool dies = it % 2 == 1;
        died += dies;
        if (!one_context(self, cfg, size, it, dies, &st))
            bad++;
        if (it >= warm)
            sample(&st, false);
        if ((it + 1) % (contexts / 10 > 0 ? contexts / 10 : 1) == 0)
            printf("cgloo-soak: %ld contexts: rss %ld KiB (anonymous %ld), heap in use %ld KiB, "
                   "fds %d\n",
                   it + 1, rss_kib(), rss_anon_kib(), heap_kib(), open_fds());
        fflush(stdout);
    }
    printf("cgloo-soak: %ld contexts of %d ranks (%ld ended by a rank's SIGKILL), %ld not as "
           "planned, %ld ops, %ld wrong, rss start %ld KiB end %ld KiB (max %ld), heap in use "
           "start %ld KiB end %ld KiB, fds start %d end %d, %.0f s\n",
           contexts, size, died, bad, st.ops, st.wrong, st.rss_start, st.rss_end, st.rss_max,
           st.heap_start, st.heap_end, st.fds_start, st.fds_end, now_s() - t0);
    bool growth = GROWTH_CHECKED && grew("contexts", &st, cfg->rss_slack_kib);
    return bad || st.wrong || growth ? 1 : 0;
}

/* malloc_exact re-executes the program once with glibc's per-thread caches of freed blocks
 * turned off (GLIBC_TUNABLES, read only at start-up): blocks held in those caches count as in
 * use, and with them on, the heap in use of a 10-minute soak crept from 300 to 600 KiB as the
 * progress threads' caches filled, while with them off it stayed within 4 KiB. The children
 * of --contexts inherit the setting. */
static void malloc_exact(char **argv)
{
    const char *t = getenv("GLIBC_TUNABLES");
    if (!GROWTH_CHECKED || (t && strstr(t, "tcache_count")))
        return;
    char tunables[1024];
    snprintf(tunables, sizeof tunables, "%s%sglibc.malloc.tcache_count=0", t ? t : "",
             t ? ":" : "");
    setenv("GLIBC_TUNABLES", tunables, 1);
    execv("/proc/self/exe", argv); /* if it fails, the run goes on with the caches */
}

/* ---- command line ------------------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: cgloo-run -n 4 cgloo-soak [--seconds S | --ops N] [--seed N]\n"
            "                 [--max-bytes B] [--rss-slack-mib M] [--die-rank R --die-at-op K]\n"
            "       cgloo-soak --contexts N [--ranks P] [--ops N]\n"
            "  Random checked collectives; memory and descriptors must stay flat.\n");
    exit(2);
}

static long num_arg(int argc, char **argv, int *i)
{
    if (*i + 1 >= argc)
        usage();
    char *end;
    long v = strtol(argv[++*i], &end, 10);
    if (*end)
        usage();
    return v;
}

int main(int argc, char **argv)
{
    config cfg = {.seconds = 0,
                  .ops = 0,
                  .seed = 1,
                  .max_bytes = 4u << 20,
                  .rss_slack_kib = 16 * 1024,
                  .die_rank = -1,
                  .die_at_op = -1};
    long contexts = 0, size = 4;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--seconds"))
            cfg.seconds = (double)num_arg(argc, argv, &i);
        else if (!strcmp(a, "--ops"))
            cfg.ops = num_arg(argc, argv, &i);
        else if (!strcmp(a, "--seed"))
            cfg.seed = (uint64_t)num_arg(argc, argv, &i);
        else if (!strcmp(a, "--max-bytes"))
            cfg.max_bytes = (size_t)num_arg(argc, argv, &i);
        else if (!strcmp(a, "--rss-slack-mib"))
            cfg.rss_slack_kib = num_arg(argc, argv, &i) * 1024;
        else if (!strcmp(a, "--die-rank"))
            cfg.die_rank = (int)num_arg(argc, argv, &i);
        else if (!strcmp(a, "--die-at-op"))
            cfg.die_at_op = num_arg(argc, argv, &i);
        else if (!strcmp(a, "--contexts"))
            contexts = num_arg(argc, argv, &i);
        else if (!strcmp(a, "--ranks"))
            size = num_arg(argc, argv, &i);
        else if (!strcmp(a, "--corrupt-every"))
            corrupt_every = num_arg(argc, argv, &i);
        else if (!strcmp(a, "--quiet"))
            cfg.quiet = true;
        else
            usage();
    }
    if (cfg.seconds <= 0 && cfg.ops <= 0)
        cfg.seconds = 60;
    if (size < 2 || size > RANKS_MAX || cfg.max_bytes == 0)
        usage();
    malloc_exact(argv);
    mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD);
    mallopt(M_ARENA_MAX, 1);
    signal(SIGPIPE, SIG_IGN);
    if (contexts > 0) {
        if (cfg.ops <= 0)
            cfg.ops = 40;
        cfg.seconds = 0;
        char self[4096];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        if (n <= 0)
            return 2;
        self[n] = '\0';
        return contexts_mode(self, &cfg, contexts, (int)size);
    }
    return job_rank(&cfg);
}
