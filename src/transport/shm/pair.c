/*
 * One pair of ranks on one host: messages through two single-producer single-consumer rings in
 * a shared segment, with the engine's semantics (transport/transport.h).
 *
 * Each direction is a byte ring of records (shm.h): a record never wraps (a WRAP marker skips
 * the end of the ring), the producer publishes its tail with a release store after writing, the
 * consumer its head after reading. Small messages go eagerly within the receiver's limit and
 * credit, as over TCP. A large message is announced (RTS) with its address in the sender; the
 * receiver, once the engine matched it, copies it with one process_vm_readv straight from the
 * sender's buffer and says DONE, or, where the kernel refuses (ptrace scope, another user,
 * containers) or CGLOO_SHM_LARGE=copy, asks for it through the ring (READY) and the sender
 * streams it in chunks (DATA).
 *
 * Nothing interrupts a process when a record arrives, so the context polls the pair on every
 * round of progress (cgloo__spinner). Before it sleeps it sets its asleep flags in the segment;
 * the peer, after writing a record (or freeing room), sees the flag, clears it and writes one
 * byte to the pair's socket, which is in the sleeper's poller beside its TCP sockets. The socket
 * also tells of the peer's death: the kernel closes it when the process ends, however it ends.
 *
 * The ring's contents come from another process of the same user: every record is checked
 * against the ring's bounds and the engine's limits before use, and a bad one fails the peer.
 */
#define _GNU_SOURCE
#include "transport/shm/shm.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#define REC_HDR sizeof(shm_rec)

static size_t rec_bytes(size_t payload)
{
    return REC_HDR + ((payload + 7) & ~(size_t)7);
}

/* ---- waking the peer ------------------------------------------------------------------------ */

static void pair_poke(shm_pair *s)
{
    if (s->fd >= 0) {
        ssize_t n = send(s->fd, "w", 1, MSG_DONTWAIT | MSG_NOSIGNAL);
        (void)n; /* EAGAIN: bytes are waiting already, which wake it as well */
    }
}

/* wake_if: the other side set *flag before sleeping; this side's write is visible before the
 * check (seq_cst fence against the sleeper's fence between its flag and its last look). */
static void wake_if(shm_pair *s, _Atomic uint32_t *flag)
{
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(flag, memory_order_relaxed) && atomic_exchange(flag, 0))
        pair_poke(s);
}

/* ---- the producer side ---------------------------------------------------------------------- */

/* ring_room: whether a record of `payload` bytes fits now, counting a WRAP when it would cross
 * the end. */
static bool ring_room(const shm_pair *s, size_t payload, size_t *skip)
{
    size_t need = rec_bytes(payload), off = s->tx_tail % SHM_RING_BYTES;
    uint64_t head = atomic_load_explicit(&s->tx->head, memory_order_acquire);
    *skip = need > SHM_RING_BYTES - off ? SHM_RING_BYTES - off : 0;
    return SHM_RING_BYTES - (s->tx_tail - head) >= need + *skip;
}

/* ring_put writes one record if it fits; false when the ring has no room for it. */
static bool ring_put(shm_pair *s, const shm_rec *h, const void *payload, size_t n)
{
    size_t skip;
    if (!ring_room(s, n, &skip))
        return false;
    if (skip) {
        uint32_t wrap = REC_WRAP;
        memcpy(s->txr + s->tx_tail % SHM_RING_BYTES, &wrap, sizeof wrap);
        s->tx_tail += skip;
    }
    uint8_t *at = s->txr + s->tx_tail % SHM_RING_BYTES;
    memcpy(at, h, REC_HDR);
    if (n)
        memcpy(at + REC_HDR, payload, n);
    s->tx_tail += rec_bytes(n);
    atomic_store_explicit(&s->tx->tail, s->tx_tail, memory_order_release);
    wake_if(s, &s->tx->reader_asleep);
    return true;
}

static shm_op *op_new(cgloo_request *req, const shm_rec *rec)
{
    shm_op *op = calloc(1, sizeof *op);
    if (!op)
        return NULL;
    cgloo__list_init(&op->link);
    op->req = req;
    op->rec = *rec;
    if (req) {
        op->data = req->buf;
        op->len = req->len;
        req->tp = op;
    }
    return op;
}

static void op_free(shm_op *op)
{
    cgloo__list_remove(&op->link);
    free(op->owned);
    free(op);
}

