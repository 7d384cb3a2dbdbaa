/*
 * A rank program for the hierarchical collectives across hosts (test_hier_netns.sh runs it in
 * network namespaces, each its own host identity). Arguments: the host label of every rank
 * ("a a b b c c"), which is where the script started each one.
 *
 * It connects from the environment (CGLOO_TRANSPORT=shm: shared memory where on the same host),
 * then checks, exiting non-zero and saying why on stderr at the first wrong thing:
 * - the topology the context computed groups the ranks as the labels do, and each peer is
 *   bound to shared memory exactly when it shares this rank's host, to TCP otherwise;
 * - the selector picks "hierarchical" for each of the four collectives where it should (large
 *   calls, ranks of a host not adjacent: the flight recorder names the algorithm each ran);
 * - allreduce, broadcast, allgather(v) and reduce_scatter(v) with "hierarchical", with the
 *   selector's choice and with a flat algorithm, over every dtype and op for allreduce, odd
 *   counts, sizes on both sides of the per-chunk threshold, every root, the in-place forms;
 * - the same in a sub-context (cgloo_context_split) of the first ranks, whose topology comes
 *   from its parent's.
 * Prints "rank R: ok (...)" at the end.
 */
#include "coll_util.h"
#include "core/context.h"
#include "core/topology.h"
#include "transport/transport.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int rank;

static void fail_ctx(cgloo_context *ctx, const char *what, int rc)
{
    char detail[CGLOO_ERROR_MAX] = "";
    cgloo_context_last_error(ctx, detail, sizeof detail);
    fprintf(stderr, "rank %d: %s: %s (%s)\n", rank, what, cgloo_strerror(rc), detail);
    exit(1);
}

#define MUST(ctx, what, expr)                                                                      \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != CGLOO_OK)                                                                       \
            fail_ctx(ctx, what, rc_);                                                              \
    } while (0)
#define EXPECT(what, cond)                                                                         \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "rank %d: wrong: %s (%s:%d)\n", rank, what, __FILE__, __LINE__);       \
            exit(3);                                                                               \
        }                                                                                          \
    } while (0)

/* The algorithms each collective is checked with: hierarchical, the selector's, a flat one;
 * with HIER_QUICK set (the sanitizer builds, where a rank runs ten times slower) hierarchical
 * only. */
static const char *const algs[] = {"hierarchical", NULL, "ring"};
static int n_algs = 3;
#define NALGS n_algs

/* check_topology: hosts as labelled; with `binding`, shm to same-host peers and TCP to the
 * others (a split child's binding is the split's business: its topology is what is checked). */
static void check_topology(cgloo_context *ctx, char *const *label, bool binding, int *n_shm)
{
    const cgloo__topology *t = ctx->topo;
    EXPECT("a topology", t != NULL && t->size == ctx->size);
    *n_shm = 0;
    for (int r = 0; r < ctx->size; r++) {
        for (int q = 0; q < ctx->size; q++)
            EXPECT("hosts as labelled",
                   (strcmp(label[r], label[q]) == 0) == (t->host_of[r] == t->host_of[q]));
        if (r == ctx->rank || !binding)
            continue;
        bool local = strcmp(label[r], label[ctx->rank]) == 0;
        const char *tp = ctx->peers[r].transport ? ctx->peers[r].transport->name : "none";
        EXPECT(local ? "shm to a same-host peer" : "tcp to a peer on another host",
               strcmp(tp, local ? "shm" : "tcp") == 0);
        *n_shm += local;
    }
}

/* ran_algorithm: the flight recorder's latest entries name "coll(alg)". */
static bool ran_algorithm(cgloo_context *ctx, const char *coll, const char *alg)
{
    char want[64], line[512];
    snprintf(want, sizeof want, "%s(%s)", coll, alg);
    FILE *f = tmpfile();
    bool found = false;
    if (!f || cgloo_context_dump(ctx, f) != CGLOO_OK)
        return false;
    rewind(f);
    while (fgets(line, sizeof line, f))
        found = found || strstr(line, want) != NULL;
    fclose(f);
    return found;
}

