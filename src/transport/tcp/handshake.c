/*
 * The TCP connect op: connections to every peer, each proven to belong to this run.
 *
 * A rank dials every lower rank and accepts every higher one, so two ranks never dial each
 * other at once. The dialler sends a hello naming the context, both ranks, the world size and
 * both nonces; the accepting side answers with an acknowledgement of the same shape (the byte
 * layout is in wire.h). The nonces come from this run's store records, so a process left from
 * an earlier run, or a stranger, cannot pass for a peer. Refused connections are retried with
 * backoff until the deadline; at most DIAL_WINDOW dials are in flight at once. So are
 * connections the peer closes before a byte of its acknowledgement: a hello that arrives after
 * the peer's connect gave up, or while its listener closes, is turned away without an answer,
 * and that is no protocol violation (a rank would otherwise fail with EPROTO because its peer
 * timed out first). On the accepting side, a dialler that goes away in the middle of the
 * handshake leaves its peer unconnected; it may dial again.
 *
 * A connect that times out says how far it got: how many peers are connected, which ranks it
 * still waits for and, for the first few, why (hs_timeout_error), then what it knows of the
 * first one: the addresses and the variables that choose them.
 *
 * With a job secret (ctx->secret) the hello and the acknowledgement carry fresh nonces, the
 * acknowledgement a MAC, and the dialler answers with a proof (wire.h); the accepting side
 * reads the proof without blocking the other connections and attaches the pair only after it
 * checks. A dialler that finds the acknowledgement's MAC wrong sends a refusal instead of a
 * proof (wire.h), so that the listener can tell it from a dialler that went away. A peer whose
 * secret differs, or that has none when this rank has one (or the other way round), is settled
 * as failed on both sides, and the connect goes on with the others, so that every rank that
 * talks to it hears about the secret from it rather than a timeout; then the connect fails with
 * the first such error (hs_auth_fail).
 *
 * With TLS (the device's configuration) each connection first runs the TLS handshake on the
 * raw socket, both sides presenting certificates, and the hello, the acknowledgement and the
 * proof then go through the session like every later byte. A failed TLS handshake is final,
 * not retried: the peer's certificate, or the peer's configuration, is wrong, and waiting will
 * not mend it.
 */
#include "transport/tcp/tcp.h"
#include "core/auth.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define DIAL_WINDOW 64 /* dials in flight at once */
#define BACKOFF_MIN_MS 10
#define BACKOFF_MAX_MS 500
#define SECRET_HINT "do all ranks share CGLOO_SECRET?"
/* Descriptors a connect may need besides one per peer: the dials in flight before their pairs
 * replace them are counted in the peers, so this covers the store's connections, the poller,
 * its wake-up descriptor and a launcher's watch, with room to spare. */
#define FD_SLACK 16

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
    uint8_t ack[ACK_AUTH_LEN]; /* the acknowledgement as it arrives, possibly in pieces */
    size_t ack_got;
    /* With a secret: hello, dialler nonce, ack, listener nonce, as sent (what the MACs cover) */
    uint8_t transcript[AUTH_TRANSCRIPT_LEN];
    /* accepting with a secret: the connection whose proof is awaited (-1: none) */
    int auth_fd;
    cgloo__tls *auth_tls; /* its TLS session (a device with TLS) */
    uint8_t proof[AUTH_MAC_LEN];
    size_t proof_got;
    bool proof_polled; /* the latest poll watched auth_fd: read it only when the poll saw it */
    wire_hello auth_hello;
    char auth_addr[CGLOO_ADDR_TEXT_MAX];
    bool auth_failed;      /* settled: the secrets differ; no connection will come */
    char turned_away[128]; /* accepting: why its latest connection was closed, for timeouts */
} peer_info;

struct cgloo__connector {
    cgloo_context *ctx;
    cgloo_device *dev;
    device_reg reg;
    peer_info *peers;
    int64_t deadline;
    int remaining; /* connections still to make */
    /* What a round looks at, so that it does not scan every peer (at 1024 ranks the scan
     * took 8% of all set-up CPU): the highest rank this one may still dial (dials go from
     * the nearest lower rank down, hs_poll_dials), and how many accepted connections still
     * owe their proof of the secret. */
    int dial_top;
    int proofs_awaited;
    int dial_fds_errno;    /* EMFILE or ENFILE: a dial found no descriptor left; else 0 */
    int auth_rc;           /* the first peer that failed authentication made the connect fail */
    struct tcp_lazy *lazy; /* a lazy context's state (the end of this file), or NULL */
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
                    .dst_nonce = m->peers[peer].nonce,
                    .flags = ctx->secret ? WIRE_FLAG_AUTH : 0};
    wire_hello_encode(&h, out);
}

/* conn_write sends len bytes before deadline, through tls when the connection has a session. */
static int conn_write(int fd, cgloo__tls *tls, const void *buf, size_t len, int64_t deadline)
{
    return tls ? cgloo__tls_write_full(tls, fd, buf, len, deadline)
               : cgloo__write_full(fd, buf, len, deadline);
}

/* conn_recv reads what there is, up to len bytes, without waiting (recv's return and errno). */
static ssize_t conn_recv(int fd, cgloo__tls *tls, void *buf, size_t len)
{
    return tls ? cgloo__tls_read(tls, buf, len) : recv(fd, buf, len, 0);
}

