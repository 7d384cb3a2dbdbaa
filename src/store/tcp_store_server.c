/*
 * The TCP store server: one background thread, poll() over non-blocking sockets, no thread per
 * client. Each connection carries one request at a time; a GET, WAIT or MULTI_GET whose keys
 * are missing is parked on its connection and answered when a SET or ADD supplies the keys or
 * when its deadline passes. While a connection is parked or still writing a response, the
 * server does not read from it, so a connection never holds more than one request and one
 * response: at most about 2 * TCP_STORE_FRAME_MAX bytes, and request bodies grow only as their
 * bytes arrive. Anything malformed closes that connection (logged at WARN); the others carry on.
 * See tcp_store_proto.h for the wire format.
 *
 * With the CGLOO_TLS_* variables set when the server starts, each connection first runs a TLS
 * handshake, non-blocking like everything else here (a client stuck in it holds up no one) and
 * bounded by SERVER_TLS_MS; a client without TLS, or whose certificate the CA did not sign, is
 * closed. The store's bytes then go through the session. Clients send one request and wait for
 * its answer, so a session never holds a decrypted request the socket does not signal; the loop
 * still looks for one (conn_pending) rather than rely on it.
 */
#include "store/store.h"
#include "store/kvtable.h"
#include "store/tcp_store_proto.h"
#include "core/auth.h"
#include "net/net.h"
#include "transport/tls/tls.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define SERVER_CONNS_MAX 4096
#define SERVER_BODY_STEP (64u * 1024) /* request bodies grow by at least this much */
#define SERVER_BODY_KEEP (64u * 1024) /* a body buffer up to this size is kept for reuse */
#define SERVER_ACCEPT_PAUSE_MS 100    /* after EMFILE, stop accepting for a moment */
#define SERVER_TLS_MS 10000           /* a TLS handshake must be done this soon after accept */

typedef enum conn_state {
    CONN_TLS,     /* in the TLS handshake */
    CONN_HELLO,   /* reading the client's hello */
    CONN_NONCE,   /* reading the nonce after a hello with the secret flag */
    CONN_PROOF,   /* reading the client's MAC, which must check before any request */
    CONN_HEADER,  /* reading a request header */
    CONN_BODY,    /* reading a request body */
    CONN_PARKED,  /* a waiting request is held until its keys exist or its deadline */
    CONN_WRITING, /* sending a response; nothing is read until it is out */
    CONN_CLOSED,  /* closed; removed from the table at the end of the loop iteration */
} conn_state;

typedef struct srv_key {
    const uint8_t *p; /* points into the connection's body */
    size_t len;
} srv_key;

typedef struct srv_conn {
    int fd;
    cgloo__tls *tls; /* the connection's TLS session, or NULL */
    int64_t tls_deadline;
    conn_state state;
    uint8_t head[TCP_STORE_HEADER_LEN];
    size_t head_got;
    uint32_t op;
    uint8_t *body;
    size_t body_len, body_got, body_cap;
    srv_key *keys; /* the keys of a parked request */
    size_t nkeys;
    size_t present;   /* keys[0..present) were there when last looked at (parked_ready) */
    int64_t deadline; /* of a parked request, monotonic ms */
    uint8_t *out;
    size_t out_len, out_sent;
    char peer[CGLOO_ADDR_TEXT_MAX]; /* "addr:port", for log lines */
    conn_state after_write; /* the state once the response is out: CONN_HEADER, CONN_PROOF or
                               CONN_CLOSED (a refusal) */
    uint8_t transcript[TCP_STORE_TRANSCRIPT_LEN]; /* of an authenticating connection */
    uint8_t proof[TCP_STORE_MAC_LEN];
    size_t auth_got;
} srv_conn;

struct cgloo_store_server {
    pthread_t thread;
    int listen_fd;
    int wake_fd; /* eventfd written by cgloo_store_server_stop */
    int port;
    int64_t accept_paused_until;
    cgloo__tls_config *tls; /* TLS on every connection, or NULL */
    cgloo__kvtable table;
    srv_conn **conns;
    size_t nconns, conns_cap;
    struct pollfd *pfds;
    size_t pfds_cap;
    cgloo__secret *secret; /* every client must prove it; NULL: none */
};

/* ---- connections: close, respond, flush ---- */

static void conn_release_request(srv_conn *c)
{
    free(c->keys);
    c->keys = NULL;
    c->nkeys = 0;
    if (c->body_cap > SERVER_BODY_KEEP) {
        free(c->body);
        c->body = NULL;
        c->body_cap = 0;
    }
    c->body_len = c->body_got = 0;
    c->head_got = 0;
}

static void conn_close(srv_conn *c)
{
    if (c->state == CONN_CLOSED)
        return;
    cgloo__tls_free(c->tls);
    c->tls = NULL;
    close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
    free(c->keys);
    free(c->body);
    free(c->out);
    c->keys = NULL;
    c->body = c->out = NULL;
}

