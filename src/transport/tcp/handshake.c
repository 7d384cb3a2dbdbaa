/*
 * The TCP connect op: connections to every peer, each proven to belong to this run.
 *
 * A rank dials every lower rank and accepts every higher one, so two ranks never dial each
 * other at once. The dialler sends a hello naming the context, both ranks, the world size and
 * both nonces; the accepting side answers with an acknowledgement of the same shape (the byte
 * layout is in wire.h). The nonces come from this run's store records, so a process left from
 * an earlier run, or a stranger, cannot pass for a peer. Refused connections are retried with
 * backoff until the deadline; at most DIAL_WINDOW dials are in flight at once.
 *
 * With TLS (the device's configuration) each connection first runs the TLS handshake on the
 * raw socket, both sides presenting certificates, and the hello and acknowledgement then go
 * through the session like every later byte. A failed TLS handshake is final, not retried: the
 * peer's certificate, or the peer's configuration, is wrong, and waiting will not mend it.
 */
#include "transport/tcp/tcp.h"

#include <stdio.h>
#include <unistd.h>

#define DIAL_WINDOW 64 /* dials in flight at once */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 500

enum dial_state { DIAL_IDLE, DIAL_CONNECTING, DIAL_TLS, DIAL_AWAIT_ACK, DIAL_DONE };

typedef struct peer_info {
    cgloo__addr addr;
    char addr_text[CGLOO_TRANSPORT_ADDR_MAX];
    char local_text[CGLOO_ADDR_TEXT_MAX]; /* where the latest dial left from, for errors */
    uint64_t nonce;
    bool used; /* a peer this transport connects */
    /* dialling state (lower ranks only) */
    int state, fd, backoff_ms, last_err;
    cgloo__tls *tls; /* the dial's TLS session (a device with TLS) */
    int64_t retry_at_ms;
    uint8_t ack[HELLO_LEN]; /* the acknowledgement as it arrives, possibly in pieces */
    size_t ack_got;
} peer_info;

struct cgloo__connector {
    cgloo_context *ctx;
    cgloo_device *dev;
    device_reg reg;
    peer_info *peers;
    int64_t deadline;
    int remaining; /* connections still to make */
};
typedef cgloo__connector handshake;

/* ---- dialling lower ranks ------------------------------------------------------------------ */

static void hello_for(const handshake *m, int peer, uint8_t type, uint8_t *out)
{
    const cgloo_context *ctx = m->ctx;
    wire_hello h = {.type = type,
                    .ctx_id = ctx->ctx_id,
                    .src_rank = (uint32_t)ctx->rank,
                    .dst_rank = (uint32_t)peer,
                    .size = (uint32_t)ctx->size,
                    .eager_max = ctx->eager_max,
                    .eager_budget = ctx->eager_budget,
                    .src_nonce = ctx->nonce,
                    .dst_nonce = m->peers[peer].nonce};
    wire_hello_encode(&h, out);
}

/* dial_close drops a dial's socket and session. */
static void dial_close(peer_info *p)
{
    cgloo__tls_free(p->tls);
    p->tls = NULL;
    if (p->fd >= 0)
        close(p->fd);
    p->fd = -1;
}

static void dial_retry(peer_info *p, int err)
{
    dial_close(p);
    p->fd = -1;
    p->state = DIAL_IDLE;
    p->last_err = err;
    p->retry_at_ms = cgloo__now_ms() + p->backoff_ms;
    p->backoff_ms = CGLOO_MIN(p->backoff_ms * 2, BACKOFF_MAX_MS);
}

static void dial_start(peer_info *p)
{
    int rc = cgloo__connect_start(&p->addr, &p->fd);
    if (rc != CGLOO_OK)
        return dial_retry(p, errno);
    p->state = DIAL_CONNECTING;
    cgloo__addr local = {.len = sizeof local.ss};
    /* The kernel picks the source as the connect starts: an error can then say where from. */
    if (getsockname(p->fd, (struct sockaddr *)&local.ss, &local.len) == 0)
        cgloo__addr_format(&local, p->local_text, sizeof p->local_text);
}