/* conn_close drops a connection and its session. */
static void conn_close(int *fd, cgloo__tls **tls)
{
    cgloo__tls_free(*tls);
    *tls = NULL;
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

static void dial_retry(peer_info *p, int err)
{
    conn_close(&p->fd, &p->tls);
    p->state = DIAL_IDLE;
    p->last_err = err;
    p->retry_at_ms = cgloo__now_ms() + p->backoff_ms;
    p->backoff_ms = CGLOO_MIN(p->backoff_ms * 2, BACKOFF_MAX_MS);
}

/* dial_turned_away: the peer closed the connection before a byte of its acknowledgement. It
 * refused the hello (its log says why), or its connect had already given up: a late hello is
 * not a protocol violation, so the dial is tried again until the deadline, whose error says
 * what happened. */
static int dial_turned_away(handshake *m, int peer)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[peer];
    CGLOO_LOG(CGLOO_LOG_DEBUG, ctx->rank, ctx->size,
              "rank %d at %s closed the connection before acknowledging; dialling again", peer,
              p->addr_text);
    dial_retry(p, ECONNRESET);
    return CGLOO_OK;
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
    /* With a secret the hello and a fresh nonce go out together, and stay in the transcript. */
    uint8_t *hello = p->transcript;
    size_t len = m->ctx->secret ? HELLO_AUTH_LEN : HELLO_LEN;
    hello_for(m, peer, HELLO_TYPE_HELLO, hello);
    if (m->ctx->secret && cgloo__auth_nonce(hello + HELLO_LEN) != CGLOO_OK)
        return dial_retry(p, EIO);
    if (conn_write(p->fd, p->tls, hello, len, m->deadline) != CGLOO_OK)
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

/* hs_auth_fail settles rank peer as failed: its secret is not this rank's. The first such
 * failure becomes the connect's error once the other peers are settled too; later ones are
 * logged. Closes fd (the connection to it) when not -1, and frees its TLS session tls. Returns
 * OK: the connect goes on. */
static int hs_auth_fail(handshake *m, int peer, int fd, cgloo__tls *tls, const char *fmt, ...)
    CGLOO_PRINTF(5, 6);
static int hs_auth_fail(handshake *m, int peer, int fd, cgloo__tls *tls, const char *fmt, ...)
{
    cgloo_context *ctx = m->ctx;
    char msg[CGLOO_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    peer_info *p = &m->peers[peer];
    if (p->fd == fd && fd >= 0) { /* the dial's own connection */
        p->fd = -1;
        p->tls = NULL;
    }
    conn_close(&fd, &tls);
    p->state = DIAL_DONE;
    p->auth_failed = true;
    m->remaining--;
    if (m->auth_rc == CGLOO_OK)
        m->auth_rc = cgloo__ctx_error(ctx, CGLOO_EPROTO, "%s", msg);
    else
        CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size, "%s", msg);
    return CGLOO_OK;
}

/* dial_auth_mismatch: the acknowledgement says the peer has a secret and this rank none, or
 * the other way round. */
static int dial_auth_mismatch(handshake *m, int peer)
{
    cgloo_context *ctx = m->ctx;
    int fd = m->peers[peer].fd;
    cgloo__tls *tls = m->peers[peer].tls;
    if (ctx->secret)
        return hs_auth_fail(m, peer, fd, tls,
                            "rank %d: rank %d did not prove the job secret (its acknowledgement "
                            "is unauthenticated): " SECRET_HINT,
                            ctx->rank, peer);
    return hs_auth_fail(m, peer, fd, tls,
                        "rank %d: rank %d requires a job secret (its acknowledgement is "
                        "authenticated) and this rank has none: " SECRET_HINT,
                        ctx->rank, peer);
}

/* dial_prove checks the listener's MAC, then sends this rank's proof. No proof is sent to a
 * listener whose MAC is wrong, only a refusal (wire.h): a proof is never made for a challenge
 * from a stranger. Returns false when the peer is settled as failed or is dialled again. */
static bool dial_prove(handshake *m, int peer)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[peer];
    memcpy(p->transcript + HELLO_AUTH_LEN, p->ack, HELLO_AUTH_LEN); /* ack and its nonce */
    if (!cgloo__auth_check(ctx->secret, AUTH_LABEL_ACK, p->transcript, AUTH_TRANSCRIPT_LEN,
                           p->ack + HELLO_AUTH_LEN)) {
        /* The refusal tells the listener why this rank goes, so that it does not take the
         * close for a dialler that gave up. It proves nothing about the secret. */
        static const uint8_t refusal[AUTH_MAC_LEN];
        (void)conn_write(p->fd, p->tls, refusal, sizeof refusal, m->deadline);
        hs_auth_fail(m, peer, p->fd, p->tls,
                     "rank %d: rank %d at %s answered with a MAC that does not match this rank's "
                     "job secret: the secret differs between rank %d and rank %d (" SECRET_HINT ")",
                     ctx->rank, peer, p->addr_text, ctx->rank, peer);
        return false;
    }
    uint8_t proof[AUTH_MAC_LEN];
    if (cgloo__auth_mac(ctx->secret, AUTH_LABEL_PROOF, p->transcript, AUTH_TRANSCRIPT_LEN, proof) !=
        CGLOO_OK) {
        hs_auth_fail(m, peer, p->fd, p->tls,
                     "rank %d: could not compute the proof of the job "
                     "secret for rank %d",
                     ctx->rank, peer);
        return false;
    }
    if (conn_write(p->fd, p->tls, proof, sizeof proof, m->deadline) != CGLOO_OK) {
        dial_turned_away(m, peer); /* the listener went away after its acknowledgement */
        return false;
    }
    return true;
}

static int dial_on_readable(handshake *m, int peer)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[peer];
    wire_hello h;
    size_t want = ctx->secret ? ACK_AUTH_LEN : HELLO_LEN;
    /* Read what is there without waiting: a peer that sends half an acknowledgement must not
     * hold up the other connections. */
    ssize_t n = conn_recv(p->fd, p->tls, p->ack + p->ack_got, want - p->ack_got);
    if (n > 0)
        p->ack_got += (size_t)n;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return CGLOO_OK;
    /* The flag says at once whether the peer has a secret too; the rest may never come. */
    if (p->ack_got >= HELLO_LEN && cgloo__get_u32(p->ack) == WIRE_MAGIC &&
        !(p->ack[6] & WIRE_FLAG_AUTH) != !ctx->secret)
        return dial_auth_mismatch(m, peer);
    if (n > 0 && p->ack_got < want)
        return CGLOO_OK;
    int rc = n == 0 ? CGLOO_EPEER : n < 0 ? cgloo__status_from_errno(errno) : CGLOO_OK;
    if (rc == CGLOO_EPEER && p->ack_got == 0)
        return dial_turned_away(m, peer);
    if (rc == CGLOO_EPEER)
        return cgloo__ctx_error(ctx, CGLOO_EPROTO,
                                "rank %d: rank %d at %s closed the connection in the middle of "
                                "its acknowledgement (%zu of %zu bytes)",
                                ctx->rank, peer, p->addr_text, p->ack_got, want);
    /* In TLS 1.3 the server judges the client's certificate after the client has finished
     * its handshake, so a refusal arrives here, as an alert. */
    const char *why =
        rc != CGLOO_OK ? (p->tls && errno == EPROTO ? cgloo__tls_why(p->tls) : cgloo_strerror(rc))
                       : check_ack(m, peer, p->ack, &h);
    if (why)
        return cgloo__ctx_error(ctx, rc == CGLOO_OK ? CGLOO_EPROTO : rc,
                                "rank %d: handshake with rank %d at %s failed: %s", ctx->rank, peer,
                                p->addr_text, why);
    if (ctx->secret && !dial_prove(m, peer))
        return CGLOO_OK;
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

/* accept_auth_mismatch answers a hello whose secret flag differs from this side's with an
 * acknowledgement that tells the dialler so (the caller closes it), and fails the connect. */
static int accept_auth_mismatch(handshake *m, device_inbound *in, int src)
{
    cgloo_context *ctx = m->ctx;
    uint8_t ack[HELLO_LEN];
    hello_for(m, src, HELLO_TYPE_ACK, ack);
    (void)conn_write(in->fd, in->tls, ack, sizeof ack, m->deadline); /* best effort: closing */
    if (ctx->secret)
        return hs_auth_fail(m, src, -1, NULL,
                            "rank %d: rank %d did not prove the job secret (its hello is "
                            "unauthenticated): " SECRET_HINT,
                            ctx->rank, src);
    return hs_auth_fail(m, src, -1, NULL,
                        "rank %d: rank %d proves a job secret (its hello is authenticated) and "
                        "this rank has none: " SECRET_HINT,
                        ctx->rank, src);
}

/* accept_challenge answers an authenticated hello with this side's fresh nonce and MAC, and
 * keeps the connection until its proof arrives (accept_on_proof). Returns why it could not. */
