/*
 * A client of PyTorch's TCPStore (torch.distributed.TCPStore), so that ranks started by torchrun
 * meet through the store its agent already serves (URL torch://host:port). Written from the
 * protocol as PyTorch's servers speak it; no PyTorch code is used.
 *
 * The wire: no framing and no hello; integers in the host's byte order, which is little-endian
 * on every machine these servers run on. A request is a u8 op and its arguments; a key or a
 * value travels as u64 length | bytes, a key list as u64 count | keys. PyTorch's clients put
 * '/' before every key; so does this one.
 *
 *   op          arguments          reply
 *   SET         key, value         none
 *   GET         key                value (the key must exist, so a client WAITs first)
 *   ADD         key, i64 delta     i64 new value (the value is kept as decimal text)
 *   CHECK       key list           u8: 0 all present, 1 not
 *   WAIT        key list           u8 0 once all exist (nothing before: the client times out)
 *   GETNUMKEYS  none               i64
 *   DELETE_KEY  key                i64 keys deleted
 *   VALIDATE    u32 0x3C85F7CE     none (newer servers: must be a connection's first request)
 *   PING        u32 nonce          u32 the same nonce (newer servers)
 *
 * Two numberings of the ops exist. Up to PyTorch 2.1 (Debian's 1.13 among them): SET 0, GET 2,
 * ADD 3, CHECK 4, WAIT 5, GETNUMKEYS 6, DELETE_KEY 8. Later servers put VALIDATE first, moving
 * every op up by one, except DELETE_KEY (8; an op between them was dropped), and added PING 13.
 * A new server closes, or ignores, a connection whose first request is not VALIDATE.
 *
 * Which one a server speaks is found on the first connection (probe below) and kept for later
 * ones. A WAIT that times out leaves the server with a parked wait that would answer later and
 * put the stream out of step, so the connection is dropped (the server forgets a closed
 * connection's waits) and the next call dials again.
 */
#include "store/store.h"
#include "net/net.h"

#include <pthread.h>
#include <sys/uio.h>
#include <unistd.h>

#define TORCH_MAGIC 0x3C85F7CEu
/* How long the legacy probe waits for GETNUMKEYS's answer: a new server of the libuv kind
 * ignores the probe instead of closing, and this is what finding that out costs. */
#define TORCH_PROBE_MS 1000
#define TORCH_MARGIN_MS 5000 /* I/O time allowed beyond a call's own timeout */
#define TORCH_KEYS_MAX 16384

enum torch_proto {
    PROTO_UNKNOWN,
    PROTO_LEGACY,         /* the numbering without VALIDATE */
    PROTO_VALIDATED,      /* VALIDATE first; no PING */
    PROTO_VALIDATED_PING, /* VALIDATE first; PING answers */
};

enum torch_op { OP_SET, OP_GET, OP_ADD, OP_CHECK, OP_WAIT, OP_GETNUMKEYS, OP_DELETE, OP_COUNT };

static const uint8_t op_legacy[OP_COUNT] = {
    [OP_SET] = 0,  [OP_GET] = 2,        [OP_ADD] = 3,    [OP_CHECK] = 4,
    [OP_WAIT] = 5, [OP_GETNUMKEYS] = 6, [OP_DELETE] = 8,
};
static const uint8_t op_validated[OP_COUNT] = {
    [OP_SET] = 1,  [OP_GET] = 3,        [OP_ADD] = 4,    [OP_CHECK] = 5,
    [OP_WAIT] = 6, [OP_GETNUMKEYS] = 7, [OP_DELETE] = 8,
};
#define OP_VALIDATE 0
#define OP_PING 13

typedef struct torch_store {
    cgloo_store base;
    pthread_mutex_t lock; /* guards busy */
    pthread_cond_t idle;
    int busy; /* a thread owns the connection */
    int fd;   /* -1: the next call dials */
    enum torch_proto proto;
    char *host;
    int port;
} torch_store;

/* A request being built: small parts are copied in, a value is sent from the caller's memory. */
typedef struct torch_req {
    uint8_t *buf;
    size_t len, cap;
    int failed;
} torch_req;