static void dial_send_hello(handshake *m, int peer)
{
    peer_info *p = &m->peers[peer];
    uint8_t hello[HELLO_LEN];
    hello_for(m, peer, HELLO_TYPE_HELLO, hello);
    int rc = p->tls ? cgloo__tls_write_full(p->tls, p->fd, hello, sizeof hello, m->deadline)
                    : cgloo__write_full(p->fd, hello, sizeof hello, m->deadline);
    if (rc != CGLOO_OK)
        return dial_retry(p, errno);
    p->state = DIAL_AWAIT_ACK;
    p->ack_got = 0;
}

/* dial_tls_step takes the TLS handshake as far as the socket allows; a refusal is final. */
static int dial_tls_step(handshake *m, int peer)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[peer];
    int rc = cgloo__tls_handshake(p->tls);
    if (rc == CGLOO__TLS_AGAIN)
        return CGLOO_OK;
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, CGLOO_EPROTO,
                                "rank %d: TLS handshake with rank %d at %s failed: %s", ctx->rank,
                                peer, p->addr_text, cgloo__tls_why(p->tls));
    dial_send_hello(m, peer);
    return CGLOO_OK;
}

static int dial_on_writable(handshake *m, int peer)
{
    peer_info *p = &m->peers[peer];
    int err = 0;
    if (cgloo__connect_result(p->fd, &err) != CGLOO_OK) {
        dial_retry(p, err);
        return CGLOO_OK;
    }
    cgloo__tls_config *tls = cgloo__tcp_device_tls(m->dev);
    if (!tls) {
        dial_send_hello(m, peer);
        return CGLOO_OK;
    }
    char host[CGLOO_TRANSPORT_ADDR_MAX];
    cgloo__tcp_host_of(p->addr_text, host, sizeof host);
    if (cgloo__tls_new(tls, p->fd, true, host, &p->tls) != CGLOO_OK)
        return cgloo__ctx_error(m->ctx, CGLOO_ENOMEM, "rank %d: no memory for a TLS session",
                                m->ctx->rank);
    p->state = DIAL_TLS;
    return dial_tls_step(m, peer);
}

static const char *check_ack(const handshake *m, int peer, const uint8_t *bytes, wire_hello *h)
{
    const char *why = wire_hello_decode(bytes, h);
    if (why)
        return why;
    if (h->type != HELLO_TYPE_ACK || h->ctx_id != m->ctx->ctx_id)
        return "not an acknowledgement for this context";
    if (h->src_rank != (uint32_t)peer || h->dst_rank != (uint32_t)m->ctx->rank)
        return "ranks do not match";
    if (h->size != (uint32_t)m->ctx->size)
        return "world size differs";
    if (h->src_nonce != m->peers[peer].nonce || h->dst_nonce != m->ctx->nonce)
        return "nonces do not match this run";
    return NULL;
}

static int dial_on_readable(handshake *m, int peer)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[peer];
    wire_hello h;
    /* Read what is there without waiting: a peer that sends half an acknowledgement must not
     * hold up the other connections. */
    void *dst = p->ack + p->ack_got;
    size_t want = sizeof p->ack - p->ack_got;
    ssize_t n = p->tls ? cgloo__tls_read(p->tls, dst, want) : recv(p->fd, dst, want, 0);
    if (n > 0)
        p->ack_got += (size_t)n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return CGLOO_OK;
    if (n > 0 && p->ack_got < sizeof p->ack)
        return CGLOO_OK;
    int rc = n == 0 ? CGLOO_EPEER : n < 0 ? cgloo__status_from_errno(errno) : CGLOO_OK;
    if (rc == CGLOO_EPEER)
        return cgloo__ctx_error(ctx, CGLOO_EPROTO,
                                "rank %d: rank %d at %s closed the connection during the "
                                "handshake (it rejected this rank's hello%s)",
                                ctx->rank, peer, p->addr_text, p->tls ? " or certificate" : "");
    /* In TLS 1.3 the server judges the client's certificate after the client has finished
     * its handshake, so a refusal arrives here, as an alert. */
    const char *why =
        rc != CGLOO_OK ? (p->tls && errno == EPROTO ? cgloo__tls_why(p->tls) : cgloo_strerror(rc))
                       : check_ack(m, peer, p->ack, &h);
    if (why)
        return cgloo__ctx_error(ctx, rc == CGLOO_OK ? CGLOO_EPROTO : rc,
                                "rank %d: handshake with rank %d at %s failed: %s", ctx->rank, peer,
                                p->addr_text, why);
    rc = cgloo__tcp_pair_attach(&ctx->peers[peer], p->fd, p->tls, &h, p->addr_text);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: setting up the connection to rank %d failed",
                                ctx->rank, peer);
    p->fd = -1;
    p->tls = NULL;
    p->state = DIAL_DONE;
    m->remaining--;
    return CGLOO_OK;
}