static const char *accept_challenge(handshake *m, device_inbound *in, int src)
{
    peer_info *p = &m->peers[src];
    uint8_t *t = p->transcript, *ack = t + HELLO_AUTH_LEN;
    memcpy(t, in->hello, HELLO_AUTH_LEN);
    hello_for(m, src, HELLO_TYPE_ACK, ack);
    if (cgloo__auth_nonce(ack + HELLO_LEN) != CGLOO_OK)
        return "no randomness for a nonce";
    uint8_t out[ACK_AUTH_LEN];
    memcpy(out, ack, HELLO_AUTH_LEN);
    if (cgloo__auth_mac(m->ctx->secret, AUTH_LABEL_ACK, t, AUTH_TRANSCRIPT_LEN,
                        out + HELLO_AUTH_LEN) != CGLOO_OK)
        return "could not compute the MAC";
    if (conn_write(in->fd, in->tls, out, sizeof out, m->deadline) != CGLOO_OK)
        return "could not send the acknowledgement";
    p->auth_fd = in->fd;
    p->auth_tls = in->tls;
    p->proof_polled = true; /* not there yet: the next poll watches for it, if it has room */
    m->proofs_awaited++;
    p->proof_got = 0;
    p->auth_hello = in->decoded;
    snprintf(p->auth_addr, sizeof p->auth_addr, "%s", in->addr);
    return NULL;
}

/* accept_plain acknowledges a hello without a secret and attaches the pair. */
static const char *accept_plain(handshake *m, device_inbound *in, int src)
{
    uint8_t ack[HELLO_LEN];
    hello_for(m, src, HELLO_TYPE_ACK, ack);
    if (conn_write(in->fd, in->tls, ack, sizeof ack, m->deadline) != CGLOO_OK)
        return "could not send the acknowledgement";
    if (cgloo__tcp_pair_attach(&m->ctx->peers[src], in->fd, in->tls, &in->decoded,
                               m->peers[src].addr_text) != CGLOO_OK)
        return "could not set up the connection";
    m->remaining--;
    return NULL;
}

static int accept_one(handshake *m, device_inbound *in)
{
    cgloo_context *ctx = m->ctx;
    int src = (int)in->decoded.src_rank;
    peer_info *p = &m->peers[src];
    bool auth = in->decoded.flags & WIRE_FLAG_AUTH;
    const char *why =
        !p->used ? "this rank does not reach that peer over TCP"
        : cgloo__tcp_pair_connected(&ctx->peers[src]) || p->auth_fd >= 0 || p->auth_failed
            ? "a second connection from this rank"
        : in->decoded.src_nonce != p->nonce ? "nonce differs from this run's record"
                                            : NULL;
    char host[CGLOO_TRANSPORT_ADDR_MAX];
    cgloo__tcp_host_of(p->addr_text, host, sizeof host);
    /* The dialler's host is known only now, from its rank's record: check its name here. */
    if (!why && in->tls && cgloo__tls_config_verify_host(cgloo__tcp_device_tls(m->dev)) &&
        cgloo__tls_check_host(in->tls, host) != CGLOO_OK)
        why = cgloo__tls_why(in->tls);
    int rc = CGLOO_OK;
    if (!why && auth != (ctx->secret != NULL)) {
        rc = accept_auth_mismatch(m, in, src);
        why = "the job secret is not shared";
    } else if (!why && auth) {
        why = accept_challenge(m, in, src);
    } else if (!why) {
        why = accept_plain(m, in, src);
    }
    if (why) {
        CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size, "rejected a hello from rank %d (%s): %s",
                  src, in->addr, why);
        snprintf(p->turned_away, sizeof p->turned_away, "its hello was refused: %s", why);
        cgloo__tcp_device_note_reject(m->dev, in->addr, why);
        conn_close(&in->fd, &in->tls);
    }
    free(in);
    return rc;
}

/* proof_is_refusal: the dialler found this side's MAC wrong and said so (dial_prove). */
static bool proof_is_refusal(const uint8_t *proof)
{
    static const uint8_t refusal[AUTH_MAC_LEN];
    return memcmp(proof, refusal, sizeof refusal) == 0;
}

/* accept_turned_away: an accepted connection ended before the handshake did. The dialler gave
 * up, or refused what this side sent: not a violation. The peer stays unconnected (it may dial
 * again) and the timeout error, if it comes to that, says why. */
static void accept_turned_away(handshake *m, int src, const char *why)
{
    peer_info *p = &m->peers[src];
    CGLOO_LOG(CGLOO_LOG_WARN, m->ctx->rank, m->ctx->size,
              "closed a connection from rank %d (%s): %s", src, p->auth_addr, why);
    snprintf(p->turned_away, sizeof p->turned_away, "%s", why);
}

/* accept_on_proof reads what arrived of rank src's proof; once whole and right, attaches the
 * pair. A wrong proof, or a refusal instead of one, settles the peer as failed; a close before
 * the proof leaves it unconnected. */
static int accept_on_proof(handshake *m, int src)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[src];
    int fd = p->auth_fd;
    cgloo__tls *tls = p->auth_tls;
    ssize_t n = conn_recv(fd, tls, p->proof + p->proof_got, AUTH_MAC_LEN - p->proof_got);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return CGLOO_OK;
    if (n > 0 && (p->proof_got += (size_t)n) < AUTH_MAC_LEN)
        return CGLOO_OK;
    p->auth_fd = -1;
    p->auth_tls = NULL;
    m->proofs_awaited--;
    if (n <= 0) {
        conn_close(&fd, &tls);
        accept_turned_away(m, src, "closed before proving the job secret");
        return CGLOO_OK;
    }
    if (proof_is_refusal(p->proof))
        return hs_auth_fail(m, src, fd, tls,
                            "rank %d: rank %d (%s) found this rank's MAC wrong and refused to "
                            "prove the job secret: its secret may differ from this rank's "
                            "(" SECRET_HINT ")",
                            ctx->rank, src, p->auth_addr);
    if (!cgloo__auth_check(ctx->secret, AUTH_LABEL_PROOF, p->transcript, AUTH_TRANSCRIPT_LEN,
                           p->proof))
        return hs_auth_fail(m, src, fd, tls,
                            "rank %d: rank %d (%s) sent a proof that does not match this rank's "
                            "job secret: the secret differs between rank %d and rank %d "
                            "(" SECRET_HINT ")",
                            ctx->rank, src, p->auth_addr, ctx->rank, src);
    if (cgloo__tcp_pair_attach(&ctx->peers[src], fd, tls, &p->auth_hello, p->addr_text) !=
        CGLOO_OK) {
        conn_close(&fd, &tls);
        return cgloo__ctx_error(ctx, CGLOO_ENOMEM,
                                "rank %d: setting up the connection from rank %d failed", ctx->rank,
                                src);
    }
    m->remaining--;
    return CGLOO_OK;
}