/* op_finish completes an op's request (if it still has one) and frees the op. */
static void op_finish(shm_pair *s, shm_op *op, int status)
{
    cgloo_request *r = op->req;
    op_free(op);
    if (r) {
        r->tp = NULL;
        cgloo__p2p_complete(r, status, status == CGLOO_OK ? r->len : 0, s->peer->ctx->rank);
    }
}

/* stream_some writes DATA chunks of a send the receiver asked for; true once all are out. */
static bool stream_some(shm_pair *s, shm_op *op)
{
    while (op->off < op->len) {
        size_t n = CGLOO_MIN(op->len - op->off, (size_t)SHM_CHUNK);
        shm_rec h = {.type = REC_DATA, .len = n, .cookie = op->rec.cookie, .addr = op->off};
        if (!ring_put(s, &h, op->data + op->off, n))
            return false;
        op->off += n;
    }
    return true;
}

/* op_write puts one queued op into the ring; false when it must wait for room. */
static bool op_write(shm_pair *s, shm_op *op)
{
    if (op->streaming) {
        if (!stream_some(s, op))
            return false;
        op_finish(s, op, CGLOO_OK);
        return true;
    }
    bool eager = op->rec.type == REC_EAGER;
    if (!ring_put(s, &op->rec, eager ? op->data : NULL, eager ? op->len : 0))
        return false;
    if (op->rec.type == REC_RTS) {
        op->announced = true;
        cgloo__list_remove(&op->link);
        cgloo__list_push_back(&s->awaiting, &op->link);
    } else {
        op_finish(s, op, CGLOO_OK); /* eager payload copied, or a control record */
    }
    return true;
}

static void pair_flush(shm_pair *s)
{
    while (!s->failed && !cgloo__list_empty(&s->sendq)) {
        shm_op *op = CGLOO_CONTAINER_OF(s->sendq.next, shm_op, link);
        if (!op_write(s, op))
            return;
    }
}

/* pair_control sends a record of the transport's own, queued behind what waits for room. */
static void pair_control(shm_pair *s, const shm_rec *h)
{
    if (s->failed)
        return;
    if (cgloo__list_empty(&s->sendq) && ring_put(s, h, NULL, 0))
        return;
    shm_op *op = op_new(NULL, h);
    if (!op)
        return cgloo__p2p_peer_fail(s->peer, CGLOO_ENOMEM, "out of memory for a control record", 0);
    cgloo__list_push_back(&s->sendq, &op->link);
}

/* ---- claims on large messages read in place (shm.h) ------------------------------------------ */

static _Atomic uint64_t *claim_slot(shm_dir *d, uint64_t cookie)
{
    return &d->claim[cookie % SHM_CLAIMS];
}

/* Below this size a message goes through the ring unless CGLOO_SHM_LARGE=vm: two ranks copying
 * the chunks at once (one into the ring, one out) beat one process_vm_readv up to 1 MiB, which
 * pins pages as it goes (ping-pong, medians of three runs: 128 KiB 33 us through the ring and
 * 48 us by process_vm_readv, 1 MiB 234 and 376 us, 4 MiB 2589 and 1582 us; docs/ARCHITECTURE.md,
 * "Shared memory"). */
#define VM_MIN_BYTES (2u << 20)

/* claim_offer: the sender may announce `cookie` of len bytes with its address (its slot is
 * free, and the single copy pays at this size). */
static bool claim_offer(shm_pair *s, uint64_t cookie, size_t len)
{
    _Atomic uint64_t *c = claim_slot(s->tx, cookie);
    if (s->large_mode == LARGE_COPY || (s->large_mode == LARGE_AUTO && len < VM_MIN_BYTES) ||
        atomic_load(c) != 0)
        return false;
    atomic_store(c, cookie);
    return true;
}

/* claim_clear frees the slot of `cookie` if it still holds it unread. */
static void claim_clear(shm_dir *d, uint64_t cookie)
{
    uint64_t want = cookie;
    atomic_compare_exchange_strong(claim_slot(d, cookie), &want, 0);
}

/* claim_revoke takes back the address of `cookie` before the caller gets its buffer back: the
 * receiver has not started reading it (it will ask for the copy), or has finished, or is
 * reading it now, which the sender waits out (a copy of at most the message, unless the
 * receiver died in it). False when the receiver stayed in it for CLAIM_WAIT_MS. */
