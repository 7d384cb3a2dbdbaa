/*
 * Contexts: lifecycle, error detail, abort, and the progress loop.
 *
 * Progress is driven by the thread that waits. It polls the context's poller without
 * sleeping for a short spin (CGLOO_SPIN_US, default 500 µs; yielding the core between polls so
 * that ranks outnumbering cores still run), then sleeps in the poller until the deadline. One
 * thread at a time drives; other waiters sleep on a condition variable and are woken after
 * each round. A message therefore costs no thread hand-off: the waiting thread reads it from
 * the transport and completes its own request (docs/ARCHITECTURE.md, "Threads and progress", has
 * the measurements behind the spin and the yield).
 */
#include "core/context.h"
#include "core/auth.h"
#include "core/topology.h"
#include "store/store.h"
#include "transport/transport.h"

#include <sched.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_TIMEOUT_MS 30000
#define DEFAULT_SPIN_US 500
#define DEFAULT_EAGER_MAX (64u * 1024)
#define DEFAULT_EAGER_BUDGET (4u * 1024 * 1024)
/* A waiter pinned to one CPU polls without yielding this long first: a yield in every poll
 * makes the arrival of a message wait for the scheduler. An unpinned waiter yields from the
 * first empty poll: there, polling without yielding starved the kernel's network work and
 * other ranks. docs/ARCHITECTURE.md ("Why the yield depends on pinning") has the figures. */
#define PINNED_YIELD_AFTER_NS 20000
/* How long destroy waits for queued sends to leave and for the peers to close in turn. */
#define LINGER_MS 2000

int cgloo__ctx_error(cgloo_context *ctx, int status, const char *fmt, ...)
{
    char detail[sizeof ctx->last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&ctx->err_lock);
    ctx->last_status = status;
    memcpy(ctx->last_error, detail, sizeof detail);
    pthread_mutex_unlock(&ctx->err_lock);
    CGLOO_LOG(CGLOO_LOG_DEBUG, ctx->rank, ctx->size, "%s (%s)", detail, cgloo_status_name(status));
    return status;
}

/* ctx_init_sync makes the lock, the condition variable and the poller. */
static int ctx_init_sync(cgloo_context *ctx)
{
    pthread_mutex_init(&ctx->lock, NULL);
    pthread_mutex_init(&ctx->err_lock, NULL);
    cgloo__list_init(&ctx->jobs_queued);
    cgloo__list_init(&ctx->jobs_running);
    cgloo__list_init(&ctx->jobs_all);
    int rc = cgloo__cond_init_monotonic(&ctx->progress_done);
    if (rc == CGLOO_OK)
        rc = cgloo__cond_init_monotonic(&ctx->job_done);
    if (rc == CGLOO_OK)
        rc = cgloo__cond_init_monotonic(&ctx->pt_wake);
    return rc == CGLOO_OK ? cgloo__poller_init(&ctx->poller) : rc;
}

/* env_tuning reads one tuning variable; a malformed one is the thread's last error. */
static int env_tuning(const char *name, long min, long max, long fallback, long *out)
{
    if (cgloo__env_int(name, min, max, fallback, out) == CGLOO_OK)
        return CGLOO_OK;
    return cgloo__error_set(CGLOO_EINVAL, "%s='%s' is not a whole number from %ld to %ld", name,
                            getenv(name), min, max);
}