static int hs_accept(handshake *m)
{
    int rc = CGLOO_OK;
    device_inbound *in = cgloo__tcp_device_take(m->dev, &m->reg);
    while (in) {
        device_inbound *next = in->next;
        int one = accept_one(m, in);
        rc = rc == CGLOO_OK ? one : rc;
        in = next;
    }
    /* Proofs the poll watched were read when it saw them (hs_handle); only those past its set
     * are tried here, so that no round reads every connection that owes one. */
    int seen = 0, awaited = m->proofs_awaited;
    for (int r = m->ctx->rank + 1; rc == CGLOO_OK && seen < awaited && r < m->ctx->size; r++)
        if (m->peers[r].auth_fd >= 0) {
            seen++;
            if (!m->peers[r].proof_polled)
                rc = accept_on_proof(m, r);
        }
    return rc;
}

/* ---- file descriptors ---------------------------------------------------------------------- */

/* open_fds counts this process's open descriptors (0 when /proc is not there to say). */
static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return 0;
    long n = -1; /* the directory's own descriptor */
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* fds_error says that this rank ran out of descriptors, or would: the limit, how many are
 * open, how many the connect holds, and the two ways out. */
static int fds_error(cgloo_context *ctx, int peers, const char *what)
{
    struct rlimit lim = {0};
    getrlimit(RLIMIT_NOFILE, &lim);
    long open = open_fds();
    return cgloo__ctx_error(ctx, CGLOO_EIO,
                            "rank %d: %s: file descriptors are limited to %lld (ulimit -n) and %ld "
                            "are open; a full mesh over TCP holds one per peer, %d here: raise "
                            "the limit to at least %ld (ulimit -n), or connect lazily "
                            "(CGLOO_LAZY=1)",
                            ctx->rank, what, (long long)lim.rlim_cur, open, peers,
                            open + peers + FD_SLACK);
}

/* fds_check fails at once, before this rank publishes its address, when the descriptors left
 * cannot hold a connection to every TCP peer: otherwise the connect would run out part-way,
 * and its peers would wait out their timeout for connections that cannot come. */
static int fds_check(cgloo_context *ctx)
{
    if (ctx->lazy)
        return CGLOO_OK; /* it holds connections only to the peers it talks to */
    int peers = 0;
    for (int r = 0; r < ctx->size; r++)
        peers += r != ctx->rank && ctx->peers[r].transport == &cgloo__tcp_transport;
    struct rlimit lim;
    if (peers == 0 || getrlimit(RLIMIT_NOFILE, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY)
        return CGLOO_OK;
    if ((rlim_t)(open_fds() + peers + FD_SLACK) <= lim.rlim_cur)
        return CGLOO_OK;
    return fds_error(ctx, peers, "too few file descriptors for a full mesh");
}

/* fds_ran_out: a dial or the listener found no descriptor left (the limit was shared with
 * descriptors the application opened meanwhile): the connect cannot finish. */
static int fds_ran_out(handshake *m)
{
    int err = m->dial_fds_errno ? m->dial_fds_errno : cgloo__tcp_device_fds_out(m->dev);
    if (!err)
        return CGLOO_OK;
    return fds_error(m->ctx, m->remaining,
                     err == ENFILE ? "the system is out of file descriptors"
                                   : "out of file descriptors");
}

/* ---- the loop ------------------------------------------------------------------------------ */

#define ADDR_VARS "CGLOO_IFACE, CGLOO_HOSTNAME and CGLOO_ADVERTISE_ADDR choose it"

/* accept_timeout_detail: a higher rank never dialled this one, or its dial never arrived. */
static int accept_timeout_detail(handshake *m, int r, char *buf, size_t len)
{
    const char *mine;
    cgloo__tcp_device_choice(m->dev, &mine);
    char refused[320];
    cgloo__tcp_device_last_reject(m->dev, refused, sizeof refused);
    snprintf(buf, len,
             "rank %d (at %s) did not connect to this rank's address %s; check that rank %d's host "
             "reaches %s (" ADDR_VARS ")%s%s",
             r, m->peers[r].addr_text, mine, r, mine,
             refused[0] ? "; the last connection refused: " : "", refused);
    return CGLOO_ETIMEDOUT;
}

/* dial_timeout_detail: this rank's dials to a lower rank failed until the deadline. */
static int dial_timeout_detail(handshake *m, int r, char *buf, size_t len)
{
    peer_info *p = &m->peers[r];
    bool loop = cgloo__addr_is_loopback(&p->addr);
    const char *why = p->last_err == ECONNRESET ? "it closed the connection before acknowledging "
                                                  "(it refused the hello, see its log, or had "
                                                  "given up)"
                      : p->last_err             ? strerror(p->last_err)
                                                : "no answer";
    snprintf(buf, len,
             "could not connect to rank %d at %s from %s: %s; check that this host reaches %s and "
             "that rank %d published an address its peers reach (" ADDR_VARS ")%s",
             r, p->addr_text, p->local_text[0] ? p->local_text : "this host", why, p->addr_text, r,
             loop ? "; it is a loopback address, which only works if that rank runs on this host"
                  : "");
    return p->last_err == ECONNREFUSED ? CGLOO_ECONNREFUSED : CGLOO_ETIMEDOUT;
}

/* peer_why says in a few words how far the connection to rank r got, for the timeout's list. */
static const char *peer_why(const handshake *m, int r, char *buf, size_t len)
{
    const peer_info *p = &m->peers[r];
    if (p->auth_fd >= 0)
        return "connected, no proof of the job secret yet";
    if (r > m->ctx->rank)
        return p->turned_away[0] ? p->turned_away : "no hello arrived";
    if (p->state == DIAL_TLS)
        return "TLS handshake unfinished";
    if (p->state == DIAL_AWAIT_ACK)
        return "hello sent, no acknowledgement";
    if (p->last_err == ECONNREFUSED)
        return "dial refused";
    if (p->last_err == ECONNRESET)
        return "closed before acknowledging";
    if (p->state == DIAL_CONNECTING)
        return "dial unanswered";
    if (p->last_err) {
        snprintf(buf, len, "dial failed: %s", strerror(p->last_err));
        return buf;
    }
    return "not dialled yet";
}

/* first_detail: what is known about the connection to rank r, the first one missing. */
static int first_detail(handshake *m, int r, char *buf, size_t len)
{
    peer_info *p = &m->peers[r];
    if (p->auth_fd >= 0) {
        snprintf(buf, len, "rank %d (%s) connected but did not prove the job secret", r,
                 p->auth_addr);
        return CGLOO_ETIMEDOUT;
    }
    return r > m->ctx->rank ? accept_timeout_detail(m, r, buf, len)
                            : dial_timeout_detail(m, r, buf, len);
}

/* hs_timeout_error: the deadline passed. Says how far the connect got (how many peers are
 * connected, which are not, and for the first few why), then what is known of the first one. */
static int hs_timeout_error(handshake *m)
{
    cgloo_context *ctx = m->ctx;
    cgloo__rank_list missing = {0};
    int peers = 0, connected = 0, first = -1;
    char why[160], detail[CGLOO_ERROR_MAX];
    /* Peers whose handshake is under way come first: they are what the rank waited on. */
    for (int pass = 0; pass < 2; pass++)
        for (int r = 0; r < ctx->size; r++) {
            peer_info *p = &m->peers[r];
            bool up = p->used && cgloo__tcp_pair_connected(&ctx->peers[r]);
            bool busy = p->state != DIAL_IDLE && p->state != DIAL_DONE;
            peers += pass == 0 && p->used;
            connected += pass == 0 && up;
            if (!p->used || up || p->auth_failed || busy != (pass == 0))
                continue;
            first = first < 0 ? r : first;
            cgloo__rank_list_add(&missing, r, peer_why(m, r, why, sizeof why));
        }
    if (first < 0)
        return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT, "rank %d: connecting timed out", ctx->rank);
    int status = first_detail(m, first, detail, sizeof detail);
    return cgloo__ctx_error(ctx, status,
                            "rank %d: connected to %d of %d peers, and to none more within %d "
                            "ms; waiting for %s; %s",
                            ctx->rank, connected, peers, ctx->timeout_ms,
                            cgloo__rank_list_text(&missing), detail);
}