static void check_allreduce_case(cgloo_context *ctx, const char *alg, cgloo_dtype t, cgloo_op op,
                                 size_t count)
{
    int size = cgloo_context_size(ctx), me = cgloo_context_rank(ctx);
    uint8_t *in = malloc(count * 16 + 16), *out = malloc(count * 16 + 16);
    fill_input(in, count, t, op, me);
    cgloo_coll_opts o = {.algorithm = alg};
    char what[128];
    snprintf(what, sizeof what, "allreduce(%s) %s %s count %zu", alg ? alg : "selected",
             cgloo_dtype_name(t), cgloo_op_name(op), count);
    bool in_place = count % 2;
    MUST(ctx, what, cgloo_allreduce(ctx, in, in_place ? in : out, count, t, op, &o));
    EXPECT(what, check_reduced(in_place ? in : out, count, t, op, size, 0));
    free(in);
    free(out);
}

static void check_allreduce(cgloo_context *ctx)
{
    static const size_t counts[] = {0, 1, 3, 1001};
    static const size_t large[] = {65537, 100003}; /* 256 KiB and more: the per-chunk form */
    for (int a = 0; a < NALGS; a++) {
        for (size_t d = 0; d < CGLOO_ARRAY_LEN(all_dtypes); d++)
            for (size_t o = 0; o < CGLOO_ARRAY_LEN(all_ops); o++)
                for (size_t k = 0; k < CGLOO_ARRAY_LEN(counts); k++)
                    if (op_defined(all_ops[o], all_dtypes[d]))
                        check_allreduce_case(ctx, algs[a], all_dtypes[d], all_ops[o], counts[k]);
        for (size_t k = 0; k < CGLOO_ARRAY_LEN(large); k++) {
            check_allreduce_case(ctx, algs[a], CGLOO_FLOAT32, CGLOO_SUM, large[k]);
            check_allreduce_case(ctx, algs[a], CGLOO_INT64, CGLOO_BXOR, large[k]);
            check_allreduce_case(ctx, algs[a], CGLOO_FLOAT16, CGLOO_MAX, large[k]);
        }
    }
}

static void check_broadcast(cgloo_context *ctx)
{
    static const size_t counts[] = {1, 777, 300001};
    int size = cgloo_context_size(ctx), me = cgloo_context_rank(ctx);
    const char *balgs[] = {"hierarchical", NULL, "binomial"};
    uint8_t *buf = malloc(300001);
    for (int a = 0; a < NALGS; a++)
        for (int root = 0; root < size; root++)
            for (size_t k = 0; k < CGLOO_ARRAY_LEN(counts); k++) {
                for (size_t i = 0; i < counts[k]; i++)
                    buf[i] = me == root ? (uint8_t)(i * 7 + (size_t)root) : 0xee;
                cgloo_coll_opts o = {.algorithm = balgs[a]};
                MUST(ctx, "broadcast", cgloo_broadcast(ctx, buf, counts[k], CGLOO_UINT8, root, &o));
                for (size_t i = 0; i < counts[k]; i++)
                    EXPECT("broadcast", buf[i] == (uint8_t)(i * 7 + (size_t)root));
            }
    free(buf);
}

