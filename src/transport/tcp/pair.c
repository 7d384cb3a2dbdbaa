/*
 * One TCP connection to one peer: writing queued messages, parsing what arrives, and failing
 * cleanly. Everything here runs with the context lock held, from the thread that drives
 * progress or from the thread that posts an operation.
 *
 * Receiving goes through a staging buffer so that one recv() usually brings a header and a
 * small payload together; a large payload is read straight into the receive buffer.
 *
 * Turns: a flush of the send queue writes at most IO_TURN_BYTES of payload (headers ride
 * along, so a 512 KiB segment and its header go in one sendmsg) and a read event reads at most
 * IO_TURN_BYTES; the rest waits for the next event. Without turns a rank copying a 32 MiB
 * payload out of the socket in one call sends nothing meanwhile, so the peer's receive side
 * runs dry; taking turns keeps both directions (and every peer) moving. The measurements that
 * chose 512 KiB, and why a flush is one turn wherever it starts, are in docs/ARCHITECTURE.md
 * ("Turns").
 *
 * With TLS the same code runs with a session on the socket: pair_send and pair_recv pass the
 * bytes through it instead of sendmsg and recv. Two things differ. A read returns at most one
 * record, so a short read does not mean the socket is drained, and bytes the session has
 * decrypted are not signalled by the socket: a TLS read turn goes on until the session holds
 * nothing (the poller would never report those bytes). And either direction may need the
 * other's readiness, so a TLS pair tries both on every event.
 */
#include "transport/tcp/tcp.h"

#include <stdio.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

/* The staging buffer starts at one page and grows to RBUF_MAX the first time a read fills it:
 * most pairs of a large job carry only headers and small messages, and a 64 KiB buffer for each
 * of 1023 peers was 64 MiB of heap per rank, whose first touches took 10% of the CPU of a
 * 1024-rank set-up (docs/BENCHMARKS.md, "Full-mesh set-up"). A pair that streams grows at once. */
#define RBUF_START 4096
#define RBUF_MAX (64 * 1024)
#define SEND_IOV_MAX 64
#define IO_TURN_BYTES (512 * 1024)
/* Records kept for reuse per pair: enough for the sends a collective step has in flight. */
#define SPARE_OPS 16
/* Bounds on how long a silent peer's connection lives (pair_detect_ms). */
#define DETECT_MIN_MS 5000
#define DETECT_MAX_MS 60000

static void pair_on_event(cgloo__pollable *io, unsigned events);
static void pair_decide_queued(tcp_pair *t);

void cgloo__tcp_peer_init(cgloo_peer *p)
{
    tcp_pair *t = tcp_pair_of(p);
    t->peer = p;
    t->io.on_event = pair_on_event;
    t->fd = -1;
    cgloo__list_init(&t->sendq);
    cgloo__list_init(&t->awaiting);
    cgloo__list_init(&t->large_recvs);
    cgloo__list_init(&t->spare);
    t->next_send_id = 1;
    t->next_recv_id = 1; /* 0 stays free: a READY with recv id 0 means "discard" */
}

/* pair_detect_ms is how long a silent peer may go before its connection is given up: half
 * the context's timeout, so that a host cut off is found, and named, within the timeout of
 * the collective that waits on it; at least DETECT_MIN_MS, so that a busy but live network
 * never trips it; at most DETECT_MAX_MS. */
static int pair_detect_ms(int timeout_ms)
{
    return CGLOO_MIN(CGLOO_MAX(timeout_ms / 2, DETECT_MIN_MS), DETECT_MAX_MS);
}

