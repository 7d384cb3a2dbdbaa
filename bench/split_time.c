/*
 * cgloo-split-time: how long a sub-context takes to make, by cgloo_context_split against a
 * store rendezvous of the same ranks. Run under cgloo-run; the ranks connect one parent, then
 * ITERS times each way make the even and odd halves, and then pairs of neighbours (and destroy
 * them), timing each from a barrier to the slowest rank's return. Rank 0 prints the medians in
 * ms, one line per shape.
 *   cgloo-run -n 16 cgloo-split-time [ITERS]     (docs/BENCHMARKS.md, "Sub-contexts")
 * SPLIT_TIME_STORE=URL (e.g. redis://127.0.0.1:6379) makes the groups' store
 * rendezvous use that store instead of cgloo-run's.
 */
#include <cgloo/cgloo.h>

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define MAX_ITERS 101

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* A shape of sub-contexts: a rank's color, its rank and the size of its group. */
typedef struct shape {
    const char *name;
    int (*color)(int rank, int size);
    int (*rank)(int rank, int size);
    int (*size)(int rank, int size);
} shape;

static int half_color(int rank, int size)
{
    (void)size;
    return rank % 2;
}
static int half_rank(int rank, int size)
{
    (void)size;
    return rank / 2;
}
static int half_size(int rank, int size)
{
    return (size + 1 - rank % 2) / 2;
}
static int pair_size(int rank, int size)
{
    return rank / 2 * 2 + 1 < size ? 2 : 1;
}

static const shape shapes[] = {{"halves", half_color, half_rank, half_size},
                               {"pairs", half_rank, half_color, pair_size}};

/* store_group connects the group of `rank` through the store under a name of its own. */
static int store_group(const shape *sh, cgloo_store *store, cgloo_device *dev, int rank, int size,
                       int iter, cgloo_context **out)
{
    char name[64];
    snprintf(name, sizeof name, "%s.%d.%d", sh->name, iter, sh->color(rank, size));
    cgloo_context_attr attr = {.name = name};
    int rc = cgloo_context_create(sh->rank(rank, size), sh->size(rank, size), &attr, out);
    if (rc == CGLOO_OK && (rc = cgloo_context_connect(*out, store, dev)) != CGLOO_OK) {
        cgloo_context_destroy(*out);
        *out = NULL;
    }
    return rc;
}

/* timed makes the groups one way and returns the slowest rank's time in µs (or -1). */
static int64_t timed(const shape *sh, cgloo_context *parent, cgloo_store *store, cgloo_device *dev,
                     int iter, int by_split)
{
    int rank = cgloo_context_rank(parent), size = cgloo_context_size(parent);
    cgloo_context *half = NULL;
    if (cgloo_barrier(parent, NULL) != CGLOO_OK)
        return -1;
    int64_t t0 = now_us();
    int rc = by_split ? cgloo_context_split(parent, sh->color(rank, size), rank, &half)
                      : store_group(sh, store, dev, rank, size, iter, &half);
    int64_t took = now_us() - t0, slowest = -1;
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(parent, detail, sizeof detail);
        fprintf(stderr, "rank %d: %s\n", rank, detail);
        return -1;
    }
    cgloo_context_destroy(half);
    if (cgloo_allreduce(parent, &took, &slowest, 1, CGLOO_INT64, CGLOO_MAX, NULL) != CGLOO_OK)
        return -1;
    return slowest;
}

static int run(const shape *sh, cgloo_context *parent, cgloo_store *store, cgloo_device *dev,
               int iters)
{
    int64_t split[MAX_ITERS], via_store[MAX_ITERS];
    for (int i = 0; i < iters; i++) {
        split[i] = timed(sh, parent, store, dev, i, 1);
        via_store[i] = timed(sh, parent, store, dev, i, 0);
        if (split[i] < 0 || via_store[i] < 0)
            return 1;
    }
    qsort(split, (size_t)iters, sizeof *split, cmp_i64);
    qsort(via_store, (size_t)iters, sizeof *via_store, cmp_i64);
    if (cgloo_context_rank(parent) == 0)
        printf("ranks %d shape %s iters %d median_split_ms %.2f median_store_ms %.2f\n",
               cgloo_context_size(parent), sh->name, iters, (double)split[iters / 2] / 1000,
               (double)via_store[iters / 2] / 1000);
    return 0;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 11;
    if (iters < 1 || iters > MAX_ITERS) {
        fprintf(stderr, "cgloo-split-time: ITERS must be from 1 to %d\n", MAX_ITERS);
        return 2;
    }
    cgloo_launch_info info;
    cgloo_store *store = NULL;
    cgloo_device *dev = NULL;
    cgloo_context *parent = NULL;
    cgloo_tcp_attr tcp = {.store_host = NULL};
    int rc = cgloo_launch_info_from_env(&info);
    if (rc == CGLOO_OK)
        rc = cgloo_launch_store_open(&info, 0, &store);
    if (rc == CGLOO_OK)
        rc = cgloo_device_tcp_create(&tcp, &dev);
    if (rc == CGLOO_OK)
        rc = cgloo_context_create(info.rank, info.size, NULL, &parent);
    if (rc == CGLOO_OK)
        rc = cgloo_context_connect(parent, store, dev);
    const char *url = getenv("SPLIT_TIME_STORE");
    cgloo_store *groups = NULL;
    if (rc == CGLOO_OK && url && *url)
        rc = cgloo_store_open(url, 0, &groups);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "cgloo-split-time: %s (%s)\n", cgloo_strerror(rc), detail);
    } else {
        for (size_t i = 0; rc == CGLOO_OK && i < sizeof shapes / sizeof shapes[0]; i++)
            rc = run(&shapes[i], parent, groups ? groups : store, dev, iters);
    }
    cgloo_context_destroy(parent);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(groups);
    cgloo_store_destroy(store);
    return rc == CGLOO_OK ? 0 : 1;
}