static void req_put(torch_req *r, const void *p, size_t n)
{
    if (r->failed || n == 0)
        return;
    if (r->len + n > r->cap) {
        size_t cap = CGLOO_MAX(CGLOO_MAX(r->cap * 2, r->len + n), 64);
        uint8_t *nb = realloc(r->buf, cap);
        if (!nb) {
            r->failed = 1;
            return;
        }
        r->buf = nb;
        r->cap = cap;
    }
    memcpy(r->buf + r->len, p, n);
    r->len += n;
}

static void req_u8(torch_req *r, uint8_t v)
{
    req_put(r, &v, 1);
}

static void req_u32(torch_req *r, uint32_t v)
{
    uint8_t b[4];
    cgloo__put_u32(b, v);
    req_put(r, b, 4);
}

static void req_u64(torch_req *r, uint64_t v)
{
    uint8_t b[8];
    cgloo__put_u64(b, v);
    req_put(r, b, 8);
}

/* req_key puts a key as PyTorch's clients name it on the wire: with a '/' in front, so that
 * keys set here and through torch.distributed.TCPStore are the same keys. */
static void req_key(torch_req *r, const char *key)
{
    size_t n = strlen(key);
    req_u64(r, n + 1);
    req_put(r, "/", 1);
    req_put(r, key, n);
}

static void req_keys(torch_req *r, const char *const *keys, size_t nkeys)
{
    req_u64(r, nkeys);
    for (size_t i = 0; i < nkeys; i++)
        req_key(r, keys[i]);
}

/* io_status: whatever broke an exchange (reset, end of stream), the caller sees EIO; only a
 * timeout is told apart. */
static int io_status(int rc)
{
    return rc == CGLOO_OK || rc == CGLOO_ETIMEDOUT ? rc : CGLOO_EIO;
}

/* req_send sends the request and then `extra` (a value, not copied). */
static int req_send(int fd, const torch_req *r, const void *extra, size_t extra_len,
                    int64_t deadline)
{
    if (r->failed)
        return CGLOO_ENOMEM;
    struct iovec iov[2] = {{.iov_base = r->buf, .iov_len = r->len},
                           {.iov_base = (void *)extra, .iov_len = extra_len}};
    return io_status(cgloo__writev_full(fd, iov, extra_len ? 2 : 1, deadline));
}

static int recv_bytes(int fd, void *p, size_t n, int64_t deadline)
{
    return io_status(cgloo__read_full(fd, p, n, deadline));
}

/* ---- connecting and finding the server's numbering ---- */

/* send_validate sends VALIDATE, and PING when asked, on a fresh connection. The nonce's low
 * three bytes are 0xff on purpose: a legacy server reads VALIDATE as SET, takes the magic and
 * those bytes as a key length beyond anything it can allocate, and drops the connection,
 * rather than wait for a key that never comes. */
static int send_validate(int fd, int ping, uint32_t *nonce, int64_t deadline)
{
    torch_req r = {0};
    *nonce = 0x00ffffffu | ((uint32_t)getpid() & 0xffu) << 24;
    req_u8(&r, OP_VALIDATE);
    req_u32(&r, TORCH_MAGIC);
    if (ping) {
        req_u8(&r, OP_PING);
        req_u32(&r, *nonce);
    }
    int rc = req_send(fd, &r, NULL, 0, deadline);
    free(r.buf);
    return rc;
}

/* expect_ping reads PING's answer: the nonce sent. */
static int expect_ping(int fd, uint32_t nonce, int64_t deadline)
{
    uint8_t b[4];
    int rc = recv_bytes(fd, b, 4, deadline);
    return rc == CGLOO_OK && cgloo__get_u32(b) != nonce ? CGLOO_EPROTO : rc;
}

/* expect_numkeys sends GETNUMKEYS under the given numbering and reads its i64. */
static int expect_numkeys(int fd, const uint8_t *ops, int64_t deadline)
{
    uint8_t op = ops[OP_GETNUMKEYS], b[8];
    int rc = io_status(cgloo__write_full(fd, &op, 1, deadline));
    return rc == CGLOO_OK ? recv_bytes(fd, b, 8, deadline) : rc;
}

