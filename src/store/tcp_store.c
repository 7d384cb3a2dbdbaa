/*
 * The TCP store client. One socket per handle; a handle may be shared by many threads, which
 * take turns: one request and its response at a time (a thread blocked in get holds the handle,
 * so the thread that sets the awaited key needs a handle of its own). Every exchange has a
 * deadline enforced with poll. A connection that fails or times out mid-exchange may be out of
 * step with the server, so it is dropped; the next call dials again, once, and reports EIO if
 * the server is gone. See tcp_store_proto.h for the wire format.
 *
 * With the CGLOO_TLS_* variables set, every connection runs a TLS handshake (the client's
 * certificate checked by the server and the server's by the client, against one CA) before the
 * store's hello, and every byte after it goes through the session.
 */
#include "store/store.h"
#include "store/tcp_store_proto.h"
#include "core/auth.h"
#include "net/net.h"
#include "transport/tls/tls.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/uio.h>
#include <unistd.h>

/* A waiting request may take this long beyond its own timeout (the server answers at the
 * timeout; the margin covers the transfer of the answer). */
#define TCP_STORE_MARGIN_MS 5000
#define TCP_STORE_BACKOFF_MIN_MS 10
#define TCP_STORE_BACKOFF_MAX_MS 250

typedef struct tcp_store {
    cgloo_store base;
    pthread_mutex_t lock;   /* guards busy */
    pthread_cond_t idle;    /* signalled when busy drops */
    int busy;               /* a thread owns the connection */
    int fd;                 /* -1 after a failed exchange: the next call dials again */
    cgloo__tls *sess;       /* fd's TLS session (with TLS) */
    cgloo__tls_config *tls; /* TLS on every connection, or NULL */
    char *host;
    int port;
    cgloo__secret *secret; /* proven at every dial; NULL: none */
} tcp_store;

/* A request under construction: header, fixed fields and keys (values go by reference). */
typedef struct tcp_frame {
    uint8_t *buf;
    size_t len, cap;
    int failed; /* out of memory */
} tcp_frame;

/* ---- deadline-bounded socket I/O ---- */

/* A connection: the socket and, with TLS, its session. */
typedef struct store_conn {
    int fd;
    cgloo__tls *sess;
} store_conn;

/* Why the latest TLS handshake of this thread failed, for connect_error. */
static __thread char tls_why[300];

/* io_status keeps the client's word for a broken exchange: whatever the socket said (reset, end
 * of stream, ...), the connection is out of step and the caller sees EIO; only a timeout is told
 * apart. */
static int io_status(int rc)
{
    return rc == CGLOO_OK || rc == CGLOO_ETIMEDOUT ? rc : CGLOO_EIO;
}

/* send_all sends every byte of iov[0..iovcnt) before deadline. */
static int send_all(store_conn c, struct iovec *iov, int iovcnt, int64_t deadline)
{
    if (!c.sess)
        return io_status(cgloo__writev_full(c.fd, iov, iovcnt, deadline));
    int rc = CGLOO_OK;
    for (int i = 0; i < iovcnt && rc == CGLOO_OK; i++)
        rc = cgloo__tls_write_full(c.sess, c.fd, iov[i].iov_base, iov[i].iov_len, deadline);
    return io_status(rc);
}

/* recv_all fills buf with len bytes before deadline. */
static int recv_all(store_conn c, void *buf, size_t len, int64_t deadline)
{
    if (c.sess)
        return io_status(cgloo__tls_read_full(c.sess, c.fd, buf, len, deadline));
    return io_status(cgloo__read_full(c.fd, buf, len, deadline));
}

/* ---- dialling ---- */

/* What a dial needs besides the address: TLS (or NULL) and the host its certificate must name,
 * the secret to prove (or NULL), and why a handshake was refused (static text naming which side
 * lacks the secret, or that it differs), for the error. */
typedef struct dial_how {
    cgloo__tls_config *tls;
    const char *host;
    const cgloo__secret *secret;
    const char *why;
} dial_how;