/* ---- accepting higher ranks --------------------------------------------------------------- */

static int accept_one(handshake *m, device_inbound *in)
{
    cgloo_context *ctx = m->ctx;
    int src = (int)in->decoded.src_rank;
    peer_info *p = &m->peers[src];
    const char *why = !p->used ? "this rank does not reach that peer over TCP"
                      : cgloo__tcp_pair_connected(&ctx->peers[src])
                          ? "a second connection from this rank"
                      : in->decoded.src_nonce != p->nonce ? "nonce differs from this run's record"
                                                          : NULL;
    char host[CGLOO_TRANSPORT_ADDR_MAX];
    cgloo__tcp_host_of(p->addr_text, host, sizeof host);
    /* The dialler's host is known only now, from its rank's record: check its name here. */
    if (!why && in->tls && cgloo__tls_config_verify_host(cgloo__tcp_device_tls(m->dev)) &&
        cgloo__tls_check_host(in->tls, host) != CGLOO_OK)
        why = cgloo__tls_why(in->tls);
    uint8_t ack[HELLO_LEN];
    hello_for(m, src, HELLO_TYPE_ACK, ack);
    int rc = why        ? CGLOO_OK
             : !in->tls ? cgloo__write_full(in->fd, ack, sizeof ack, m->deadline)
                        : cgloo__tls_write_full(in->tls, in->fd, ack, sizeof ack, m->deadline);
    if (!why && rc != CGLOO_OK)
        why = "could not send the acknowledgement";
    if (!why && cgloo__tcp_pair_attach(&ctx->peers[src], in->fd, in->tls, &in->decoded,
                                       p->addr_text) != CGLOO_OK)
        why = "could not set up the connection";
    if (why) {
        CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size, "rejected a hello from rank %d (%s): %s",
                  src, in->addr, why);
        cgloo__tcp_device_note_reject(m->dev, in->addr, why);
        cgloo__tls_free(in->tls);
        close(in->fd);
    } else {
        m->remaining--;
    }
    free(in);
    return CGLOO_OK;
}

static void hs_accept(handshake *m)
{
    device_inbound *in = cgloo__tcp_device_take(m->dev, &m->reg);
    while (in) {
        device_inbound *next = in->next;
        accept_one(m, in);
        in = next;
    }
}

/* ---- the loop ------------------------------------------------------------------------------ */

#define ADDR_VARS "CGLOO_IFACE, CGLOO_HOSTNAME and CGLOO_ADVERTISE_ADDR choose it"

/* accept_timeout_error: a higher rank never dialled this one, or its dial never arrived. */
static int accept_timeout_error(handshake *m, int r)
{
    cgloo_context *ctx = m->ctx;
    const char *mine;
    cgloo__tcp_device_choice(m->dev, &mine);
    char refused[320];
    cgloo__tcp_device_last_reject(m->dev, refused, sizeof refused);
    return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT,
                            "rank %d: rank %d (at %s) did not connect to this rank's address %s "
                            "within %d ms; check that rank %d's host reaches %s (" ADDR_VARS
                            ")%s%s",
                            ctx->rank, r, m->peers[r].addr_text, mine, ctx->timeout_ms, r, mine,
                            refused[0] ? "; the last connection refused: " : "", refused);
}

