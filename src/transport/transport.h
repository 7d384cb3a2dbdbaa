/*
 * What a transport provides: a const ops table per transport, and the device every transport's
 * devices begin with.
 *
 * A transport moves the bytes of point-to-point messages between this rank and its peers and
 * makes the connections the rendezvous asks for. It is a folder under src/transport/ with one
 * table; the core (context, point-to-point engine, collectives, rendezvous) calls it only
 * through the wrappers below and never sees its connections or its wire format. The engine's
 * semantics, which every transport keeps: small messages go eagerly (bounded by the receiver's
 * eager limit and credit), large ones are announced and sent once the receiver has a buffer;
 * between two ranks, messages are delivered in the order they were posted.
 *
 * Rules for every op:
 * - The per-peer ops that move bytes (post_send to close_step) run with the context lock held
 *   and must not block: anything that waits registers with the context's poller
 *   (src/loop/poller.h) and continues from its callback, which also runs under the lock.
 *   peer_init and peer_fini run under the lock too, or on a thread that alone uses the context
 *   (destroy). The device ops and connect_begin, connect and connect_end run on the connecting
 *   thread without the lock; connect takes it whenever it touches a peer (an abort from another
 *   thread may be failing the peers meanwhile) and returns EABORTED once the context is
 *   aborted.
 * - Upward, it may call only what src/p2p/p2p.h declares. From the core it may also use: the
 *   context's rank, size, ctx_id, nonce, timeout_ms, eager_max, eager_budget, lazy,
 *   lazy_conn and lazy_shm (read only),
 *   its poller (cgloo__poller_*), cgloo__ctx_error for connect's failures, and of a peer its
 *   rank, status and peer_left (read only) and addr (written once, at connect, for errors).
 * - A request handed to a transport is the transport's until it completes it with
 *   cgloo__p2p_complete or gives it back through cancel; while it holds it, req->tp is
 *   non-NULL (the transport's own record). The caller's buffer stays the caller's: the
 *   transport keeps no pointer to it after completing or giving back the request.
 * - A connection failure goes up through cgloo__p2p_peer_fail, never as a return value of a
 *   send or receive op: those return nothing and complete requests instead. Any op that
 *   writes (post_send, start_large_recv, eager_released, cancel, close_begin) may find the
 *   connection broken and fail the peer before it returns, which calls the transport's own
 *   fail and completes every other request of that peer: callers must expect that.
 * - After fail, the engine may still call start_large_recv (which completes the request with
 *   the peer's status), eager_released, close_begin, close_step and peer_fini; they do no harm.
 * Models: nng's src/sp/transport.h.
 */
#ifndef CGLOO_TRANSPORT_H
#define CGLOO_TRANSPORT_H

#include "p2p/p2p.h"

#include <stdatomic.h>

/* Every device begins with this; a transport's device embeds it as its first member. */
struct cgloo_device {
    const cgloo_transport *transport;
    /* Holds besides its maker's: sub-contexts keep their parent's device alive
     * (cgloo__device_hold), so that cgloo_device_destroy frees it only with the last release.
     * Zeroed by the transport's create. */
    atomic_int holds;
    /* How contexts connecting through it reach peers on their host unless their attribute
     * says (enum cgloo__local_mode; -1: the device does not say). Set by the transport's
     * create. */
    int local_mode;
};

/* cgloo__device_hold takes a hold on dev, which cgloo_device_destroy releases. */
static inline void cgloo__device_hold(cgloo_device *dev)
{
    atomic_fetch_add(&dev->holds, 1);
}

/* A transport's state while a context connects through a device (opaque to the core; each
 * transport defines the struct in its own files). */
typedef struct cgloo__connector cgloo__connector;

/* What the rendezvous learned of one peer from the store. */
typedef struct cgloo__peer_record {
    char address[CGLOO_TRANSPORT_ADDR_MAX]; /* as the peer's device published it */
    uint64_t nonce;                         /* the peer context's identity in this run */
} cgloo__peer_record;

struct cgloo_transport {
    const char *name; /* "tcp": lowercase, for logs and variables */
    size_t peer_size; /* bytes of private state per peer (cgloo_peer.tp), zeroed before init */