int cgloo__tcp_pair_attach(cgloo_peer *p, int fd, cgloo__tls *tls, const wire_hello *peer_hello,
                           const char *addr)
{
    tcp_pair *t = tcp_pair_of(p);
    t->rbuf = malloc(RBUF_START);
    if (!t->rbuf)
        return CGLOO_ENOMEM;
    t->rcap = RBUF_START;
    /* Records that came with the handshake's last one wait in the session, where no poll
     * sees them: asking for POLL_OUT, which fires at once, brings the pair to read them. A
     * send posted before that event must not take the request back (tls_unread, pair_flush).
     * Sends queued while a lazy connection was being made go out on the same event. */
    bool unread = tls && cgloo__tls_pending(tls);
    bool kick = unread || !cgloo__list_empty(&t->sendq);
    int rc =
        cgloo__poller_add(&p->ctx->poller, fd, CGLOO_POLL_IN | (kick ? CGLOO_POLL_OUT : 0), &t->io);
    if (rc != CGLOO_OK) {
        free(t->rbuf);
        t->rbuf = NULL;
        return rc;
    }
    cgloo__sock_tune(fd);
    cgloo__sock_keepalive(fd, pair_detect_ms(p->ctx->timeout_ms));
    t->fd = fd;
    t->tls = tls;
    t->want_out = kick;
    t->tls_unread = unread;
    t->peer_eager_max = peer_hello->eager_max;
    t->credits = peer_hello->eager_budget;
    snprintf(p->addr, sizeof p->addr, "%s", addr);
    pair_decide_queued(t); /* a lazy pair's sends posted before it connected; POLL_OUT sends */
    return CGLOO_OK;
}

bool cgloo__tcp_pair_connected(cgloo_peer *p)
{
    return tcp_pair_of(p)->fd >= 0;
}

static void pair_want_out(tcp_pair *t, bool on)
{
    if (t->want_out == on || t->fd < 0)
        return;
    unsigned events = CGLOO_POLL_IN | (on ? CGLOO_POLL_OUT : 0);
    if (cgloo__poller_mod(&t->peer->ctx->poller, t->fd, events, &t->io) == CGLOO_OK)
        t->want_out = on;
}

static void pair_close_fd(tcp_pair *t)
{
    if (t->fd < 0)
        return;
    cgloo__poller_del(&t->peer->ctx->poller, t->fd);
    cgloo__tls_free(t->tls);
    t->tls = NULL;
    close(t->fd);
    t->fd = -1;
}

/* pair_send and pair_recv are sendmsg and recv, through the TLS session when there is one. */
static ssize_t pair_send(tcp_pair *t, struct msghdr *mh)
{
    if (!t->tls)
        return sendmsg(t->fd, mh, MSG_NOSIGNAL);
    return cgloo__tls_writev(t->tls, mh->msg_iov, (int)mh->msg_iovlen);
}

static ssize_t pair_recv(tcp_pair *t, void *buf, size_t len)
{
    if (!t->tls)
        return recv(t->fd, buf, len, 0);
    return cgloo__tls_read(t->tls, buf, len);
}

/* ---- records ------------------------------------------------------------------------------ */

/* op_free releases an op, keeping up to SPARE_OPS of them on the pair for the next messages:
 * a small message then costs no allocation. */
static void op_free(tcp_pair *t, tcp_op *op)
{
    cgloo__list_remove(&op->link);
    free(op->owned);
    op->owned = NULL;
    if (t->n_spare < SPARE_OPS) {
        cgloo__list_push_back(&t->spare, &op->link);
        t->n_spare++;
    } else {
        free(op);
    }
}

/* op_finish completes the request an op carries (if any) and frees the op. */
static void op_finish(tcp_pair *t, tcp_op *op, int status, size_t bytes, int source)
{
    if (op->req)
        cgloo__p2p_complete(op->req, status, bytes, source);
    op_free(t, op);
}

/* ops_fail completes every request in a list of ops with status; forget only frees the ops. */
static void ops_fail(tcp_pair *t, cgloo__list *list, int status, bool forget)
{
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, list)
    {
        tcp_op *op = CGLOO_CONTAINER_OF(it, tcp_op, link);
        if (forget && op->req)
            op->req->tp = NULL;
        if (forget)
            op_free(t, op);
        else
            op_finish(t, op, status, 0, t->peer->rank);
    }
}

/* ---- failure ------------------------------------------------------------------------------ */

void cgloo__tcp_fail(cgloo_peer *p, int status)
{
    tcp_pair *t = tcp_pair_of(p);
    pair_close_fd(t);
    ops_fail(t, &t->sendq, status, false);
    ops_fail(t, &t->awaiting, status, false);
    ops_fail(t, &t->large_recvs, status, false);
    if (t->rx_req) {
        cgloo_request *r = t->rx_req;
        t->rx_req = NULL;
        cgloo__p2p_complete(r, status, 0, p->rank);
    }
    cgloo__p2p_msg_free(t->rx_msg);
    t->rx_msg = NULL;
}