/* conn_flush sends what is left of the response; when it is all out, reading resumes. */
static void conn_flush(srv_conn *c)
{
    while (c->out_sent < c->out_len) {
        struct iovec iov = {c->out + c->out_sent, c->out_len - c->out_sent};
        ssize_t n = c->tls ? cgloo__tls_writev(c->tls, &iov, 1)
                           : send(c->fd, iov.iov_base, iov.iov_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->out_sent += (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            CGLOO_DEBUG("tcp store server: %s: send failed: %s", c->peer, strerror(errno));
            conn_close(c);
            return;
        }
    }
    if (c->tls && cgloo__tls_flush(c->tls) != 0) {
        if (errno != EAGAIN)
            conn_close(c);
        return; /* the response is in the session, not yet in the socket */
    }
    free(c->out);
    c->out = NULL;
    c->out_len = c->out_sent = 0;
    conn_release_request(c);
    if (c->after_write == CONN_CLOSED)
        return conn_close(c);
    c->state = c->after_write;
    c->after_write = CONN_HEADER;
}

/* conn_respond_with takes ownership of a buffer that begins with TCP_STORE_HEADER_LEN free
 * bytes followed by the body, fills in the header, and starts sending. */
static void conn_respond_with(srv_conn *c, uint32_t status, uint8_t *frame, size_t body_len)
{
    cgloo__put_u32(frame, (uint32_t)body_len);
    cgloo__put_u32(frame + 4, status);
    c->out = frame;
    c->out_len = TCP_STORE_HEADER_LEN + body_len;
    c->out_sent = 0;
    c->state = CONN_WRITING;
    conn_flush(c);
}

/* conn_respond sends a response whose body is `len` bytes of `body` (may be NULL when 0). */
static void conn_respond(srv_conn *c, uint32_t status, const void *body, size_t len)
{
    uint8_t *frame = malloc(TCP_STORE_HEADER_LEN + len);
    if (!frame) {
        CGLOO_WARN("tcp store server: %s: out of memory for a response", c->peer);
        conn_close(c);
        return;
    }
    if (len)
        memcpy(frame + TCP_STORE_HEADER_LEN, body, len);
    conn_respond_with(c, status, frame, len);
}

static void conn_respond_status(srv_conn *c, uint32_t status)
{
    conn_respond(c, status, NULL, 0);
}

/* conn_violation closes a connection that broke the protocol. */
static void conn_violation(srv_conn *c, const char *what)
{
    CGLOO_WARN("tcp store server: closing %s: %s", c->peer, what);
    conn_close(c);
}

/* ---- requests ---- */

static int keys_present(const cgloo__kvtable *t, const srv_key *keys, size_t nkeys)
{
    for (size_t i = 0; i < nkeys; i++)
        if (!cgloo__kvtable_has(t, keys[i].p, keys[i].len))
            return 0;
    return 1;
}

/* read_key_list parses u32 nkeys | keys into a fresh array pointing into the body. Returns
 * CGLOO_OK, CGLOO_EPROTO (malformed) or CGLOO_ENOMEM. */
static int read_key_list(tcp_store_reader *r, srv_key **out, size_t *nout)
{
    uint32_t n;
    if (!tcp_store_read_u32(r, &n) || n == 0 || n > TCP_STORE_KEYS_MAX)
        return CGLOO_EPROTO;
    /* Every key takes at least 5 bytes, so a count the body cannot hold is caught before the
     * allocation it would size. */
    if ((size_t)n > r->left / 5)
        return CGLOO_EPROTO;
    srv_key *keys = malloc(n * sizeof *keys);
    if (!keys)
        return CGLOO_ENOMEM;
    for (uint32_t i = 0; i < n; i++) {
        if (!tcp_store_read_key(r, &keys[i].p, &keys[i].len)) {
            free(keys);
            return CGLOO_EPROTO;
        }
    }
    *out = keys;
    *nout = n;
    return CGLOO_OK;
}

/* answer_multi_get sends every value as u32 vlen | value; the keys all exist. */
static void answer_multi_get(cgloo_store_server *s, srv_conn *c)
{
    uint64_t total = 0;
    size_t vlen;
    for (size_t i = 0; i < c->nkeys; i++) {
        cgloo__kvtable_get(&s->table, c->keys[i].p, c->keys[i].len, NULL, &vlen);
        total += 4 + (uint64_t)vlen;
    }
    if (total > TCP_STORE_FRAME_MAX) {
        conn_respond_status(c, TCP_STORE_ST_TOO_LARGE);
        return;
    }
    uint8_t *frame = malloc(TCP_STORE_HEADER_LEN + (size_t)total);
    if (!frame) {
        conn_respond_status(c, TCP_STORE_ST_NOMEM);
        return;
    }
    uint8_t *p = frame + TCP_STORE_HEADER_LEN;
    for (size_t i = 0; i < c->nkeys; i++) {
        const void *value;
        cgloo__kvtable_get(&s->table, c->keys[i].p, c->keys[i].len, &value, &vlen);
        cgloo__put_u32(p, (uint32_t)vlen);
        if (vlen)
            memcpy(p + 4, value, vlen);
        p += 4 + vlen;
    }
    conn_respond_with(c, TCP_STORE_ST_OK, frame, (size_t)total);
}

/* answer_wait answers a waiting request whose keys all exist. */
static void answer_wait(cgloo_store_server *s, srv_conn *c)
{
    if (c->op == TCP_STORE_OP_GET) {
        const void *value;
        size_t vlen;
        cgloo__kvtable_get(&s->table, c->keys[0].p, c->keys[0].len, &value, &vlen);
        conn_respond(c, TCP_STORE_ST_OK, value, vlen);
    } else if (c->op == TCP_STORE_OP_MULTI_GET) {
        answer_multi_get(s, c);
    } else {
        conn_respond_status(c, TCP_STORE_ST_OK);
    }
}

/* parked_ready: every key of c's waiting request exists. The keys found stay counted in
 * c->present, so that each set looks again only at the keys still missing: when P ranks each
 * wait for P records, looking at every key again made a rendezvous's P sets cost up to P^3
 * lookups, serially in this thread (docs/BENCHMARKS.md, "Full-mesh set-up"). Before an answer
 * the keys counted earlier are looked at once more, since a delete may have taken one. */
static bool parked_ready(const cgloo__kvtable *t, srv_conn *c)
{
    while (c->present < c->nkeys &&
           cgloo__kvtable_has(t, c->keys[c->present].p, c->keys[c->present].len))
        c->present++;
    if (c->present < c->nkeys)
        return false;
    for (size_t i = 0; i < c->nkeys; i++) {
        if (!cgloo__kvtable_has(t, c->keys[i].p, c->keys[i].len)) {
            c->present = i;
            return false;
        }
    }
    return true;
}

/* wake_parked answers every parked request whose keys now all exist. */
static void wake_parked(cgloo_store_server *s)
{
    for (size_t i = 0; i < s->nconns; i++) {
        srv_conn *c = s->conns[i];
        if (c->state == CONN_PARKED && parked_ready(&s->table, c))
            answer_wait(s, c);
    }
}

/* expire_parked answers ETIMEDOUT to parked requests whose deadline passed, and returns the
 * poll timeout until the nearest remaining deadline (-1 for none). */
static int expire_parked(cgloo_store_server *s)
{
    int64_t now = cgloo__now_ms(), next = -1;
    for (size_t i = 0; i < s->nconns; i++) {
        srv_conn *c = s->conns[i];
        if (c->state != CONN_PARKED)
            continue;
        if (c->deadline <= now)
            conn_respond_status(c, TCP_STORE_ST_TIMEDOUT);
        else if (next < 0 || c->deadline < next)
            next = c->deadline;
    }
    if (next < 0)
        return -1;
    return (int)CGLOO_MIN(next - now, (int64_t)INT32_MAX);
}

/* read_wait_keys parses the one key of a GET or the key list of a WAIT or MULTI_GET. */
static int read_wait_keys(srv_conn *c, tcp_store_reader *r)
{
    if (c->op != TCP_STORE_OP_GET)
        return read_key_list(r, &c->keys, &c->nkeys);
    srv_key k;
    if (!tcp_store_read_key(r, &k.p, &k.len))
        return CGLOO_EPROTO;
    c->keys = malloc(sizeof k);
    if (!c->keys)
        return CGLOO_ENOMEM;
    c->keys[0] = k;
    c->nkeys = 1;
    return CGLOO_OK;
}

/* do_wait handles GET, WAIT and MULTI_GET: answer now, or park until the keys or the deadline. */
static void do_wait(cgloo_store_server *s, srv_conn *c, tcp_store_reader *r)
{
    uint32_t timeout_ms;
    int rc = CGLOO_EPROTO;
    if (tcp_store_read_u32(r, &timeout_ms))
        rc = read_wait_keys(c, r);
    if (rc == CGLOO_OK && r->left != 0)
        rc = CGLOO_EPROTO;
    c->present = 0;
    if (rc == CGLOO_ENOMEM) {
        conn_respond_status(c, TCP_STORE_ST_NOMEM);
    } else if (rc != CGLOO_OK) {
        conn_violation(c, "malformed waiting request");
    } else if (parked_ready(&s->table, c)) {
        answer_wait(s, c);
    } else {
        c->deadline = cgloo__now_ms() + timeout_ms;
        c->state = CONN_PARKED;
    }
}

static void do_set(cgloo_store_server *s, srv_conn *c, tcp_store_reader *r)
{
    const uint8_t *key, *value;
    size_t klen;
    if (!tcp_store_read_key(r, &key, &klen)) {
        conn_violation(c, "malformed SET request");
        return;
    }
    size_t vlen = r->left;
    tcp_store_read_bytes(r, vlen, &value);
    void *copy = cgloo__memdup_z(value, vlen);
    if (!copy || cgloo__kvtable_set(&s->table, key, klen, copy, vlen) != CGLOO_OK) {
        free(copy);
        conn_respond_status(c, TCP_STORE_ST_NOMEM);
        return;
    }
    conn_respond_status(c, TCP_STORE_ST_OK);
    wake_parked(s);
}

static void do_add(cgloo_store_server *s, srv_conn *c, tcp_store_reader *r)
{
    uint64_t delta;
    const uint8_t *key;
    size_t klen;
    if (!tcp_store_read_u64(r, &delta) || !tcp_store_read_key(r, &key, &klen) || r->left) {
        conn_violation(c, "malformed ADD request");
        return;
    }
    int64_t v = 0;
    int rc = cgloo__kvtable_add(&s->table, key, klen, (int64_t)delta, &v);
    if (rc != CGLOO_OK) {
        conn_respond_status(c, rc == CGLOO_ESTORE ? TCP_STORE_ST_NOT_COUNTER : TCP_STORE_ST_NOMEM);
        return;
    }
    uint8_t body[8];
    cgloo__put_u64(body, (uint64_t)v);
    conn_respond(c, TCP_STORE_ST_OK, body, sizeof body);
    wake_parked(s);
}

static void do_check(cgloo_store_server *s, srv_conn *c, tcp_store_reader *r)
{
    int rc = read_key_list(r, &c->keys, &c->nkeys);
    if (rc == CGLOO_OK && r->left)
        rc = CGLOO_EPROTO;
    if (rc == CGLOO_ENOMEM) {
        conn_respond_status(c, TCP_STORE_ST_NOMEM);
    } else if (rc != CGLOO_OK) {
        conn_violation(c, "malformed CHECK request");
    } else {
        uint8_t body[4];
        cgloo__put_u32(body, (uint32_t)keys_present(&s->table, c->keys, c->nkeys));
        conn_respond(c, TCP_STORE_ST_OK, body, sizeof body);
    }
}

static void do_delete(cgloo_store_server *s, srv_conn *c, tcp_store_reader *r)
{
    const uint8_t *key;
    size_t klen;
    if (!tcp_store_read_key(r, &key, &klen) || r->left) {
        conn_violation(c, "malformed DELETE request");
        return;
    }
    cgloo__kvtable_delete(&s->table, key, klen);
    conn_respond_status(c, TCP_STORE_ST_OK);
}

/* conn_process runs the complete request held in c->op and c->body. */
static void conn_process(cgloo_store_server *s, srv_conn *c)
{
    tcp_store_reader r = {.p = c->body, .left = c->body_len};
    switch (c->op) {
    case TCP_STORE_OP_SET:
        do_set(s, c, &r);
        break;
    case TCP_STORE_OP_GET:
    case TCP_STORE_OP_WAIT:
    case TCP_STORE_OP_MULTI_GET:
        do_wait(s, c, &r);
        break;
    case TCP_STORE_OP_CHECK:
        do_check(s, c, &r);
        break;
    case TCP_STORE_OP_ADD:
        do_add(s, c, &r);
        break;
    case TCP_STORE_OP_DELETE:
        do_delete(s, c, &r);
        break;
    default:
        conn_violation(c, "unknown op"); /* conn_header rejects these first */
        break;
    }
}

/* ---- reading ---- */

/* conn_recv reads up to len bytes. Returns the count, 0 when nothing is ready now, or -1 after
 * closing the connection (end of stream or error). */
static ssize_t conn_recv(srv_conn *c, void *buf, size_t len)
{
    for (;;) {
        ssize_t n =
            c->tls ? cgloo__tls_read(c->tls, buf, len) : recv(c->fd, buf, len, MSG_DONTWAIT);
        if (n > 0)
            return n;
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n == 0 && (c->state == CONN_NONCE || c->state == CONN_PROOF))
            CGLOO_WARN("tcp store server: %s closed the connection before proving the job "
                       "secret",
                       c->peer);
        else if (n == 0 && c->state != CONN_BODY && c->head_got == 0)
            CGLOO_DEBUG("tcp store server: %s disconnected", c->peer);
        else if (n == 0)
            conn_violation(c, "connection closed in the middle of a frame");
        else
            CGLOO_DEBUG("tcp store server: %s: recv failed: %s", c->peer, strerror(errno));
        conn_close(c);
        return -1;
    }
}