#define CLAIM_WAIT_MS 2000
static bool claim_revoke(shm_pair *s, uint64_t cookie)
{
    _Atomic uint64_t *c = claim_slot(s->tx, cookie);
    uint64_t want = cookie;
    if (atomic_compare_exchange_strong(c, &want, 0))
        return true;
    int64_t until = cgloo__now_ms() + CLAIM_WAIT_MS;
    while (atomic_load(c) == (cookie | SHM_READING))
        if (cgloo__now_ms() > until)
            return false;
    return true;
}

/* wait_connected keeps a send posted to a lazy pair still connecting, for
 * cgloo__shm_pair_attach to post. */
static void wait_connected(shm_pair *s, cgloo_request *r)
{
    shm_op *op = op_new(r, &(shm_rec){0});
    if (!op)
        return cgloo__p2p_complete(r, CGLOO_ENOMEM, 0, s->peer->ctx->rank);
    cgloo__list_push_back(&s->unconnected, &op->link);
}

void cgloo__shm_post_send(cgloo_peer *p, cgloo_request *r)
{
    shm_pair *s = shm_pair_of(p);
    if (!s->seg)
        return wait_connected(s, r);
    bool eager = r->len <= s->peer_eager_max && (int64_t)r->len <= s->credits;
    shm_rec h = {.type = eager ? REC_EAGER : REC_RTS, .len = r->len, .tag = r->tag};
    if (eager) {
        s->credits -= (int64_t)r->len;
        if (cgloo__list_empty(&s->sendq) && ring_put(s, &h, r->buf, r->len))
            return cgloo__p2p_complete(r, CGLOO_OK, r->len, p->ctx->rank);
    } else {
        h.cookie = ++s->next_cookie;
        h.addr = claim_offer(s, h.cookie, r->len) ? (uint64_t)(uintptr_t)r->buf : 0;
    }
    shm_op *op = op_new(r, &h);
    if (!op) {
        if (eager)
            s->credits += (int64_t)r->len;
        return cgloo__p2p_complete(r, CGLOO_ENOMEM, 0, p->ctx->rank);
    }
    cgloo__list_push_back(&s->sendq, &op->link);
    pair_flush(s);
}

/* ---- large receives -------------------------------------------------------------------------- */

/* vm_copy copies len bytes between local and addr in the peer's process, from the peer with
 * process_vm_readv or to it with process_vm_writev; false with errno. */
static bool vm_copy(int pid, void *local, uint64_t addr, size_t len, bool to_peer)
{
    size_t done = 0;
    while (done < len) {
        struct iovec mine = {(uint8_t *)local + done, len - done};
        struct iovec theirs = {(void *)(uintptr_t)(addr + done), len - done};
        ssize_t n = to_peer ? process_vm_writev(pid, &mine, 1, &theirs, 1, 0)
                            : process_vm_readv(pid, &mine, 1, &theirs, 1, 0);
        if (n <= 0) {
            if (n == 0)
                errno = EFAULT;
            return false;
        }
        done += (size_t)n;
    }
    return true;
}

/* vm_read copies len bytes at addr in the peer's process into dst; false with errno. */
static bool vm_read(int pid, void *dst, uint64_t addr, size_t len)
{
    return vm_copy(pid, dst, addr, len, false);
}

/* vm_status: the status of a failed vm_copy, from its errno. */
static int vm_status(void)
{
    return errno == ESRCH ? CGLOO_EPEER : errno == EFAULT ? CGLOO_EPROTO : CGLOO_ENOTSUP;
}

int cgloo__shm_read_memory(cgloo_peer *p, void *dst, uint64_t addr, size_t len)
{
    const shm_pair *s = shm_pair_of(p); /* pid and large_mode are fixed once attached */
    if (s->large_mode == LARGE_COPY)
        return CGLOO_ENOTSUP;
    return vm_read(s->pid, dst, addr, len) ? CGLOO_OK : vm_status();
}

int cgloo__shm_write_memory(cgloo_peer *p, const void *src, uint64_t addr, size_t len)
{
    const shm_pair *s = shm_pair_of(p);
    if (s->large_mode == LARGE_COPY)
        return CGLOO_ENOTSUP;
    /* process_vm_writev only reads the local side: the cast does not write src */
    return vm_copy(s->pid, (void *)(uintptr_t)src, addr, len, true) ? CGLOO_OK : vm_status();
}

/* take_announce removes the announcement of cookie; its sender address in *addr. */
static bool take_announce(shm_pair *s, uint64_t cookie, uint64_t *addr)
{
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, &s->announced)
    {
        shm_announce *a = CGLOO_CONTAINER_OF(it, shm_announce, link);
        if (a->cookie == cookie) {
            *addr = a->addr;
            cgloo__list_remove(it);
            free(a);
            return true;
        }
    }
    return false;
}