    /* ---- device ---- */
    /* device_address writes the address peers reach this device at, as text the same
     * transport's connect parses (at most CGLOO_TRANSPORT_ADDR_MAX bytes with the NUL). Does
     * not block. EINVAL when buf is too small. */
    int (*device_address)(const cgloo_device *dev, char *buf, size_t len);
    /* device_destroy closes the device and frees it. Contexts that used it must be connected
     * or destroyed already. */
    void (*device_destroy)(cgloo_device *dev);

    /* ---- connection set-up ---- */
    /* connect_begin makes ctx reachable through dev, before the rendezvous publishes its
     * address: connections peers start from then on are kept for connect. Returns the
     * transport's connector in *out. store_host (NULL when the store has none) is the host of
     * the store's server: a device that only its own host can reach (loopback) while the
     * store is on another host fails at once with EADDR, the detail (cgloo__ctx_error) naming
     * the address, why it was chosen and what changes it. Blocks only in the resolver.
     * EADDR, ENOMEM. */
    int (*connect_begin)(cgloo_device *dev, cgloo_context *ctx, const char *store_host,
                         cgloo__connector **out);
    /* connect connects ctx to every peer bound to this transport, given their records
     * (indexed by rank; the entry of ctx's own rank and of peers of other transports unused).
     * Blocks until every connection is made and proven to belong to this run (the context id,
     * both ranks, the world size and both nonces), or deadline_ms passes with none made in the
     * last context timeout (each connection made moves the deadline a timeout on). Two ranks end
     * with exactly one connection. On failure it records the detail naming the peer and its address
     * (cgloo__ctx_error) and returns ETIMEDOUT, ECONNREFUSED, EPROTO, ESTORE (an address it cannot
     * parse), EADDR (this device only its own host reaches, and a peer is on another host: at
     * once), EABORTED, ENOMEM or the status of a system error; what it connected stays bound to the
     * peers, for the caller to release with peer_fini. */
    int (*connect)(cgloo__connector *conn, const cgloo__peer_record *peers, int64_t deadline_ms);
    /* connect_end makes ctx unreachable through dev again (connections still arriving are
     * closed) and frees the connector. */
    void (*connect_end)(cgloo__connector *conn);
    /* connect_lazy is connect for a lazy context (ctx->lazy): it takes the peers' records and
     * returns at once, connecting nothing. The connector then lives as long as the context
     * (ctx->lazy_conn; the context's destroy calls connect_end first): it keeps ctx reachable,
     * accepts peers' connections from the context's poller, and connects a peer when the
     * engine asks (peer_want), with the same checks as connect. Two ranks end with exactly one
     * connection even when both start one at once. A connection that fails, or does not come
     * about in time, fails that peer (cgloo__p2p_peer_fail) naming its rank and address (one
     * the peer's kernel took, waiting for the peer's process to answer, is left to the timeouts
     * of the calls waiting on it). Takes
     * the context lock. Errors: ESTORE, EADDR (as connect), ENOMEM, a system error. NULL: the
     * transport has no lazy mode (the rendezvous then connects the full mesh). */
    int (*connect_lazy)(cgloo__connector *conn, const cgloo__peer_record *peers);
    /* peer_want: the engine is about to send to p (receives do not connect). A lazy
     * context's transport starts connecting p if it is not connected or connecting; otherwise
     * nothing. Lock held; does not block. May be NULL. */
    void (*peer_want)(cgloo_peer *p);
    /* connected: p has a live connection now (cgloo_context_connections). Lock held. */
    bool (*connected)(cgloo_peer *p);