/* greet does what `proto` needs on a fresh connection and checks that the server answers. */
static int greet(int fd, enum torch_proto proto, int64_t deadline)
{
    uint32_t nonce;
    int rc;
    switch (proto) {
    case PROTO_VALIDATED_PING:
        rc = send_validate(fd, 1, &nonce, deadline);
        return rc == CGLOO_OK ? expect_ping(fd, nonce, deadline) : rc;
    case PROTO_VALIDATED:
        rc = send_validate(fd, 0, &nonce, deadline);
        return rc == CGLOO_OK ? expect_numkeys(fd, op_validated, deadline) : rc;
    case PROTO_LEGACY:
        return expect_numkeys(fd, op_legacy, deadline);
    default:
        return CGLOO_EINVAL;
    }
}

/* dial_proto connects to one of addrs and greets with proto. */
static int dial_proto(const cgloo__addr *addrs, size_t n, enum torch_proto proto, int64_t deadline,
                      int *out)
{
    int rc = CGLOO_EADDR;
    for (size_t i = 0; i < n; i++) {
        int fd;
        if ((rc = cgloo__connect(&addrs[i], deadline, &fd)) != CGLOO_OK) {
            if (rc == CGLOO_ETIMEDOUT)
                break;
            continue;
        }
        cgloo__sock_tune(fd);
        if ((rc = greet(fd, proto, deadline)) == CGLOO_OK) {
            *out = fd;
            return CGLOO_OK;
        }
        close(fd);
        if (rc != CGLOO_EIO && rc != CGLOO_EPROTO)
            break;
    }
    return rc;
}

/* probe finds the server's numbering: the newest handshake first (it never leaves an older
 * server waiting), then the legacy probe (which a new server closes or ignores), then VALIDATE
 * without PING. Sets *proto and the connected *out. */
static int probe(const cgloo__addr *addrs, size_t n, int64_t deadline, enum torch_proto *proto,
                 int *out)
{
    static const enum torch_proto order[] = {PROTO_VALIDATED_PING, PROTO_LEGACY, PROTO_VALIDATED};
    int rc = CGLOO_EIO;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        int64_t until = deadline;
        if (order[i] == PROTO_LEGACY)
            until = CGLOO_MIN(deadline, cgloo__now_ms() + TORCH_PROBE_MS);
        rc = dial_proto(addrs, n, order[i], until, out);
        if (rc == CGLOO_OK) {
            *proto = order[i];
            CGLOO_DEBUG("torch store: the server speaks the %s protocol",
                        order[i] == PROTO_LEGACY ? "legacy" : "validated");
            return CGLOO_OK;
        }
        if (rc != CGLOO_EIO && rc != CGLOO_EPROTO &&
            !(rc == CGLOO_ETIMEDOUT && order[i] == PROTO_LEGACY))
            return rc; /* refused, unreachable, or out of time: no point in another numbering */
    }
    return rc == CGLOO_ETIMEDOUT ? CGLOO_EPROTO : rc;
}

/* dial connects (and probes on the first connection). With `retry`, refused connections are
 * tried again until the deadline, for a server that is still starting. */
static int dial(torch_store *t, int64_t deadline, int retry)
{
    cgloo__addr addrs[CGLOO_ADDRS_MAX];
    size_t n = 0;
    int rc = cgloo__addr_resolve_all(t->host, 0, t->port, addrs, CGLOO_ADDRS_MAX, &n);
    if (rc != CGLOO_OK)
        return rc;
    int pause = 10, refused = 0;
    for (;;) {
        if (t->proto == PROTO_UNKNOWN)
            rc = probe(addrs, n, deadline, &t->proto, &t->fd);
        else
            rc = dial_proto(addrs, n, t->proto, deadline, &t->fd);
        refused |= rc == CGLOO_ECONNREFUSED;
        int left = cgloo__remaining_ms(deadline);
        if (rc == CGLOO_OK || !retry || rc != CGLOO_ECONNREFUSED || left == 0)
            break;
        cgloo__sleep_ms(CGLOO_MIN(pause, left));
        pause = CGLOO_MIN(pause * 2, 250);
    }
    /* Refused until the time ran out says more than the timeout. */
    return rc == CGLOO_ETIMEDOUT && refused ? CGLOO_ECONNREFUSED : rc;
}

/* ---- taking turns on the connection ---- */

static int acquire(torch_store *t, int64_t deadline)
{
    struct timespec until = cgloo__timespec_at_ms(deadline);
    int rc = CGLOO_OK;
    pthread_mutex_lock(&t->lock);
    while (t->busy && rc == CGLOO_OK)
        if (pthread_cond_timedwait(&t->idle, &t->lock, &until) == ETIMEDOUT && t->busy)
            rc = CGLOO_ETIMEDOUT;
    if (rc == CGLOO_OK)
        t->busy = 1;
    pthread_mutex_unlock(&t->lock);
    return rc;
}

