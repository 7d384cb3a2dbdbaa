/*
 * The shared-memory transport: which peers it binds, both large-message paths between real
 * processes, waiting on TCP and shared-memory peers at once, and a rank killed with SIGKILL
 * (its peers fail naming it; nothing is left in /dev/shm, in the survivors' descriptors or in
 * their mappings).
 */
#define _GNU_SOURCE /* unshare */
#include "mesh.h"
#include "core/context.h"
#include "rendezvous/local_peers.h"

#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <net/if.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

/* ---- log capture: the transport logs how it bound peers and moved large messages ---- */

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static char log_text[1 << 16];

static void capture(cgloo_log_level level, const char *line, void *user)
{
    (void)level;
    (void)user;
    pthread_mutex_lock(&log_lock);
    size_t n = strlen(log_text);
    snprintf(log_text + n, sizeof log_text - n, "%s\n", line);
    pthread_mutex_unlock(&log_lock);
}

static void capture_start(void)
{
    log_text[0] = '\0';
    cgloo_log_set_level(CGLOO_LOG_DEBUG);
    cgloo_log_set_sink(capture, NULL);
}

static bool logged(const char *what)
{
    pthread_mutex_lock(&log_lock);
    bool found = strstr(log_text, what) != NULL;
    pthread_mutex_unlock(&log_lock);
    return found;
}

/* connect_with connects rank through store, asking for `transport` (NULL: the default). */
static rank_env connect_with(cgloo_store *store, int rank, int size, const char *transport)
{
    rank_env e = {0};
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {.timeout_ms = 10000, .name = "shm", .transport = transport};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    int rc = cgloo_context_connect(e.ctx, store, e.dev);
    if (rc != CGLOO_OK) {
        char detail[512];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, "cgloo_context_connect", detail);
    }
    return e;
}

/* ---- binding ---- */

static cgloo_store *thread_store;

/* Rank 0 asks for TCP only, ranks 1 and 2 for shared memory: 1 and 2 bind each other to shared
 * memory and rank 0 to TCP, and rank 0 binds everyone to TCP. Rank 1 then waits on both at once
 * (a receive from the set {0, 2}), long enough to sleep, and each sender wakes it. */
static void rank_mixed(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = connect_with(thread_store, rank, size, rank == 0 ? "tcp" : "shm");
    if (rank == 1) {
        int srcs[] = {0, 2}, seen = 0;
        for (int i = 0; i < 2; i++) {
            int v;
            cgloo_completion c;
            CHECK_OK(cgloo_recv_any(e.ctx, &v, sizeof v, srcs, 2, 5, 0, &c));
            CHECK(v == 100 + c.source);
            seen |= 1 << c.source;
        }
        CHECK(seen == 5);
    } else {
        test_sleep_ms(rank == 0 ? 100 : 300); /* well past the spin: rank 1 sleeps */
        int v = 100 + rank;
        CHECK_OK(cgloo_send(e.ctx, &v, sizeof v, 1, 5, 0));
    }
    float x[3] = {1, 2, (float)rank};
    CHECK_OK(cgloo_allreduce(e.ctx, x, x, 3, CGLOO_FLOAT32, CGLOO_SUM, NULL));
    CHECK(x[0] == 3 && x[1] == 6 && x[2] == 3);
    mesh_close(e);
}

static void test_mixed_binding(void)
{
    capture_start();
    CHECK_OK(cgloo_store_hash_create(&thread_store));
    run_ranks(3, rank_mixed, NULL);
    cgloo_store_destroy(thread_store);
    CHECK(logged("[1/3] 1 peers on this host over shm"));
    CHECK(logged("[2/3] 1 peers on this host over shm"));
    CHECK(!logged("[0/3] 1 peers on this host over shm") && !logged("[0/3] 2 peers"));
}

