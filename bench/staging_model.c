/*
 * A two-process model of a 2-rank float32 sum allreduce, without the library, to ask whether
 * staging through a shared mapping would beat the single copy (process_vm_readv/writev) that
 * allreduce's single_copy algorithm uses. Each rank owns half of the vector and reduces it a
 * chunk at a time; the modes differ in how the halves cross:
 *
 *   vm     read the peer's half of its input (process_vm_readv), reduce it with this rank's,
 *          write the reduced chunk into the peer's output (process_vm_writev): what the library
 *          does
 *   stage  copy the half the peer reduces into a shared mapping, reduce the peer's staged chunk
 *          into this rank's output and into the mapping at once, copy the peer's reduced chunks
 *          out of the mapping
 *   mixed  read as vm does, hand the reduced chunk over through the mapping as stage does
 *
 * Ranks are a parent and its child, flags in the mapping say which chunks are ready; every
 * iteration starts with a two-flag barrier and is checked at the end.
 *
 *   build/tools/cgloo-staging-model BYTES CHUNK_BYTES vm|stage|mixed ITERATIONS
 *
 * Prints one line: the p50 and minimum of rank 0's iteration times in microseconds. Figures:
 * docs/BENCHMARKS.md, "Single copy".
 */
#define _GNU_SOURCE
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_CHUNKS 4096

typedef struct flag {
    _Alignas(64) _Atomic uint64_t v;
} flag;

/* The shared control block: barrier flags, per-chunk ready flags, the ranks' buffer addresses. */
typedef struct shared {
    flag barrier[2];
    flag staged[2][MAX_CHUNKS];  /* rank r's input chunk k is in the mapping */
    flag reduced[2][MAX_CHUNKS]; /* rank r's reduced chunk k is in the mapping */
    flag done[2];                /* rank r has written every reduced chunk into its peer */
    _Atomic uint64_t in_addr[2], out_addr[2];
} shared;

enum mode { VM, STAGE, MIXED };

typedef struct rank {
    int r;
    pid_t peer;
    shared *sh;
    float *in, *out, *scratch;
    uint8_t *stage_in[2], *stage_out[2]; /* rank r's halves of the mapping */
    size_t half, chunk, nchunks;
} rank;

static double now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static void wait_for(_Atomic uint64_t *f, uint64_t v)
{
    while (atomic_load_explicit(f, memory_order_acquire) < v)
        __builtin_ia32_pause();
}

static void publish(_Atomic uint64_t *f, uint64_t v)
{
    atomic_store_explicit(f, v, memory_order_release);
}

static void sum_into(float *restrict o, const float *restrict a, const float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        o[i] = a[i] + b[i];
}

static void sum_into_two(float *restrict o, float *restrict o2, const float *restrict a,
                         const float *restrict b, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float s = a[i] + b[i];
        o[i] = s;
        o2[i] = s;
    }
}

static size_t chunk_len(const rank *k, size_t c)
{
    size_t off = c * k->chunk;
    return off + k->chunk > k->half ? k->half - off : k->chunk;
}

/* peer_read reads len bytes at the peer's address into dst (process_vm_readv). */
static void peer_read(const rank *k, void *dst, uint64_t src, size_t len)
{
    struct iovec l = {dst, len}, p = {(void *)(uintptr_t)src, len};
    if (process_vm_readv(k->peer, &l, 1, &p, 1, 0) != (ssize_t)len)
        perror("process_vm_readv"), exit(1);
}

static void peer_write(const rank *k, uint64_t dst, const void *src, size_t len)
{
    struct iovec l = {(void *)src, len}, p = {(void *)(uintptr_t)dst, len};
    if (process_vm_writev(k->peer, &l, 1, &p, 1, 0) != (ssize_t)len)
        perror("process_vm_writev"), exit(1);
}

static void iterate_vm(rank *k, uint64_t it)
{
    size_t mine = k->r * k->half / 4;
    uint64_t pin = atomic_load(&k->sh->in_addr[1 - k->r]);
    uint64_t pout = atomic_load(&k->sh->out_addr[1 - k->r]);
    for (size_t c = 0; c < k->nchunks; c++) {
        size_t off = c * k->chunk, len = chunk_len(k, c);
        size_t at = mine + off / 4;
        peer_read(k, k->scratch, pin + at * 4, len);
        sum_into(k->out + at, k->in + at, k->scratch, len / 4);
        peer_write(k, pout + at * 4, k->out + at, len);
    }
    publish(&k->sh->done[k->r].v, it);
    wait_for(&k->sh->done[1 - k->r].v, it);
}

/* take_reduced copies the peer's reduced chunk c out of the mapping into this rank's output. */
static void take_reduced(rank *k, size_t c, uint64_t it)
{
    size_t off = c * k->chunk, theirs = (1 - k->r) * k->half;
    wait_for(&k->sh->reduced[1 - k->r][c].v, it);
    memcpy((uint8_t *)k->out + theirs + off, k->stage_out[1 - k->r] + off, chunk_len(k, c));
}

