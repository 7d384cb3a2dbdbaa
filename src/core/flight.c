/*
 * The flight recorder (flight.h): the ring, its seqlocked entries, one formatter that uses
 * only async-signal-safe calls (so that the signal handler, the log and cgloo_context_dump
 * print the same lines), and the opt-in dump signal.
 */
#include "core/flight.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

/* Release stores and acquire loads: the seqlock needs the version's odd store ordered before
 * the fields' stores and the fields' loads before the version's second load, which these give
 * without fences (ThreadSanitizer does not model fences). On x86 both are plain moves. */
#define LOAD(p) __atomic_load_n((p), __ATOMIC_ACQUIRE)
#define STORE(p, v) __atomic_store_n((p), (v), __ATOMIC_RELEASE)

int cgloo__flight_init(cgloo__flight *f, int n, int rank, int size, const char *name)
{
    *f = (cgloo__flight){.rank = rank, .size = size, .name = name};
    if (n <= 0)
        return CGLOO_OK;
    f->ring = calloc((size_t)n, sizeof *f->ring);
    if (!f->ring)
        return CGLOO_ENOMEM;
    f->n = (uint32_t)n;
    (void)cgloo__coarse_res_ns(); /* read here, not first in the dump's signal handler */
    return CGLOO_OK;
}

/* ---- writing ----------------------------------------------------------------------------- */

/* entry_open starts rewriting e (ver odd); entry_close publishes it (ver even). */
static void entry_open(cgloo__flight_entry *e)
{
    uint64_t v = LOAD(&e->ver);
    STORE(&e->ver, v | 1);
}

static void entry_close(cgloo__flight_entry *e)
{
    uint64_t v = LOAD(&e->ver);
    __atomic_store_n(&e->ver, (v | 1) + 1, __ATOMIC_RELEASE);
}

uint64_t cgloo__flight_begin(cgloo__flight *f, const char *kind, uint64_t tag, uint64_t count,
                             int dtype, int peer)
{
    return f->ring ? cgloo__flight_begin_at(f, kind, tag, count, dtype, peer, cgloo__coarse_ns())
                   : 0;
}

uint64_t cgloo__flight_begin_at(cgloo__flight *f, const char *kind, uint64_t tag, uint64_t count,
                                int dtype, int peer, int64_t now_ns)
{
    if (!f->ring)
        return 0;
    uint64_t id = __atomic_add_fetch(&f->next, 1, __ATOMIC_RELAXED);
    cgloo__flight_entry *e = &f->ring[(id - 1) % f->n];
    entry_open(e);
    STORE(&e->id, id);
    STORE(&e->kind, kind);
    STORE(&e->algorithm, (const char *)NULL);
    STORE(&e->tag, tag);
    STORE(&e->count, count);
    STORE(&e->dtype, dtype);
    STORE(&e->peer, peer);
    STORE(&e->start_ns, now_ns);
    STORE(&e->end_ns, (int64_t)0);
    STORE(&e->state, FLIGHT_RUNNING);
    STORE(&e->status, 0);
    STORE(&e->wait_dir, FLIGHT_WAIT_NONE);
    entry_close(e);
    return id;
}

/* entry_of: the entry of operation id, opened for writing, or NULL when it was reused. */
static cgloo__flight_entry *entry_of(cgloo__flight *f, uint64_t id)
{
    if (!id || !f->ring)
        return NULL;
    cgloo__flight_entry *e = &f->ring[(id - 1) % f->n];
    if (LOAD(&e->id) != id)
        return NULL;
    entry_open(e);
    return e;
}

void cgloo__flight_detail(cgloo__flight *f, uint64_t id, const char *algorithm, uint64_t count,
                          int root)
{
    cgloo__flight_entry *e = entry_of(f, id);
    if (!e)
        return;
    STORE(&e->algorithm, algorithm);
    STORE(&e->count, count);
    STORE(&e->peer, root);
    entry_close(e);
}

void cgloo__flight_waiting(cgloo__flight *f, uint64_t id, int peer, int step, int dir)
{
    cgloo__flight_entry *e = entry_of(f, id);
    if (!e)
        return;
    STORE(&e->wait_peer, peer);
    STORE(&e->wait_step, step);
    STORE(&e->wait_dir, dir);
    entry_close(e);
}

void cgloo__flight_end(cgloo__flight *f, uint64_t id, int status)
{
    cgloo__flight_entry *e = entry_of(f, id);
    if (!e)
        return;
    if (LOAD(&e->state) != FLIGHT_RUNNING) { /* ended already: the first end tells */
        entry_close(e);
        return;
    }
    STORE(&e->end_ns, cgloo__coarse_ns());
    STORE(&e->state, status == CGLOO_OK ? FLIGHT_DONE : FLIGHT_FAILED);
    STORE(&e->status, status);
    entry_close(e);
}

/* ---- reading and formatting (async-signal-safe) ------------------------------------------ */