/* try_vm receives straight from the sender's buffer; false when the ring must carry it (the
 * request is still the caller's). */
static bool try_vm(shm_pair *s, cgloo_request *r, uint64_t cookie, uint64_t addr, size_t len)
{
    cgloo_peer *p = s->peer;
    _Atomic uint64_t *claim = claim_slot(s->rx, cookie);
    uint64_t want = cookie;
    if (!addr)
        return false;
    if (!s->vm_ok || s->large_mode == LARGE_COPY ||
        !atomic_compare_exchange_strong(claim, &want, cookie | SHM_READING)) {
        claim_clear(s->rx, cookie); /* revoked already, or not to be read in place */
        return false;
    }
    bool read = vm_read(s->pid, r->buf, addr, len);
    atomic_store(claim, 0);
    if (!read) {
        int err = errno;
        if (s->large_mode == LARGE_VM || err == EFAULT) {
            /* Forced, or the sender's buffer is not where it said: nothing to fall back to. */
            cgloo__p2p_complete(r, CGLOO_EPEER, 0, p->rank);
            cgloo__p2p_peer_fail(p, CGLOO_EPEER, "process_vm_readv from the peer failed", err);
            return true;
        }
        CGLOO_LOG(CGLOO_LOG_INFO, p->ctx->rank, p->ctx->size,
                  "peer %d: process_vm_readv refused (%s): large messages go through the ring",
                  p->rank, strerror(err));
        s->vm_ok = false;
        return false;
    }
    if (!s->told_vm)
        CGLOO_LOG(CGLOO_LOG_DEBUG, p->ctx->rank, p->ctx->size,
                  "peer %d: large messages by process_vm_readv", p->rank);
    s->told_vm = true;
    cgloo__p2p_complete(r, CGLOO_OK, len, p->rank);
    pair_control(s, &(shm_rec){.type = REC_DONE, .cookie = cookie});
    return true;
}

void cgloo__shm_start_large_recv(cgloo_peer *p, cgloo_request *r, uint64_t cookie, size_t len)
{
    shm_pair *s = shm_pair_of(p);
    uint64_t addr = 0;
    bool known = take_announce(s, cookie, &addr);
    if (p->status != CGLOO_OK || !known)
        return cgloo__p2p_complete(r, p->status != CGLOO_OK ? p->status : CGLOO_EPROTO, 0, p->rank);
    if (len > r->len) {
        claim_clear(s->rx, cookie);
        cgloo__p2p_complete(r, CGLOO_ETRUNC, 0, p->rank);
        return pair_control(s, &(shm_rec){.type = REC_DONE, .cookie = cookie});
    }
    r->source = p->rank;
    if (try_vm(s, r, cookie, addr, len))
        return;
    shm_op *op = op_new(r, &(shm_rec){.cookie = cookie});
    if (!op)
        return cgloo__p2p_complete(r, CGLOO_ENOMEM, 0, p->rank);
    if (!s->told_ring)
        CGLOO_LOG(CGLOO_LOG_DEBUG, p->ctx->rank, p->ctx->size,
                  "peer %d: large messages through the ring", p->rank);
    s->told_ring = true;
    op->len = len;
    cgloo__list_push_back(&s->receiving, &op->link);
    pair_control(s, &(shm_rec){.type = REC_READY, .cookie = cookie});
}

void cgloo__shm_eager_released(cgloo_peer *p, size_t n)
{
    shm_pair *s = shm_pair_of(p);
    if (s->failed)
        return;
    s->credit_owed += n;
    /* Return credit in batches: one record per quarter of the budget, as TCP does. */
    if (s->credit_owed < p->ctx->eager_budget / 4 + 1)
        return;
    uint64_t give = s->credit_owed;
    s->credit_owed = 0;
    s->eager_held -= give;
    pair_control(s, &(shm_rec){.type = REC_CREDIT, .len = give});
}

/* ---- the consumer side ------------------------------------------------------------------------
 */

static void protocol_error(shm_pair *s, const char *why)
{
    cgloo_peer *p = s->peer;
    CGLOO_LOG(CGLOO_LOG_ERROR, p->ctx->rank, p->ctx->size, "peer %d (%s): protocol error: %s",
              p->rank, p->addr, why);
    cgloo__p2p_peer_fail(p, CGLOO_EPROTO, why, 0);
}