/* conn_header checks a complete request header and gets ready for the body. */
static void conn_header(cgloo_store_server *s, srv_conn *c)
{
    uint32_t len = cgloo__get_u32(c->head);
    c->op = cgloo__get_u32(c->head + 4);
    if (c->op < TCP_STORE_OP_SET || c->op > TCP_STORE_OP_MULTI_GET) {
        conn_violation(c, "unknown op");
        return;
    }
    if (len > TCP_STORE_FRAME_MAX) {
        conn_violation(c, "declared frame length over the limit");
        return;
    }
    c->body_len = len;
    c->body_got = 0;
    c->state = CONN_BODY;
    if (len == 0)
        conn_process(s, c); /* every op needs a body: this is rejected as malformed */
}

/* conn_send_bytes starts sending a copy of len bytes; after them the connection goes to
 * `after`. */
static void conn_send_bytes(srv_conn *c, const uint8_t *bytes, size_t len, conn_state after)
{
    c->out = malloc(len);
    if (!c->out) {
        conn_close(c);
        return;
    }
    memcpy(c->out, bytes, len);
    c->out_len = len;
    c->out_sent = 0;
    c->after_write = after;
    c->state = CONN_WRITING;
    conn_flush(c);
}

/* conn_refuse answers with our bare hello, whose flag tells the client which side lacks the
 * secret, and closes once it is out. */