/* dial_timeout_error: this rank's dials to a lower rank failed until the deadline. */
static int dial_timeout_error(handshake *m, int r)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[r];
    int status = p->last_err == ECONNREFUSED ? CGLOO_ECONNREFUSED : CGLOO_ETIMEDOUT;
    bool loop = cgloo__addr_is_loopback(&p->addr);
    return cgloo__ctx_error(
        ctx, status,
        "rank %d: could not connect to rank %d at %s from %s within %d ms: %s; check that this "
        "host reaches %s and that rank %d published an address its peers reach (" ADDR_VARS ")%s",
        ctx->rank, r, p->addr_text, p->local_text[0] ? p->local_text : "this host", ctx->timeout_ms,
        p->last_err ? strerror(p->last_err) : "no answer", p->addr_text, r,
        loop ? "; it is a loopback address, which only works if that rank runs on this host" : "");
}

static int hs_timeout_error(handshake *m)
{
    cgloo_context *ctx = m->ctx;
    for (int r = 0; r < ctx->size; r++) {
        peer_info *p = &m->peers[r];
        if (!p->used || cgloo__tcp_pair_connected(&ctx->peers[r]))
            continue;
        return r > ctx->rank ? accept_timeout_error(m, r) : dial_timeout_error(m, r);
    }
    return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT, "rank %d: connecting timed out", ctx->rank);
}

/* hs_poll_dials starts due dials and fills pollfds for those in flight; returns the count. */
static int hs_poll_dials(handshake *m, struct pollfd *fds, int *who)
{
    int n = 0;
    int64_t now = cgloo__now_ms();
    for (int r = 0; r < m->ctx->rank && n < DIAL_WINDOW; r++) {
        peer_info *p = &m->peers[r];
        if (!p->used)
            continue;
        if (p->state == DIAL_IDLE && now >= p->retry_at_ms)
            dial_start(p);
        if (p->state != DIAL_CONNECTING && p->state != DIAL_TLS && p->state != DIAL_AWAIT_ACK)
            continue;
        short ev = p->state == DIAL_CONNECTING ? POLLOUT
                   : p->tls                    ? cgloo__tls_wants(p->tls)
                                               : POLLIN;
        fds[n] = (struct pollfd){.fd = p->fd, .events = ev};
        who[n++] = r;
    }
    return n;
}

/* hs_handle acts on what the poll found: dials that connected or were answered, and hellos
 * the device filed for this context. Runs under the context lock, since it attaches
 * connections to peers that an abort from another thread may be failing. */
static int hs_handle(handshake *m, const struct pollfd *fds, const int *who, int n)
{
    cgloo_context *ctx = m->ctx;
    if (ctx->aborted)
        return cgloo__ctx_error(ctx, CGLOO_EABORTED, "rank %d: connect aborted", ctx->rank);
    for (int i = 0; i < n; i++) {
        peer_info *p = &m->peers[who[i]];
        if (!fds[i].revents)
            continue;
        int rc = p->state == DIAL_CONNECTING  ? dial_on_writable(m, who[i])
                 : p->state == DIAL_TLS       ? dial_tls_step(m, who[i])
                 : p->state == DIAL_AWAIT_ACK ? dial_on_readable(m, who[i])
                                              : CGLOO_OK;
        if (rc != CGLOO_OK)
            return rc;
    }
    hs_accept(m);
    if (m->remaining > 0 && cgloo__remaining_ms(m->deadline) == 0)
        return hs_timeout_error(m);
    return CGLOO_OK;
}

/* hs_run polls the dials in flight and the device, without the lock, and handles what it
 * found with it, until every peer is connected, the deadline passes or the context is
 * aborted. */