static void rank_default(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = connect_with(thread_store, rank, size, NULL);
    int v = rank;
    CHECK_OK(cgloo_allreduce(e.ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK(v == 1);
    mesh_close(e);
}

/* Without CGLOO_TRANSPORT or the attribute (auto), peers on this host go through shared
 * memory; CGLOO_TRANSPORT=tcp keeps every peer on TCP. */
static void test_default_is_auto(void)
{
    const char *was = getenv("CGLOO_TRANSPORT");
    char saved[16] = "";
    if (was)
        snprintf(saved, sizeof saved, "%s", was);
    unsetenv("CGLOO_TRANSPORT");
    capture_start();
    CHECK_OK(cgloo_store_hash_create(&thread_store));
    run_ranks(2, rank_default, NULL);
    cgloo_store_destroy(thread_store);
    CHECK(logged("[0/2] 1 peers on this host over shm") &&
          logged("[1/2] 1 peers on this host over shm"));
    setenv("CGLOO_TRANSPORT", "tcp", 1);
    capture_start();
    CHECK_OK(cgloo_store_hash_create(&thread_store));
    run_ranks(2, rank_default, NULL);
    cgloo_store_destroy(thread_store);
    CHECK(!logged("over shm"));
    if (was)
        setenv("CGLOO_TRANSPORT", saved, 1);
    else
        unsetenv("CGLOO_TRANSPORT");
}

static void test_bad_transport(void)
{
    cgloo_context *ctx = NULL;
    cgloo_context_attr attr = {.transport = "udp"};
    CHECK_STATUS(cgloo_context_create(0, 2, &attr, &ctx), CGLOO_EINVAL);
    char detail[256];
    cgloo_last_error(detail, sizeof detail);
    CHECK(strstr(detail, "'udp'") && strstr(detail, "auto, tcp, shm"));
    cgloo_tcp_attr dattr = mesh_loopback;
    dattr.transport = "udp";
    cgloo_device *dev = NULL;
    CHECK_STATUS(cgloo_device_tcp_create(&dattr, &dev), CGLOO_EINVAL);
    cgloo_last_error(detail, sizeof detail);
    CHECK(strstr(detail, "'udp'") && strstr(detail, "auto, tcp, shm"));
}

/* The device's transport: contexts without their own connect as it says (here over TCP, with
 * CGLOO_TRANSPORT=shm in the environment); a context's own attribute wins over it. */
typedef struct device_case {
    const char *device, *context;
} device_case;

static void rank_device_transport(int rank, int size, void *arg)
{
    const device_case *dc = arg;
    rank_env e = {0};
    cgloo_tcp_attr dattr = mesh_loopback;
    dattr.transport = dc->device;
    CHECK_OK(cgloo_device_tcp_create(&dattr, &e.dev));
    cgloo_context_attr attr = {.timeout_ms = 10000, .name = "devt", .transport = dc->context};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    CHECK_OK(cgloo_context_connect(e.ctx, thread_store, e.dev));
    int v = rank;
    CHECK_OK(cgloo_allreduce(e.ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK(v == 1);
    mesh_close(e);
}

static bool run_device_transport(const char *device, const char *context)
{
    device_case dc = {device, context};
    capture_start();
    CHECK_OK(cgloo_store_hash_create(&thread_store));
    run_ranks(2, rank_device_transport, &dc);
    cgloo_store_destroy(thread_store);
    return logged("[0/2] 1 peers on this host over shm") &&
           logged("[1/2] 1 peers on this host over shm");
}

static void test_device_transport(void)
{
    const char *was = getenv("CGLOO_TRANSPORT");
    char saved[16] = "";
    if (was)
        snprintf(saved, sizeof saved, "%s", was);
    setenv("CGLOO_TRANSPORT", "shm", 1);
    CHECK(!run_device_transport("tcp", NULL));
    CHECK(run_device_transport("tcp", "auto"));
    CHECK(run_device_transport(NULL, NULL));
    setenv("CGLOO_TRANSPORT", "tcp", 1);
    CHECK(run_device_transport("auto", NULL));
    if (was)
        setenv("CGLOO_TRANSPORT", saved, 1);
    else
        unsetenv("CGLOO_TRANSPORT");
}

/* ---- what the records decide ---- */

typedef struct record_case {
    const char *suffix; /* after the host tag of rank 1's record; NULL: as this rank's */
    bool shm;           /* rank 1 is bound to shared memory */
} record_case;

/* bind_with binds rank 1 of a 2-rank context whose mode is `mode` from a record with `suffix`;
 * returns the status, *shm whether rank 1 went to shared memory. */
static int bind_with(const char *mode, const char *suffix, bool *shm)
{
    cgloo_context *ctx;
    cgloo_context_attr attr = {.transport = mode};
    CHECK_OK(cgloo_context_create(0, 2, &attr, &ctx));
    char mine[CGLOO__HOST_SUFFIX_MAX];
    cgloo__host_suffix(ctx, mine, sizeof mine);
    CHECK(mine[0] != '\0');
    cgloo__peer_record recs[2] = {{.nonce = 1}, {.nonce = 2}};
    snprintf(recs[1].address, sizeof recs[1].address, "127.0.0.1:9%s", suffix ? suffix : mine);
    int n_local = -1;
    int rc = cgloo__bind_local_peers(ctx, recs, mine, &n_local);
    *shm = ctx->peers[1].transport == &cgloo__shm_transport;
    CHECK(strcmp(recs[1].address, "127.0.0.1:9") == 0); /* TCP sees the plain address */
    CHECK(rc != CGLOO_OK || n_local == (*shm ? 1 : 0));
    cgloo_context_destroy(ctx);
    return rc;
}

/* own_with returns this rank's suffix with its user id or its letters replaced. */
static const char *own_with(const char *mode, int at, const char *text)
{
    static char buf[CGLOO__HOST_SUFFIX_MAX];
    cgloo_context *ctx;
    cgloo_context_attr attr = {.transport = mode};
    CHECK_OK(cgloo_context_create(0, 2, &attr, &ctx));
    cgloo__host_suffix(ctx, buf, sizeof buf);
    cgloo_context_destroy(ctx);
    memcpy(buf + at, text, strlen(text));
    return buf;
}

/* The records decide which pairs share memory, alike on both ranks and before any connection:
 * the same host and user with segments on both sides share; another user or a rank without
 * segments stays on TCP under auto and fails at once under shm; a record the store mangled is
 * a peer of another host. */
static void test_records_decide(void)
{
    enum { UID = 6 + 17, MODE = 6 + 26 }; /* offsets in "|host=<16>/<8>/<m><s>" */
    bool shm;
    capture_start();
    CHECK_OK(bind_with("auto", NULL, &shm));
    CHECK(shm);
    CHECK_OK(bind_with("auto", own_with("auto", UID, "7fff0000"), &shm));
    CHECK(!shm && logged("run as different users; it is reached over TCP instead"));
    CHECK_OK(bind_with("auto", own_with("auto", MODE, "an"), &shm));
    CHECK(!shm && logged("rank 1 cannot make a shared segment"));
    CHECK_STATUS(bind_with("auto", own_with("auto", MODE, "sn"), &shm), CGLOO_ENOTSUP);
    CHECK_STATUS(bind_with("shm", own_with("shm", UID, "7fff0000"), &shm), CGLOO_ENOTSUP);
    const char *bad[] = {"|host=",
                         "|host=zz",
                         "|host=0123456789abcdef",
                         "|host=0123456789abcdef/",
                         "|host=0123456789abcdef/00000000/ax",
                         "|host=0123456789abcdef/0000000g/ay",
                         "|host=0123456789abcdef/00000000/ayy"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK_OK(bind_with("shm", bad[i], &shm));
        CHECK(!shm);
    }
}

/* ---- lazy contexts and sub-contexts ---- */

/* split_ok splits ctx, failing with the detail when it does not work. */
static cgloo_context *split_ok(cgloo_context *ctx, int color)
{
    cgloo_context *child = NULL;
    int rc = cgloo_context_split(ctx, color, 0, &child);
    if (rc != CGLOO_OK) {
        char detail[512];
        cgloo_context_last_error(ctx, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, "cgloo_context_split", detail);
    }
    return child;
}

static void sum_ok(cgloo_context *ctx, int want)
{
    int v = 1;
    CHECK_OK(cgloo_allreduce(ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK(v == want);
}

typedef struct lazy_case {
    bool lazy;
    const char *rank0; /* rank 0's transport; the others ask for auto */
} lazy_case;

/* Four ranks, rank 0 asking for `rank0`: in the parent and in a child of all four, the ranks
 * that share memory do so; the child of ranks 2 and 3 (color 1) shares memory too. A lazy
 * context connects nothing at connect or split, over shared memory or TCP: its pairs connect on
 * first use. */
static void rank_split_shm(int rank, int size, void *arg)
{
    const lazy_case *lc = arg;
    rank_env e = {0};
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {.timeout_ms = 10000,
                               .name = "split",
                               .lazy = lc->lazy ? 1 : -1,
                               .transport = rank == 0 ? lc->rank0 : "auto"};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    CHECK_OK(cgloo_context_connect(e.ctx, thread_store, e.dev));
    if (lc->lazy)
        CHECK(cgloo_context_connections(e.ctx) == 0);
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    sum_ok(e.ctx, 4);
    CHECK(cgloo_context_connections(e.ctx) > 0);
    cgloo_context *all = split_ok(e.ctx, 0);
    CHECK(cgloo_context_connections(all) == (lc->lazy ? 0 : 3));
    CHECK_OK(cgloo_barrier(e.ctx, NULL)); /* no child sends (a lazy dial) before every count */
    sum_ok(all, 4);
    cgloo_context *half = split_ok(e.ctx, rank / 2);
    int conns = cgloo_context_connections(half);
    if (conns != (lc->lazy ? 0 : 1)) {
        char detail[64];
        snprintf(detail, sizeof detail, "rank %d: %d connections", rank, conns);
        harness_fail(__FILE__, __LINE__, "the half's connections", detail);
    }
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    sum_ok(half, 2);
    cgloo_context_destroy(half);
    cgloo_context_destroy(all);
    mesh_close(e);
}

/* ---- strangers at a lazy context's socket ---- */

#define STRANGERS 9 /* more than the pool's room for sockets without a hello (3 ranks: 2 * 3) */

static pthread_barrier_t strangers_ready;
static uint64_t strangers_target[2]; /* rank 0's context id and nonce */

/* stranger_connect opens a connection to rank 0's abstract socket that says nothing. */
static int stranger_connect(void)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    int n =
        snprintf(sa.sun_path + 1, sizeof sa.sun_path - 1, "cgloo-shm/%016llx/%016llx",
                 (unsigned long long)strangers_target[0], (unsigned long long)strangers_target[1]);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&sa,
                  (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n)) == 0);
    return fd;
}

/* Three lazy ranks over shared memory; before any pair connects, a stranger holds STRANGERS
 * silent connections to rank 0's socket. Rank 0's pairs still connect (its peers' dials are
 * answered, the silent sockets are closed as they crowd in), and every message arrives. */
static void rank_strangers(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = {0};
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {
        .timeout_ms = 10000, .name = "strangers", .lazy = 1, .transport = "shm"};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    CHECK_OK(cgloo_context_connect(e.ctx, thread_store, e.dev));
    int fds[STRANGERS];
    if (rank == 0) {
        strangers_target[0] = e.ctx->ctx_id;
        strangers_target[1] = e.ctx->nonce;
    }
    pthread_barrier_wait(&strangers_ready);
    for (int i = 0; rank == 1 && i < STRANGERS; i++)
        fds[i] = stranger_connect();
    pthread_barrier_wait(&strangers_ready);
    for (int round = 0; round < 3; round++) {
        int v[3] = {rank, rank * 10, round};
        CHECK_OK(cgloo_allreduce(e.ctx, v, v, 3, CGLOO_INT32, CGLOO_SUM, NULL));
        CHECK(v[0] == 3 && v[1] == 30 && v[2] == 3 * round);
    }
    CHECK(cgloo_context_connections(e.ctx) == 2);
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    for (int i = 0; rank == 1 && i < STRANGERS; i++)
        close(fds[i]);
    mesh_close(e);
}

static void test_strangers_idle(void)
{
    capture_start();
    pthread_barrier_init(&strangers_ready, NULL, 3);
    CHECK_OK(cgloo_store_hash_create(&thread_store));
    run_ranks(3, rank_strangers, NULL);
    cgloo_store_destroy(thread_store);
    pthread_barrier_destroy(&strangers_ready);
    CHECK(logged("closed a connection that sent no hello"));
}

/* ---- a full listen queue ---- */

#define QUEUE_RANKS 8

/* Rank 0 makes no call for a while after connecting, and the 7 others send to it at once: with
 * net.core.somaxconn at 2 its socket's queue holds 3 of their dials, the others find it full
 * and retry until rank 0 accepts. Every message arrives. */
static void rank_queue(int rank, int size, void *arg)
{
    (void)arg;
    rank_env e = {0};
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {.timeout_ms = 10000, .name = "queue", .lazy = 1, .transport = "shm"};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    CHECK_OK(cgloo_context_connect(e.ctx, thread_store, e.dev));
    int v = 100 + rank;
    if (rank == 0) {
        test_sleep_ms(300);
        for (int r = 1; r < size; r++) {
            cgloo_completion c;
            CHECK_OK(cgloo_recv(e.ctx, &v, sizeof v, r, 4, 0, &c));
            CHECK(v == 100 + r);
        }
    } else {
        int rc = cgloo_send(e.ctx, &v, sizeof v, 0, 4, 0);
        if (rc != CGLOO_OK) {
            char detail[512];
            cgloo_context_last_error(e.ctx, detail, sizeof detail);
            harness_fail(__FILE__, __LINE__, "send to rank 0", detail);
        }
    }
    CHECK_OK(cgloo_barrier(e.ctx, NULL));
    mesh_close(e);
}

/* queue_world runs the ranks in a network namespace of its own (abstract sockets and
 * somaxconn are per namespace), with loopback up for the TCP device. */
static void queue_world(void)
{
    CHECK(unshare(CLONE_NEWNET) == 0);
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    struct ifreq ifr = {0};
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "lo");
    CHECK(s >= 0 && ioctl(s, SIOCGIFFLAGS, &ifr) == 0);
    ifr.ifr_flags |= IFF_UP;
    CHECK(ioctl(s, SIOCSIFFLAGS, &ifr) == 0);
    close(s);
    FILE *f = fopen("/proc/sys/net/core/somaxconn", "w");
    CHECK(f != NULL && fputs("2", f) >= 0 && fclose(f) == 0);
    CHECK_OK(cgloo_store_hash_create(&thread_store));
    run_ranks(QUEUE_RANKS, rank_queue, NULL);
    cgloo_store_destroy(thread_store);
}

static void test_queue_full(void)
{
    if (geteuid() != 0) {
        printf("skipped: a network namespace of its own needs root\n");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        queue_world();
        fflush(NULL);
        _exit(0);
    }
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

static void run_split_shm(bool lazy, const char *rank0)
{
    lazy_case lc = {lazy, rank0};
    capture_start();
    CHECK_OK(cgloo_store_hash_create(&thread_store));
    run_ranks(4, rank_split_shm, &lc);
    cgloo_store_destroy(thread_store);
    bool shares = strcmp(rank0, "tcp") != 0;
    /* The parent, then the child of all four, then the halves (ranks 0/2 and 1/2 of each). */
    CHECK(logged(shares ? "[0/4] 3 peers on this host over shm" : "[1/4] 2 peers on this host"));
    CHECK(logged(shares ? "[3/4] 3 peers on this host over shm" : "[3/4] 2 peers on this host"));
    CHECK(logged("[1/2] 1 peers on this host over shm"));
    CHECK(shares == logged("[0/4] 3 peers") && !logged("[0/4] 2 peers"));
}

static void test_split_over_shm(void)
{
    run_split_shm(false, "auto");
    run_split_shm(false, "tcp");
}

static void test_lazy_over_shm(void)
{
    run_split_shm(true, "auto");
    run_split_shm(true, "tcp");
}

/* ---- real processes ---- */

#define NPROC 3

typedef struct world {
    char dir[256];
    pid_t pid[NPROC];
} world;

typedef void (*rank_fn)(world *w, int rank);

static cgloo_store *world_store(const world *w)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_file_create(w->dir, "shm", &s));
    return s;
}

static void spawn(world *w, int rank, rank_fn fn)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fn(w, rank);
        fflush(NULL);
        _exit(0);
    }
    w->pid[rank] = pid;
}