/* hello_prove checks the server's MAC after its hello and nonce, then sends ours. */
static int hello_prove(store_conn c, uint8_t *transcript, dial_how *how, int64_t deadline)
{
    uint8_t *server_part = transcript + TCP_STORE_HELLO_LEN + TCP_STORE_NONCE_LEN;
    uint8_t mac[TCP_STORE_MAC_LEN];
    int rc = recv_all(c, server_part + TCP_STORE_HELLO_LEN, TCP_STORE_NONCE_LEN, deadline);
    if (rc == CGLOO_OK)
        rc = recv_all(c, mac, sizeof mac, deadline);
    if (rc != CGLOO_OK)
        return rc;
    if (!cgloo__auth_check(how->secret, TCP_STORE_LABEL_SERVER, transcript,
                           TCP_STORE_TRANSCRIPT_LEN, mac)) {
        how->why = "its MAC does not match this process's job secret: the secrets differ";
        return CGLOO_EPROTO;
    }
    if (cgloo__auth_mac(how->secret, TCP_STORE_LABEL_CLIENT, transcript, TCP_STORE_TRANSCRIPT_LEN,
                        mac) != CGLOO_OK)
        return CGLOO_EIO;
    struct iovec iov = {.iov_base = mac, .iov_len = sizeof mac};
    return send_all(c, &iov, 1, deadline);
}

/* hello exchanges hellos on a fresh connection, and with a secret, proves it and checks the
 * server's proof. */
static int hello(store_conn c, dial_how *how, int64_t deadline)
{
    uint8_t t[TCP_STORE_TRANSCRIPT_LEN];
    uint8_t *theirs = t + TCP_STORE_HELLO_LEN + TCP_STORE_NONCE_LEN;
    bool auth = how->secret != NULL;
    size_t len = auth ? TCP_STORE_HELLO_LEN + TCP_STORE_NONCE_LEN : TCP_STORE_HELLO_LEN;
    tcp_store_hello_put(t, auth);
    int rc = auth ? cgloo__auth_nonce(t + TCP_STORE_HELLO_LEN) : CGLOO_OK;
    struct iovec iov = {.iov_base = t, .iov_len = len};
    if (rc == CGLOO_OK)
        rc = send_all(c, &iov, 1, deadline);
    if (rc == CGLOO_OK)
        rc = recv_all(c, theirs, TCP_STORE_HELLO_LEN, deadline);
    if (rc != CGLOO_OK)
        return rc;
    if (!tcp_store_hello_ok(theirs)) {
        CGLOO_WARN("tcp store: the server's hello has a wrong magic or version");
        return CGLOO_EPROTO;
    }
    if (!tcp_store_hello_auth(theirs) != !auth) {
        how->why = auth ? "the server has no job secret and this process has one"
                        : "the server requires a job secret and this process has none";
        return CGLOO_EPROTO;
    }
    return auth ? hello_prove(c, t, how, deadline) : CGLOO_OK;
}

/* tls_start runs the TLS handshake on a fresh connection; a failure is EPROTO (final: another
 * attempt meets the same certificates), with the reason in tls_why. */
static int tls_start(cgloo__tls_config *cfg, const char *host, store_conn *c, int64_t deadline)
{
    if (cgloo__tls_new(cfg, c->fd, true, host, &c->sess) != CGLOO_OK)
        return CGLOO_ENOMEM;
    int rc = cgloo__tls_handshake_full(c->sess, c->fd, deadline);
    if (rc == CGLOO_OK)
        return CGLOO_OK;
    snprintf(tls_why, sizeof tls_why, "%s", cgloo__tls_why(c->sess));
    cgloo__tls_free(c->sess);
    c->sess = NULL;
    return rc == CGLOO_ETIMEDOUT ? rc : CGLOO_EPROTO;
}

/* dial_addr connects to one address before deadline and says hello. *out is set only on
 * success: a caller's fd field never holds a socket that was closed here. On failure *err is
 * the system's reason (0 when the server's hello was wrong). */
static int dial_addr(dial_how *how, const cgloo__addr *addr, int64_t deadline, store_conn *out,
                     int *err)
{
    store_conn c = {.fd = -1};
    int rc = cgloo__connect(addr, deadline, &c.fd);
    *err = errno;
    if (rc != CGLOO_OK)
        return rc;
    cgloo__sock_tune(c.fd);
    rc = how->tls ? tls_start(how->tls, how->host, &c, deadline) : CGLOO_OK;
    if (rc == CGLOO_OK)
        rc = hello(c, how, deadline);
    *err = rc == CGLOO_EPROTO ? 0 : rc == CGLOO_ETIMEDOUT ? ETIMEDOUT : ECONNRESET;
    if (rc != CGLOO_OK) {
        cgloo__tls_free(c.sess);
        close(c.fd);
        return rc;
    }
    *out = c;
    return CGLOO_OK;
}