static int ctx_read_tuning(cgloo_context *ctx)
{
    long spin, emax, budget, pt, lazy;
    if (env_tuning("CGLOO_SPIN_US", 0, 1000000, DEFAULT_SPIN_US, &spin) ||
        env_tuning("CGLOO_PROGRESS_THREAD", 0, 1, 0, &pt) ||
        env_tuning("CGLOO_LAZY", 0, 1, 0, &lazy) ||
        env_tuning("CGLOO_EAGER_MAX", 0, 64L * 1024 * 1024, DEFAULT_EAGER_MAX, &emax) ||
        env_tuning("CGLOO_EAGER_BUDGET", 0, 1L << 30, DEFAULT_EAGER_BUDGET, &budget))
        return CGLOO_EINVAL;
    ctx->spin_us = (int)spin;
    ctx->pt_wanted = ctx->pt_wanted || pt;
    ctx->lazy = ctx->lazy || lazy; /* a negative attribute turns it off after this */
    /* Pinned, and not sharing cores with other ranks of this host (when the launcher says how
     * many there are): pinned ranks that share a core and poll before yielding make each other
     * wait (docs/ARCHITECTURE.md, "Why the yield depends on pinning"). */
    cpu_set_t cpus;
    long local_size;
    if (cgloo__env_int("CGLOO_LOCAL_SIZE", 1, 1L << 24, 1, &local_size))
        local_size = 1;
    ctx->cores_shared = local_size > sysconf(_SC_NPROCESSORS_ONLN);
    bool pinned = sched_getaffinity(0, sizeof cpus, &cpus) == 0 && CPU_COUNT(&cpus) == 1 &&
                  !ctx->cores_shared;
    long yield_after;
    if (env_tuning("CGLOO_YIELD_AFTER_US", -1, 1000000, -1, &yield_after))
        return CGLOO_EINVAL;
    ctx->yield_after_ns = yield_after >= 0 ? yield_after * 1000
                          : pinned         ? PINNED_YIELD_AFTER_NS
                                           : 0;
    ctx->eager_max = (uint32_t)emax;
    ctx->eager_budget = (uint32_t)CGLOO_MAX(budget, emax);
    return CGLOO_OK;
}

int cgloo__local_mode_parse(const char *v, int *mode)
{
    *mode = !v                              ? -1
            : strcmp(v, "tcp") == 0         ? CGLOO_LOCAL_TCP
            : !*v || strcmp(v, "auto") == 0 ? CGLOO_LOCAL_AUTO
            : strcmp(v, "shm") == 0         ? CGLOO_LOCAL_SHM
                                            : -2;
    return *mode == -2 ? CGLOO_EINVAL : CGLOO_OK;
}

/* ctx_read_local_mode takes the transport for peers on this host from attr (then fixed), else
 * CGLOO_TRANSPORT, else auto (shared memory where it works, TCP where it does not); a device's
 * attribute comes between the two at each connect (connect_checked, rendezvous/full_mesh.c). */
static int ctx_read_local_mode(cgloo_context *ctx, const cgloo_context_attr *attr)
{
    const char *v = attr && attr->transport ? attr->transport : getenv("CGLOO_TRANSPORT");
    int mode;
    if (cgloo__local_mode_parse(v, &mode) != CGLOO_OK)
        return cgloo__error_set(
            CGLOO_EINVAL,
            "cgloo_context_create: transport '%s' (%s) is none of auto, tcp, "
            "shm",
            v, attr && attr->transport ? "cgloo_context_attr.transport" : "CGLOO_TRANSPORT");
    ctx->local_mode = (uint8_t)(mode < 0 ? CGLOO_LOCAL_AUTO : mode);
    ctx->local_env = ctx->local_mode;
    ctx->local_fixed = attr && attr->transport;
    return CGLOO_OK;
}

/* ctx_check_args explains bad arguments of cgloo_context_create as the thread's last error. */
static int ctx_check_args(int rank, int size, const cgloo_context_attr *attr, cgloo_context **out)
{
    if (!out)
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_context_create: out is NULL");
    if (size < 1 || rank < 0 || rank >= size)
        return cgloo__error_set(CGLOO_EINVAL,
                                "cgloo_context_create: rank %d of size %d (the rank must be "
                                "from 0 to size - 1)",
                                rank, size);
    if (attr && attr->timeout_ms < 0)
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_context_create: timeout_ms %d is negative",
                                attr->timeout_ms);
    return CGLOO_OK;
}

/* ctx_load_secret keeps the job secret (the attribute's, or the environment's) when one is set;
 * ctx->secret stays NULL otherwise. */