/* reap_ok waits for rank's process and fails unless it exited with 0. */
static void reap_ok(world *w, int rank)
{
    int status = 0;
    CHECK(waitpid(w->pid[rank], &status, 0) == w->pid[rank]);
    w->pid[rank] = 0;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        char detail[64];
        snprintf(detail, sizeof detail, "rank %d: status %#x", rank, status);
        harness_fail(__FILE__, __LINE__, "a rank failed", detail);
    }
}

/* Both paths for large messages, between two processes: sizes around the chunk and the ring,
 * checked byte for byte, and the log says which path carried them. */
static const size_t big_sizes[] = {65537, 262144, 262145, (1u << 20) + 3, 8u << 20};
enum { NBIG = sizeof big_sizes / sizeof big_sizes[0] };

static void large_rank(world *w, int rank)
{
    capture_start();
    cgloo_store *s = world_store(w);
    rank_env e = connect_with(s, rank, 2, "shm");
    for (int i = 0; i < NBIG; i++) {
        size_t n = big_sizes[i];
        uint8_t *buf = malloc(n);
        CHECK(buf != NULL);
        if (rank == 0) {
            fill_pattern(buf, n, (uint32_t)i);
            CHECK_OK(cgloo_send(e.ctx, buf, n, 1, 3, 0));
        } else {
            cgloo_completion c;
            CHECK_OK(cgloo_recv(e.ctx, buf, n, 0, 3, 0, &c));
            CHECK(c.bytes == n && check_pattern(buf, n, (uint32_t)i));
        }
        free(buf);
    }
    const char *mode = getenv("CGLOO_SHM_LARGE");
    if (rank == 1)
        CHECK(logged(strcmp(mode, "vm") == 0 ? "large messages by process_vm_readv"
                                             : "large messages through the ring"));
    mesh_close(e);
    cgloo_store_destroy(s);
}

