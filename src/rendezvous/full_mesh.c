/*
 * Full-mesh connection set-up over a store.
 *
 * Each rank registers with its device, publishes "cgloo1 <host:port> <nonce>" under
 * "<context name>/addr/<rank>", and reads every peer's record. A rank dials every lower rank
 * and accepts every higher one, so two ranks never dial each other at once. The dialler sends
 * a hello naming the context, both ranks, the world size and both nonces; the accepting side
 * answers with an acknowledgement of the same shape. The nonces come from this run's store
 * records, so a process left from an earlier run, or a stranger, cannot pass for a peer.
 * Refused connections are retried with backoff until the context timeout.
 */
#include "core/context.h"
#include "store/store.h"
#include "transport/tcp/device.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#define DIAL_WINDOW 64 /* dials in flight at once */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 500

enum dial_state { DIAL_IDLE, DIAL_CONNECTING, DIAL_AWAIT_ACK, DIAL_DONE };

typedef struct peer_info {
    cgloo__addr addr;
    char addr_text[CGLOO_ADDR_TEXT_MAX];
    uint64_t nonce;
    /* dialling state (lower ranks only) */
    int state, fd, backoff_ms, last_err;
    int64_t retry_at_ms;
    uint8_t ack[HELLO_LEN]; /* the acknowledgement as it arrives, possibly in pieces */
    size_t ack_got;
} peer_info;

typedef struct mesh {
    cgloo_context *ctx;
    cgloo_device *dev;
    device_reg reg;
    peer_info *peers;
    int64_t deadline;
    int remaining; /* connections still to make */
} mesh;

static void addr_key(const cgloo_context *ctx, int rank, char *key, size_t len)
{
    snprintf(key, len, "%s/addr/%d", ctx->name, rank);
}

/* ---- store records ------------------------------------------------------------------------ */

static int mesh_publish(mesh *m, cgloo_store *store)
{
    char key[CGLOO_STORE_KEY_MAX + 1], val[128];
    cgloo_context *ctx = m->ctx;
    addr_key(ctx, ctx->rank, key, sizeof key);
    int n = snprintf(val, sizeof val, "cgloo1 %s %016" PRIx64, cgloo__device_address_text(m->dev),
                     ctx->nonce);
    int rc = cgloo_store_set(store, key, val, (size_t)n);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: publishing its address under '%s' failed: %s",
                                ctx->rank, key, cgloo_strerror(rc));
    return CGLOO_OK;
}

/* parse_record reads "cgloo1 <host:port> <16 hex digits>" from the store, checking every part. */
static int parse_record(const char *val, size_t len, peer_info *p)
{
    char addr[CGLOO_ADDR_TEXT_MAX], nonce[17];
    int end = -1;
    if (len > 120 || strlen(val) != len)
        return CGLOO_ESTORE;
    if (sscanf(val, "cgloo1 %63s %16[0-9a-f]%n", addr, nonce, &end) != 2 || end != (int)len ||
        strlen(nonce) != 16)
        return CGLOO_ESTORE;
    if (cgloo__addr_parse(addr, &p->addr) != CGLOO_OK)
        return CGLOO_ESTORE;
    snprintf(p->addr_text, sizeof p->addr_text, "%s", addr);
    p->nonce = strtoull(nonce, NULL, 16);
    return CGLOO_OK;
}

static int missing_error(mesh *m, cgloo_store *store, int rc)
{
    cgloo_context *ctx = m->ctx;
    char key[CGLOO_STORE_KEY_MAX + 1];
    for (int r = 0; r < ctx->size; r++) {
        addr_key(ctx, r, key, sizeof key);
        const char *keys[] = {key};
        int present = 1;
        if (r != ctx->rank && cgloo_store_check(store, keys, 1, &present) == CGLOO_OK && !present)
            return cgloo__ctx_error(ctx, rc,
                                    "rank %d: rank %d never published its address ('%s') "
                                    "within %d ms",
                                    ctx->rank, r, key, ctx->timeout_ms);
    }
    return cgloo__ctx_error(ctx, rc, "rank %d: reading the peers' addresses failed: %s", ctx->rank,
                            cgloo_strerror(rc));
}