/* pair_io_status turns a socket error into the connection's sticky status. A connection the
 * kernel timed out means the peer is gone: EPEER, never ETIMEDOUT, which a wait reserves for
 * "still pending, you may wait again". */
static int pair_io_status(int err)
{
    int status = cgloo__status_from_errno(err);
    return status == CGLOO_ETIMEDOUT ? CGLOO_EPEER : status;
}

/* pair_why is what to say of an I/O failure: the TLS session's reason when it has one. */
static const char *pair_why(const tcp_pair *t, const char *what)
{
    if (t->tls && errno == EPROTO && *cgloo__tls_why(t->tls))
        return cgloo__tls_why(t->tls);
    return what;
}

static void pair_protocol_error(tcp_pair *t, const char *why)
{
    cgloo_peer *p = t->peer;
    CGLOO_LOG(CGLOO_LOG_ERROR, p->ctx->rank, p->ctx->size, "peer %d (%s): protocol error: %s",
              p->rank, p->addr, why);
    cgloo__p2p_peer_fail(p, CGLOO_EPROTO, why, 0);
}

/* ---- sending ------------------------------------------------------------------------------ */

/* pair_sent moves an op on once all its bytes of the current phase are written. */
static void pair_sent(tcp_pair *t, tcp_op *op)
{
    if (op->phase == SEND_RTS) {
        cgloo__list_remove(&op->link);
        op->phase = SEND_AWAIT_READY;
        cgloo__list_push_back(&t->awaiting, &op->link);
        return;
    }
    op_finish(t, op, CGLOO_OK, op->len, t->peer->ctx->rank);
}

static void pair_advance(tcp_pair *t, size_t written)
{
    while (!cgloo__list_empty(&t->sendq)) {
        tcp_op *op = CGLOO_CONTAINER_OF(t->sendq.next, tcp_op, link);
        size_t h = CGLOO_MIN(written, MSG_HDR_LEN - op->hdr_off);
        op->hdr_off += h;
        written -= h;
        size_t d = CGLOO_MIN(written, op->data_len - op->data_off);
        op->data_off += d;
        written -= d;
        if (op->hdr_off < MSG_HDR_LEN || op->data_off < op->data_len)
            break;
        pair_sent(t, op);
    }
}

/* pair_fill_iov gathers the head of the send queue, at most `budget` bytes of it. */
static int pair_fill_iov(tcp_pair *t, struct iovec *iov, size_t budget)
{
    int n = 0;
    cgloo__list *it;
    for (it = t->sendq.next; it != &t->sendq && n < SEND_IOV_MAX - 1 && budget > 0; it = it->next) {
        tcp_op *op = CGLOO_CONTAINER_OF(it, tcp_op, link);
        if (op->hdr_off < MSG_HDR_LEN) {
            iov[n++] = (struct iovec){op->hdr + op->hdr_off, MSG_HDR_LEN - op->hdr_off};
            budget -= CGLOO_MIN(budget, MSG_HDR_LEN - op->hdr_off);
        }
        size_t len = CGLOO_MIN(op->data_len - op->data_off, budget);
        if (len > 0) {
            iov[n++] = (struct iovec){(void *)(op->data + op->data_off), len};
            budget -= len;
        }
    }
    return n;
}

/* pair_flush writes the send queue, one sendmsg per batch, until the socket is full or one
 * turn of payload is written; what is left waits for the next POLL_OUT. */
static void pair_flush(tcp_pair *t)
{
    for (size_t turn = 0; t->fd >= 0 && !cgloo__list_empty(&t->sendq);) {
        if (turn >= IO_TURN_BYTES) {
            pair_want_out(t, true);
            return;
        }
        struct iovec iov[SEND_IOV_MAX];
        struct msghdr mh = {.msg_iov = iov,
                            .msg_iovlen = (size_t)pair_fill_iov(t, iov, IO_TURN_BYTES)};
        ssize_t n = pair_send(t, &mh);
        if (n >= 0) {
            pair_advance(t, (size_t)n);
            turn += (size_t)n;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            pair_want_out(t, true);
            return;
        } else if (errno != EINTR) {
            cgloo__p2p_peer_fail(t->peer, pair_io_status(errno), pair_why(t, "send failed"), errno);
            return;
        }
    }
    if (t->tls && t->fd >= 0 && cgloo__tls_flush(t->tls) != 0) {
        if (errno == EAGAIN)
            return pair_want_out(t, true);
        return cgloo__p2p_peer_fail(t->peer, pair_io_status(errno), pair_why(t, "send failed"),
                                    errno);
    }
    /* Nothing left to write; but POLL_OUT may also be the attach's request to read records
     * the session holds, which no POLLIN will ever report. Dropping it here (a send posted
     * right after connecting, before any poll) stranded the peer's first message. */
    pair_want_out(t, t->tls_unread);
}