static void run_large(const char *mode)
{
    world w = {0};
    snprintf(w.dir, sizeof w.dir, "%s", test_tmpdir());
    setenv("CGLOO_SHM_LARGE", mode, 1);
    spawn(&w, 0, large_rank);
    spawn(&w, 1, large_rank);
    unsetenv("CGLOO_SHM_LARGE");
    reap_ok(&w, 0);
    reap_ok(&w, 1);
}

static void test_large_vm(void)
{
    run_large("vm");
}

static void test_large_copy(void)
{
    run_large("copy");
}

/* ---- SIGKILL ---- */

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

/* mapped_segments counts this process's mappings of pair segments. */
static int mapped_segments(void)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f))
        n += strstr(line, "cgloo-shm") != NULL;
    if (f)
        fclose(f);
    return n;
}

/* dev_shm_entries counts the names under /dev/shm (0 when there is no such directory). */
static int dev_shm_entries(void)
{
    DIR *d = opendir("/dev/shm");
    int n = 0;
    for (struct dirent *de; d && (de = readdir(d));)
        n += de->d_name[0] != '.';
    if (d)
        closedir(d);
    return n;
}

static void kill_victim(world *w, int rank)
{
    cgloo_store *s = world_store(w);
    rank_env e = connect_with(s, rank, NPROC, "shm");
    int v = rank;
    CHECK_OK(cgloo_allreduce(e.ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK_OK(cgloo_store_set(s, "ready/2", "1", 1));
    for (;;)
        pause();
}

/* The survivors wait on the victim (a receive, long past the spin: asleep) when it is killed;
 * the error names it within the timeout. Afterwards every descriptor and mapping the context
 * made is gone. */
static void kill_survivor(world *w, int rank)
{
    int fds_before = count_fds();
    cgloo_store *s = world_store(w);
    rank_env e = connect_with(s, rank, NPROC, "shm");
    CHECK(mapped_segments() == NPROC - 1);
    int v = rank;
    CHECK_OK(cgloo_allreduce(e.ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, NULL));
    CHECK(v == 3);
    long long t0 = test_now_ms();
    CHECK_STATUS(cgloo_recv(e.ctx, &v, sizeof v, 2, 7, 8000, NULL), CGLOO_EPEER);
    CHECK(test_now_ms() - t0 < 6000);
    char detail[512];
    cgloo_context_last_error(e.ctx, detail, sizeof detail);
    if (!strstr(detail, "peer 2"))
        harness_fail(__FILE__, __LINE__, "the error names the dead rank", detail);
    int other = 1 - rank; /* the two survivors still talk */
    cgloo_request *r;
    CHECK_OK(cgloo_isend(e.ctx, &rank, sizeof rank, other, 8, &r));
    CHECK_OK(cgloo_recv(e.ctx, &v, sizeof v, other, 8, 0, NULL));
    CHECK_OK(cgloo_wait(r, 0, NULL));
    CHECK(v == other);
    mesh_close(e);
    cgloo_store_destroy(s);
    CHECK(mapped_segments() == 0);
    CHECK(count_fds() == fds_before);
}

static void test_sigkill_leaves_nothing(void)
{
    world w = {0};
    snprintf(w.dir, sizeof w.dir, "%s", test_tmpdir());
    int shm_before = dev_shm_entries();
    spawn(&w, 2, kill_victim);
    spawn(&w, 0, kill_survivor);
    spawn(&w, 1, kill_survivor);
    cgloo_store *s = world_store(&w);
    const char *key = "ready/2";
    CHECK_OK(cgloo_store_wait(s, &key, 1, 20000));
    test_sleep_ms(200); /* the survivors are asleep in their receive */
    kill(w.pid[2], SIGKILL);
    waitpid(w.pid[2], NULL, 0);
    w.pid[2] = 0;
    reap_ok(&w, 0);
    reap_ok(&w, 1);
    cgloo_store_destroy(s);
    CHECK(dev_shm_entries() == shm_before);
}

/* ---- pairs that cannot share memory: auto falls back to TCP, shm fails saying why ---- */

typedef enum handicap { OTHER_USER, NO_SEGMENT } handicap;

typedef struct fallback_case {
    handicap what;
    const char *transport;
} fallback_case;

static fallback_case fb_case;

/* handicap_apply makes this process unable to share memory with its peer for real: another
 * user (the peer's check of SO_PEERCRED), or a file-size limit under the segment's size, so
 * that growing the memfd fails with EFBIG. */
static void handicap_apply(handicap what)
{
    if (what == OTHER_USER) {
        CHECK(setgid(65534) == 0 && setuid(65534) == 0);
        return;
    }
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = {65536, 65536};
    CHECK(setrlimit(RLIMIT_FSIZE, &lim) == 0);
}

/* fallback_rank: rank 1 (the higher rank, which makes the segment) is handicapped. Under auto
 * both ranks connect, say in the log that the pair went over TCP, and move a small and a large
 * message; under shm both fail at once, naming the reason. */
static void fallback_rank(world *w, int rank)
{
    capture_start();
    umask(0); /* the store's files and folders: both users write them */
    if (rank == 1)
        handicap_apply(fb_case.what);
    cgloo_store *s = world_store(w);
    cgloo_device *dev;
    cgloo_context *ctx;
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &dev));
    cgloo_context_attr attr = {.timeout_ms = 10000, .name = "fb", .transport = fb_case.transport};
    CHECK_OK(cgloo_context_create(rank, 2, &attr, &ctx));
    long long t0 = test_now_ms();
    int rc = cgloo_context_connect(ctx, s, dev);
    char detail[512];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    const char *why = fb_case.what == OTHER_USER ? "run as different users" : "segment";
    if (strcmp(fb_case.transport, "shm") == 0) {
        CHECK_STATUS(rc, CGLOO_ENOTSUP);
        CHECK(test_now_ms() - t0 < 5000); /* at once, not at the timeout */
        if (!strstr(detail, why) || !strstr(detail, "auto"))
            harness_fail(__FILE__, __LINE__, "the error says why and what to set", detail);
    } else {
        if (rc != CGLOO_OK)
            harness_fail(__FILE__, __LINE__, "cgloo_context_connect", detail);
        CHECK(logged("reached over TCP instead") && !logged("over shm"));
        size_t n = (4u << 20) + 5; /* past both large-message thresholds */
        uint8_t *buf = malloc(n);
        CHECK(buf != NULL);
        fill_pattern(buf, n, 9);
        int v = rank + 1;
        CHECK_OK(cgloo_allreduce(ctx, &v, &v, 1, CGLOO_INT32, CGLOO_SUM, NULL));
        CHECK(v == 3);
        if (rank == 0)
            CHECK_OK(cgloo_send(ctx, buf, n, 1, 4, 0));
        else {
            memset(buf, 0, n);
            CHECK_OK(cgloo_recv(ctx, buf, n, 0, 4, 0, NULL));
            CHECK(check_pattern(buf, n, 9));
        }
        free(buf);
    }
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(s);
}