/* check_allgatherv: uneven counts (some empty) unless `even`, then the plain call. */
static void check_allgather_case(cgloo_context *ctx, const char *alg, size_t count, bool even)
{
    int size = cgloo_context_size(ctx), me = cgloo_context_rank(ctx);
    size_t *counts = malloc((size_t)size * sizeof *counts), total = 0;
    for (int r = 0; r < size; r++) {
        counts[r] = even ? count : (r % 3 == 1 ? 0 : count + (size_t)r * 5);
        total += counts[r];
    }
    int32_t *mine = malloc(counts[me] * 4 + 4), *all = malloc(total * 4 + 4);
    for (size_t i = 0; i < counts[me]; i++)
        mine[i] = (int32_t)(me * 1000003 + (int)i);
    cgloo_coll_opts o = {.algorithm = alg};
    if (even)
        MUST(ctx, "allgather", cgloo_allgather(ctx, mine, all, count, CGLOO_INT32, &o));
    else
        MUST(ctx, "allgatherv",
             cgloo_allgatherv(ctx, mine, counts[me], all, counts, CGLOO_INT32, &o));
    for (int r = 0, at = 0; r < size; r++)
        for (size_t i = 0; i < counts[r]; i++, at++)
            EXPECT(even ? "allgather" : "allgatherv", all[at] == (int32_t)(r * 1000003 + (int)i));
    free(counts);
    free(mine);
    free(all);
}

static void check_allgather(cgloo_context *ctx)
{
    static const size_t counts[] = {0, 1, 5, 1001, 70001};
    for (int a = 0; a < NALGS; a++)
        for (size_t k = 0; k < CGLOO_ARRAY_LEN(counts); k++) {
            check_allgather_case(ctx, algs[a], counts[k], true);
            check_allgather_case(ctx, algs[a], counts[k], false);
        }
}

/* check_rs_case: reduce_scatter(v) of sum over int32 (or max over float32), blocks of
 * counts[r] (uneven unless `even`), out of place or in place (recvbuf == sendbuf). */
static void check_rs_case(cgloo_context *ctx, const char *alg, size_t count, bool even,
                          bool in_place)
{
    int size = cgloo_context_size(ctx), me = cgloo_context_rank(ctx);
    size_t *counts = malloc((size_t)size * sizeof *counts), total = 0, first = 0;
    for (int r = 0; r < size; r++) {
        counts[r] = even ? count : (r % 3 == 2 ? 0 : count + (size_t)r * 3);
        first += r < me ? counts[r] : 0;
        total += counts[r];
    }
    cgloo_dtype t = count % 2 ? CGLOO_INT32 : CGLOO_FLOAT32;
    cgloo_op op = count % 2 ? CGLOO_SUM : CGLOO_MAX;
    uint8_t *send = malloc(total * 4 + 4), *recv = in_place ? send : malloc(counts[me] * 4 + 4);
    fill_input(send, total, t, op, me);
    cgloo_coll_opts o = {.algorithm = alg};
    if (even)
        MUST(ctx, "reduce_scatter", cgloo_reduce_scatter(ctx, send, recv, count, t, op, &o));
    else
        MUST(ctx, "reduce_scatterv", cgloo_reduce_scatterv(ctx, send, recv, counts, t, op, &o));
    EXPECT(even ? "reduce_scatter" : "reduce_scatterv",
           check_reduced(recv, counts[me], t, op, size, first));
    if (!in_place)
        free(recv);
    free(send);
    free(counts);
}

static void check_reduce_scatter(cgloo_context *ctx)
{
    static const size_t counts[] = {1, 7, 333, 40000};
    for (int a = 0; a < NALGS; a++)
        for (size_t k = 0; k < CGLOO_ARRAY_LEN(counts); k++) {
            check_rs_case(ctx, algs[a], counts[k], true, k % 2);
            check_rs_case(ctx, algs[a], counts[k], false, !(k % 2));
        }
}

/* contiguous: every host's ranks are adjacent in rank order. */
static bool contiguous(char *const *label, int size)
{
    for (int r = 0; r < size; r++)
        for (int q = r + 1; q < size; q++)
            for (int m = r + 1; m < q; m++)
                if (strcmp(label[r], label[q]) == 0 && strcmp(label[r], label[m]) != 0)
                    return false;
    return true;
}