/* release gives the connection back, dropping it after a failed exchange (it may be out of
 * step with the server). */
static void release(torch_store *t, int rc)
{
    if (rc != CGLOO_OK && t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
    pthread_mutex_lock(&t->lock);
    t->busy = 0;
    pthread_cond_signal(&t->idle);
    pthread_mutex_unlock(&t->lock);
}

/* begin takes a turn before deadline and makes sure there is a connection. */
static int begin(torch_store *t, int64_t deadline)
{
    int rc = acquire(t, deadline);
    if (rc != CGLOO_OK)
        return rc;
    if (t->fd < 0 && (rc = dial(t, deadline, 0)) != CGLOO_OK) {
        release(t, rc);
        return rc == CGLOO_ETIMEDOUT || rc == CGLOO_ENOMEM ? rc : CGLOO_EIO;
    }
    return CGLOO_OK;
}

static int64_t io_deadline(void)
{
    return cgloo__deadline(CGLOO_DEFAULT_TIMEOUT_MS, CGLOO_DEFAULT_TIMEOUT_MS);
}

/* start_req begins a request with op, under the connection's numbering. */
static void start_req(const torch_store *t, torch_req *r, enum torch_op op)
{
    *r = (torch_req){0};
    req_u8(r, (t->proto == PROTO_LEGACY ? op_legacy : op_validated)[op]);
}

/* call sends r (and extra) and reads a reply of reply_len bytes (none when 0); r is freed. The
 * caller holds the turn. */
static int call(torch_store *t, torch_req *r, const void *extra, size_t extra_len, void *reply,
                size_t reply_len, int64_t deadline)
{
    int rc = req_send(t->fd, r, extra, extra_len, deadline);
    free(r->buf);
    if (rc == CGLOO_OK && reply_len)
        rc = recv_bytes(t->fd, reply, reply_len, deadline);
    return rc;
}

/* do_wait waits (turn held) until every key exists or the deadline passes. */
static int do_wait(torch_store *t, const char *const *keys, size_t nkeys, int64_t deadline)
{
    torch_req r;
    start_req(t, &r, OP_WAIT);
    req_keys(&r, keys, nkeys);
    uint8_t answer;
    int rc = req_send(t->fd, &r, NULL, 0, io_deadline());
    free(r.buf);
    if (rc == CGLOO_OK)
        rc = recv_bytes(t->fd, &answer, 1, deadline);
    if (rc == CGLOO_OK && answer != 0)
        rc = CGLOO_EIO;
    return rc;
}

/* ---- the ops ---- */

static int torch_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    torch_store *t = (torch_store *)s;
    int64_t deadline = io_deadline();
    int rc = begin(t, deadline);
    if (rc != CGLOO_OK)
        return rc;
    torch_req r;
    start_req(t, &r, OP_SET);
    req_key(&r, key);
    req_u64(&r, len);
    rc = call(t, &r, value, len, NULL, 0, deadline);
    release(t, rc);
    return rc;
}

/* read_value reads GET's reply: u64 length, then the value (copied, NUL appended). */
static int read_value(torch_store *t, int64_t deadline, void **value, size_t *len)
{
    uint8_t b[8];
    int rc = recv_bytes(t->fd, b, 8, deadline);
    if (rc != CGLOO_OK)
        return rc;
    uint64_t n = cgloo__get_u64(b);
    if (n > CGLOO_STORE_VALUE_MAX)
        return CGLOO_EIO;
    uint8_t *v = malloc((size_t)n + 1);
    if (!v)
        return CGLOO_ENOMEM;
    if ((rc = recv_bytes(t->fd, v, (size_t)n, deadline)) != CGLOO_OK) {
        free(v);
        return rc;
    }
    v[n] = '\0';
    *value = v;
    *len = (size_t)n;
    return CGLOO_OK;
}

static int torch_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    torch_store *t = (torch_store *)s;
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    int rc = begin(t, deadline);
    if (rc != CGLOO_OK)
        return rc;
    rc = do_wait(t, &key, 1, deadline);
    if (rc == CGLOO_OK) {
        torch_req r;
        start_req(t, &r, OP_GET);
        req_key(&r, key);
        int64_t io = deadline + TORCH_MARGIN_MS;
        rc = call(t, &r, NULL, 0, NULL, 0, io);
        if (rc == CGLOO_OK)
            rc = read_value(t, io, value, len);
    }
    release(t, rc);
    return rc;
}

