/*
 * A rank program for the process tests: run under cgloo-run (or mpirun, torchrun, Slurm, or on
 * several hosts, see test_hosts.sh), it connects from the environment and checks point-to-point
 * messages and every collective between real processes, exiting non-zero (and saying why on
 * stderr) at the first wrong result. Built with RANK_PROGRAM_MPI (mpi_rank_program), it
 * connects through cgloo_context_create_from_mpi.
 */
#include "coll_util.h"
#ifdef RANK_PROGRAM_MPI
#include <cgloo/cgloo_mpi.h>
#endif

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static cgloo_context *ctx;
static int rank, size;

static void fail(const char *what, int rc)
{
    char detail[512] = "";
    cgloo_context_last_error(ctx, detail, sizeof detail);
    fprintf(stderr, "rank %d: %s: %s (%s)\n", rank, what, cgloo_strerror(rc), detail);
    exit(1);
}

#define MUST(what, expr)                                                                           \
    do {                                                                                           \
        int rc_ = (expr);                                                                          \
        if (rc_ != CGLOO_OK)                                                                       \
            fail(what, rc_);                                                                       \
    } while (0)
#define EXPECT(what, cond)                                                                         \
    do {                                                                                           \
        if (!(cond))                                                                               \
            fail(what, CGLOO_EPROTO);                                                              \
    } while (0)

/* Every rank sends a message of each size to every other rank; sizes cross the eager limit. */
static void check_p2p(void)
{
    static const size_t sizes[] = {0, 1, 1000, 65536, 65537, 3u << 20};
    size_t max = 3u << 20;
    uint8_t *out = malloc(max), *in = malloc(max);
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        for (int p = 0; p < size; p++) {
            cgloo_request *rr, *sr;
            memset(out, rank + 1, sizes[s]);
            MUST("irecv", cgloo_irecv(ctx, in, max, p, s, &rr));
            MUST("isend", cgloo_isend(ctx, out, sizes[s], p, s, &sr));
            cgloo_completion c;
            MUST("wait send", cgloo_wait(sr, 0, NULL));
            MUST("wait recv", cgloo_wait(rr, 0, &c));
            EXPECT("p2p size", c.bytes == sizes[s] && c.source == p);
            for (size_t i = 0; i < sizes[s]; i++)
                EXPECT("p2p content", in[i] == (uint8_t)(p + 1));
        }
    }
    free(out);
    free(in);
}

static void check_allreduce(void)
{
    const char *const *names = cgloo_algorithm_names("allreduce");
    size_t counts[] = {1, 1009, 300000};
    for (size_t a = 0; names[a]; a++) {
        for (size_t k = 0; k < sizeof counts / sizeof counts[0]; k++) {
            cgloo_dtype t = k % 2 ? CGLOO_FLOAT32 : CGLOO_INT64;
            float *buf = malloc(counts[k] * 8);
            fill_input(buf, counts[k], t, CGLOO_SUM, rank);
            cgloo_coll_opts o = {.algorithm = names[a]};
            MUST(names[a], cgloo_allreduce(ctx, buf, buf, counts[k], t, CGLOO_SUM, &o));
            EXPECT(names[a], check_reduced(buf, counts[k], t, CGLOO_SUM, size, 0));
            free(buf);
        }
    }
}

static void check_data_movement(void)
{
    enum { N = 777 };
    int32_t *all = malloc(sizeof(int32_t) * N * (size_t)size), mine[N], bc[N];
    for (int i = 0; i < N; i++)
        mine[i] = rank * 100000 + i;
    MUST("allgather", cgloo_allgather(ctx, mine, all, N, CGLOO_INT32, NULL));
    for (int r = 0; r < size; r++)
        for (int i = 0; i < N; i++)
            EXPECT("allgather", all[r * N + i] == r * 100000 + i);
    int root = size - 1;
    for (int i = 0; i < N; i++)
        bc[i] = rank == root ? i * 3 : -1;
    MUST("broadcast", cgloo_broadcast(ctx, bc, N, CGLOO_INT32, root, NULL));
    for (int i = 0; i < N; i++)
        EXPECT("broadcast", bc[i] == i * 3);
    int64_t v = rank + 1, sum = 0;
    MUST("reduce", cgloo_reduce(ctx, &v, &sum, 1, CGLOO_INT64, CGLOO_SUM, 0, NULL));
    EXPECT("reduce", rank != 0 || sum == (int64_t)size * (size + 1) / 2);
    MUST("barrier", cgloo_barrier(ctx, NULL));
    free(all);
}

enum { BLOCK = 333 };

/* alg_name names algorithm a of collective `coll`, or NULL past the last one. */
static const char *alg_name(const char *coll, size_t a)
{
    return cgloo_algorithm_names(coll)[a];
}