static void conn_refuse(cgloo_store_server *s, srv_conn *c, const char *why)
{
    CGLOO_WARN("tcp store server: refusing %s: %s", c->peer, why);
    uint8_t mine[TCP_STORE_HELLO_LEN];
    tcp_store_hello_put(mine, s->secret != NULL);
    conn_send_bytes(c, mine, sizeof mine, CONN_CLOSED);
}

/* conn_challenge answers a client with the secret: our hello, a fresh nonce and our MAC. */
static void conn_challenge(cgloo_store_server *s, srv_conn *c)
{
    uint8_t *server_part = c->transcript + TCP_STORE_HELLO_LEN + TCP_STORE_NONCE_LEN;
    uint8_t out[TCP_STORE_HELLO_LEN + TCP_STORE_NONCE_LEN + TCP_STORE_MAC_LEN];
    tcp_store_hello_put(server_part, 1);
    if (cgloo__auth_nonce(server_part + TCP_STORE_HELLO_LEN) != CGLOO_OK ||
        cgloo__auth_mac(s->secret, TCP_STORE_LABEL_SERVER, c->transcript, TCP_STORE_TRANSCRIPT_LEN,
                        out + TCP_STORE_HELLO_LEN + TCP_STORE_NONCE_LEN) != CGLOO_OK)
        return conn_violation(c, "cannot make a nonce or a MAC");
    memcpy(out, server_part, TCP_STORE_HELLO_LEN + TCP_STORE_NONCE_LEN);
    c->auth_got = 0;
    conn_send_bytes(c, out, sizeof out, CONN_PROOF);
}