static void iterate_staged(rank *k, uint64_t it, enum mode m)
{
    size_t mine = k->r * k->half, theirs = (1 - k->r) * k->half;
    uint64_t pin = atomic_load(&k->sh->in_addr[1 - k->r]);
    for (size_t c = 0; c <= k->nchunks; c++) {
        if (c < k->nchunks) {
            size_t off = c * k->chunk, len = chunk_len(k, c);
            const float *peer_chunk = k->scratch;
            if (m == STAGE) {
                memcpy(k->stage_in[k->r] + off, (uint8_t *)k->in + theirs + off, len);
                publish(&k->sh->staged[k->r][c].v, it);
                wait_for(&k->sh->staged[1 - k->r][c].v, it);
                peer_chunk = (const float *)(k->stage_in[1 - k->r] + off);
            } else {
                peer_read(k, k->scratch, pin + mine + off, len);
            }
            float *o = (float *)((uint8_t *)k->out + mine + off);
            sum_into_two(o, (float *)(k->stage_out[k->r] + off),
                         (const float *)((uint8_t *)k->in + mine + off), peer_chunk, len / 4);
            publish(&k->sh->reduced[k->r][c].v, it);
        }
        if (c > 0)
            take_reduced(k, c - 1, it);
    }
}

/* page_alloc: page-aligned memory (aligned_alloc wants a size that is a multiple of the page). */
static void *page_alloc(size_t bytes)
{
    return aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
}

static int check(const rank *k)
{
    for (size_t i = 0; i < k->half * 2 / 4; i++)
        if (k->out[i] != (float)i * 3.0f)
            return 1;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s BYTES CHUNK_BYTES vm|stage|mixed ITERATIONS\n", argv[0]);
        return 2;
    }
    size_t bytes = strtoull(argv[1], NULL, 0), chunk = strtoull(argv[2], NULL, 0);
    enum mode m = !strcmp(argv[3], "vm") ? VM : !strcmp(argv[3], "stage") ? STAGE : MIXED;
    int iters = atoi(argv[4]);
    rank k = {.half = bytes / 2, .chunk = chunk};
    k.nchunks = (k.half + chunk - 1) / chunk;
    if (bytes % 8 || !chunk || chunk % 4 || k.nchunks > MAX_CHUNKS || iters < 1) {
        fprintf(stderr, "BYTES a multiple of 8, CHUNK_BYTES of 4, at most %d chunks\n", MAX_CHUNKS);
        return 2;
    }
    k.sh = mmap(NULL, sizeof *k.sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint8_t *map = mmap(NULL, 2 * bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (k.sh == MAP_FAILED || map == MAP_FAILED)
        return perror("mmap"), 1;
    memset(map, 0, 2 * bytes);
    (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY); /* the child reads the parent (Yama) */
    pid_t child = fork();
    k.r = child == 0;
    k.peer = k.r ? getppid() : child;
    for (int q = 0; q < 2; q++) {
        k.stage_in[q] = map + (size_t)q * k.half;
        k.stage_out[q] = map + bytes + (size_t)q * k.half;
    }
    k.in = page_alloc(bytes);
    k.out = page_alloc(bytes);
    k.scratch = page_alloc(chunk);
    double *t = malloc(sizeof *t * (size_t)iters);
    if (!k.in || !k.out || !k.scratch || !t)
        return perror("malloc"), 1;
    for (size_t i = 0; i < bytes / 4; i++)
        k.in[i] = (float)i * (float)(k.r + 1);
    memset(k.out, 0, bytes);
    memset(k.scratch, 0, chunk);
    atomic_store(&k.sh->in_addr[k.r], (uint64_t)(uintptr_t)k.in);
    atomic_store(&k.sh->out_addr[k.r], (uint64_t)(uintptr_t)k.out);
    for (int i = 0; i < iters; i++) {
        uint64_t it = (uint64_t)i + 1;
        publish(&k.sh->barrier[k.r].v, it);
        wait_for(&k.sh->barrier[1 - k.r].v, it);
        double t0 = now_us();
        if (m == VM)
            iterate_vm(&k, it);
        else
            iterate_staged(&k, it, m);
        t[i] = now_us() - t0;
    }
    int bad = check(&k);
    qsort(t, (size_t)iters, sizeof *t, cmp_double);
    if (k.r == 0) {
        int status = 0;
        wait(&status);
        bad |= !WIFEXITED(status) || WEXITSTATUS(status) != 0;
        printf("%s bytes=%zu chunk=%zu p50_us=%.1f min_us=%.1f%s\n", argv[3], bytes, chunk,
               t[iters / 2], t[0], bad ? " WRONG RESULT" : "");
    }
    free(t); /* the peer is done with this rank's buffers: its last chunk was waited for */
    free(k.scratch);
    free(k.out);
    free(k.in);
    munmap(map, 2 * bytes);
    munmap(k.sh, sizeof *k.sh);
    return bad;
}