static int ctx_load_secret(cgloo_context *ctx, const cgloo_context_attr *attr)
{
    cgloo__secret s;
    int rc = cgloo__secret_load(attr ? attr->secret : NULL, "cgloo_context_create", &s);
    if (rc == CGLOO_OK && s.len) {
        ctx->secret = malloc(sizeof s);
        rc = ctx->secret ? CGLOO_OK : CGLOO_ENOMEM;
        if (ctx->secret)
            *ctx->secret = s;
    }
    cgloo__secret_wipe(&s);
    return rc;
}

int cgloo_context_create(int rank, int size, const cgloo_context_attr *attr, cgloo_context **out)
{
    cgloo__error_clear();
    if (ctx_check_args(rank, size, attr, out) != CGLOO_OK)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    cgloo_context *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return cgloo__error_set(CGLOO_ENOMEM, "cgloo_context_create: out of memory");
    ctx->rank = rank;
    ctx->size = size;
    ctx->poller.epfd = ctx->poller.wakefd = -1;
    ctx->timeout_ms = attr && attr->timeout_ms ? attr->timeout_ms : DEFAULT_TIMEOUT_MS;
    ctx->name = cgloo__strdup(attr && attr->name && *attr->name ? attr->name : "cgloo");
    ctx->pt_wanted = attr && attr->progress_thread;
    ctx->peers = calloc((size_t)size, sizeof *ctx->peers);
    cgloo__list_init(&ctx->any_posted);
    cgloo__list_init(&ctx->live_requests);
    cgloo__list_init(&ctx->spinners);
    for (int i = 0; ctx->peers && i < size; i++)
        cgloo__peer_init(&ctx->peers[i], ctx, i);
    int rc = ctx_init_sync(ctx);
    if (rc == CGLOO_OK && (!ctx->name || !ctx->peers))
        rc = CGLOO_ENOMEM;
    if (rc == CGLOO_OK)
        rc = ctx_read_tuning(ctx);
    ctx->lazy = attr && attr->lazy ? attr->lazy > 0 : ctx->lazy;
    if (rc == CGLOO_OK)
        rc = ctx_read_local_mode(ctx, attr);
    if (rc == CGLOO_OK)
        rc = cgloo__ctx_diag_init(ctx, attr);
    if (rc == CGLOO_OK)
        rc = ctx_load_secret(ctx, attr);
    if (rc != CGLOO_OK) {
        cgloo_context_destroy(ctx);
        return cgloo__error_set_if_none(rc, "cgloo_context_create: %s", cgloo_strerror(rc));
    }
    ctx->ctx_id = cgloo__hash64(ctx->name, strlen(ctx->name));
    ctx->nonce = cgloo__random64();
    *out = ctx;
    return CGLOO_OK;
}

/* ---- progress ------------------------------------------------------------------------------ */

void cgloo__ctx_wake(cgloo_context *ctx)
{
    cgloo__poller_wake(&ctx->poller);
}

/* ctx_poll_spinners polls the shared-memory pairs (cgloo__spinner); before a sleep it arms
 * them, and any that has work keeps the context awake (*timeout_ms 0). True when one had
 * something. */
static bool ctx_poll_spinners(cgloo_context *ctx, int *timeout_ms)
{
    bool busy = false;
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, &ctx->spinners)
    {
        cgloo__spinner *s = CGLOO_CONTAINER_OF(it, cgloo__spinner, link);
        if (s->poll(s))
            busy = true;
        else if (*timeout_ms != 0 && !s->arm(s))
            *timeout_ms = 0;
    }
    if (busy)
        *timeout_ms = 0;
    return busy;
}

/* While it spins over shared-memory pairs, the context asks the poller (a system call) only every
 * this many rounds: the pairs are read from memory, and a round without the call takes a few
 * tens of nanoseconds instead of about half a microsecond (docs/ARCHITECTURE.md, "Shared
 * memory"). */
#define SPINNER_POLLER_EVERY 16