/* conn_hello checks the client's hello and answers with ours, or waits for its nonce. */
static void conn_hello(cgloo_store_server *s, srv_conn *c)
{
    if (!tcp_store_hello_ok(c->head))
        return conn_violation(c, "bad hello (wrong magic or version)");
    memcpy(c->transcript, c->head, TCP_STORE_HELLO_LEN);
    if (tcp_store_hello_auth(c->head)) {
        c->auth_got = 0;
        c->state = CONN_NONCE; /* read it even to refuse: the client then reads our answer */
        return;
    }
    if (s->secret)
        return conn_refuse(s, c, "it did not prove the job secret (its hello has none)");
    uint8_t mine[TCP_STORE_HELLO_LEN];
    tcp_store_hello_put(mine, 0);
    conn_send_bytes(c, mine, sizeof mine, CONN_HEADER);
}

/* conn_auth_step reads the client's nonce or proof and acts on it once whole. Returns 1 to keep
 * reading. */
static int conn_auth_step(cgloo_store_server *s, srv_conn *c)
{
    bool nonce = c->state == CONN_NONCE;
    uint8_t *dst = nonce ? c->transcript + TCP_STORE_HELLO_LEN : c->proof;
    size_t need = nonce ? TCP_STORE_NONCE_LEN : TCP_STORE_MAC_LEN;
    ssize_t n = conn_recv(c, dst + c->auth_got, need - c->auth_got);
    if (n <= 0)
        return 0;
    if ((c->auth_got += (size_t)n) < need)
        return 1;
    c->auth_got = 0;
    if (nonce && !s->secret)
        conn_refuse(s, c, "it proves a job secret and this server has none");
    else if (nonce)
        conn_challenge(s, c);
    else if (!cgloo__auth_check(s->secret, TCP_STORE_LABEL_CLIENT, c->transcript,
                                TCP_STORE_TRANSCRIPT_LEN, c->proof))
        conn_violation(c, "its proof does not match the job secret");
    else
        c->state = CONN_HEADER;
    return c->state == CONN_HEADER;
}

/* conn_body_room makes room for more body bytes; it grows with the data actually received, so
 * a large declared length costs memory only as its bytes arrive. */
static int conn_body_room(srv_conn *c)
{
    if (c->body_got < c->body_cap)
        return CGLOO_OK;
    size_t want = CGLOO_MAX(c->body_cap * 2, (size_t)SERVER_BODY_STEP);
    want = CGLOO_MIN(want, c->body_len);
    uint8_t *nb = realloc(c->body, want);
    if (!nb)
        return CGLOO_ENOMEM;
    c->body = nb;
    c->body_cap = want;
    return CGLOO_OK;
}