    /* ---- one peer ---- */
    /* peer_init sets up the private state of an unconnected peer. Does not fail. */
    void (*peer_init)(cgloo_peer *p);
    /* peer_fini closes the connection at once (no linger) and frees everything the transport
     * holds for p, requests excepted: a request it still holds is only forgotten. */
    void (*peer_fini)(cgloo_peer *p);
    /* post_send takes a send request (eager or announced, the transport's choice within the
     * peer's eager limit and credit) and starts writing it. The peer has not failed. Completes
     * it when the bytes are out (or at once), or with ENOMEM. */
    void (*post_send)(cgloo_peer *p, cgloo_request *req);
    /* start_large_recv receives the announced message `cookie` of len bytes into req, which the
     * engine matched to it. len larger than req's capacity completes req with ETRUNC (and the
     * transport discards the message). A failed peer completes req with its status; no memory
     * for the transport's record completes it with ENOMEM. */
    void (*start_large_recv)(cgloo_peer *p, cgloo_request *req, uint64_t cookie, size_t len);
    /* eager_released says n bytes of eager payload p sent were taken by the application, so
     * that the transport can return them to the sender as credit. May be NULL. */
    void (*eager_released)(cgloo_peer *p, size_t n);
    /* cancel gives back a request the transport holds (req->tp non-NULL) without completing
     * it. A send the peer has already heard of is finished from a private copy; bytes still
     * arriving for a receive are dropped. The transport keeps no pointer to req afterwards. */
    void (*cancel)(cgloo_peer *p, cgloo_request *req);
    /* fail closes the connection at once and completes every request the transport holds with
     * status. Called only by cgloo__p2p_peer_fail, once per peer. */
    void (*fail)(cgloo_peer *p, int status);
    /* close_begin starts a normal close: it tells the peer this rank is leaving and writes
     * what is queued. close_step advances it (flushes, half-closes once nothing is queued,
     * drains what the peer still sends) and returns true once the peer's side is closed too or
     * the connection is gone; the context polls between steps until every peer is done or its
     * linger deadline passes. */
    void (*close_begin)(cgloo_peer *p);
    bool (*close_step)(cgloo_peer *p);

    /* ---- collectives ---- */
    /* read_memory copies len bytes at address addr of p's process into dst, with one copy and
     * without the peer's help (the single_copy collectives). OK; ENOTSUP when the kernel
     * refuses (another user, a ptrace scope) or the pair must not (CGLOO_SHM_LARGE=copy);
     * EPEER when p's process is gone; EPROTO when the range is not mapped in p. Without the
     * context lock; thread-safe. NULL: the transport cannot (TCP). */
    int (*read_memory)(cgloo_peer *p, void *dst, uint64_t addr, size_t len);
    /* write_memory copies len bytes from src to address addr of p's process, with one copy and
     * without the peer's help: only into memory the peer opened for it and keeps open while
     * the write lasts (the single_copy collectives' gates, coll/slots.h). Errors as
     * read_memory's.
     * Without the context lock; thread-safe. NULL: the transport cannot. */
    int (*write_memory)(cgloo_peer *p, const void *src, uint64_t addr, size_t len);
    /* slots: the pair's slots (transport/slot.h), through which collectives hand small
     * buffers straight to p, or NULL when p is not connected. Stays valid until peer_fini,
     * also after p fails. Lock held. May be NULL: the transport has none. */
    struct cgloo__slot_link *(*slots)(cgloo_peer *p);
};

/* ---- how the core calls a peer's transport (the peer must be bound) ---- */

static inline void cgloo__tp_post_send(cgloo_peer *p, cgloo_request *req)
{
    p->transport->post_send(p, req);
}

static inline void cgloo__tp_start_large_recv(cgloo_peer *p, cgloo_request *req, uint64_t cookie,
                                              size_t len)
{
    p->transport->start_large_recv(p, req, cookie, len);
}

/* cgloo__tp_want tells a lazy transport that p is about to be used (see peer_want). */
static inline void cgloo__tp_want(cgloo_peer *p)
{
    if (p->transport && p->transport->peer_want)
        p->transport->peer_want(p);
}

static inline void cgloo__tp_eager_released(cgloo_peer *p, size_t n)
{
    if (p->transport && p->transport->eager_released)
        p->transport->eager_released(p, n);
}

static inline void cgloo__tp_cancel(cgloo_peer *p, cgloo_request *req)
{
    p->transport->cancel(p, req);
}

/* cgloo__tp_slots: p's slots, or NULL when its transport has none (see slots). */
static inline struct cgloo__slot_link *cgloo__tp_slots(cgloo_peer *p)
{
    return p->transport && p->transport->slots ? p->transport->slots(p) : NULL;
}

/* The transports built in (one registration each). */
extern const cgloo_transport cgloo__tcp_transport;
/* Shared memory between ranks of one host (src/transport/shm/); bound by the rendezvous, with
 * no device of its own (its connect_begin ignores the device). */
extern const cgloo_transport cgloo__shm_transport;

#endif