/* hs_poll_dials starts due dials and fills pollfds for those in flight; returns the count and
 * lowers *due to the time the next idle dial it saw falls due. A rank dials the nearest lower
 * ranks first, so that each listener hears from the DIAL_WINDOW ranks above it at a time:
 * dialling from rank 0 up sent every rank's first 64 hellos to ranks 0 to 63 at once, and at
 * 1024 ranks a high rank's dials then waited 30 s behind a thousand others. */
static int hs_poll_dials(handshake *m, struct pollfd *fds, int *who, int64_t *due)
{
    int n = 0;
    int64_t now = cgloo__now_ms();
    while (m->dial_top >= 0 &&
           (!m->peers[m->dial_top].used || m->peers[m->dial_top].state == DIAL_DONE))
        m->dial_top--; /* settled dials never start again */
    for (int r = m->dial_top; r >= 0 && n < DIAL_WINDOW; r--) {
        peer_info *p = &m->peers[r];
        if (!p->used)
            continue;
        if (p->state == DIAL_IDLE && now >= p->retry_at_ms) {
            dial_start(p);
            if (p->state == DIAL_IDLE && (p->last_err == EMFILE || p->last_err == ENFILE))
                m->dial_fds_errno = p->last_err; /* fds_ran_out ends the connect */
        }
        if (p->state == DIAL_IDLE)
            *due = CGLOO_MIN(*due, p->retry_at_ms);
        if (p->state != DIAL_CONNECTING && p->state != DIAL_TLS && p->state != DIAL_AWAIT_ACK)
            continue;
        short ev = p->state == DIAL_CONNECTING ? POLLOUT
                   : p->tls                    ? cgloo__tls_wants(p->tls)
                                               : POLLIN;
        fds[n] = (struct pollfd){.fd = p->fd, .events = ev};
        who[n++] = r;
    }
    /* Proofs still to come wake the poll too; hs_accept reads them (higher ranks never dial). */
    int seen = 0;
    for (int r = m->ctx->rank + 1; seen < m->proofs_awaited && r < m->ctx->size; r++) {
        peer_info *p = &m->peers[r];
        if (p->auth_fd < 0)
            continue;
        seen++;
        p->proof_polled = n < 2 * DIAL_WINDOW - 1;
        if (p->proof_polled) {
            fds[n] = (struct pollfd){.fd = p->auth_fd, .events = POLLIN};
            who[n++] = r;
        }
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
        int rc = who[i] > ctx->rank            ? accept_on_proof(m, who[i])
                 : p->state == DIAL_CONNECTING ? dial_on_writable(m, who[i])
                 : p->state == DIAL_TLS        ? dial_tls_step(m, who[i])
                 : p->state == DIAL_AWAIT_ACK  ? dial_on_readable(m, who[i])
                                               : CGLOO_OK;
        if (rc != CGLOO_OK)
            return rc;
    }
    int rc = hs_accept(m);
    if (rc == CGLOO_OK)
        rc = fds_ran_out(m);
    if (rc != CGLOO_OK)
        return rc;
    if (m->remaining > 0 && cgloo__remaining_ms(m->deadline) == 0)
        return m->auth_rc != CGLOO_OK ? m->auth_rc : hs_timeout_error(m);
    return CGLOO_OK;
}

/* hs_run polls the dials in flight, the device and the context's wake-up descriptor (which an
 * abort signals), without the lock, and handles what it found with it, until every peer is
 * connected, the deadline passes or the context is aborted. Every connection made moves the
 * deadline to a timeout after it: 1024 ranks on two cores need about a minute for their 523,776
 * connections (docs/SCALING.md), and a job that makes progress is not a job that hangs; a peer
 * that never comes still fails the connect one timeout after the last connection made. A round
 * sleeps until something arrives, the next idle dial falls due, the next interrupt check or the
 * deadline: a fixed short poll would wake every waiting rank of a large job a hundred times a
 * second, and at 1024 ranks on two cores those wake-ups take the CPU the handshakes need
 * (docs/BENCHMARKS.md, "Full-mesh set-up"). */
static int hs_run(handshake *m)
{
    struct pollfd fds[2 * DIAL_WINDOW];
    int who[2 * DIAL_WINDOW];
    int rc = CGLOO_OK;
    int64_t next_check = cgloo__now_ms() + CGLOO_INTERRUPT_CHECK_MS;
    while (rc == CGLOO_OK && m->remaining > 0) {
        if (cgloo__now_ms() >= next_check) {
            next_check += CGLOO_INTERRUPT_CHECK_MS;
            if (cgloo__ctx_interrupted(m->ctx))
                return cgloo__ctx_error(m->ctx, CGLOO_EINTR, "rank %d: connect interrupted",
                                        m->ctx->rank);
        }
        int64_t due = CGLOO_MIN(next_check, m->deadline);
        int n = hs_poll_dials(m, fds, who, &due);
        fds[n] = (struct pollfd){.fd = m->ctx->poller.wakefd, .events = POLLIN};
        int wait = (int)CGLOO_MAX(due - cgloo__now_ms(), 0);
        cgloo__tcp_device_poll(m->dev, fds, n + 1, wait);
        if (fds[n].revents) { /* drained here: nothing else waits on it while connecting */
            uint64_t v;
            ssize_t got = read(m->ctx->poller.wakefd, &v, sizeof v);
            (void)got;
        }
        int before = m->remaining;
        pthread_mutex_lock(&m->ctx->lock);
        rc = hs_handle(m, fds, who, n);
        pthread_mutex_unlock(&m->ctx->lock);
        if (m->remaining < before) /* progress: the timeout bounds a stall, not the mesh */
            m->deadline = CGLOO_MAX(m->deadline, cgloo__now_ms() + m->ctx->timeout_ms);
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
    if (rc == CGLOO_OK)
        rc = fds_check(ctx);
    if (rc != CGLOO_OK)
        return rc;
    handshake *m = calloc(1, sizeof *m);
    peer_info *peers = calloc((size_t)ctx->size, sizeof *peers);
    if (!m || !peers) {
        free(m);
        free(peers);
        return CGLOO_ENOMEM;
    }
    *m = (handshake){.ctx = ctx, .dev = dev, .peers = peers, .dial_top = ctx->rank - 1};
    for (int r = 0; r < ctx->size; r++)
        peers[r] = (peer_info){.fd = -1, .auth_fd = -1, .backoff_ms = BACKOFF_MIN_MS};
    m->reg = (device_reg){.ctx_id = ctx->ctx_id,
                          .nonce = ctx->nonce,
                          .rank = (uint32_t)ctx->rank,
                          .size = (uint32_t)ctx->size,
                          .lazy = ctx->lazy,
                          .notify_fd = ctx->lazy ? eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC) : -1};
    if (m->reg.lazy && m->reg.notify_fd < 0) {
        free(m);
        free(peers);
        return cgloo__ctx_error(ctx, cgloo__status_from_errno(errno), "rank %d: eventfd: %s",
                                ctx->rank, strerror(errno));
    }
    cgloo__tcp_device_register(dev, &m->reg);
    *out = m;
    return CGLOO_OK;
}