/* dial_once tries each address once; returns the last address's error. */
static int dial_once(dial_how *how, const cgloo__addr *addrs, size_t n, int64_t deadline,
                     store_conn *out, int *err)
{
    int rc = CGLOO_EADDR;
    for (size_t i = 0; i < n; i++) {
        rc = dial_addr(how, &addrs[i], deadline, out, err);
        if (rc == CGLOO_OK || rc == CGLOO_ETIMEDOUT)
            break;
    }
    return rc;
}

static int retryable(int rc)
{
    return rc == CGLOO_ECONNREFUSED || rc == CGLOO_EPEER || rc == CGLOO_EIO;
}

/* dial connects and says hello before deadline, trying every address of host. With `retry`,
 * refused (and reset) attempts are repeated with a growing pause until the deadline, for a
 * server that is still starting. On failure *err is the last attempt's system error. */
static int dial(dial_how *how, int port, int64_t deadline, int retry, store_conn *out, int *err)
{
    cgloo__addr addrs[CGLOO_ADDRS_MAX];
    size_t n = 0;
    *err = 0;
    int rc = cgloo__addr_resolve_all(how->host, 0, port, addrs, CGLOO_ADDRS_MAX, &n);
    if (rc != CGLOO_OK) {
        CGLOO_DEBUG("tcp store: cannot resolve '%s': %s", how->host, cgloo_strerror(rc));
        return rc;
    }
    int pause = TCP_STORE_BACKOFF_MIN_MS;
    for (;;) {
        int e = 0;
        rc = dial_once(how, addrs, n, deadline, out, &e);
        /* An attempt cut short by the deadline says less than the refusals before it. */
        if (e != ETIMEDOUT || *err == 0)
            *err = e;
        if (rc == CGLOO_OK || !retry || !retryable(rc))
            break;
        int left = cgloo__remaining_ms(deadline);
        if (left == 0)
            break;
        cgloo__sleep_ms(CGLOO_MIN(pause, left));
        pause = CGLOO_MIN(pause * 2, TCP_STORE_BACKOFF_MAX_MS);
    }
    return rc;
}

/* ---- taking turns on the handle ---- */

/* acquire waits until deadline for the handle to be free and takes it. */
static int acquire(tcp_store *t, int64_t deadline)
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

static void release(tcp_store *t)
{
    pthread_mutex_lock(&t->lock);
    t->busy = 0;
    pthread_cond_signal(&t->idle);
    pthread_mutex_unlock(&t->lock);
}

static void drop_connection(tcp_store *t)
{
    cgloo__tls_free(t->sess);
    t->sess = NULL;
    if (t->fd >= 0) {
        close(t->fd);
        t->fd = -1;
    }
}

/* ---- one exchange ---- */

static void frame_put(tcp_frame *f, const void *data, size_t len)
{
    if (f->failed || len == 0)
        return;
    if (f->len + len > f->cap) {
        size_t cap = CGLOO_MAX(f->cap * 2, f->len + len);
        uint8_t *nb = realloc(f->buf, cap);
        if (!nb) {
            f->failed = 1;
            return;
        }
        f->buf = nb;
        f->cap = cap;
    }
    memcpy(f->buf + f->len, data, len);
    f->len += len;
}

static void frame_u32(tcp_frame *f, uint32_t v)
{
    uint8_t b[4];
    cgloo__put_u32(b, v);
    frame_put(f, b, 4);
}

static void frame_u64(tcp_frame *f, uint64_t v)
{
    uint8_t b[8];
    cgloo__put_u64(b, v);
    frame_put(f, b, 8);
}

/* frame_start begins a request with room for its header. */
static void frame_start(tcp_frame *f, uint32_t op)
{
    *f = (tcp_frame){0};
    frame_u32(f, 0); /* body length, filled in by exchange */
    frame_u32(f, op);
}

static void frame_key(tcp_frame *f, const char *key)
{
    size_t n = strlen(key);
    frame_u32(f, (uint32_t)n);
    frame_put(f, key, n);
}