/* conn_read_step reads once in the current state. Returns 1 to keep reading, 0 to stop. */
static int conn_read_step(cgloo_store_server *s, srv_conn *c)
{
    if (c->state == CONN_NONCE || c->state == CONN_PROOF)
        return conn_auth_step(s, c);
    size_t need = c->state == CONN_HELLO ? TCP_STORE_HELLO_LEN : TCP_STORE_HEADER_LEN;
    if (c->state == CONN_HELLO || c->state == CONN_HEADER) {
        ssize_t n = conn_recv(c, c->head + c->head_got, need - c->head_got);
        if (n <= 0)
            return 0;
        c->head_got += (size_t)n;
        if (c->head_got < need)
            return 1;
        c->head_got = 0;
        if (c->state == CONN_HEADER)
            conn_header(s, c);
        else
            conn_hello(s, c);
        return c->state == CONN_BODY;
    }
    if (conn_body_room(c) != CGLOO_OK) {
        CGLOO_WARN("tcp store server: %s: out of memory for a request", c->peer);
        conn_close(c);
        return 0;
    }
    /* A buffer kept from a larger request is longer than this body: read no further than the
     * body, or the bytes of a pipelined next request would be taken as this one's. */
    size_t room = CGLOO_MIN(c->body_cap, c->body_len) - c->body_got;
    ssize_t n = conn_recv(c, c->body + c->body_got, room);
    if (n <= 0)
        return 0;
    c->body_got += (size_t)n;
    if (c->body_got == c->body_len)
        conn_process(s, c);
    return c->state == CONN_BODY;
}

/* conn_on_readable reads until the socket runs dry or one request has been taken in (the next
 * one waits for the next poll round, so one busy client cannot starve the others). */
static void conn_on_readable(cgloo_store_server *s, srv_conn *c)
{
    while (conn_read_step(s, c)) {
    }
}

/* ---- the loop ---- */

/* server_add_conn takes an accepted socket into the table (or closes it). */
static void server_add_conn(cgloo_store_server *s, int fd, const cgloo__addr *from)
{
    char peer[CGLOO_ADDR_TEXT_MAX];
    cgloo__addr_format(from, peer, sizeof peer);
    if (s->nconns >= SERVER_CONNS_MAX) {
        CGLOO_WARN("tcp store server: refusing %s: %d connections already", peer, SERVER_CONNS_MAX);
        close(fd);
        return;
    }
    if (s->nconns == s->conns_cap) {
        size_t cap = s->conns_cap ? s->conns_cap * 2 : 16;
        srv_conn **nc = realloc(s->conns, cap * sizeof *nc);
        if (!nc) {
            close(fd);
            return;
        }
        s->conns = nc;
        s->conns_cap = cap;
    }
    srv_conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    if (s->tls && cgloo__tls_new(s->tls, fd, false, NULL, &c->tls) != CGLOO_OK) {
        free(c);
        close(fd);
        return;
    }
    cgloo__sock_tune(fd);
    c->fd = fd;
    c->state = c->tls ? CONN_TLS : CONN_HELLO;
    c->after_write = CONN_HEADER;
    c->tls_deadline = cgloo__now_ms() + SERVER_TLS_MS;
    memcpy(c->peer, peer, sizeof peer);
    s->conns[s->nconns++] = c;
    CGLOO_DEBUG("tcp store server: %s connected", peer);
}

static void server_accept(cgloo_store_server *s)
{
    for (;;) {
        cgloo__addr from = {.len = sizeof from.ss};
        int fd = accept4(s->listen_fd, (struct sockaddr *)&from.ss, &from.len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            server_add_conn(s, fd, &from);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            CGLOO_WARN("tcp store server: accept: %s; pausing", strerror(errno));
            s->accept_paused_until = cgloo__now_ms() + SERVER_ACCEPT_PAUSE_MS;
        }
        return;
    }
}

/* server_sweep frees closed connections, keeping the order of the others. */
static void server_sweep(cgloo_store_server *s)
{
    size_t kept = 0;
    for (size_t i = 0; i < s->nconns; i++) {
        if (s->conns[i]->state == CONN_CLOSED)
            free(s->conns[i]);
        else
            s->conns[kept++] = s->conns[i];
    }
    s->nconns = kept;
}

static short conn_events(const srv_conn *c)
{
    switch (c->state) {
    case CONN_TLS:
        return cgloo__tls_wants(c->tls);
    case CONN_WRITING:
        return POLLOUT;
    case CONN_PARKED:
        return POLLRDHUP; /* only to notice a client that leaves while it waits */
    default:
        return POLLIN;
    }
}