int cgloo__tcp_connect(cgloo__connector *m, const cgloo__peer_record *peers, int64_t deadline_ms)
{
    m->deadline = deadline_ms;
    int rc = hs_load_peers(m, peers);
    if (rc == CGLOO_OK)
        rc = hs_run(m);
    return rc == CGLOO_OK ? m->auth_rc : rc;
}

static void lazy_free(handshake *m);

void cgloo__tcp_connect_end(cgloo__connector *m)
{
    cgloo__tcp_device_unregister(m->dev, &m->reg);
    lazy_free(m);
    if (m->reg.lazy)
        close(m->reg.notify_fd);
    for (int r = 0; r < m->ctx->size; r++) {
        conn_close(&m->peers[r].fd, &m->peers[r].tls);           /* dials still in flight */
        conn_close(&m->peers[r].auth_fd, &m->peers[r].auth_tls); /* proofs never received */
    }
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

/* ---- lazy connections ------------------------------------------------------------------------
 *
 * A lazy context (ctx->lazy) keeps its connector for its whole life and connects a peer only
 * when the engine first sends to it (cgloo__tcp_peer_want), with
 * the dial and accept steps above: the same hello, nonces, secret and TLS. The connector's
 * descriptors live in the context's poller: the device's event descriptor (its listener and
 * unfinished hellos), an eventfd the device writes when it files a hello for this context (the
 * thread that filed it may serve another context), a timerfd for retries and deadlines, and
 * each peer's dial or accepted connection while its handshake runs.
 *
 * Crossed dials: both ranks may dial at once. The higher rank's dial wins, as in the full mesh,
 * where only the higher rank dials: a rank whose own dial to a lower rank is in flight turns
 * that rank's hello away (closed unanswered: the lower rank's dial is retried, and gives way as
 * soon as the higher rank's hello reaches it), and a rank that receives a higher rank's hello
 * while dialling it drops its own dial and accepts. A rank acknowledges a lower rank's hello
 * only while it is not dialling that rank, and dials only while it holds no connection from
 * it, so exactly one connection survives. Messages posted meanwhile wait in the pair's queue
 * and go out in order on that one connection.
 *
 * Failures are the peer's, not the context's: a refused dial (nothing listens at the published
 * address: the process is gone) fails the peer at once with EPEER; a dial that has not finished
 * within half the context's timeout (the pair's detection time too), or a handshake that fails
 * its checks, fails it naming its rank and address. */

typedef struct lazy_peer {
    cgloo__pollable io;
    handshake *m;
    int rank;
    int reg_fd;          /* the descriptor registered with the context's poller, -1: none */
    unsigned reg_events; /* and its events */
    bool wanted;         /* the engine wants it connected */
    int64_t give_up_at;  /* a wanted peer not connected by then fails */
    int64_t proof_by;    /* an accepted connection's proof of the secret must arrive by then */
    char *why;           /* the failure's detail, which the peer's fail_why points at */
} lazy_peer;

typedef struct tcp_lazy {
    lazy_peer *peers;
    cgloo__pollable dev_io, notify_io, timer_io;
    int timer_fd;
} tcp_lazy;

static bool lazy_dialling(const peer_info *p)
{
    return p->state == DIAL_CONNECTING || p->state == DIAL_TLS || p->state == DIAL_AWAIT_ACK;
}

static unsigned lazy_events(short ev)
{
    return (ev & POLLIN ? CGLOO_POLL_IN : 0) | (ev & POLLOUT ? CGLOO_POLL_OUT : 0);
}

/* lazy_sync registers with the context's poller the descriptor peer r's handshake waits on
 * now (its dial, or an accepted connection's proof), and unregisters the one it no longer
 * does. Called right after every step that may close or open one, before any other. */
static void lazy_sync(handshake *m, int r)
{
    peer_info *p = &m->peers[r];
    lazy_peer *lp = &m->lazy->peers[r];
    int fd = -1;
    unsigned ev = CGLOO_POLL_IN;
    if (lazy_dialling(p)) {
        fd = p->fd;
        ev = p->state == DIAL_CONNECTING ? CGLOO_POLL_OUT
             : p->tls                    ? lazy_events(cgloo__tls_wants(p->tls))
                                         : CGLOO_POLL_IN;
    } else if (p->auth_fd >= 0) {
        fd = p->auth_fd;
    }
    cgloo__poller *pl = &m->ctx->poller;
    if (fd == lp->reg_fd && ev == lp->reg_events)
        return;
    if (fd == lp->reg_fd && fd >= 0) {
        cgloo__poller_mod(pl, fd, ev, &lp->io);
    } else {
        if (lp->reg_fd >= 0)
            cgloo__poller_del(pl, lp->reg_fd); /* already closed: nothing to undo */
        if (fd >= 0 && cgloo__poller_add(pl, fd, ev, &lp->io) != CGLOO_OK)
            fd = -1; /* no room in the poller: the deadline fails the peer */
    }
    lp->reg_fd = fd;
    lp->reg_events = ev;
}

/* lazy_unregister takes peer r's handshake descriptor out of the poller before a step that
 * may hand it to the pair, which registers it on its own. */
static void lazy_unregister(handshake *m, int r)
{
    lazy_peer *lp = &m->lazy->peers[r];
    if (lp->reg_fd >= 0)
        cgloo__poller_del(&m->ctx->poller, lp->reg_fd);
    lp->reg_fd = -1;
}

/* lazy_close_dial drops peer r's dial in flight (its descriptor first out of the poller). */
static void lazy_close_dial(handshake *m, int r)
{
    peer_info *p = &m->peers[r];
    p->state = DIAL_IDLE;
    lazy_sync(m, r);
    conn_close(&p->fd, &p->tls);
}

/* lazy_fail fails peer r for good: its handshake's descriptors close, and the engine fails
 * what waits on it, with a detail naming its rank and address. */
static void lazy_fail(handshake *m, int r, int status, const char *fmt, ...) CGLOO_PRINTF(4, 5);
static void lazy_fail(handshake *m, int r, int status, const char *fmt, ...)
{
    peer_info *p = &m->peers[r];
    lazy_peer *lp = &m->lazy->peers[r];
    char buf[CGLOO_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    free(lp->why);
    lp->why = cgloo__strdup(buf);
    lazy_close_dial(m, r);
    p->state = DIAL_DONE;
    if (p->auth_fd >= 0) {
        lazy_sync(m, r);
        conn_close(&p->auth_fd, &p->auth_tls);
    }
    lazy_sync(m, r);
    lp->wanted = false;
    cgloo__p2p_peer_fail(&m->ctx->peers[r], status,
                         lp->why ? lp->why : "its lazy connection failed", 0);
}

/* lazy_settle looks at where peer r's handshake ended up after a step: connected, failed for
 * good, or still to be (re)tried; and registers what it waits on. */
static void lazy_settle(handshake *m, int r)
{
    cgloo_context *ctx = m->ctx;
    peer_info *p = &m->peers[r];
    lazy_peer *lp = &m->lazy->peers[r];
    if (cgloo__tcp_pair_connected(&ctx->peers[r]) || ctx->peers[r].status != CGLOO_OK) {
        if (lazy_dialling(p))
            lazy_close_dial(m, r); /* a failed peer's dial */
        if (p->auth_fd >= 0) {     /* a failed peer's accepted connection */
            lazy_unregister(m, r);
            conn_close(&p->auth_fd, &p->auth_tls);
        }
        p->state = DIAL_DONE;
        lp->wanted = false;
    } else if (p->auth_failed) {
        lazy_fail(m, r, CGLOO_EPROTO,
                  "the job secret is not shared between rank %d and rank %d (" SECRET_HINT ")",
                  ctx->rank, r);
    } else if (p->state == DIAL_IDLE && p->last_err == ECONNREFUSED && lp->wanted) {
        lazy_fail(m, r, CGLOO_EPEER,
                  "refused the connection to %s: nothing listens there any more (the process "
                  "of rank %d is gone)",
                  p->addr_text, r);
    }
    lazy_sync(m, r);
}

static int lazy_give_up_ms(const cgloo_context *ctx)
{
    return CGLOO_MAX(ctx->timeout_ms / 2, 1);
}

/* lazy_dials_in_flight counts the dials in flight (at most DIAL_WINDOW, as the full mesh). */
static int lazy_dials_in_flight(const handshake *m)
{
    int n = 0;
    for (int r = 0; r < m->ctx->size; r++)
        n += lazy_dialling(&m->peers[r]);
    return n;
}

/* lazy_dial starts a dial to wanted peer r, when the window has room and nothing is under way
 * with it; a dial refused at once fails the peer (lazy_settle). */
static void lazy_dial(handshake *m, int r)
{
    peer_info *p = &m->peers[r];
    if (lazy_dialling(p) || p->auth_fd >= 0 || lazy_dials_in_flight(m) >= DIAL_WINDOW)
        return;
    dial_start(p);
    lazy_settle(m, r);
}

/* lazy_schedule arms the timer for the next retry or deadline of any peer. */
static void lazy_schedule(handshake *m)
{
    int64_t next = INT64_MAX;
    for (int r = 0; r < m->ctx->size; r++) {
        peer_info *p = &m->peers[r];
        lazy_peer *lp = &m->lazy->peers[r];
        if (lp->wanted && p->auth_fd < 0 && p->state == DIAL_IDLE)
            next = CGLOO_MIN(next, CGLOO_MIN(p->retry_at_ms, lp->give_up_at));
        else if (lp->wanted && p->auth_fd < 0 && p->state == DIAL_CONNECTING)
            next = CGLOO_MIN(next, lp->give_up_at);
        if (p->auth_fd >= 0)
            next = CGLOO_MIN(next, lp->proof_by);
    }
    struct itimerspec its = {0};
    if (next != INT64_MAX) {
        int64_t ms = CGLOO_MAX(next - cgloo__now_ms(), 0);
        its.it_value.tv_sec = ms / 1000;
        its.it_value.tv_nsec = (ms % 1000) * 1000000 + 1; /* zero would disarm it */
    }
    timerfd_settime(m->lazy->timer_fd, 0, &its, NULL);
}

/* lazy_proof reads an accepted connection's proof of the secret (a TLS session may hold it
 * already, where no poll sees it). */
static void lazy_proof(handshake *m, int r)
{
    peer_info *p = &m->peers[r];
    for (int i = 0; i < 4 && p->auth_fd >= 0; i++) {
        cgloo__tls *tls = p->auth_tls;
        lazy_unregister(m, r);
        accept_on_proof(m, r);
        lazy_sync(m, r);
        if (!tls || p->auth_fd < 0 || !cgloo__tls_pending(tls))
            break;
    }
    lazy_settle(m, r);
}

/* lazy_on_peer: peer r's dial or accepted connection has something. */
static void lazy_on_peer(cgloo__pollable *io, unsigned events)
{
    (void)events;
    lazy_peer *lp = CGLOO_CONTAINER_OF(io, lazy_peer, io);
    handshake *m = lp->m;
    int r = lp->rank;
    peer_info *p = &m->peers[r];
    m->deadline = cgloo__now_ms() + m->ctx->timeout_ms; /* bounds the handshake's writes */
    if (m->ctx->peers[r].status != CGLOO_OK) {
        lazy_settle(m, r);
    } else if (lazy_dialling(p)) {
        lazy_unregister(m, r);
        int rc = p->state == DIAL_CONNECTING ? dial_on_writable(m, r)
                 : p->state == DIAL_TLS      ? dial_tls_step(m, r)
                                             : dial_on_readable(m, r);
        char detail[CGLOO_ERROR_MAX];
        if (rc != CGLOO_OK) {
            cgloo_context_last_error(m->ctx, detail, sizeof detail);
            lazy_fail(m, r, rc, "%s", detail);
        }
        lazy_settle(m, r);
    } else if (p->auth_fd >= 0) {
        lazy_proof(m, r);
    }
    lazy_schedule(m);
}

/* lazy_accept takes a hello from rank src, resolving crossed dials (the top of this section). */
static void lazy_accept(handshake *m, device_inbound *in)
{
    cgloo_context *ctx = m->ctx;
    int src = (int)in->decoded.src_rank;
    peer_info *p = &m->peers[src];
    const char *why = ctx->peers[src].status != CGLOO_OK ? "the peer has failed"
                      : lazy_dialling(p) && src < ctx->rank
                          ? "crossed dials: this rank's own dial (the higher rank's) wins"
                          : NULL;
    if (why) {
        CGLOO_LOG(CGLOO_LOG_DEBUG, ctx->rank, ctx->size, "turned a hello from rank %d away: %s",
                  src, why);
        conn_close(&in->fd, &in->tls);
        free(in);
        return;
    }
    if (lazy_dialling(p)) /* crossed, and the higher rank (src) wins */
        lazy_close_dial(m, src);
    accept_one(m, in);
    lazy_sync(m, src);
    if (p->auth_fd >= 0) {
        m->lazy->peers[src].proof_by = cgloo__now_ms() + lazy_give_up_ms(ctx);
        lazy_proof(m, src);
    }
    lazy_settle(m, src);
    /* A peer this rank wants that the accept left unconnected is dialled by the timer. */
}

/* lazy_take takes the hellos the device filed for this context. */
static void lazy_take(handshake *m)
{
    if (m->ctx->aborted)
        return;
    m->deadline = cgloo__now_ms() + m->ctx->timeout_ms;
    device_inbound *in = cgloo__tcp_device_take(m->dev, &m->reg);
    while (in) {
        device_inbound *next = in->next;
        lazy_accept(m, in);
        in = next;
    }
    lazy_schedule(m);
}

/* lazy_on_device: the listener or an unfinished hello has something: serve the device (it
 * files hellos for any context registered with it, waking theirs), then take ours. */
static void lazy_on_device(cgloo__pollable *io, unsigned events)
{
    (void)events;
    tcp_lazy *lz = CGLOO_CONTAINER_OF(io, tcp_lazy, dev_io);
    handshake *m = lz->peers[0].m;
    struct pollfd none;
    cgloo__tcp_device_poll(m->dev, &none, 0, 0);
    lazy_take(m);
}

static void lazy_on_notify(cgloo__pollable *io, unsigned events)
{
    (void)events;
    tcp_lazy *lz = CGLOO_CONTAINER_OF(io, tcp_lazy, notify_io);
    handshake *m = lz->peers[0].m;
    eventfd_t v;
    (void)eventfd_read(m->reg.notify_fd, &v);
    lazy_take(m);
}

/* lazy_on_timer: retries fall due, dials and proofs run out of time, queued dials start. */
static void lazy_on_timer(cgloo__pollable *io, unsigned events)
{
    (void)events;
    tcp_lazy *lz = CGLOO_CONTAINER_OF(io, tcp_lazy, timer_io);
    handshake *m = lz->peers[0].m;
    uint64_t v;
    ssize_t got = read(lz->timer_fd, &v, sizeof v);
    (void)got;
    int64_t now = cgloo__now_ms();
    m->deadline = now + m->ctx->timeout_ms;
    char detail[CGLOO_ERROR_MAX];
    for (int r = 0; r < m->ctx->size && !m->ctx->aborted; r++) {
        peer_info *p = &m->peers[r];
        lazy_peer *lp = &lz->peers[r];
        if (p->auth_fd >= 0 && now >= lp->proof_by) {
            lazy_sync(m, r);
            conn_close(&p->auth_fd, &p->auth_tls);
            lazy_sync(m, r);
            accept_turned_away(m, r, "connected, no proof of the job secret in time");
        }
        if (!lp->wanted || cgloo__tcp_pair_connected(&m->ctx->peers[r]))
            continue;
        /* Only a dial the peer's kernel has not answered gives up: once connected, the peer
         * is alive and acknowledges when one of its threads next drives progress; the calls
         * waiting on it have their own timeouts meanwhile. */
        bool unanswered = p->state == DIAL_IDLE || p->state == DIAL_CONNECTING;
        if (now >= lp->give_up_at && p->auth_fd < 0 && unanswered) {
            (void)dial_timeout_detail(m, r, detail, sizeof detail);
            lazy_fail(m, r, CGLOO_EPEER, "no connection within %d ms (lazy): %s",
                      lazy_give_up_ms(m->ctx), detail);
        } else if (p->state == DIAL_IDLE && now >= p->retry_at_ms) {
            lazy_dial(m, r);
        }
    }
    lazy_schedule(m);
}

void cgloo__tcp_peer_want(cgloo_peer *cp)
{
    handshake *m = cp->ctx->lazy_conn;
    int r = cp->rank;
    if (!m || cp->status != CGLOO_OK || cgloo__tcp_pair_connected(cp) || m->lazy->peers[r].wanted)
        return;
    lazy_peer *lp = &m->lazy->peers[r];
    lp->wanted = true;
    lp->give_up_at = cgloo__now_ms() + lazy_give_up_ms(cp->ctx);
    m->peers[r].retry_at_ms = 0;
    m->peers[r].backoff_ms = BACKOFF_MIN_MS;
    lazy_dial(m, r);
    lazy_schedule(m);
}

static void lazy_free(handshake *m)
{
    tcp_lazy *lz = m->lazy;
    if (!lz)
        return;
    cgloo__poller *pl = &m->ctx->poller;
    for (int r = 0; lz->peers && r < m->ctx->size; r++) {
        if (lz->peers[r].reg_fd >= 0)
            cgloo__poller_del(pl, lz->peers[r].reg_fd);
        free(lz->peers[r].why);
    }
    cgloo__poller_del(pl, cgloo__tcp_device_events_fd(m->dev));
    cgloo__poller_del(pl, m->reg.notify_fd);
    if (lz->timer_fd >= 0) {
        cgloo__poller_del(pl, lz->timer_fd);
        close(lz->timer_fd);
    }
    free(lz->peers);
    free(lz);
    m->lazy = NULL;
}

/* lazy_register puts the connector's descriptors in the context's poller (lock held). */
static int lazy_register(handshake *m)
{
    tcp_lazy *lz = m->lazy;
    cgloo__poller *pl = &m->ctx->poller;
    lz->dev_io.on_event = lazy_on_device;
    lz->notify_io.on_event = lazy_on_notify;
    lz->timer_io.on_event = lazy_on_timer;
    int rc = cgloo__poller_add(pl, cgloo__tcp_device_events_fd(m->dev), CGLOO_POLL_IN, &lz->dev_io);
    if (rc == CGLOO_OK)
        rc = cgloo__poller_add(pl, m->reg.notify_fd, CGLOO_POLL_IN, &lz->notify_io);
    if (rc == CGLOO_OK)
        rc = cgloo__poller_add(pl, lz->timer_fd, CGLOO_POLL_IN, &lz->timer_io);
    return rc;
}

int cgloo__tcp_connect_lazy(cgloo__connector *m, const cgloo__peer_record *recs)
{
    cgloo_context *ctx = m->ctx;
    m->deadline = cgloo__now_ms() + ctx->timeout_ms;
    int rc = hs_load_peers(m, recs);
    if (rc != CGLOO_OK)
        return rc;
    tcp_lazy *lz = calloc(1, sizeof *lz);
    lazy_peer *lps = calloc((size_t)ctx->size, sizeof *lps);
    if (!lz || !lps) {
        free(lz);
        free(lps);
        return cgloo__ctx_error(ctx, CGLOO_ENOMEM, "rank %d: out of memory", ctx->rank);
    }
    lz->peers = lps;
    lz->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    for (int r = 0; r < ctx->size; r++)
        lps[r] = (lazy_peer){.io.on_event = lazy_on_peer, .m = m, .rank = r, .reg_fd = -1};
    pthread_mutex_lock(&ctx->lock);
    m->lazy = lz;
    rc = lz->timer_fd < 0 ? cgloo__status_from_errno(errno) : lazy_register(m);
    for (int r = 0; r < ctx->size; r++) /* errors name the address before a connection is made */
        if (m->peers[r].used)
            snprintf(ctx->peers[r].addr, sizeof ctx->peers[r].addr, "%s", m->peers[r].addr_text);
    if (rc == CGLOO_OK)
        lazy_take(m); /* hellos that came before the records were read */
    else
        lazy_free(m);
    pthread_mutex_unlock(&ctx->lock);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: setting up lazy connections failed: %s",
                                ctx->rank, cgloo_strerror(rc));
    return CGLOO_OK;
}