static shm_op *find_op(cgloo__list *l, uint64_t cookie)
{
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, l)
    {
        shm_op *op = CGLOO_CONTAINER_OF(it, shm_op, link);
        if (op->rec.cookie == cookie)
            return op;
    }
    return NULL;
}

static void on_eager(shm_pair *s, const shm_rec *h, const uint8_t *payload)
{
    cgloo_peer *p = s->peer;
    if (h->len > p->ctx->eager_max || s->eager_held + h->len > p->ctx->eager_budget)
        return protocol_error(s, "eager messages beyond the granted credit");
    s->eager_held += h->len;
    cgloo_request *r = cgloo__p2p_match(p, h->tag);
    if (r) {
        bool trunc = h->len > r->len;
        if (!trunc && h->len)
            memcpy(r->buf, payload, h->len);
        cgloo__shm_eager_released(p, h->len);
        return cgloo__p2p_complete(r, trunc ? CGLOO_ETRUNC : CGLOO_OK, trunc ? 0 : h->len, p->rank);
    }
    unexpected_msg *msg = NULL;
    int rc = cgloo__p2p_hold_eager(p, h->tag, h->len, &msg);
    if (rc != CGLOO_OK)
        return cgloo__p2p_peer_fail(p, rc, "out of memory for an unexpected message", 0);
    if (h->len)
        memcpy(msg->data, payload, h->len);
    cgloo__p2p_deliver_eager(p, msg);
}

static void on_rts(shm_pair *s, const shm_rec *h)
{
    shm_announce *a = calloc(1, sizeof *a);
    if (!a)
        return cgloo__p2p_peer_fail(s->peer, CGLOO_ENOMEM, "out of memory for an announcement", 0);
    a->cookie = h->cookie;
    a->addr = h->addr;
    cgloo__list_push_back(&s->announced, &a->link);
    int rc = cgloo__p2p_announce_large(s->peer, h->tag, h->len, h->cookie);
    if (rc != CGLOO_OK) {
        uint64_t addr;
        take_announce(s, h->cookie, &addr);
        cgloo__p2p_peer_fail(s->peer, rc, "too many messages waiting", 0);
    }
}

static void on_ready(shm_pair *s, const shm_rec *h)
{
    shm_op *op = find_op(&s->awaiting, h->cookie);
    if (!op || op->streaming)
        return protocol_error(s, "READY for no announced message");
    op->streaming = true;
    cgloo__list_remove(&op->link);
    cgloo__list_push_back(&s->sendq, &op->link);
    pair_flush(s);
}

static void on_done(shm_pair *s, const shm_rec *h)
{
    shm_op *op = find_op(&s->awaiting, h->cookie);
    if (!op)
        return protocol_error(s, "DONE for no announced message");
    op_finish(s, op, CGLOO_OK);
}

static void on_data(shm_pair *s, const shm_rec *h, const uint8_t *payload)
{
    shm_op *op = find_op(&s->receiving, h->cookie);
    if (!op || h->addr > op->len || h->len > op->len - h->addr || h->addr != op->off)
        return protocol_error(s, "DATA outside the message it belongs to");
    if (op->req && h->len)
        memcpy(op->req->buf + h->addr, payload, h->len);
    op->off += h->len;
    if (op->off < op->len)
        return;
    cgloo_request *r = op->req;
    size_t len = op->len;
    op_free(op);
    if (r) {
        r->tp = NULL;
        cgloo__p2p_complete(r, CGLOO_OK, len, s->peer->rank);
    }
}

static void on_credit(shm_pair *s, const shm_rec *h)
{
    if (h->len > (uint64_t)INT64_MAX - (uint64_t)s->credits)
        return protocol_error(s, "credit overflow");
    s->credits += (int64_t)h->len;
    pair_flush(s);
}

/* on_record acts on one record of the peer's ring. */
static void on_record(shm_pair *s, const shm_rec *h, const uint8_t *payload)
{
    switch (h->type) {
    case REC_EAGER:
        return on_eager(s, h, payload);
    case REC_RTS:
        return on_rts(s, h);
    case REC_READY:
        return on_ready(s, h);
    case REC_DONE:
        return on_done(s, h);
    case REC_DATA:
        return on_data(s, h, payload);
    case REC_CREDIT:
        return on_credit(s, h);
    case REC_BYE:
        s->bye_seen = true;
        return cgloo__p2p_peer_left(s->peer);
    default:
        return protocol_error(s, "unknown record type");
    }
}