static void run_fallback(handicap what, const char *transport)
{
    if (what == OTHER_USER && geteuid() != 0) {
        printf("skipped: running a rank as another user needs root\n");
        return;
    }
    world w = {0};
    snprintf(w.dir, sizeof w.dir, "%s", test_tmpdir());
    CHECK(chmod(w.dir, 0777) == 0); /* the other user's rank writes its record there */
    fb_case = (fallback_case){what, transport};
    spawn(&w, 0, fallback_rank);
    spawn(&w, 1, fallback_rank);
    reap_ok(&w, 0);
    reap_ok(&w, 1);
}

static void test_other_user_auto(void)
{
    run_fallback(OTHER_USER, "auto");
}

static void test_other_user_shm(void)
{
    run_fallback(OTHER_USER, "shm");
}

static void test_no_segment_auto(void)
{
    run_fallback(NO_SEGMENT, "auto");
}

static void test_no_segment_shm(void)
{
    run_fallback(NO_SEGMENT, "shm");
}

static const test_case tests[] = {
    {"bad_transport", test_bad_transport, 30},
    {"device_transport", test_device_transport, 60},
    {"default_is_auto", test_default_is_auto, 60},
    {"mixed_binding", test_mixed_binding, 60},
    {"split_over_shm", test_split_over_shm, 60},
    {"lazy_over_shm", test_lazy_over_shm, 60},
    {"records_decide", test_records_decide, 30},
    {"strangers_idle", test_strangers_idle, 60},
    {"queue_full", test_queue_full, 60},
    {"large_vm", test_large_vm, 60},
    {"large_copy", test_large_copy, 60},
    {"sigkill_leaves_nothing", test_sigkill_leaves_nothing, 60},
    {"other_user_auto", test_other_user_auto, 60},
    {"other_user_shm", test_other_user_shm, 60},
    {"no_segment_auto", test_no_segment_auto, 60},
    {"no_segment_shm", test_no_segment_shm, 60},
};

TEST_MAIN(tests)