/* server_poll_set fills s->pfds: the wake fd, the listener, then one entry per connection. */
static int server_poll_set(cgloo_store_server *s, size_t *npfds)
{
    size_t n = s->nconns + 2;
    if (n > s->pfds_cap) {
        struct pollfd *np = realloc(s->pfds, n * sizeof *np);
        if (!np)
            return CGLOO_ENOMEM;
        s->pfds = np;
        s->pfds_cap = n;
    }
    s->pfds[0] = (struct pollfd){.fd = s->wake_fd, .events = POLLIN};
    int paused = s->accept_paused_until > cgloo__now_ms();
    s->pfds[1] = (struct pollfd){.fd = paused ? -1 : s->listen_fd, .events = POLLIN};
    for (size_t i = 0; i < s->nconns; i++)
        s->pfds[i + 2] = (struct pollfd){.fd = s->conns[i]->fd, .events = conn_events(s->conns[i])};
    *npfds = n;
    return CGLOO_OK;
}

/* conn_tls_step takes the handshake on; once done, the client's hello may already be there. */
static void conn_tls_step(cgloo_store_server *s, srv_conn *c)
{
    int rc = cgloo__tls_handshake(c->tls);
    if (rc == CGLOO__TLS_AGAIN)
        return;
    if (rc != CGLOO_OK) {
        CGLOO_WARN("tcp store server: refused %s: TLS handshake failed: %s", c->peer,
                   cgloo__tls_why(c->tls));
        conn_close(c);
        return;
    }
    c->state = CONN_HELLO;
    conn_on_readable(s, c);
}

/* conn_pending: a reading connection whose session holds bytes no poll would report. */
static bool conn_pending(const srv_conn *c)
{
    bool reading = c->state == CONN_HELLO || c->state == CONN_NONCE || c->state == CONN_PROOF ||
                   c->state == CONN_HEADER || c->state == CONN_BODY;
    return c->tls && reading && cgloo__tls_pending(c->tls);
}

/* server_tls_sweep closes handshakes past their deadline; returns the poll timeout they need
 * (-1: none in progress). */
static int server_tls_sweep(cgloo_store_server *s)
{
    int64_t now = cgloo__now_ms();
    int timeout = -1;
    for (size_t i = 0; i < s->nconns; i++) {
        srv_conn *c = s->conns[i];
        if (c->state != CONN_TLS)
            continue;
        if (now >= c->tls_deadline) {
            CGLOO_WARN("tcp store server: refused %s: no TLS handshake within %d ms", c->peer,
                       SERVER_TLS_MS);
            conn_close(c);
            continue;
        }
        int left = (int)(c->tls_deadline - now);
        timeout = timeout < 0 ? left : CGLOO_MIN(timeout, left);
    }
    return timeout;
}

static void conn_on_events(cgloo_store_server *s, srv_conn *c, short revents)
{
    if (c->state == CONN_TLS && !(revents & POLLNVAL)) {
        conn_tls_step(s, c); /* an error or hang-up shows in the handshake's own result */
    } else if (revents & (POLLERR | POLLNVAL)) {
        CGLOO_DEBUG("tcp store server: %s: socket error", c->peer);
        conn_close(c);
    } else if (c->state == CONN_PARKED && (revents & (POLLRDHUP | POLLHUP))) {
        CGLOO_DEBUG("tcp store server: %s left while waiting", c->peer);
        conn_close(c);
    } else if (c->state == CONN_WRITING && (revents & (POLLOUT | POLLHUP))) {
        conn_flush(c);
    } else if (revents & (POLLIN | POLLHUP)) {
        conn_on_readable(s, c);
    }
}

/* server_loop_once polls and handles one round. Returns 0 when asked to stop. */
static int server_loop_once(cgloo_store_server *s)
{
    int timeout = expire_parked(s);
    int tls_timeout = s->tls ? server_tls_sweep(s) : -1;
    if (tls_timeout >= 0)
        timeout = timeout < 0 ? tls_timeout : CGLOO_MIN(timeout, tls_timeout);
    for (size_t i = 0; s->tls && i < s->nconns; i++)
        if (conn_pending(s->conns[i]))
            timeout = 0;
    if (s->accept_paused_until > cgloo__now_ms()) {
        int left = cgloo__remaining_ms(s->accept_paused_until);
        timeout = timeout < 0 ? left : CGLOO_MIN(timeout, left);
    }
    size_t npfds;
    if (server_poll_set(s, &npfds) != CGLOO_OK) {
        cgloo__sleep_ms(10); /* out of memory for the poll set: try again shortly */
        return 1;
    }
    int n = poll(s->pfds, npfds, timeout);
    if (n < 0)
        return 1; /* EINTR; anything else shows up again on the next round */
    if (s->pfds[0].revents)
        return 0;
    if (s->pfds[1].revents)
        server_accept(s);
    for (size_t i = 2; i < npfds; i++) {
        srv_conn *c = s->conns[i - 2];
        if (s->pfds[i].revents && c->state != CONN_CLOSED)
            conn_on_events(s, c, s->pfds[i].revents);
        else if (conn_pending(c))
            conn_on_readable(s, c);
    }
    server_sweep(s);
    return 1;
}

static void *server_main(void *arg)
{
    cgloo_store_server *s = arg;
    while (server_loop_once(s)) {
    }
    return NULL;
}

