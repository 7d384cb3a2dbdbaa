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
 * iteration starts with a two-flag barrier. The sums are checked at the end; with `check`, the
 * inputs change and the output is cleared before every iteration and checked after it (outside
 * the timed part, but the caches then hold other lines: for the tests, not for figures).
 *
 *   build/tools/cgloo-staging-model BYTES CHUNK_BYTES vm|stage|mixed ITERATIONS [check]
 *
 * Prints one line: the p50 and minimum of rank 0's iteration times in microseconds. Exits 0,
 * 1 on a wrong sum or a failure, 2 on bad arguments, 77 where the kernel refuses
 * process_vm_readv between the two (ptrace scope). Figures: docs/BENCHMARKS.md, "Single copy".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
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
#define EXIT_REFUSED 77
/* A rank that waits this long for its peer gives up (the peer died or is stuck). */
#define WAIT_LIMIT_S 20

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
    _Atomic int quit; /* non-zero: a rank failed, and this is its exit status */
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

static void pause_briefly(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* quit ends this rank with status, and tells the peer to end likewise. */
static _Noreturn void quit(shared *sh, int status)
{
    atomic_store(&sh->quit, status);
    exit(status);
}

/* wait_for spins until *f reaches v; ends the rank if the peer quit or never comes. */
static void wait_for(shared *sh, _Atomic uint64_t *f, uint64_t v)
{
    double limit = now_us() + WAIT_LIMIT_S * 1e6;
    for (unsigned spins = 1; atomic_load_explicit(f, memory_order_acquire) < v; spins++) {
        pause_briefly();
        if (spins % 4096 == 0)
            sched_yield(); /* the peer may be waiting for this core */
        if (spins % 4096 == 0 && atomic_load(&sh->quit))
            exit(atomic_load(&sh->quit));
        if (spins % 4096 == 0 && now_us() > limit) {
            fprintf(stderr, "staging_model: the peer did not answer in %d s\n", WAIT_LIMIT_S);
            quit(sh, 1);
        }
    }
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

/* vm_failed ends the rank after a refused or short process_vm_readv/writev. */
static _Noreturn void vm_failed(const rank *k, const char *call)
{
    bool refused = errno == EPERM || errno == ENOSYS;
    fprintf(stderr, "staging_model: %s: %s%s\n", call, strerror(errno),
            refused ? " (the kernel refuses it here: ptrace scope)" : "");
    quit(k->sh, refused ? EXIT_REFUSED : 1);
}

/* peer_read reads len bytes at the peer's address into dst (process_vm_readv). */
static void peer_read(const rank *k, void *dst, uint64_t src, size_t len)
{
    struct iovec l = {dst, len}, p = {(void *)(uintptr_t)src, len};
    errno = 0;
    if (process_vm_readv(k->peer, &l, 1, &p, 1, 0) != (ssize_t)len)
        vm_failed(k, "process_vm_readv");
}

static void peer_write(const rank *k, uint64_t dst, const void *src, size_t len)
{
    struct iovec l = {(void *)src, len}, p = {(void *)(uintptr_t)dst, len};
    errno = 0;
    if (process_vm_writev(k->peer, &l, 1, &p, 1, 0) != (ssize_t)len)
        vm_failed(k, "process_vm_writev");
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
    wait_for(k->sh, &k->sh->done[1 - k->r].v, it);
}

/* take_reduced copies the peer's reduced chunk c out of the mapping into this rank's output. */
static void take_reduced(rank *k, size_t c, uint64_t it)
{
    size_t off = c * k->chunk, theirs = (1 - k->r) * k->half;
    wait_for(k->sh, &k->sh->reduced[1 - k->r][c].v, it);
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
                wait_for(k->sh, &k->sh->staged[1 - k->r][c].v, it);
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

/* Input i of rank r in iteration it: small integers, so that every sum is exact. */
static float input(size_t i, int r, uint64_t it)
{
    return (float)((i + it) % 4096) * (float)(r + 1);
}

static void fill_inputs(rank *k, uint64_t it)
{
    for (size_t i = 0; i < k->half * 2 / 4; i++)
        k->in[i] = input(i, k->r, it);
}

static bool sums_right(const rank *k, uint64_t it)
{
    for (size_t i = 0; i < k->half * 2 / 4; i++)
        if (k->out[i] != input(i, 0, it) + input(i, 1, it))
            return false;
    return true;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* run_iterations times every iteration into t; with `check`, fresh inputs and a cleared output
 * before each and its sums checked after. Returns whether every checked sum was right. */
static bool run_iterations(rank *k, enum mode m, int iters, bool check, double *t)
{
    bool right = true;
    for (int i = 0; i < iters; i++) {
        uint64_t it = (uint64_t)i + 1;
        if (check) { /* the peer is done with this rank's buffers: see the end of iterate_* */
            fill_inputs(k, it);
            memset(k->out, 0, k->half * 2);
        }
        publish(&k->sh->barrier[k->r].v, it);
        wait_for(k->sh, &k->sh->barrier[1 - k->r].v, it);
        double t0 = now_us();
        if (m == VM)
            iterate_vm(k, it);
        else
            iterate_staged(k, it, m);
        t[i] = now_us() - t0;
        if (check || i == iters - 1)
            right &= sums_right(k, check ? it : 0);
    }
    return right;
}

/* parse reads the arguments into *k, *m, *iters and *check; false on bad ones. */
static bool parse(int argc, char **argv, rank *k, enum mode *m, int *iters, bool *check)
{
    if (argc != 5 && !(argc == 6 && !strcmp(argv[5], "check")))
        return false;
    size_t bytes = strtoull(argv[1], NULL, 0), chunk = strtoull(argv[2], NULL, 0);
    *k = (rank){.half = bytes / 2, .chunk = chunk};
    *m = !strcmp(argv[3], "vm") ? VM : !strcmp(argv[3], "stage") ? STAGE : MIXED;
    *iters = atoi(argv[4]);
    *check = argc == 6;
    k->nchunks = chunk ? (k->half + chunk - 1) / chunk : 0;
    return bytes && bytes % 8 == 0 && chunk && chunk % 4 == 0 && k->nchunks <= MAX_CHUNKS &&
           *iters >= 1 && (*m != MIXED || !strcmp(argv[3], "mixed"));
}

/* start_ranks forks the child (rank 1), which dies with the parent. */
static bool start_ranks(rank *k)
{
    pid_t parent = getpid();
    (void)prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY); /* the child reads the parent (Yama) */
    pid_t child = fork();
    if (child < 0)
        return perror("fork"), false;
    k->r = child == 0;
    k->peer = k->r ? parent : child;
    if (k->r && (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent))
        exit(1);
    return true;
}

/* rank_status: what the child's exit says, for the parent's own (0 when it succeeded). */
static int rank_status(pid_t child)
{
    int status = 0;
    if (waitpid(child, &status, 0) != child)
        return perror("waitpid"), 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
    rank k;
    enum mode m;
    int iters;
    bool check;
    if (!parse(argc, argv, &k, &m, &iters, &check)) {
        fprintf(stderr,
                "usage: %s BYTES CHUNK_BYTES vm|stage|mixed ITERATIONS [check]\n"
                "  BYTES a multiple of 8, CHUNK_BYTES of 4, at most %d chunks a half\n",
                argv[0], MAX_CHUNKS);
        return 2;
    }
    size_t bytes = k.half * 2;
    k.sh = mmap(NULL, sizeof *k.sh, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint8_t *map = mmap(NULL, 2 * bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (k.sh == MAP_FAILED || map == MAP_FAILED)
        return perror("mmap"), 1;
    memset(map, 0, 2 * bytes);
    if (!start_ranks(&k))
        return 1;
    for (int q = 0; q < 2; q++) {
        k.stage_in[q] = map + (size_t)q * k.half;
        k.stage_out[q] = map + bytes + (size_t)q * k.half;
    }
    k.in = page_alloc(bytes);
    k.out = page_alloc(bytes);
    k.scratch = page_alloc(k.chunk);
    double *t = malloc(sizeof *t * (size_t)iters);
    if (!k.in || !k.out || !k.scratch || !t) {
        perror("malloc");
        quit(k.sh, 1);
    }
    fill_inputs(&k, 0);
    memset(k.out, 0, bytes);
    memset(k.scratch, 0, k.chunk);
    atomic_store(&k.sh->in_addr[k.r], (uint64_t)(uintptr_t)k.in);
    atomic_store(&k.sh->out_addr[k.r], (uint64_t)(uintptr_t)k.out);
    int status = run_iterations(&k, m, iters, check, t) ? 0 : 1;
    qsort(t, (size_t)iters, sizeof *t, cmp_double);
    if (k.r == 0) {
        int child = rank_status(k.peer);
        status = status ? status : child;
        printf("%s bytes=%zu chunk=%zu p50_us=%.1f min_us=%.1f%s\n", argv[3], bytes, k.chunk,
               t[iters / 2], t[0], status == 1 ? " WRONG RESULT" : "");
    }
    free(t); /* the peer is done with this rank's buffers: its last chunk was waited for */
    free(k.scratch);
    free(k.out);
    free(k.in);
    munmap(map, 2 * bytes);
    munmap(k.sh, sizeof *k.sh);
    return status;
}