/* ctx_poll: cgloo__ctx_poll_once, the poller asked every time when `poller` says so. */
static void ctx_poll(cgloo_context *ctx, int timeout_ms, bool yield, bool poller)
{
    cgloo__poll_events evs;
    bool busy = ctx_poll_spinners(ctx, &timeout_ms);
    ctx->progressing = true;
    if (!poller && timeout_ms == 0 && !cgloo__list_empty(&ctx->spinners) &&
        ++ctx->spin_rounds % SPINNER_POLLER_EVERY != 0) {
        if (!busy && yield) {
            pthread_mutex_unlock(&ctx->lock);
            sched_yield();
            pthread_mutex_lock(&ctx->lock);
        }
        ctx->progressing = false;
        if (ctx->waiters)
            pthread_cond_broadcast(&ctx->progress_done);
        return;
    }
    pthread_mutex_unlock(&ctx->lock);
    int n = cgloo__poller_wait(&ctx->poller, timeout_ms, &evs);
    if (n == 0 && yield)
        sched_yield(); /* let another rank (or the kernel's network work) on this core run */
    pthread_mutex_lock(&ctx->lock);
    ctx->progressing = false;
    cgloo__poller_dispatch(&evs);
    if (ctx->waiters)
        pthread_cond_broadcast(&ctx->progress_done);
}

void cgloo__ctx_poll_once(cgloo_context *ctx, int timeout_ms, bool yield)
{
    ctx_poll(ctx, timeout_ms, yield, false);
}

void cgloo__ctx_poll_all(cgloo_context *ctx)
{
    ctx_poll(ctx, 0, false, true);
}

static void ctx_sleep_on_driver(cgloo_context *ctx, int timeout_ms)
{
    struct timespec until = cgloo__timespec_after_ms(CGLOO_MIN(timeout_ms, 10));
    ctx->waiters++;
    pthread_cond_timedwait(&ctx->progress_done, &ctx->lock, &until);
    ctx->waiters--;
}

bool cgloo__ctx_interrupted(cgloo_context *ctx)
{
    return ctx->interrupt_fn && ctx->interrupt_fn(ctx->interrupt_user) != 0;
}

/* ctx_check_interrupt calls the interrupt check without the lock once the wait has reached
 * *next_ns, and schedules the next call. */
static bool ctx_check_interrupt(cgloo_context *ctx, int64_t *next_ns)
{
    int64_t now = cgloo__now_ns();
    if (now < *next_ns)
        return false;
    *next_ns = now + CGLOO_INTERRUPT_CHECK_MS * 1000000LL;
    pthread_mutex_unlock(&ctx->lock);
    bool stop = cgloo__ctx_interrupted(ctx);
    pthread_mutex_lock(&ctx->lock);
    return stop;
}

/* stop_requested: the thread is a progress thread and cgloo_cancel wants its collective to
 * stop. */
static bool stop_requested(const cgloo_context *ctx)
{
    return cgloo__pt_self == ctx && cgloo__pt_job && cgloo__pt_job->cancel;
}

static int progress_loop(cgloo_context *ctx, bool (*done)(void *), void *arg, int64_t deadline_ms)
{
    int64_t start = cgloo__now_ns(), now = start;
    int64_t spin_until = start + (int64_t)ctx->spin_us * 1000;
    int64_t next_check = start + CGLOO_INTERRUPT_CHECK_MS * 1000000LL;
    bool quick = true; /* the last round polled without waiting (or there was none) */
    for (unsigned round = 0;; round++) {
        if (done(arg))
            return CGLOO_OK;
        if (ctx->aborted)
            return CGLOO_EABORTED;
        if (stop_requested(ctx))
            return CGLOO_EINTR;
        /* A clock read costs 45 to 75 ns on this machine class, as much as a round of polling
         * shared memory: after rounds that did not wait, the clock is read every fourth one. */
        if (round > 0 && (!quick || round % 4 == 0))
            now = cgloo__now_ns();
        bool spinning = deadline_ms && now < spin_until;
        int64_t left_ms = deadline_ms ? deadline_ms - now / 1000000 : 0;
        int left = left_ms <= 0 ? 0 : left_ms > INT32_MAX ? INT32_MAX : (int)left_ms;
        /* With an interrupt check, sleep no longer than the time between its calls. */
        int sleep = ctx->interrupt_fn ? CGLOO_MIN(left, CGLOO_INTERRUPT_CHECK_MS) : left;
        int timeout = spinning || left == 0 ? 0 : sleep;
        quick = !ctx->progressing && timeout == 0;
        if (!ctx->progressing)
            cgloo__ctx_poll_once(ctx, timeout, timeout == 0 && now - start >= ctx->yield_after_ns);
        else if (left > 0)
            ctx_sleep_on_driver(ctx, sleep);
        if (done(arg))
            return CGLOO_OK;
        if (left == 0)
            return CGLOO_ETIMEDOUT;
        if (ctx->interrupt_fn && ctx_check_interrupt(ctx, &next_check))
            return done(arg) ? CGLOO_OK : CGLOO_EINTR;
    }
}