static int hs_run(handshake *m)
{
    struct pollfd fds[DIAL_WINDOW];
    int who[DIAL_WINDOW];
    int rc = CGLOO_OK;
    int64_t next_check = cgloo__now_ms() + CGLOO_INTERRUPT_CHECK_MS;
    while (rc == CGLOO_OK && m->remaining > 0) {
        if (cgloo__now_ms() >= next_check) {
            next_check += CGLOO_INTERRUPT_CHECK_MS;
            if (cgloo__ctx_interrupted(m->ctx))
                return cgloo__ctx_error(m->ctx, CGLOO_EINTR, "rank %d: connect interrupted",
                                        m->ctx->rank);
        }
        int n = hs_poll_dials(m, fds, who);
        int left = cgloo__remaining_ms(m->deadline);
        cgloo__tcp_device_poll(m->dev, fds, n, CGLOO_MIN(left, BACKOFF_MIN_MS));
        pthread_mutex_lock(&m->ctx->lock);
        rc = hs_handle(m, fds, who, n);
        pthread_mutex_unlock(&m->ctx->lock);
    }
    return rc;
}

/* hs_load_peers takes the peers' records: every address must parse. */
static int hs_load_peers(handshake *m, const cgloo__peer_record *recs)
{
    cgloo_context *ctx = m->ctx;
    const char *published;
    const tcp_addr_choice *c = cgloo__tcp_device_choice(m->dev, &published);
    for (int r = 0; r < ctx->size; r++) {
        peer_info *p = &m->peers[r];
        if (r == ctx->rank || ctx->peers[r].transport != &cgloo__tcp_transport)
            continue;
        if (cgloo__addr_parse(recs[r].address, &p->addr) != CGLOO_OK)
            return cgloo__ctx_error(ctx, CGLOO_ESTORE,
                                    "rank %d: rank %d published '%s', which is no TCP address",
                                    ctx->rank, r, recs[r].address);
        int rc = cgloo__tcp_check_peer_reach(c, published, ctx, r, &p->addr, recs[r].address);
        if (rc != CGLOO_OK)
            return rc;
        snprintf(p->addr_text, sizeof p->addr_text, "%s", recs[r].address);
        p->nonce = recs[r].nonce;
        p->used = true;
        m->remaining++;
    }
    return CGLOO_OK;
}

int cgloo__tcp_connect_begin(cgloo_device *dev, cgloo_context *ctx, const char *store_host,
                             cgloo__connector **out)
{
    const char *published;
    const tcp_addr_choice *c = cgloo__tcp_device_choice(dev, &published);
    int rc = cgloo__tcp_check_store_reach(c, published, ctx, store_host);
    if (rc != CGLOO_OK)
        return rc;
    handshake *m = calloc(1, sizeof *m);
    peer_info *peers = calloc((size_t)ctx->size, sizeof *peers);
    if (!m || !peers) {
        free(m);
        free(peers);
        return CGLOO_ENOMEM;
    }
    *m = (handshake){.ctx = ctx, .dev = dev, .peers = peers};
    for (int r = 0; r < ctx->size; r++)
        peers[r] = (peer_info){.fd = -1, .backoff_ms = BACKOFF_MIN_MS};
    m->reg = (device_reg){.ctx_id = ctx->ctx_id,
                          .nonce = ctx->nonce,
                          .rank = (uint32_t)ctx->rank,
                          .size = (uint32_t)ctx->size};
    cgloo__tcp_device_register(dev, &m->reg);
    *out = m;
    return CGLOO_OK;
}

int cgloo__tcp_connect(cgloo__connector *m, const cgloo__peer_record *peers, int64_t deadline_ms)
{
    m->deadline = deadline_ms;
    int rc = hs_load_peers(m, peers);
    return rc == CGLOO_OK ? hs_run(m) : rc;
}

void cgloo__tcp_connect_end(cgloo__connector *m)
{
    cgloo__tcp_device_unregister(m->dev, &m->reg);
    for (int r = 0; r < m->ctx->size; r++)
        dial_close(&m->peers[r]); /* dials still in flight */
    free(m->peers);
    free(m);
}

void cgloo__tcp_host_of(const char *hostport, char *buf, size_t len)
{
    const char *start = hostport, *end;
    if (*hostport == '[') {
        start = hostport + 1;
        end = strchr(start, ']');
    } else {
        end = strrchr(hostport, ':');
    }
    size_t n = end ? (size_t)(end - start) : strlen(start);
    snprintf(buf, len, "%.*s", (int)CGLOO_MIN(n, len > 0 ? len - 1 : 0), start);
}