static void frame_keys(tcp_frame *f, const char *const *keys, size_t nkeys)
{
    frame_u32(f, (uint32_t)nkeys);
    for (size_t i = 0; i < nkeys; i++)
        frame_key(f, keys[i]);
}

/* A response: its status and body (malloc'd with a NUL after it; NULL when empty). */
typedef struct tcp_reply {
    uint32_t status;
    uint8_t *body;
    size_t len;
} tcp_reply;

/* exchange_io sends the frame (and `extra`, a value sent without copying) and reads the reply. */
static int exchange_io(store_conn c, tcp_frame *f, const void *extra, size_t extra_len,
                       int64_t deadline, tcp_reply *reply)
{
    cgloo__put_u32(f->buf, (uint32_t)(f->len - TCP_STORE_HEADER_LEN + extra_len));
    struct iovec iov[2] = {{.iov_base = f->buf, .iov_len = f->len},
                           {.iov_base = (void *)extra, .iov_len = extra_len}};
    int rc = send_all(c, iov, extra_len ? 2 : 1, deadline);
    uint8_t head[TCP_STORE_HEADER_LEN];
    if (rc == CGLOO_OK)
        rc = recv_all(c, head, sizeof head, deadline);
    if (rc != CGLOO_OK)
        return rc;
    reply->len = cgloo__get_u32(head);
    reply->status = cgloo__get_u32(head + 4);
    if (reply->len > TCP_STORE_FRAME_MAX)
        return CGLOO_EPROTO;
    reply->body = malloc(reply->len + 1);
    if (!reply->body)
        return CGLOO_ENOMEM; /* the unread body leaves the stream out of step: drop it */
    reply->body[reply->len] = '\0';
    rc = recv_all(c, reply->body, reply->len, deadline);
    if (rc != CGLOO_OK) {
        free(reply->body);
        reply->body = NULL;
    }
    return rc;
}

/* exchange runs one request on the handle: take a turn (waiting at most until turn_deadline),
 * dial if the last exchange broke, send, and read the reply before io_deadline. With `stamp`,
 * the u32 that opens the body is set to the ms left until turn_deadline once the turn is taken
 * (the server-side timeout of a waiting request). The frame is freed. Returns an I/O status;
 * the reply's own status is in reply->status. */
static int exchange(tcp_store *t, tcp_frame *f, const void *extra, size_t extra_len, int stamp,
                    int64_t turn_deadline, int64_t io_deadline, tcp_reply *reply)
{
    *reply = (tcp_reply){0};
    int rc = f->failed ? CGLOO_ENOMEM : acquire(t, turn_deadline);
    if (rc != CGLOO_OK) {
        free(f->buf);
        return rc;
    }
    if (stamp) {
        int left = CGLOO_MAX(cgloo__remaining_ms(turn_deadline), 1);
        cgloo__put_u32(f->buf + TCP_STORE_HEADER_LEN, (uint32_t)left);
    }
    if (t->fd < 0) {
        int err;
        store_conn c = {.fd = -1};
        dial_how how = {.tls = t->tls, .host = t->host, .secret = t->secret};
        rc = dial(&how, t->port, io_deadline, 0, &c, &err);
        if (rc != CGLOO_OK && rc != CGLOO_ENOMEM)
            rc = CGLOO_EIO; /* the server that was there is gone */
        t->fd = c.fd;
        t->sess = c.sess;
    }
    if (rc == CGLOO_OK)
        rc = exchange_io((store_conn){t->fd, t->sess}, f, extra, extra_len, io_deadline, reply);
    if (rc != CGLOO_OK)
        drop_connection(t);
    release(t);
    free(f->buf);
    return rc == CGLOO_EPROTO ? CGLOO_EIO : rc;
}

/* reply_status turns the server's status into ours; EPROTO for one we do not know. */
static int reply_status(const tcp_reply *r)
{
    switch (r->status) {
    case TCP_STORE_ST_OK:
        return CGLOO_OK;
    case TCP_STORE_ST_TIMEDOUT:
        return CGLOO_ETIMEDOUT;
    case TCP_STORE_ST_NOT_COUNTER:
    case TCP_STORE_ST_TOO_LARGE:
    case TCP_STORE_ST_NOMEM:
        return CGLOO_ESTORE;
    default:
        return CGLOO_EPROTO;
    }
}