int cgloo__progress_until(cgloo_context *ctx, bool (*done)(void *), void *arg, int64_t deadline_ms)
{
    if (ctx->pt_count == 0 || cgloo__pt_self == ctx)
        return progress_loop(ctx, done, arg, deadline_ms);
    cgloo__pt_user_enter(ctx);
    int rc = progress_loop(ctx, done, arg, deadline_ms);
    cgloo__pt_user_leave(ctx);
    return rc;
}

/* request_done: the request completed, or it is a collective's and the collectives were
 * revoked (p2p/revoke.c), which ends the wait too (cgloo__progress then says EPEER). */
static bool request_done(void *req)
{
    return ((cgloo_request *)req)->done || cgloo__p2p_revoked(req);
}

int cgloo__progress(cgloo_context *ctx, cgloo_request *req, int64_t deadline_ms)
{
    int rc = cgloo__progress_until(ctx, request_done, req, deadline_ms);
    return rc == CGLOO_OK && !req->done ? CGLOO_EPEER : rc; /* the collectives were revoked */
}

/* ---- accessors ------------------------------------------------------------------------------ */

int cgloo_context_rank(const cgloo_context *ctx)
{
    return ctx ? ctx->rank : -1;
}

int cgloo_context_size(const cgloo_context *ctx)
{
    return ctx ? ctx->size : -1;
}

int cgloo_context_timeout(const cgloo_context *ctx)
{
    return ctx ? ctx->timeout_ms : -1;
}

int cgloo_context_connections(cgloo_context *ctx)
{
    if (!ctx)
        return -1;
    int n = 0;
    pthread_mutex_lock(&ctx->lock);
    for (int i = 0; i < ctx->size; i++) {
        const cgloo_peer *p = &ctx->peers[i];
        n += i != ctx->rank && p->transport && p->transport->connected &&
             p->transport->connected(&ctx->peers[i]);
    }
    pthread_mutex_unlock(&ctx->lock);
    return n;
}

int cgloo_context_set_timeout(cgloo_context *ctx, int timeout_ms)
{
    if (!ctx || timeout_ms <= 0)
        return CGLOO_EINVAL;
    pthread_mutex_lock(&ctx->lock);
    ctx->timeout_ms = timeout_ms;
    pthread_mutex_unlock(&ctx->lock);
    return CGLOO_OK;
}

int cgloo_context_last_error(cgloo_context *ctx, char *buf, size_t len)
{
    if (!ctx)
        return CGLOO_EINVAL;
    pthread_mutex_lock(&ctx->err_lock);
    int status = ctx->last_status;
    if (buf && len)
        snprintf(buf, len, "%s", ctx->last_error);
    pthread_mutex_unlock(&ctx->err_lock);
    return status;
}

int cgloo_context_set_interrupt_check(cgloo_context *ctx, cgloo_interrupt_fn fn, void *user)
{
    if (!ctx)
        return CGLOO_EINVAL;
    pthread_mutex_lock(&ctx->lock);
    ctx->interrupt_fn = fn;
    ctx->interrupt_user = user;
    pthread_mutex_unlock(&ctx->lock);
    return CGLOO_OK;
}