static int torch_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    if (nkeys > TORCH_KEYS_MAX)
        return CGLOO_EINVAL;
    torch_store *t = (torch_store *)s;
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    int rc = begin(t, deadline);
    if (rc != CGLOO_OK)
        return rc;
    rc = do_wait(t, keys, nkeys, deadline);
    release(t, rc);
    return rc;
}

static int torch_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    if (nkeys > TORCH_KEYS_MAX)
        return CGLOO_EINVAL;
    torch_store *t = (torch_store *)s;
    int64_t deadline = io_deadline();
    int rc = begin(t, deadline);
    if (rc != CGLOO_OK)
        return rc;
    torch_req r;
    start_req(t, &r, OP_CHECK);
    req_keys(&r, keys, nkeys);
    uint8_t answer = 0;
    rc = call(t, &r, NULL, 0, &answer, 1, deadline);
    if (rc == CGLOO_OK && answer > 1)
        rc = CGLOO_EIO;
    release(t, rc);
    if (rc == CGLOO_OK)
        *all_present = answer == 0;
    return rc;
}

/* call_i64 runs a request on `key` whose reply is one i64 (ADD, DELETE_KEY). */
static int call_i64(torch_store *t, enum torch_op op, const char *key, const int64_t *arg,
                    int64_t *result)
{
    int64_t deadline = io_deadline();
    int rc = begin(t, deadline);
    if (rc != CGLOO_OK)
        return rc;
    torch_req r;
    start_req(t, &r, op);
    req_key(&r, key);
    if (arg)
        req_u64(&r, (uint64_t)*arg);
    uint8_t b[8];
    rc = call(t, &r, NULL, 0, b, 8, deadline);
    release(t, rc);
    if (rc == CGLOO_OK)
        *result = (int64_t)cgloo__get_u64(b);
    return rc;
}

static int torch_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    return call_i64((torch_store *)s, OP_ADD, key, &delta, result);
}

static int torch_del(cgloo_store *s, const char *key)
{
    int64_t deleted;
    return call_i64((torch_store *)s, OP_DELETE, key, NULL, &deleted);
}

static void torch_destroy(cgloo_store *s)
{
    torch_store *t = (torch_store *)s;
    if (t->fd >= 0)
        close(t->fd);
    pthread_cond_destroy(&t->idle);
    pthread_mutex_destroy(&t->lock);
    free(t->host);
    free(t);
}

/* multi_get is left to store.c, which waits for all keys and gets them one by one: the
 * protocol's MULTI_GET exists only in newer servers. */
static const cgloo_store_ops torch_ops = {
    .name = "torch",
    .set = torch_set,
    .get = torch_get,
    .wait = torch_wait,
    .check = torch_check,
    .add = torch_add,
    .del = torch_del,
    .destroy = torch_destroy,
};

static torch_store *torch_store_new(const char *host, int port)
{
    torch_store *t = calloc(1, sizeof *t);
    if (!t || !(t->host = cgloo__strdup(host)) ||
        cgloo__cond_init_monotonic(&t->idle) != CGLOO_OK) {
        if (t)
            free(t->host);
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->base.ops = &torch_ops;
    t->port = port;
    t->fd = -1;
    return t;
}

int cgloo_store_torch_connect(const char *host, int port, int timeout_ms, cgloo_store **out)
{
    if (!out || port <= 0 || port > 65535 || timeout_ms < 0)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    torch_store *t = torch_store_new(host ? host : "127.0.0.1", port);
    if (!t)
        return CGLOO_ENOMEM;
    int rc = dial(t, cgloo__deadline(timeout_ms, CGLOO_DEFAULT_TIMEOUT_MS), 1);
    if (rc != CGLOO_OK) {
        CGLOO_DEBUG("torch store: cannot connect to %s port %d: %s", t->host, port,
                    cgloo_strerror(rc));
        torch_destroy(&t->base);
        return rc == CGLOO_EIO ? CGLOO_EPROTO : rc;
    }
    *out = &t->base;
    return CGLOO_OK;
}