/* call is exchange for a request that does not wait: a turn and the I/O within the default
 * timeout. The reply must be `want_len` bytes long when OK; a mismatch drops the connection. */
static int call(tcp_store *t, tcp_frame *f, const void *extra, size_t extra_len, size_t want_len,
                tcp_reply *reply)
{
    int64_t deadline = cgloo__deadline(CGLOO_DEFAULT_TIMEOUT_MS, CGLOO_DEFAULT_TIMEOUT_MS);
    int rc = exchange(t, f, extra, extra_len, 0, deadline, deadline, reply);
    if (rc != CGLOO_OK)
        return rc;
    rc = reply_status(reply);
    if (rc == CGLOO_OK && reply->len != want_len)
        rc = CGLOO_EPROTO;
    if (rc == CGLOO_EPROTO) {
        free(reply->body);
        reply->body = NULL;
        CGLOO_WARN("tcp store: malformed reply from %s:%d", t->host, t->port);
        return CGLOO_EIO;
    }
    return rc;
}

/* call_waiting is exchange for GET, WAIT and MULTI_GET: the timeout bounds both the wait for
 * a turn and the server's wait; the I/O may take TCP_STORE_MARGIN_MS longer. */
static int call_waiting(tcp_store *t, tcp_frame *f, int timeout_ms, tcp_reply *reply)
{
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    int rc = exchange(t, f, NULL, 0, 1, deadline, deadline + TCP_STORE_MARGIN_MS, reply);
    if (rc != CGLOO_OK)
        return rc;
    rc = reply_status(reply);
    if (rc == CGLOO_EPROTO) {
        free(reply->body);
        reply->body = NULL;
        return CGLOO_EIO;
    }
    return rc;
}

/* ---- the ops ---- */

static int tcp_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    tcp_frame f;
    frame_start(&f, TCP_STORE_OP_SET);
    frame_key(&f, key);
    tcp_reply r;
    int rc = call((tcp_store *)s, &f, value, len, 0, &r);
    free(r.body);
    return rc;
}

static int tcp_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    tcp_frame f;
    frame_start(&f, TCP_STORE_OP_GET);
    frame_u32(&f, 0); /* the server-side timeout, stamped by exchange */
    frame_key(&f, key);
    tcp_reply r;
    int rc = call_waiting((tcp_store *)s, &f, timeout_ms, &r);
    if (rc != CGLOO_OK) {
        free(r.body);
        return rc;
    }
    *value = r.body;
    *len = r.len;
    return CGLOO_OK;
}

static int tcp_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    if (nkeys > TCP_STORE_KEYS_MAX)
        return CGLOO_EINVAL;
    tcp_frame f;
    frame_start(&f, TCP_STORE_OP_WAIT);
    frame_u32(&f, 0);
    frame_keys(&f, keys, nkeys);
    tcp_reply r;
    int rc = call_waiting((tcp_store *)s, &f, timeout_ms, &r);
    free(r.body);
    return rc;
}

static int tcp_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    if (nkeys > TCP_STORE_KEYS_MAX)
        return CGLOO_EINVAL;
    tcp_frame f;
    frame_start(&f, TCP_STORE_OP_CHECK);
    frame_keys(&f, keys, nkeys);
    tcp_reply r;
    int rc = call((tcp_store *)s, &f, NULL, 0, 4, &r);
    if (rc == CGLOO_OK)
        *all_present = cgloo__get_u32(r.body) != 0;
    free(r.body);
    return rc;
}

static int tcp_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    tcp_frame f;
    frame_start(&f, TCP_STORE_OP_ADD);
    frame_u64(&f, (uint64_t)delta);
    frame_key(&f, key);
    tcp_reply r;
    int rc = call((tcp_store *)s, &f, NULL, 0, 8, &r);
    if (rc == CGLOO_OK)
        *result = (int64_t)cgloo__get_u64(r.body);
    free(r.body);
    return rc;
}

static int tcp_del(cgloo_store *s, const char *key)
{
    tcp_frame f;
    frame_start(&f, TCP_STORE_OP_DELETE);
    frame_key(&f, key);
    tcp_reply r;
    int rc = call((tcp_store *)s, &f, NULL, 0, 0, &r);
    free(r.body);
    return rc;
}