static void op_set_header(tcp_op *op, const wire_msg *m, size_t data_len)
{
    wire_msg_encode(m, op->hdr);
    op->hdr_off = 0;
    op->data_len = data_len;
    op->data_off = 0;
}

static tcp_op *op_new(tcp_pair *t, cgloo_request *req, uint8_t phase)
{
    tcp_op *op;
    if (t->n_spare > 0) {
        op = CGLOO_CONTAINER_OF(t->spare.next, tcp_op, link);
        cgloo__list_remove(&op->link);
        t->n_spare--;
        memset(op, 0, sizeof *op);
    } else if (!(op = calloc(1, sizeof *op))) {
        return NULL;
    }
    cgloo__list_init(&op->link);
    op->req = req;
    op->phase = phase;
    if (req) {
        op->data = req->buf;
        op->len = req->len;
        req->tp = op;
    }
    return op;
}

/* pair_decide_queued: sends posted to a lazy pair before it connected were queued as
 * announcements, since no eager limit or credit was known yet; the small ones go eagerly now
 * that the peer's hello told them. The queue's order stays. */
static void pair_decide_queued(tcp_pair *t)
{
    cgloo__list *it;
    for (it = t->sendq.next; it != &t->sendq; it = it->next) {
        tcp_op *op = CGLOO_CONTAINER_OF(it, tcp_op, link);
        if (op->phase != SEND_RTS || !op->req || op->len > t->peer_eager_max ||
            (int64_t)op->len > t->credits)
            continue;
        t->credits -= (int64_t)op->len;
        op->phase = SEND_EAGER;
        op_set_header(op, &(wire_msg){.type = MSG_EAGER, .tag = op->req->tag, .len = op->len},
                      op->len);
    }
}

void cgloo__tcp_post_send(cgloo_peer *p, cgloo_request *r)
{
    tcp_pair *t = tcp_pair_of(p);
    bool eager = r->len <= t->peer_eager_max && (int64_t)r->len <= t->credits;
    tcp_op *op = op_new(t, r, eager ? SEND_EAGER : SEND_RTS);
    if (!op) {
        cgloo__p2p_complete(r, CGLOO_ENOMEM, 0, p->ctx->rank);
        return;
    }
    if (eager) {
        t->credits -= (int64_t)r->len;
        op_set_header(op, &(wire_msg){.type = MSG_EAGER, .tag = r->tag, .len = r->len}, r->len);
    } else {
        op->id = t->next_send_id++;
        op_set_header(
            op, &(wire_msg){.type = MSG_RTS, .send_id = op->id, .tag = r->tag, .len = r->len}, 0);
    }
    cgloo__list_push_back(&t->sendq, &op->link);
    pair_flush(t);
}

/* pair_queue_control queues a header-only message of the transport's own (READY, CREDIT, BYE). */
static void pair_queue_control(tcp_pair *t, const wire_msg *m)
{
    tcp_op *op = op_new(t, NULL, SEND_CONTROL);
    if (!op) {
        /* Dropping a control message would stall the peer forever; closing is honest. */
        cgloo__p2p_peer_fail(t->peer, CGLOO_ENOMEM, "out of memory for a control message", 0);
        return;
    }
    op_set_header(op, m, 0);
    cgloo__list_push_back(&t->sendq, &op->link);
    pair_flush(t);
}

/* pair_expect_data files a matched receive under a fresh receive id until its DATA arrives;
 * returns the id, or 0 (discard) when out of memory, with the receive completed. */