static void check_reduce_scatter(int32_t *send, int32_t *recv)
{
    for (size_t a = 0; alg_name("reduce_scatter", a); a++) {
        cgloo_coll_opts o = {.algorithm = alg_name("reduce_scatter", a)};
        for (int i = 0; i < size * BLOCK; i++)
            send[i] = rank + i;
        MUST(o.algorithm, cgloo_reduce_scatter(ctx, send, recv, BLOCK, CGLOO_INT32, CGLOO_SUM, &o));
        for (int i = 0; i < BLOCK; i++)
            EXPECT(o.algorithm, recv[i] == size * (rank * BLOCK + i) + size * (size - 1) / 2);
    }
}

static void check_gather_scatter(int32_t *all, int32_t *mine)
{
    int root = size / 2;
    for (size_t a = 0; alg_name("gather", a); a++) {
        cgloo_coll_opts o = {.algorithm = alg_name("gather", a)};
        for (int i = 0; i < BLOCK; i++)
            mine[i] = rank * 1000 + i;
        MUST(o.algorithm, cgloo_gather(ctx, mine, all, BLOCK, CGLOO_INT32, root, &o));
        for (int i = 0; i < size * BLOCK && rank == root; i++)
            EXPECT(o.algorithm, all[i] == i / BLOCK * 1000 + i % BLOCK);
    }
    for (size_t a = 0; alg_name("scatter", a); a++) {
        cgloo_coll_opts o = {.algorithm = alg_name("scatter", a)};
        for (int i = 0; i < size * BLOCK; i++)
            all[i] = i / BLOCK * 1000 + i % BLOCK;
        MUST(o.algorithm, cgloo_scatter(ctx, all, mine, BLOCK, CGLOO_INT32, size - 1, &o));
        for (int i = 0; i < BLOCK; i++)
            EXPECT(o.algorithm, mine[i] == rank * 1000 + i);
    }
}

static void check_alltoall(int32_t *send, int32_t *recv)
{
    for (int i = 0; i < size * BLOCK; i++)
        send[i] = rank * 100000 + i / BLOCK * 1000 + i % BLOCK;
    MUST("alltoall", cgloo_alltoall(ctx, send, recv, BLOCK, CGLOO_INT32, NULL));
    for (int i = 0; i < size * BLOCK; i++)
        EXPECT("alltoall", recv[i] == i / BLOCK * 100000 + rank * 1000 + i % BLOCK);
}

/* The collectives check_allreduce and check_data_movement leave out, every algorithm of each. */
static void check_blocks(void)
{
    int32_t *a = malloc(sizeof(int32_t) * BLOCK * (size_t)size);
    int32_t *b = malloc(sizeof(int32_t) * BLOCK * (size_t)size);
    check_reduce_scatter(a, b);
    check_gather_scatter(a, b);
    check_alltoall(a, b);
    free(a);
    free(b);
}

#ifdef RANK_PROGRAM_MPI
/* Under mpirun, through cgloo_mpi: the world's context, and one more on a communicator split
 * in two, whose ranks and size are the sub-communicator's. */
static void check_mpi_split(void)
{
    MPI_Comm half;
    int world_rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank);
    EXPECT("MPI_Comm_split",
           MPI_Comm_split(MPI_COMM_WORLD, world_rank % 2, world_rank, &half) == MPI_SUCCESS);
    cgloo_context *sub = NULL;
    MUST("cgloo_context_create_from_mpi(half)", cgloo_context_create_from_mpi(half, &sub));
    int half_size;
    MPI_Comm_size(half, &half_size);
    EXPECT("sub size", cgloo_context_size(sub) == half_size);
    int64_t v = world_rank, want = 0;
    MPI_Allreduce(&v, &want, 1, MPI_INT64_T, MPI_SUM, half);
    MUST("allreduce(half)", cgloo_allreduce(sub, &v, &v, 1, CGLOO_INT64, CGLOO_SUM, NULL));
    EXPECT("allreduce(half) result", v == want);
    cgloo_context_destroy(sub);
    MPI_Comm_free(&half);
}
#endif

int main(int argc, char **argv)
{
#ifdef RANK_PROGRAM_MPI
    MPI_Init(&argc, &argv);
    int rc = cgloo_context_create_from_mpi(MPI_COMM_WORLD, &ctx);
#else
    int rc = cgloo_context_create_from_env(&ctx);
#endif
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "connect: %s: %s\n", cgloo_strerror(rc), detail);
        return 1;
    }
    rank = cgloo_context_rank(ctx);
    size = cgloo_context_size(ctx);
    check_p2p();
    check_allreduce();
    check_data_movement();
    check_blocks();
    cgloo_context_destroy(ctx);
#ifdef RANK_PROGRAM_MPI
    check_mpi_split();
    MPI_Finalize();
#endif
    return 0;
}