bool cgloo__ctx_aborted(cgloo_context *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    bool aborted = ctx->aborted;
    pthread_mutex_unlock(&ctx->lock);
    return aborted;
}

void cgloo_context_abort(cgloo_context *ctx)
{
    if (!ctx)
        return;
    pthread_mutex_lock(&ctx->lock);
    if (!ctx->aborted) {
        ctx->aborted = true;
        for (int i = 0; i < ctx->size; i++)
            cgloo__p2p_peer_fail(&ctx->peers[i], CGLOO_EABORTED, "context aborted", 0);
        cgloo__ctx_error(ctx, CGLOO_EABORTED, "rank %d: context aborted", ctx->rank);
        cgloo__ctx_wake(ctx);
        pthread_cond_broadcast(&ctx->progress_done);
    }
    pthread_mutex_unlock(&ctx->lock);
}

/* ---- teardown -------------------------------------------------------------------------------- */

/* ctx_linger closes every peer normally: each transport tells its peer this rank is leaving
 * and finishes what it still has to write, then waits for the peer's side to close (for TCP,
 * so that the last bytes are not lost to a reset). The context polls until every peer is done
 * or a short deadline passes. */
static void ctx_linger(cgloo_context *ctx)
{
    int64_t deadline = cgloo__now_ms() + CGLOO_MIN(ctx->timeout_ms, LINGER_MS);
    pthread_mutex_lock(&ctx->lock);
    for (int i = 0; i < ctx->size; i++)
        if (ctx->peers[i].transport)
            ctx->peers[i].transport->close_begin(&ctx->peers[i]);
    for (;;) {
        bool open = false;
        for (int i = 0; i < ctx->size; i++) {
            cgloo_peer *p = &ctx->peers[i];
            if (p->transport && !p->transport->close_step(p))
                open = true;
        }
        int left = cgloo__remaining_ms(deadline);
        if (!open || left == 0)
            break;
        cgloo__ctx_poll_once(ctx, CGLOO_MIN(left, 10), false);
    }
    pthread_mutex_unlock(&ctx->lock);
}

void cgloo_context_destroy(cgloo_context *ctx)
{
    if (!ctx)
        return;
    cgloo__pt_stop(ctx);
    if (ctx->lazy_conn) /* no connection starts or arrives from here on */
        ctx->lazy_transport->connect_end(ctx->lazy_conn);
    if (ctx->lazy_shm)
        cgloo__shm_transport.connect_end(ctx->lazy_shm);
    ctx->lazy_shm = NULL; /* a failing pair asks it to forget its dial (transport/shm) */
    if (ctx->peers) {
        if (ctx->poller.epfd >= 0)
            ctx_linger(ctx);
        for (int i = 0; i < ctx->size; i++)
            cgloo__peer_fini(&ctx->peers[i]);
        free(ctx->peers);
    }
    free(ctx->slot_links);
    free(atomic_load(&ctx->sc_scratch));
    for (int i = 0; i < ctx->coll_env_n; i++)
        free(ctx->coll_env[i].value);
    cgloo__poller_fini(&ctx->poller);
    cgloo__ctx_diag_fini(ctx);
    pthread_cond_destroy(&ctx->progress_done);
    pthread_cond_destroy(&ctx->job_done);
    pthread_cond_destroy(&ctx->pt_wake);
    pthread_mutex_destroy(&ctx->lock);
    pthread_mutex_destroy(&ctx->err_lock);
    if (ctx->device_held)
        cgloo_device_destroy(ctx->device); /* releases the hold */
    cgloo_device_destroy(ctx->owned_device);
    cgloo_store_destroy(ctx->owned_store);
    cgloo__topology_free(ctx->topo);
    free(ctx->name);
    if (ctx->secret) {
        cgloo__secret_wipe(ctx->secret);
        free(ctx->secret);
    }
    free(ctx);
}