static int mesh_read_peers(mesh *m, cgloo_store *store)
{
    cgloo_context *ctx = m->ctx;
    size_t n = (size_t)ctx->size - 1;
    char(*keys)[CGLOO_STORE_KEY_MAX + 1] = calloc(n, sizeof *keys);
    const char **kp = calloc(n, sizeof *kp);
    void **vals = calloc(n, sizeof *vals);
    size_t *lens = calloc(n, sizeof *lens);
    int rc = keys && kp && vals && lens ? CGLOO_OK : CGLOO_ENOMEM;
    for (int r = 0, i = 0; rc == CGLOO_OK && r < ctx->size; r++)
        if (r != ctx->rank) {
            addr_key(ctx, r, keys[i], sizeof keys[i]);
            kp[i] = keys[i];
            i++;
        }
    if (rc == CGLOO_OK)
        rc = cgloo_store_multi_get(store, kp, n, CGLOO_MAX(cgloo__remaining_ms(m->deadline), 1),
                                   vals, lens);
    if (rc != CGLOO_OK && rc != CGLOO_ENOMEM)
        rc = missing_error(m, store, rc);
    for (int r = 0, i = 0; r < ctx->size && vals && lens; r++) {
        if (r == ctx->rank)
            continue;
        if (rc == CGLOO_OK && parse_record(vals[i], lens[i], &m->peers[r]) != CGLOO_OK)
            rc = cgloo__ctx_error(ctx, CGLOO_ESTORE,
                                  "rank %d: the store record of rank %d ('%s') is malformed",
                                  ctx->rank, r, kp[i]);
        cgloo_free(vals ? vals[i] : NULL);
        i++;
    }
    free(keys);
    free(kp);
    free(vals);
    free(lens);
    return rc;
}

/* ---- dialling lower ranks ------------------------------------------------------------------ */

static void hello_for(const mesh *m, int peer, uint8_t type, uint8_t *out)
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

static void dial_retry(peer_info *p, int err)
{
    if (p->fd >= 0)
        close(p->fd);
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
}

static void dial_on_writable(mesh *m, int peer)
{
    peer_info *p = &m->peers[peer];
    int err = 0;
    if (cgloo__connect_result(p->fd, &err) != CGLOO_OK)
        return dial_retry(p, err);
    uint8_t hello[HELLO_LEN];
    hello_for(m, peer, HELLO_TYPE_HELLO, hello);
    if (cgloo__write_full(p->fd, hello, sizeof hello, m->deadline) != CGLOO_OK)
        return dial_retry(p, errno);
    p->state = DIAL_AWAIT_ACK;
    p->ack_got = 0;
}

static const char *check_ack(const mesh *m, int peer, const uint8_t *bytes, wire_hello *h)
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

static int dial_on_readable(mesh *m, int peer)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[peer];
    wire_hello h;
    /* Read what is there without waiting: a peer that sends half an acknowledgement must not
     * hold up the other connections. */
    ssize_t n = recv(p->fd, p->ack + p->ack_got, sizeof p->ack - p->ack_got, 0);
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
                                "handshake (it rejected this rank's hello)",
                                ctx->rank, peer, p->addr_text);
    const char *why = rc == CGLOO_OK ? check_ack(m, peer, p->ack, &h) : cgloo_strerror(rc);
    if (why)
        return cgloo__ctx_error(ctx, rc == CGLOO_OK ? CGLOO_EPROTO : rc,
                                "rank %d: handshake with rank %d at %s failed: %s", ctx->rank, peer,
                                p->addr_text, why);
    rc = cgloo__pair_attach(&ctx->pairs[peer], p->fd, &h, p->addr_text);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: setting up the connection to rank %d failed",
                                ctx->rank, peer);
    p->fd = -1;
    p->state = DIAL_DONE;
    m->remaining--;
    return CGLOO_OK;
}

/* ---- accepting higher ranks --------------------------------------------------------------- */

static int accept_one(mesh *m, device_inbound *in)
{
    cgloo_context *ctx = m->ctx;
    int src = (int)in->decoded.src_rank;
    peer_info *p = &m->peers[src];
    const char *why = ctx->pairs[src].fd >= 0             ? "a second connection from this rank"
                      : in->decoded.src_nonce != p->nonce ? "nonce differs from this run's record"
                                                          : NULL;
    uint8_t ack[HELLO_LEN];
    hello_for(m, src, HELLO_TYPE_ACK, ack);
    if (!why && cgloo__write_full(in->fd, ack, sizeof ack, m->deadline) != CGLOO_OK)
        why = "could not send the acknowledgement";
    if (!why &&
        cgloo__pair_attach(&ctx->pairs[src], in->fd, &in->decoded, p->addr_text) != CGLOO_OK)
        why = "could not set up the connection";
    if (why) {
        CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size, "rejected a hello from rank %d (%s): %s",
                  src, in->addr, why);
        close(in->fd);
    } else {
        m->remaining--;
    }
    free(in);
    return CGLOO_OK;
}

static void mesh_accept(mesh *m)
{
    device_inbound *in = cgloo__device_take(m->dev, &m->reg);
    while (in) {
        device_inbound *next = in->next;
        accept_one(m, in);
        in = next;
    }
}

/* ---- the loop ------------------------------------------------------------------------------ */