static uint32_t pair_expect_data(tcp_pair *t, cgloo_request *r, size_t len)
{
    tcp_op *op = op_new(t, r, RECV_AWAIT_DATA);
    if (!op) {
        cgloo__p2p_complete(r, CGLOO_ENOMEM, 0, t->peer->rank);
        return 0;
    }
    op->id = t->next_recv_id++;
    if (t->next_recv_id == 0)
        t->next_recv_id = 1;
    op->len = len; /* expected, checked against the DATA header */
    r->source = t->peer->rank;
    cgloo__list_push_back(&t->large_recvs, &op->link);
    return op->id;
}

void cgloo__tcp_start_large_recv(cgloo_peer *p, cgloo_request *r, uint64_t cookie, size_t len)
{
    tcp_pair *t = tcp_pair_of(p);
    if (p->status != CGLOO_OK) {
        cgloo__p2p_complete(r, p->status, 0, p->rank);
        return;
    }
    uint32_t recv_id = 0; /* 0: the DATA that follows is discarded */
    if (len > r->len)
        cgloo__p2p_complete(r, CGLOO_ETRUNC, 0, p->rank);
    else
        recv_id = pair_expect_data(t, r, len);
    pair_queue_control(
        t, &(wire_msg){.type = MSG_READY, .send_id = (uint32_t)cookie, .recv_id = recv_id});
}

void cgloo__tcp_eager_released(cgloo_peer *p, size_t n)
{
    tcp_pair *t = tcp_pair_of(p);
    if (t->fd < 0)
        return;
    t->credit_owed += n;
    /* Return credit in batches: one CREDIT message per quarter of the budget. */
    if (t->credit_owed < p->ctx->eager_budget / 4 + 1)
        return;
    uint64_t give = t->credit_owed;
    t->credit_owed = 0;
    t->eager_held -= give;
    pair_queue_control(t, &(wire_msg){.type = MSG_CREDIT, .len = give});
}

/* ---- receiving ---------------------------------------------------------------------------- */

static void pair_payload_done(tcp_pair *t)
{
    cgloo_peer *p = t->peer;
    t->rx_state = RX_HEADER;
    cgloo_request *r = t->rx_req;
    unexpected_msg *msg = t->rx_msg;
    size_t len = (size_t)t->rx.len;
    t->rx_req = NULL;
    t->rx_msg = NULL;
    if (t->rx.type == MSG_DATA) {
        if (r)
            cgloo__p2p_complete(r, CGLOO_OK, len, p->rank);
        return;
    }
    if (msg) {
        cgloo__p2p_deliver_eager(p, msg); /* returns the credit when the application takes it */
        return;
    }
    cgloo__tcp_eager_released(p, len);
    if (r)
        cgloo__p2p_complete(r, t->rx_trunc ? CGLOO_ETRUNC : CGLOO_OK, t->rx_trunc ? 0 : len,
                            p->rank);
}

static void pair_begin_payload(tcp_pair *t, uint8_t *dst)
{
    t->rx_dst = dst;
    t->rx_left = (size_t)t->rx.len;
    t->rx_state = RX_PAYLOAD;
    if (t->rx_left == 0)
        pair_payload_done(t);
}

/* pair_fill_request makes r the receive the payload now arriving completes. While it fills,
 * r->tp points at the pair itself rather than at a tcp_op (cancel tells the two apart). */
static void pair_fill_request(tcp_pair *t, cgloo_request *r, bool trunc)
{
    t->rx_req = r;
    t->rx_trunc = trunc;
    r->tp = t;
    pair_begin_payload(t, trunc ? NULL : r->buf);
}

static void pair_on_eager(tcp_pair *t)
{
    cgloo_peer *p = t->peer;
    uint64_t len = t->rx.len;
    if (len > p->ctx->eager_max)
        return pair_protocol_error(t, "eager message longer than the agreed limit");
    if (t->eager_held + len > p->ctx->eager_budget)
        return pair_protocol_error(t, "eager messages beyond the granted credit");
    t->eager_held += len;
    cgloo_request *r = cgloo__p2p_match(p, t->rx.tag);
    if (r)
        return pair_fill_request(t, r, len > r->len);
    int rc = cgloo__p2p_hold_eager(p, t->rx.tag, (size_t)len, &t->rx_msg);
    if (rc == CGLOO_EPROTO)
        return pair_protocol_error(t, "too many unexpected messages");
    if (rc != CGLOO_OK)
        return cgloo__p2p_peer_fail(p, rc, "out of memory for an unexpected message", 0);
    pair_begin_payload(t, t->rx_msg->data);
}