/* ---- start and stop ---- */

/* server_listen binds the first address of host that works (a name may give several). */
static int server_listen(cgloo_store_server *s, const char *host, int port)
{
    cgloo__addr addrs[CGLOO_ADDRS_MAX];
    size_t n = 0;
    int rc = cgloo__addr_resolve_all(host, 0, port, addrs, CGLOO_ADDRS_MAX, &n);
    if (rc != CGLOO_OK) {
        CGLOO_WARN("tcp store server: cannot resolve '%s': %s", host, cgloo_strerror(rc));
        return cgloo__error_set(rc, "tcp store server: '%s' does not resolve to an address", host);
    }
    rc = CGLOO_EADDR;
    size_t i = 0;
    for (; i < n; i++)
        if ((rc = cgloo__listen(&addrs[i], port, port, &s->listen_fd)) == CGLOO_OK)
            break;
    if (rc != CGLOO_OK)
        return cgloo__error_set(rc == CGLOO_EINVAL ? CGLOO_EADDR : rc,
                                "tcp store server: cannot listen on %s port %d: %s", host, port,
                                strerror(errno));
    s->port = cgloo__addr_port(&addrs[i]);
    return s->port > 0 ? CGLOO_OK : CGLOO_EIO;
}

/* server_spawn starts the thread with every signal blocked, so that signals go to the
 * application's threads and the server's poll is never interrupted by them. */
static int server_spawn(cgloo_store_server *s)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&s->thread, NULL, server_main, s);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return err == 0 ? CGLOO_OK : err == ENOMEM ? CGLOO_ENOMEM : CGLOO_EIO;
}

static void server_free(cgloo_store_server *s)
{
    for (size_t i = 0; i < s->nconns; i++) {
        conn_close(s->conns[i]);
        free(s->conns[i]);
    }
    free(s->conns);
    free(s->pfds);
    cgloo__kvtable_fini(&s->table);
    cgloo__tls_config_destroy(s->tls);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->wake_fd >= 0)
        close(s->wake_fd);
    if (s->secret) {
        cgloo__secret_wipe(s->secret);
        free(s->secret);
    }
    free(s);
}

/* server_load_secret keeps the job secret, when one is set, in s->secret. */
static int server_load_secret(cgloo_store_server *s, const char *given)
{
    cgloo__secret sec;
    int rc = cgloo__secret_load(given, "tcp store server", &sec);
    if (rc == CGLOO_OK && sec.len) {
        s->secret = malloc(sizeof sec);
        rc = s->secret ? CGLOO_OK : CGLOO_ENOMEM;
        if (s->secret)
            *s->secret = sec;
    }
    cgloo__secret_wipe(&sec);
    return rc;
}

int cgloo_store_server_start(const char *host, int port, cgloo_store_server **out)
{
    return cgloo_store_server_start_auth(host, port, NULL, out);
}

int cgloo_store_server_start_auth(const char *host, int port, const char *secret,
                                  cgloo_store_server **out)
{
    cgloo__error_clear();
    if (!out || port < 0 || port > 65535)
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_store_server_start: port %d out of range",
                                port);
    cgloo__log_init_from_env();
    cgloo_store_server *s = calloc(1, sizeof *s);
    if (!s)
        return cgloo__error_set(CGLOO_ENOMEM, "out of memory for a store server");
    s->listen_fd = -1;
    s->wake_fd = -1;
    int src = server_load_secret(s, secret);
    if (src != CGLOO_OK) {
        free(s->secret);
        free(s);
        return src;
    }
    cgloo__kvtable_init(&s->table);
    s->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = s->wake_fd < 0 ? cgloo__status_from_errno(errno) : CGLOO_OK;
    cgloo__tls_files files;
    if (rc == CGLOO_OK && cgloo__tls_files_from_env(&files))
        rc = cgloo__tls_config_create(&files, &s->tls);
    if (rc == CGLOO_OK)
        rc = server_listen(s, host ? host : "127.0.0.1", port);
    if (rc == CGLOO_OK)
        rc = server_spawn(s);
    if (rc != CGLOO_OK) {
        server_free(s);
        return cgloo__error_set_if_none(rc, "tcp store server: %s", cgloo_strerror(rc));
    }
    CGLOO_INFO("tcp store server listening on %s port %d%s", host ? host : "127.0.0.1", s->port,
               s->secret && s->tls ? " (TLS; clients must prove the job secret)"
               : s->secret         ? " (clients must prove the job secret)"
               : s->tls            ? " (TLS)"
                                   : "");
    *out = s;
    return CGLOO_OK;
}

int cgloo_store_server_port(const cgloo_store_server *s)
{
    return s ? s->port : -1;
}

void cgloo_store_server_stop(cgloo_store_server *s)
{
    if (!s)
        return;
    uint64_t one = 1;
    while (write(s->wake_fd, &one, sizeof one) < 0 && errno == EINTR) {
    }
    pthread_join(s->thread, NULL);
    server_free(s);
}