/* rec_check: the record at offset off of the ring, with `avail` bytes published after it, is
 * whole and its payload inside the ring. */
static bool rec_check(const shm_rec *h, size_t off, uint64_t avail)
{
    size_t room = SHM_RING_BYTES - off;
    bool carries = h->type == REC_EAGER || h->type == REC_DATA;
    size_t payload = carries ? (size_t)CGLOO_MIN(h->len, (uint64_t)SHM_RING_BYTES) : 0;
    return (!carries || h->len <= room) && rec_bytes(payload) <= room &&
           rec_bytes(payload) <= avail;
}

/* pair_drain acts on every record the peer has published, freeing their room as it goes;
 * true when there was one. */
static bool pair_drain(shm_pair *s)
{
    uint64_t tail = atomic_load_explicit(&s->rx->tail, memory_order_acquire);
    bool freed = false;
    if (tail - s->rx_head > SHM_RING_BYTES) {
        protocol_error(s, "the ring's tail is outside the ring");
        return true;
    }
    while (s->rx_head != tail && !s->failed) {
        size_t off = s->rx_head % SHM_RING_BYTES;
        uint32_t type;
        memcpy(&type, s->rxr + off, sizeof type);
        if (type == REC_WRAP) {
            if (SHM_RING_BYTES - off > tail - s->rx_head) {
                protocol_error(s, "a wrap beyond the ring's tail");
                return true;
            }
            s->rx_head += SHM_RING_BYTES - off;
        } else {
            shm_rec h;
            if (tail - s->rx_head < REC_HDR || SHM_RING_BYTES - off < REC_HDR ||
                (memcpy(&h, s->rxr + off, REC_HDR), !rec_check(&h, off, tail - s->rx_head))) {
                protocol_error(s, "a record outside the ring's bounds");
                return true;
            }
            bool carries = h.type == REC_EAGER || h.type == REC_DATA;
            s->rx_head += rec_bytes(carries ? h.len : 0);
            on_record(s, &h, s->rxr + off + REC_HDR);
        }
        atomic_store_explicit(&s->rx->head, s->rx_head, memory_order_release);
        freed = true;
    }
    if (freed && !s->failed)
        wake_if(s, &s->rx->writer_asleep);
    return freed;
}

/* ---- progress: polling, sleeping, the socket ------------------------------------------------- */

static void pair_disarm(shm_pair *s)
{
    if (s->armed) {
        s->armed = false;
        atomic_store_explicit(&s->rx->reader_asleep, 0, memory_order_relaxed);
        atomic_store_explicit(&s->tx->writer_asleep, 0, memory_order_relaxed);
    }
}

static bool pair_spin_poll(cgloo__spinner *sp)
{
    shm_pair *s = CGLOO_CONTAINER_OF(sp, shm_pair, spin);
    if (s->failed)
        return false;
    pair_disarm(s);
    uint64_t tail = s->tx_tail;
    bool got = pair_drain(s);
    pair_flush(s);
    return got || s->tx_tail != tail; /* a send may have completed as it went out */
}

/* slot_published: a collective waits on a slot of this peer that is published already, and
 * must see it before the context sleeps (transport/slot.h). */
static bool slot_published(const cgloo__slot_link *l)
{
    for (int ch = 0; ch < CGLOO_SLOT_CHANNELS; ch++)
        if (l->want[ch] &&
            atomic_load_explicit(l->want[ch], memory_order_relaxed) >= l->want_seq[ch])
            return true;
    return false;
}

/* pair_spin_arm sets the asleep flags, then looks once more (the fence pairs with wake_if's):
 * either the peer sees a flag after its write, or this side sees the write here. */
static bool pair_spin_arm(cgloo__spinner *sp)
{
    shm_pair *s = CGLOO_CONTAINER_OF(sp, shm_pair, spin);
    if (s->failed)
        return true;
    s->armed = true;
    atomic_store_explicit(&s->rx->reader_asleep, 1, memory_order_relaxed);
    bool waiting_room = !cgloo__list_empty(&s->sendq);
    if (waiting_room)
        atomic_store_explicit(&s->tx->writer_asleep, 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&s->rx->tail, memory_order_relaxed) != s->rx_head)
        return false;
    if (slot_published(&s->slot))
        return false;
    size_t skip;
    if (waiting_room) {
        shm_op *op = CGLOO_CONTAINER_OF(s->sendq.next, shm_op, link);
        bool eager = op->rec.type == REC_EAGER;
        size_t n = op->streaming ? CGLOO_MIN(op->len - op->off, (size_t)SHM_CHUNK)
                   : eager       ? op->len
                                 : 0;
        if (ring_room(s, n, &skip))
            return false;
    }
    return true;
}