/* entry_read copies e; false when it is being rewritten (or was, during the copy). */
static bool entry_read(const cgloo__flight_entry *e, cgloo__flight_entry *out)
{
    uint64_t v1 = __atomic_load_n(&e->ver, __ATOMIC_ACQUIRE);
    out->id = LOAD(&e->id);
    out->kind = LOAD(&e->kind);
    out->algorithm = LOAD(&e->algorithm);
    out->tag = LOAD(&e->tag);
    out->count = LOAD(&e->count);
    out->dtype = LOAD(&e->dtype);
    out->peer = LOAD(&e->peer);
    out->start_ns = LOAD(&e->start_ns);
    out->end_ns = LOAD(&e->end_ns);
    out->state = LOAD(&e->state);
    out->status = LOAD(&e->status);
    out->wait_peer = LOAD(&e->wait_peer);
    out->wait_step = LOAD(&e->wait_step);
    out->wait_dir = LOAD(&e->wait_dir);
    return (v1 & 1) == 0 && LOAD(&e->ver) == v1;
}

/* A line being built without snprintf (which is not async-signal-safe). */
typedef struct fl_line {
    char buf[320];
    size_t len;
} fl_line;

static void put_s(fl_line *l, const char *s)
{
    while (s && *s && l->len + 1 < sizeof l->buf)
        l->buf[l->len++] = *s++;
    l->buf[l->len] = '\0';
}