static void pair_on_rts(tcp_pair *t)
{
    if (t->rx.len > SIZE_MAX)
        return pair_protocol_error(t, "message length does not fit in memory");
    int rc = cgloo__p2p_announce_large(t->peer, t->rx.tag, (size_t)t->rx.len, t->rx.send_id);
    if (rc == CGLOO_EPROTO)
        return pair_protocol_error(t, "too many unexpected messages");
    if (rc != CGLOO_OK)
        cgloo__p2p_peer_fail(t->peer, rc, "out of memory for an unexpected message", 0);
}

static void pair_on_ready(tcp_pair *t)
{
    cgloo__list *it;
    for (it = t->awaiting.next; it != &t->awaiting; it = it->next) {
        tcp_op *op = CGLOO_CONTAINER_OF(it, tcp_op, link);
        if (op->id != t->rx.send_id)
            continue;
        cgloo__list_remove(&op->link);
        op->phase = SEND_DATA;
        op_set_header(op, &(wire_msg){.type = MSG_DATA, .recv_id = t->rx.recv_id, .len = op->len},
                      op->len);
        cgloo__list_push_back(&t->sendq, &op->link);
        pair_flush(t);
        return;
    }
    pair_protocol_error(t, "READY for a message that was never announced");
}

static void pair_on_data(tcp_pair *t)
{
    cgloo__list *it;
    for (it = t->large_recvs.next; it != &t->large_recvs; it = it->next) {
        tcp_op *op = CGLOO_CONTAINER_OF(it, tcp_op, link);
        if (op->id != t->rx.recv_id || t->rx.recv_id == 0)
            continue;
        if (t->rx.len != op->len)
            return pair_protocol_error(t, "DATA length differs from the announced length");
        cgloo_request *r = op->req;
        op_free(t, op);
        return pair_fill_request(t, r, false);
    }
    /* A receive that was cancelled or truncated: the bytes still arrive and are dropped. */
    pair_begin_payload(t, NULL);
}

static void pair_on_credit(tcp_pair *t)
{
    if (t->rx.len > (uint64_t)INT64_MAX - (uint64_t)t->credits)
        return pair_protocol_error(t, "credit overflow");
    t->credits += (int64_t)t->rx.len;
}

static void pair_on_header(tcp_pair *t, const uint8_t *bytes)
{
    const char *why = wire_msg_decode(bytes, &t->rx);
    if (why)
        return pair_protocol_error(t, why);
    switch (t->rx.type) {
    case MSG_EAGER:
        return pair_on_eager(t);
    case MSG_RTS:
        return pair_on_rts(t);
    case MSG_READY:
        return pair_on_ready(t);
    case MSG_DATA:
        return pair_on_data(t);
    case MSG_CREDIT:
        return pair_on_credit(t);
    case MSG_BYE:
        return cgloo__p2p_peer_left(t->peer);
    }
}

/* pair_parse consumes the staging buffer: headers, and payload bytes that came with them. */
static void pair_parse(tcp_pair *t)
{
    while (t->fd >= 0 && t->rstart < t->rend) {
        size_t avail = t->rend - t->rstart;
        if (t->rx_state == RX_HEADER) {
            if (avail < MSG_HDR_LEN)
                break;
            t->rstart += MSG_HDR_LEN;
            pair_on_header(t, t->rbuf + t->rstart - MSG_HDR_LEN);
            continue;
        }
        size_t n = CGLOO_MIN(avail, t->rx_left);
        if (t->rx_dst) {
            memcpy(t->rx_dst, t->rbuf + t->rstart, n);
            t->rx_dst += n;
        }
        t->rstart += n;
        t->rx_left -= n;
        if (t->rx_left == 0)
            pair_payload_done(t);
    }
    if (t->rstart == t->rend) {
        t->rstart = t->rend = 0;
    } else if (t->rstart > 0 && t->rend == t->rcap) {
        memmove(t->rbuf, t->rbuf + t->rstart, t->rend - t->rstart);
        t->rend -= t->rstart;
        t->rstart = 0;
    }
}