static void pair_close_fd(shm_pair *s)
{
    if (s->fd >= 0) {
        if (s->registered)
            cgloo__poller_del(&s->peer->ctx->poller, s->fd);
        close(s->fd);
        s->fd = -1;
    }
}

static void pair_unregister(shm_pair *s)
{
    pair_close_fd(s);
    if (s->registered) {
        cgloo__list_remove(&s->spin.link);
        s->registered = false;
    }
}

/* pair_on_socket: a wake-up byte, or the peer's end. Records the peer wrote before it ended
 * are still in the ring: they are read first. */
static void pair_on_socket(cgloo__pollable *io, unsigned events)
{
    shm_pair *s = CGLOO_CONTAINER_OF(io, shm_pair, io);
    char buf[64];
    ssize_t n;
    while ((n = recv(s->fd, buf, sizeof buf, MSG_DONTWAIT)) > 0)
        ;
    int err = errno;
    pair_drain(s);
    pair_flush(s);
    if (s->failed || (n < 0 && (err == EAGAIN || err == EINTR) && !(events & CGLOO_POLL_ERR)))
        return;
    cgloo_peer *p = s->peer;
    cgloo__p2p_peer_fail(p, CGLOO_EPEER,
                         p->peer_left ? "the peer closed its context"
                                      : "the peer's process ended (its socket closed)",
                         n < 0 ? err : 0);
}

int cgloo__shm_pair_attach(cgloo_peer *p, int fd, shm_segment *seg, int dir, int pid,
                           uint32_t eager_max, uint32_t eager_budget)
{
    shm_pair *s = shm_pair_of(p);
    s->seg = seg;
    s->tx = &seg->dir[dir];
    s->rx = &seg->dir[1 - dir];
    s->txr = seg->ring[dir];
    s->rxr = seg->ring[1 - dir];
    s->slot.tx = seg->slot[dir];
    s->slot.rx = seg->slot[1 - dir];
    s->pid = pid;
    s->peer_eager_max = CGLOO_MIN(eager_max, SHM_RING_BYTES / 4);
    s->credits = eager_budget;
    int rc = cgloo__poller_add(&p->ctx->poller, fd, CGLOO_POLL_IN, &s->io);
    if (rc != CGLOO_OK) {
        s->seg = NULL;
        return rc;
    }
    s->fd = fd;
    s->registered = true;
    cgloo__list_push_back(&p->ctx->spinners, &s->spin.link);
    while (!cgloo__list_empty(&s->unconnected)) { /* in the order they were posted */
        shm_op *op = CGLOO_CONTAINER_OF(s->unconnected.next, shm_op, link);
        cgloo_request *r = op->req;
        op_free(op);
        if (r) {
            r->tp = NULL;
            cgloo__shm_post_send(p, r);
        }
    }
    return CGLOO_OK;
}

/* ---- failure, close, cancel, teardown ---------------------------------------------------------
 */

static void ops_fail(cgloo__list *l, int status)
{
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, l)
    {
        shm_op *op = CGLOO_CONTAINER_OF(it, shm_op, link);
        cgloo_request *r = op->req;
        op_free(op);
        if (r) {
            r->tp = NULL;
            if (status != 0)
                cgloo__p2p_complete(r, status, 0, r->kind == REQ_SEND ? r->ctx->rank : r->source);
        }
    }
}

static void announced_free(shm_pair *s)
{
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, &s->announced)
    {
        cgloo__list_remove(it);
        free(CGLOO_CONTAINER_OF(it, shm_announce, link));
    }
}

void cgloo__shm_fail(cgloo_peer *p, int status)
{
    shm_pair *s = shm_pair_of(p);
    s->failed = true;
    pair_disarm(s);
    pair_close_fd(s);
    ops_fail(&s->unconnected, status);
    ops_fail(&s->sendq, status);
    ops_fail(&s->awaiting, status);
    ops_fail(&s->receiving, status);
    announced_free(s);
    cgloo__shm_lazy_forget(p);
}