static void put_u(fl_line *l, uint64_t v)
{
    char d[24];
    int n = 0;
    do {
        d[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    char s[24];
    for (int i = 0; i < n; i++)
        s[i] = d[n - 1 - i];
    s[n] = '\0';
    put_s(l, s);
}

static void put_i(fl_line *l, int64_t v)
{
    if (v < 0) {
        put_s(l, "-");
        put_u(l, (uint64_t)(-(v + 1)) + 1);
    } else {
        put_u(l, (uint64_t)v);
    }
}

/* put_us writes a duration in nanoseconds with one decimal: in µs below 10 ms, else in ms. */
static void put_us(fl_line *l, int64_t ns)
{
    if (ns < 0)
        ns = 0;
    bool ms = ns >= 10000000;
    int64_t unit = ms ? 1000000 : 1000;
    put_u(l, (uint64_t)(ns / unit));
    put_s(l, ".");
    put_u(l, (uint64_t)(ns / (unit / 10)) % 10);
    put_s(l, ms ? " ms" : " us");
}

/* put_span writes a span between two reads of the coarse clock (cgloo_impl.h), each about a
 * tick behind the fine one (more just after an idle spell): below ten ticks as a bound,
 * "under" the span plus two ticks, in ms. */
static void put_span(fl_line *l, int64_t ns)
{
    int64_t res = cgloo__coarse_res_ns();
    if (ns >= 10 * res) {
        put_us(l, ns);
        return;
    }
    put_s(l, "under ");
    put_u(l, (uint64_t)((ns + 2 * res + 999999) / 1000000));
    put_s(l, " ms");
}

static void put_what(fl_line *l, const cgloo__flight_entry *e)
{
    put_s(l, "#");
    put_u(l, e->id);
    put_s(l, " ");
    put_s(l, e->kind);
    if (e->algorithm) {
        put_s(l, "(");
        put_s(l, e->algorithm);
        put_s(l, ")");
    }
    put_s(l, " tag ");
    put_u(l, e->tag);
    put_s(l, e->dtype < 0 ? " bytes " : " count ");
    if (e->count == UINT64_MAX)
        put_s(l, "(per rank)");
    else
        put_u(l, e->count);
    if (e->dtype >= 0) {
        put_s(l, " ");
        put_s(l, cgloo_dtype_name((cgloo_dtype)e->dtype));
    }
    if (e->peer >= 0) {
        put_s(l, e->dtype < 0 ? " peer " : " root ");
        put_i(l, e->peer);
    }
}

static void put_state(fl_line *l, const cgloo__flight_entry *e, int64_t now)
{
    put_s(l, ": started ");
    put_span(l, now - e->start_ns);
    put_s(l, " ago, ");
    if (e->state == FLIGHT_RUNNING) {
        put_s(l, "running");
        if (e->wait_dir != FLIGHT_WAIT_NONE) {
            put_s(l, ", waiting for rank ");
            put_i(l, e->wait_peer);
            put_s(l, e->wait_dir == FLIGHT_WAIT_RECV ? ": receive" : ": send");
            if (e->wait_step >= 0) {
                put_s(l, ", step ");
                put_i(l, e->wait_step);
            }
        }
        return;
    }
    put_s(l, "took ");
    put_span(l, e->end_ns - e->start_ns);
    put_s(l, e->state == FLIGHT_DONE ? ", done" : ", failed: ");
    if (e->state == FLIGHT_FAILED)
        put_s(l, cgloo_status_name(e->status));
}

static void put_header(fl_line *l, const cgloo__flight *f, uint64_t first, uint64_t last)
{
    put_s(l, "flight recorder of context '");
    put_s(l, f->name);
    put_s(l, "', rank ");
    put_i(l, f->rank);
    put_s(l, " of ");
    put_i(l, f->size);
    put_s(l, ": operations ");
    put_u(l, first);
    put_s(l, " to ");
    put_u(l, last);
    put_s(l, " (oldest first)");
}

/* entry_read_retry: a few tries at a consistent copy of an entry a writer is busy with. */
static bool entry_read_retry(const cgloo__flight_entry *e, cgloo__flight_entry *out)
{
    for (int i = 0; i < 8; i++)
        if (entry_read(e, out))
            return true;
    return false;
}

int cgloo__flight_each(const cgloo__flight *f, void (*line)(const char *text, void *user),
                       void *user)
{
    fl_line l = {.len = 0};
    if (!f->ring)
        return 0;
    uint64_t last = LOAD(&f->next);
    uint64_t first = last > f->n ? last - f->n + 1 : 1;
    put_header(&l, f, last ? first : 0, last);
    line(l.buf, user);
    int64_t now = cgloo__coarse_ns();
    int count = 0;
    /* Slot by slot from the oldest: an operation that started since `last` was read shows in
     * place of the one it replaced, so a busy ring still prints whole entries. */
    for (uint64_t k = 0; k < f->n && last; k++) {
        uint64_t slot = (last + k) % f->n;
        cgloo__flight_entry e;
        l.len = 0;
        put_s(&l, "  ");
        if (!entry_read_retry(&f->ring[slot], &e)) {
            put_s(&l, "(an entry being rewritten)");
        } else if (e.id == 0) {
            continue; /* never used */
        } else {
            put_what(&l, &e);
            put_state(&l, &e, now);
        }
        line(l.buf, user);
        count++;
    }
    return count;
}

static void log_line(const char *text, void *user)
{
    const cgloo__flight *f = user;
    CGLOO_LOG(CGLOO_LOG_ERROR, f->rank, f->size, "%s", text);
}

void cgloo__flight_log(const cgloo__flight *f)
{
    if (CGLOO_LOG_ERROR <= cgloo__log_level_now)
        cgloo__flight_each(f, log_line, (void *)f);
}

/* ---- the dump signal --------------------------------------------------------------------- */

/* The recorders the handler writes: the only process-wide state here, and only when a
 * context opted in. Slots are claimed and released with atomics. */
#define SIGNAL_SLOTS 64
static cgloo__flight *signal_slots[SIGNAL_SLOTS];
static int signal_installed; /* the signal number, once installed */
static char signal_file[256];

static void fd_line(const char *text, void *user)
{
    int fd = *(int *)user;
    size_t n = strlen(text);
    char nl = '\n';
    while (n > 0) {
        ssize_t w = write(fd, text, n);
        if (w <= 0)
            return;
        text += w;
        n -= (size_t)w;
    }
    if (write(fd, &nl, 1) < 0)
        return;
}

static void flight_on_signal(int sig)
{
    (void)sig;
    int saved = errno;
    int fd = 2;
    if (signal_file[0])
        fd = open(signal_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    for (int i = 0; fd >= 0 && i < SIGNAL_SLOTS; i++) {
        cgloo__flight *f = __atomic_load_n(&signal_slots[i], __ATOMIC_ACQUIRE);
        if (f)
            cgloo__flight_each(f, fd_line, &fd);
    }
    if (fd > 2)
        close(fd);
    errno = saved;
}

static int signal_install(int sig)
{
    int expected = 0;
    if (!__atomic_compare_exchange_n(&signal_installed, &expected, sig, false, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE))
        return expected == sig ? CGLOO_OK : CGLOO_EBUSY; /* one dump signal per process */
    const char *file = getenv("CGLOO_DUMP_FILE");
    if (file && strlen(file) < sizeof signal_file)
        memcpy(signal_file, file, strlen(file) + 1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = flight_on_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) != 0) {
        __atomic_store_n(&signal_installed, 0, __ATOMIC_RELEASE);
        return CGLOO_EINVAL;
    }
    return CGLOO_OK;
}

int cgloo__flight_signal(cgloo__flight *f, int sig)
{
    if (sig <= 0 || sig >= NSIG || sig == SIGKILL || sig == SIGSTOP)
        return CGLOO_EINVAL;
    if (!f->ring)
        return CGLOO_OK;
    int rc = signal_install(sig);
    if (rc != CGLOO_OK)
        return rc;
    for (int i = 0; i < SIGNAL_SLOTS; i++) {
        cgloo__flight *none = NULL;
        if (__atomic_compare_exchange_n(&signal_slots[i], &none, f, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return CGLOO_OK;
    }
    return CGLOO_EBUSY;
}

void cgloo__flight_fini(cgloo__flight *f)
{
    for (int i = 0; i < SIGNAL_SLOTS; i++) {
        cgloo__flight *mine = f;
        __atomic_compare_exchange_n(&signal_slots[i], &mine, NULL, false, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED);
    }
    free(f->ring);
    f->ring = NULL;
}