static int mesh_timeout_error(mesh *m)
{
    cgloo_context *ctx = m->ctx;
    for (int r = 0; r < ctx->size; r++) {
        peer_info *p = &m->peers[r];
        if (r == ctx->rank || ctx->pairs[r].fd >= 0)
            continue;
        if (r > ctx->rank)
            return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT,
                                    "rank %d: rank %d (at %s) did not connect within %d ms",
                                    ctx->rank, r, p->addr_text, ctx->timeout_ms);
        int status = p->last_err == ECONNREFUSED ? CGLOO_ECONNREFUSED : CGLOO_ETIMEDOUT;
        return cgloo__ctx_error(ctx, status,
                                "rank %d: could not connect to rank %d at %s within %d ms%s%s",
                                ctx->rank, r, p->addr_text, ctx->timeout_ms,
                                p->last_err ? ": " : "", p->last_err ? strerror(p->last_err) : "");
    }
    return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT, "rank %d: connecting timed out", ctx->rank);
}

/* mesh_poll_dials starts due dials and fills pollfds for those in flight; returns the count. */
static int mesh_poll_dials(mesh *m, struct pollfd *fds, int *who)
{
    int n = 0;
    int64_t now = cgloo__now_ms();
    for (int r = 0; r < m->ctx->rank && n < DIAL_WINDOW; r++) {
        peer_info *p = &m->peers[r];
        if (p->state == DIAL_IDLE && now >= p->retry_at_ms)
            dial_start(p);
        if (p->state != DIAL_CONNECTING && p->state != DIAL_AWAIT_ACK)
            continue;
        fds[n] =
            (struct pollfd){.fd = p->fd, .events = p->state == DIAL_CONNECTING ? POLLOUT : POLLIN};
        who[n++] = r;
    }
    return n;
}

static int mesh_run(mesh *m)
{
    struct pollfd fds[DIAL_WINDOW];
    int who[DIAL_WINDOW];
    while (m->remaining > 0) {
        int left = cgloo__remaining_ms(m->deadline);
        if (left == 0)
            return mesh_timeout_error(m);
        int n = mesh_poll_dials(m, fds, who);
        cgloo__device_poll(m->dev, fds, n, CGLOO_MIN(left, BACKOFF_MIN_MS));
        for (int i = 0; i < n; i++) {
            peer_info *p = &m->peers[who[i]];
            if (!fds[i].revents)
                continue;
            if (p->state == DIAL_CONNECTING)
                dial_on_writable(m, who[i]);
            else if (dial_on_readable(m, who[i]) != CGLOO_OK)
                return m->ctx->last_status;
        }
        mesh_accept(m);
    }
    return CGLOO_OK;
}

/* mesh_undo closes whatever a failed connect opened, so that connect may be tried again. */
static void mesh_undo(mesh *m)
{
    cgloo_context *ctx = m->ctx;
    for (int r = 0; r < ctx->size; r++) {
        if (m->peers[r].fd >= 0)
            close(m->peers[r].fd);
        cgloo__pair_fini(&ctx->pairs[r]);
        cgloo__pair_init(&ctx->pairs[r], ctx, r);
    }
}

static int mesh_connect(cgloo_context *ctx, cgloo_store *store, cgloo_device *dev)
{
    mesh m = {.ctx = ctx, .dev = dev, .remaining = ctx->size - 1};
    m.deadline = cgloo__now_ms() + ctx->timeout_ms;
    m.peers = calloc((size_t)ctx->size, sizeof *m.peers);
    if (!m.peers)
        return CGLOO_ENOMEM;
    for (int r = 0; r < ctx->size; r++)
        m.peers[r] = (peer_info){.fd = -1, .backoff_ms = BACKOFF_MIN_MS};
    m.reg = (device_reg){.ctx_id = ctx->ctx_id,
                         .nonce = ctx->nonce,
                         .rank = (uint32_t)ctx->rank,
                         .size = (uint32_t)ctx->size};
    cgloo__device_register(dev, &m.reg);
    int rc = mesh_publish(&m, store);
    if (rc == CGLOO_OK)
        rc = mesh_read_peers(&m, store);
    if (rc == CGLOO_OK)
        rc = mesh_run(&m);
    cgloo__device_unregister(dev, &m.reg);
    if (rc != CGLOO_OK)
        mesh_undo(&m);
    free(m.peers);
    return rc;
}

int cgloo_context_connect(cgloo_context *ctx, cgloo_store *store, cgloo_device *dev)
{
    if (!ctx)
        return CGLOO_EINVAL;
    if (ctx->connected)
        return CGLOO_ESTATE;
    if (ctx->size > 1 && (!store || !dev))
        return cgloo__ctx_error(ctx, CGLOO_EINVAL, "rank %d: connect needs a store and a device",
                                ctx->rank);
    int rc = ctx->size > 1 ? mesh_connect(ctx, store, dev) : CGLOO_OK;
    if (rc == CGLOO_OK) {
        CGLOO_LOG(CGLOO_LOG_INFO, ctx->rank, ctx->size, "connected full mesh");
        ctx->connected = true;
    }
    return rc;
}