void cgloo__shm_close_begin(cgloo_peer *p)
{
    shm_pair *s = shm_pair_of(p);
    if (s->failed || s->bye_sent || !s->seg)
        return;
    s->bye_sent = true;
    pair_control(s, &(shm_rec){.type = REC_BYE});
}

/* A pair is closed once its BYE is in the ring and nothing it owes the peer is left: the peer
 * reads the ring whenever it likes (the segment lives while it maps it), and this side need not
 * read what the peer still sends. */
bool cgloo__shm_close_step(cgloo_peer *p)
{
    shm_pair *s = shm_pair_of(p);
    if (s->failed || !s->seg || s->fd < 0)
        return true;
    pair_drain(s);
    pair_flush(s);
    return cgloo__list_empty(&s->sendq) && cgloo__list_empty(&s->awaiting);
}

static void cancel_send(shm_pair *s, shm_op *op)
{
    op->req->tp = NULL;
    op->req = NULL;
    if (!op->announced && !op->streaming) {
        if (op->rec.type == REC_EAGER)
            s->credits += (int64_t)op->len;
        op_free(op);
        return;
    }
    /* The peer knows of it: finish it from a private copy, through the ring. */
    if (op->rec.addr && !op->streaming && !claim_revoke(s, op->rec.cookie)) {
        op_free(op);
        return cgloo__p2p_peer_fail(s->peer, CGLOO_EPEER,
                                    "the peer stalled reading a cancelled message", 0);
    }
    op->owned = malloc(op->len ? op->len : 1);
    if (!op->owned) {
        op_free(op);
        return cgloo__p2p_peer_fail(s->peer, CGLOO_ENOMEM, "out of memory cancelling a send", 0);
    }
    memcpy(op->owned, op->data, op->len);
    op->data = op->owned;
}

void cgloo__shm_cancel(cgloo_peer *p, cgloo_request *r)
{
    shm_pair *s = shm_pair_of(p);
    shm_op *op = r->tp;
    if (r->kind == REQ_SEND)
        return cancel_send(s, op);
    r->tp = NULL;
    op->req = NULL; /* a receive filling through the ring: the rest of its DATA is dropped */
}

/* ---- the collectives' slots (transport/slot.h) ------------------------------------------------
 */

/* slot_notify: a collective published a slot to the peer, which may sleep waiting on it (its
 * arm set reader_asleep of this direction, as for the ring). */
static void slot_notify(cgloo__slot_link *l)
{
    shm_pair *s = CGLOO_CONTAINER_OF(l, shm_pair, slot);
    if (!atomic_load_explicit(&s->tx->reader_asleep, memory_order_relaxed))
        return;
    /* The socket is closed under the lock when the peer fails. */
    cgloo_context *ctx = s->peer->ctx;
    pthread_mutex_lock(&ctx->lock);
    if (!s->failed && atomic_exchange(&s->tx->reader_asleep, 0))
        pair_poke(s);
    pthread_mutex_unlock(&ctx->lock);
}

cgloo__slot_link *cgloo__shm_slots(cgloo_peer *p)
{
    shm_pair *s = shm_pair_of(p);
    return s->seg ? &s->slot : NULL;
}

void cgloo__shm_peer_init(cgloo_peer *p)
{
    shm_pair *s = shm_pair_of(p);
    s->peer = p;
    s->fd = -1;
    s->io.on_event = pair_on_socket;
    s->spin.poll = pair_spin_poll;
    s->spin.arm = pair_spin_arm;
    s->slot.notify = slot_notify;
    cgloo__list_init(&s->spin.link);
    s->vm_ok = true;
    const char *mode = getenv("CGLOO_SHM_LARGE");
    s->large_mode = mode && strcmp(mode, "vm") == 0     ? LARGE_VM
                    : mode && strcmp(mode, "copy") == 0 ? LARGE_COPY
                                                        : LARGE_AUTO;
    cgloo__list_init(&s->unconnected);
    cgloo__list_init(&s->sendq);
    cgloo__list_init(&s->awaiting);
    cgloo__list_init(&s->receiving);
    cgloo__list_init(&s->announced);
}

void cgloo__shm_peer_fini(cgloo_peer *p)
{
    shm_pair *s = shm_pair_of(p);
    pair_unregister(s);
    ops_fail(&s->unconnected, 0);
    ops_fail(&s->sendq, 0);
    ops_fail(&s->awaiting, 0);
    ops_fail(&s->receiving, 0);
    announced_free(s);
    if (s->seg)
        munmap(s->seg, sizeof *s->seg);
    s->seg = NULL;
}