static void pair_on_eof(tcp_pair *t)
{
    bool mid = t->rx_state == RX_PAYLOAD || t->rstart < t->rend;
    cgloo__p2p_peer_fail(t->peer, CGLOO_EPEER,
                         mid                  ? "connection closed in the middle of a message"
                         : t->peer->peer_left ? "the peer closed its context"
                                              : "connection closed by the peer",
                         0);
}

/* pair_read_direct reads `want` bytes at most of a large payload straight into its destination
 * (the staging buffer for bytes being dropped). Returns bytes read, 0 for EOF, -1 for errno. */
static ssize_t pair_read_direct(tcp_pair *t, size_t want)
{
    uint8_t *dst = t->rx_dst ? t->rx_dst : t->rbuf;
    ssize_t n = pair_recv(t, dst, want);
    if (n > 0) {
        if (t->rx_dst)
            t->rx_dst += n;
        t->rx_left -= (size_t)n;
        if (t->rx_left == 0)
            pair_payload_done(t);
    }
    return n;
}

/* pair_grow_rbuf gives a pair that filled its staging buffer the full size, keeping what it
 * holds; without memory it keeps the small one, which works, only with more reads. */
static void pair_grow_rbuf(tcp_pair *t)
{
    uint8_t *bigger = realloc(t->rbuf, RBUF_MAX);
    if (bigger) {
        t->rbuf = bigger;
        t->rcap = RBUF_MAX;
    }
}

/* pair_read_once makes one recv: straight into a large payload's destination when the staging
 * buffer is empty, else into the staging buffer, which is then parsed. */
static ssize_t pair_read_once(tcp_pair *t, size_t turn_left, size_t *want)
{
    if (t->rx_state == RX_PAYLOAD && t->rstart == t->rend && t->rx_left >= RBUF_MAX / 2) {
        *want = CGLOO_MIN(t->rx_left, turn_left);
        if (!t->rx_dst)
            *want = CGLOO_MIN(*want, t->rcap);
        return pair_read_direct(t, *want);
    }
    *want = t->rcap - t->rend;
    ssize_t n = pair_recv(t, t->rbuf + t->rend, *want);
    if (n > 0) {
        t->rend += (size_t)n;
        pair_parse(t);
    }
    if (n > 0 && (size_t)n == *want && t->rcap < RBUF_MAX && t->fd >= 0)
        pair_grow_rbuf(t);
    return n;
}

/* pair_turn_left is how much the read turn may still take; a TLS turn past its end goes on
 * while the session holds decrypted bytes (at most one record), which no poll would report. */
static bool pair_turn_left(const tcp_pair *t, size_t turn, size_t *left)
{
    if (t->fd < 0)
        return false;
    if (turn < IO_TURN_BYTES) {
        *left = IO_TURN_BYTES - turn;
        return true;
    }
    *left = RBUF_MAX;
    return t->tls && cgloo__tls_pending(t->tls);
}

/* pair_read reads until the socket is drained or the turn is used up. */
static void pair_read(tcp_pair *t)
{
    size_t left;
    for (size_t turn = 0; pair_turn_left(t, turn, &left);) {
        size_t want;
        ssize_t n = pair_read_once(t, left, &want);
        if (n == 0)
            return pair_on_eof(t);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (t->tls && cgloo__tls_wants(t->tls) == POLLOUT)
                    pair_want_out(t, true); /* the session must write before it reads */
                return;
            }
            cgloo__p2p_peer_fail(t->peer, pair_io_status(errno), pair_why(t, "receive failed"),
                                 errno);
            return;
        }
        /* A short read drained the socket (a TLS read, the session too: it returns one record
         * at a time); the poller reports the next arrival. */
        if ((size_t)n < want && (!t->tls || !cgloo__tls_pending(t->tls)))
            return;
        turn += (size_t)n;
    }
}

/* pair_drain reads and drops what arrives after this side half-closed, until the peer closes
 * too (or the connection breaks), then closes the socket. */