/* split_values parses per-key u32 vlen | value into fresh copies; all or nothing. */
static int split_values(const tcp_reply *r, size_t nkeys, void **values, size_t *lens)
{
    tcp_store_reader rd = {.p = r->body, .left = r->len};
    size_t done = 0;
    int rc = CGLOO_OK;
    while (done < nkeys) {
        uint32_t n;
        const uint8_t *v;
        if (!tcp_store_read_u32(&rd, &n) || !tcp_store_read_bytes(&rd, n, &v)) {
            rc = CGLOO_EIO;
            break;
        }
        if (!(values[done] = cgloo__memdup_z(v, n))) {
            rc = CGLOO_ENOMEM;
            break;
        }
        lens[done++] = n;
    }
    if (rc == CGLOO_OK && rd.left != 0)
        rc = CGLOO_EIO;
    if (rc != CGLOO_OK) {
        for (size_t i = 0; i < done; i++) {
            free(values[i]);
            values[i] = NULL;
        }
    }
    return rc;
}

static int tcp_multi_get(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms,
                         void **values, size_t *lens)
{
    if (nkeys > TCP_STORE_KEYS_MAX)
        return CGLOO_EINVAL;
    tcp_frame f;
    frame_start(&f, TCP_STORE_OP_MULTI_GET);
    frame_u32(&f, 0);
    frame_keys(&f, keys, nkeys);
    tcp_reply r;
    int rc = call_waiting((tcp_store *)s, &f, timeout_ms, &r);
    if (rc == CGLOO_OK)
        rc = split_values(&r, nkeys, values, lens);
    free(r.body);
    return rc;
}

/* load_secret keeps the job secret (given, or the environment's) in *out; NULL when none. */
static int load_secret(const char *given, cgloo__secret **out)
{
    cgloo__secret sec;
    *out = NULL;
    int rc = cgloo__secret_load(given, "cgloo_store_tcp_connect", &sec);
    if (rc == CGLOO_OK && sec.len) {
        *out = malloc(sizeof sec);
        rc = *out ? CGLOO_OK : cgloo__error_set(CGLOO_ENOMEM, "out of memory for a TCP store");
        if (*out)
            **out = sec;
    }
    cgloo__secret_wipe(&sec);
    return rc;
}

static void free_secret(cgloo__secret *s)
{
    if (s) {
        cgloo__secret_wipe(s);
        free(s);
    }
}

static void tcp_destroy(cgloo_store *s)
{
    tcp_store *t = (tcp_store *)s;
    drop_connection(t);
    cgloo__tls_config_destroy(t->tls);
    pthread_cond_destroy(&t->idle);
    pthread_mutex_destroy(&t->lock);
    free(t->host);
    free_secret(t->secret);
    free(t);
}

static const char *tcp_host(const cgloo_store *s)
{
    return ((const tcp_store *)s)->host;
}

static const cgloo_store_ops tcp_ops = {
    .name = "tcp",
    .set = tcp_set,
    .get = tcp_get,
    .wait = tcp_wait,
    .check = tcp_check,
    .add = tcp_add,
    .del = tcp_del,
    .multi_get = tcp_multi_get,
    .destroy = tcp_destroy,
    .host = tcp_host,
};

static tcp_store *tcp_store_new(const char *host, int port, store_conn c, cgloo__tls_config *tls)
{
    tcp_store *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->host = cgloo__strdup(host);
    if (!t->host) {
        free(t);
        return NULL;
    }
    if (cgloo__cond_init_monotonic(&t->idle) != CGLOO_OK) {
        free(t->host);
        free(t);
        return NULL;
    }
    pthread_mutex_init(&t->lock, NULL);
    t->base.ops = &tcp_ops;
    t->port = port;
    t->fd = c.fd;
    t->sess = c.sess;
    t->tls = tls;
    return t;
}