/* run_each runs each collective once with the selector's choice, count elements per rank. */
static void run_each(cgloo_context *ctx, size_t count)
{
    int size = cgloo_context_size(ctx);
    int32_t *v = calloc(count, 4), *all = calloc(count * (size_t)size, 4);
    MUST(ctx, "allreduce", cgloo_allreduce(ctx, v, v, count, CGLOO_INT32, CGLOO_SUM, NULL));
    MUST(ctx, "broadcast", cgloo_broadcast(ctx, v, count, CGLOO_INT32, size - 1, NULL));
    MUST(ctx, "allgather", cgloo_allgather(ctx, v, all, count, CGLOO_INT32, NULL));
    MUST(ctx, "reduce_scatter",
         cgloo_reduce_scatter(ctx, all, v, count, CGLOO_INT32, CGLOO_SUM, NULL));
    free(v);
    free(all);
}

/* check_selected: where the ranks of some host are not adjacent, the selector picks
 * "hierarchical" for allgather at every size and for the others from 256 KiB; elsewhere it
 * stays flat (hierarchical.h). */
static void check_selected(cgloo_context *ctx, char *const *label)
{
    static const char *const colls[] = {"allreduce", "broadcast", "reduce_scatter"};
    bool apart = !contiguous(label, cgloo_context_size(ctx));
    run_each(ctx, 64);
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(colls); i++)
        EXPECT("small calls stay flat", !ran_algorithm(ctx, colls[i], "hierarchical"));
    EXPECT("allgather as placed", ran_algorithm(ctx, "allgather", "hierarchical") == apart);
    run_each(ctx, 65536);
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(colls); i++)
        EXPECT(apart ? "the selector picks hierarchical" : "the selector stays flat",
               ran_algorithm(ctx, colls[i], "hierarchical") == apart);
}

static void check_all(cgloo_context *ctx)
{
    check_allreduce(ctx);
    check_broadcast(ctx);
    check_allgather(ctx);
    check_reduce_scatter(ctx);
}

/* check_split: the first four ranks (two hosts of two when labelled so) form a child whose
 * topology is the parent's restricted to them; the others take part with no color. */
static void check_split(cgloo_context *ctx, char *const *label)
{
    int me = cgloo_context_rank(ctx);
    cgloo_context *child = NULL;
    MUST(ctx, "split", cgloo_context_split(ctx, me < 4 ? 0 : CGLOO_UNDEFINED, me, &child));
    if (!child)
        return;
    int n_shm;
    check_topology(child, label, false, &n_shm);
    check_allreduce_case(child, "hierarchical", CGLOO_FLOAT32, CGLOO_SUM, 100003);
    check_allreduce_case(child, "hierarchical", CGLOO_INT32, CGLOO_MIN, 3);
    check_allgather_case(child, "hierarchical", 1001, true);
    check_rs_case(child, "hierarchical", 333, false, false);
    cgloo_context_destroy(child);
}

int main(int argc, char **argv)
{
    cgloo_context *ctx;
    char detail[CGLOO_ERROR_MAX];
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc != CGLOO_OK) {
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "connect: %s: %s\n", cgloo_strerror(rc), detail);
        return 2;
    }
    rank = cgloo_context_rank(ctx);
    if (getenv("HIER_QUICK"))
        n_algs = 1;
    int size = cgloo_context_size(ctx), n_shm = 0;
    EXPECT("one host label per rank", argc - 1 == size);
    check_topology(ctx, argv + 1, true, &n_shm);
    check_selected(ctx, argv + 1);
    check_all(ctx);
    check_split(ctx, argv + 1);
    MUST(ctx, "barrier", cgloo_barrier(ctx, NULL));
    printf("rank %d: ok (%d hosts, %d peers over shm, %d over tcp)\n", rank, ctx->topo->n_hosts,
           n_shm, size - 1 - n_shm);
    cgloo_context_destroy(ctx);
    return 0;
}