static void pair_drain(tcp_pair *t)
{
    char sink[4096];
    ssize_t r;
    /* Only the peer's close matters now, and the socket reports it: an attach's request to
     * read (tls_unread) that no event took yet would only make every poll return at once. */
    pair_want_out(t, false);
    do {
        r = pair_recv(t, sink, sizeof sink);
    } while (r > 0 && t->tls); /* a session may hold more than the socket signals */
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        pair_close_fd(t);
}

static void pair_on_event(cgloo__pollable *io, unsigned events)
{
    tcp_pair *t = CGLOO_CONTAINER_OF(io, tcp_pair, io);
    if (t->fd < 0)
        return;
    if (t->shut)
        return pair_drain(t);
    if (t->tls) {
        events |= CGLOO_POLL_OUT | CGLOO_POLL_IN; /* see the top of this file */
        t->tls_unread = false;                    /* pair_read below reads what it holds */
    }
    if (events & CGLOO_POLL_OUT)
        pair_flush(t);
    if (events & (CGLOO_POLL_IN | CGLOO_POLL_ERR))
        pair_read(t);
}

/* ---- normal close ------------------------------------------------------------------------- */

void cgloo__tcp_close_begin(cgloo_peer *p)
{
    tcp_pair *t = tcp_pair_of(p);
    if (t->fd < 0 || t->closing)
        return;
    t->closing = true;
    pair_queue_control(t, &(wire_msg){.type = MSG_BYE});
}

bool cgloo__tcp_close_step(cgloo_peer *p)
{
    tcp_pair *t = tcp_pair_of(p);
    if (t->fd < 0)
        return true;
    /* Half-close once nothing is left to write: queued bytes, and cancelled large sends the
     * peer already heard of (they wait for its READY). */
    if (!t->shut && cgloo__list_empty(&t->sendq) && cgloo__list_empty(&t->awaiting) &&
        !(t->tls && cgloo__tls_unflushed(t->tls))) {
        t->shut = true;
        if (t->tls)
            cgloo__tls_close_notify(t->tls);
        if (shutdown(t->fd, SHUT_WR) != 0)
            pair_close_fd(t);
    }
    return t->fd < 0;
}

/* ---- cancellation and teardown ------------------------------------------------------------ */

static void cancel_send(tcp_pair *t, tcp_op *op)
{
    bool untouched = op->hdr_off == 0 && (op->phase == SEND_EAGER || op->phase == SEND_RTS);
    op->req->tp = NULL;
    op->req = NULL;
    if (untouched) {
        if (op->phase == SEND_EAGER)
            t->credits += (int64_t)op->len;
        op_free(t, op);
        return;
    }
    /* The peer already knows of this message: finish it from a private copy. */
    op->owned = malloc(op->len ? op->len : 1);
    if (!op->owned) {
        op_free(t, op);
        cgloo__p2p_peer_fail(t->peer, CGLOO_ENOMEM, "out of memory cancelling a send", 0);
        return;
    }
    if (op->len)
        memcpy(op->owned, op->data, op->len);
    op->data = op->owned;
}

void cgloo__tcp_cancel(cgloo_peer *p, cgloo_request *r)
{
    tcp_pair *t = tcp_pair_of(p);
    if (r->tp == t) {
        CGLOO_ASSERT(t->rx_req == r);
        t->rx_req = NULL;
        t->rx_dst = NULL; /* the rest of its payload is read and dropped */
        r->tp = NULL;
        return;
    }
    tcp_op *op = r->tp;
    if (r->kind == REQ_SEND)
        return cancel_send(t, op);
    r->tp = NULL;
    op_free(t, op); /* a large receive waiting for DATA: the DATA will be dropped */
}

void cgloo__tcp_peer_fini(cgloo_peer *p)
{
    tcp_pair *t = tcp_pair_of(p);
    pair_close_fd(t);
    ops_fail(t, &t->sendq, 0, true);
    ops_fail(t, &t->awaiting, 0, true);
    ops_fail(t, &t->large_recvs, 0, true);
    if (t->rx_req)
        t->rx_req->tp = NULL;
    t->rx_req = NULL;
    cgloo__p2p_msg_free(t->rx_msg);
    t->rx_msg = NULL;
    free(t->rbuf);
    t->rbuf = NULL;
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, &t->spare)
    {
        free(CGLOO_CONTAINER_OF(it, tcp_op, link));
    }
    cgloo__list_init(&t->spare);
    t->n_spare = 0;
}