/* connect_error explains why no store answered at host:port (the thread's last error). */
static int connect_error(const char *host, int port, int rc, int err, const char *auth_why)
{
    if (auth_why)
        return cgloo__error_set(rc,
                                "the TCP store at %s port %d refused this process: %s (do the "
                                "store and every rank share CGLOO_SECRET?)",
                                host, port, auth_why);
    if (rc == CGLOO_EADDR)
        return cgloo__error_set(rc, "the TCP store's host '%s' does not resolve to an address",
                                host);
    if (rc == CGLOO_EPROTO && tls_why[0])
        return cgloo__error_set(rc, "TLS handshake with the TCP store at %s port %d failed: %s",
                                host, port, tls_why);
    if (rc == CGLOO_EPROTO)
        return cgloo__error_set(rc, "what answered at %s port %d is not a cgloo TCP store", host,
                                port);
    rc = rc == CGLOO_EPEER || rc == CGLOO_EIO ? CGLOO_ECONNREFUSED : rc;
    return cgloo__error_set(rc,
                            "no TCP store answered at %s port %d before the timeout (%s); is a "
                            "store (cgloo-store, cgloo-run) serving there, on an address this "
                            "host reaches (cgloo-store --host)?",
                            host, port, err ? strerror(err) : cgloo_strerror(rc));
}

int cgloo_store_tcp_connect(const char *host, int port, int timeout_ms, cgloo_store **out)
{
    return cgloo_store_tcp_connect_auth(host, port, NULL, timeout_ms, out);
}

/* how_from_env fills how's TLS (CGLOO_TLS_*) and secret (given, or CGLOO_SECRET*); the caller
 * frees both with how_free. */
static int how_from_env(dial_how *how, const char *host, const char *secret)
{
    *how = (dial_how){.host = host};
    cgloo__tls_files files;
    int rc = CGLOO_OK;
    if (cgloo__tls_files_from_env(&files))
        rc = cgloo__tls_config_create(&files, &how->tls); /* the detail names the file */
    cgloo__secret *sec = NULL;
    if (rc == CGLOO_OK)
        rc = load_secret(secret, &sec);
    how->secret = sec;
    tls_why[0] = '\0';
    return rc;
}

static void how_free(dial_how *how)
{
    cgloo__tls_config_destroy(how->tls);
    free_secret((cgloo__secret *)how->secret);
}

/* first_dial makes a client's first connection, with how from the environment (and `secret`),
 * retrying refusals until the timeout; on failure the thread's last error says why. The caller
 * frees how with how_free. */
static int first_dial(dial_how *how, const char *host, int port, const char *secret, int timeout_ms,
                      store_conn *c)
{
    int rc = how_from_env(how, host, secret);
    if (rc != CGLOO_OK)
        return rc; /* its detail names the file, the setting or the package */
    int err = 0;
    rc = dial(how, port, cgloo__deadline(timeout_ms, CGLOO_DEFAULT_TIMEOUT_MS), 1, c, &err);
    return rc == CGLOO_OK ? rc : connect_error(host, port, rc, err, how->why);
}

int cgloo_store_tcp_connect_auth(const char *host, int port, const char *secret, int timeout_ms,
                                 cgloo_store **out)
{
    cgloo__error_clear();
    if (!out || port <= 0 || port > 65535 || timeout_ms < 0)
        return cgloo__error_set(CGLOO_EINVAL,
                                "cgloo_store_tcp_connect: port %d or timeout %d ms out of range",
                                port, timeout_ms);
    cgloo__log_init_from_env();
    if (!host)
        host = "127.0.0.1";
    dial_how how;
    store_conn c = {.fd = -1};
    int rc = first_dial(&how, host, port, secret, timeout_ms, &c);
    tcp_store *t = rc == CGLOO_OK ? tcp_store_new(host, port, c, how.tls) : NULL;
    if (rc == CGLOO_OK && !t) {
        cgloo__tls_free(c.sess);
        close(c.fd);
        rc = cgloo__error_set(CGLOO_ENOMEM, "out of memory for a TCP store client");
    }
    if (rc != CGLOO_OK) {
        how_free(&how);
        return rc;
    }
    t->secret = (cgloo__secret *)how.secret;
    *out = &t->base;
    return CGLOO_OK;
}

int cgloo__tcp_store_dial(const char *host, int port, int timeout_ms, int *fd)
{
    dial_how how;
    store_conn c = {.fd = -1};
    int rc = first_dial(&how, host, port, NULL, timeout_ms, &c);
    /* The caller only waits for the close: the session is not kept (nothing more is read or
     * written through it), the socket is. */
    cgloo__tls_free(c.sess);
    how_free(&how);
    *fd = c.fd;
    return rc;
}
