/*
 * The point-to-point engine: requests, peers, matching, and the only calls a transport may make
 * upward into the core.
 *
 * The engine owns what every transport shares: tagged requests, matching in FIFO order per
 * (source, tag), receives from a set of ranks, the queue of messages that arrived before their
 * receive, and each peer's sticky failure. A transport (src/transport/transport.h) owns how the
 * bytes move: its connection, its wire format, its own records of what is in flight.
 *
 * Every function here runs with the context lock held, on the thread that drives progress or
 * posts an operation, except where its comment says otherwise.
 */
#ifndef CGLOO_P2P_H
#define CGLOO_P2P_H

#include "cgloo_impl.h"
#include "core/list.h"

typedef struct cgloo_transport cgloo_transport;

/* The longest address text a transport publishes for its peers, NUL included. */
#define CGLOO_TRANSPORT_ADDR_MAX 128

/* REQ_COLL: a non-blocking collective's handle (core/progress_thread.c); only ctx, kind,
 * done, status and job are used. */
enum req_kind { REQ_SEND, REQ_RECV, REQ_COLL };

struct cgloo_request {
    cgloo__list link; /* in the engine's posted queues, while the engine holds it */
    cgloo_context *ctx;
    uint8_t kind;
    bool done;
    int status;
    int peer;           /* send: destination; recv: the one source, or -1 for a set */
    uint64_t *src_mask; /* recv from a set: bitmap of ranks (owned) */
    uint64_t tag;
    uint8_t *buf; /* send: payload; recv: destination */
    size_t len;   /* send: payload length; recv: capacity */
    size_t bytes; /* bytes moved, reported at completion */
    int source;   /* recv: the rank it matched, once matched */
    uint64_t seq; /* posting order: for receives, FIFO holds across single and set receives */
    /* Non-NULL while a transport holds the request (queued to send, or matched and filling);
     * the transport's own record, opaque to the engine. */
    void *tp;
    bool large_open;       /* counted in ctx->large_open until it completes or is cancelled */
    uint64_t flight_id;    /* a caller's request: its flight recorder entry (0: none) */
    struct cgloo_job *job; /* REQ_COLL: the collective (owned) */
    /* A caller's request (not a collective's own): its number on the context, never reused,
     * and its place in ctx->live_requests until it is freed, so that another thread can abort
     * it by number without touching freed memory (cgloo_context_abort_request). 0: internal. */
    uint64_t id;
    cgloo__list live_link;
};

/* A message that arrived before its receive was posted. */
enum { MSG_HELD_EAGER, MSG_HELD_LARGE };
typedef struct unexpected_msg {
    cgloo__list link;
    uint8_t kind;    /* MSG_HELD_EAGER: payload held here; MSG_HELD_LARGE: still at the sender */
    uint64_t cookie; /* large: the transport's name for the announced message */
    uint64_t tag;
    size_t len;
    uint64_t arrival; /* context-wide arrival order, for receives from a set */
    uint8_t *data;
} unexpected_msg;

/* One peer rank as the engine sees it. The self peer (rank == ctx->rank) has no transport. */
typedef struct cgloo_peer {
    cgloo_context *ctx;
    int rank;
    int status; /* sticky: once the peer fails, every operation on it fails so */
    /* why it failed (static text) and the errno, for error details */
    const char *fail_why;
    int fail_err;
    bool peer_left; /* the peer closed its context normally: its close is a departure */
    char addr[CGLOO_TRANSPORT_ADDR_MAX]; /* where the peer is, as its transport says, for errors */
    cgloo__list posted;                  /* receives from this rank only */
    cgloo__list unexpected;              /* unexpected_msg */
    size_t n_unexpected;
    const cgloo_transport *transport; /* NULL for self, or before connect */
    void *tp;                         /* the transport's private state, transport->peer_size */
} cgloo_peer;

/* ---- engine calls for the core (p2p.c, match.c) ---- */
/* cgloo__peer_init prepares an unconnected peer (context creation: no lock needed). */
void cgloo__peer_init(cgloo_peer *p, cgloo_context *ctx, int rank);
/* cgloo__peer_bind gives p a transport and zeroed private state of its size, initialised by
 * the transport. ENOMEM on failure, with p left unbound. */
int cgloo__peer_bind(cgloo_peer *p, const cgloo_transport *t);
/* cgloo__peer_fini closes p's transport without linger and frees every message it holds; p is
 * left as cgloo__peer_init made it. */
void cgloo__peer_fini(cgloo_peer *p);
/* cgloo__peer_error records the failure of p as the context's last error; returns its status. */
int cgloo__peer_error(cgloo_peer *p);
/* cgloo__p2p_failed_peers lists the peers other than `skip` whose connection broke (not those
 * that left normally, nor an abort) as "rank 4 (addr: why)", "; "-separated, into buf ("" when
 * none), so that an error met while waiting on a live peer can name the rank that is really
 * gone. When `skip` closed its context normally and the context has shared-memory pairs, it
 * first reads for up to 20 ms (that close is often the answer to another rank's death, which
 * may not have been read yet). Lock held. */
void cgloo__p2p_failed_peers(cgloo_context *ctx, int skip, char *buf, size_t len);
/* cgloo__p2p_isend and cgloo__p2p_irecv are cgloo_isend and cgloo_irecv without the check
 * that keeps user tags below the collectives' (for the collectives). They take the lock: call
 * them without it. */
int cgloo__p2p_isend(cgloo_context *ctx, const void *buf, size_t len, int dst, uint64_t tag,
                     cgloo_request **out);
int cgloo__p2p_irecv(cgloo_context *ctx, void *buf, size_t len, int src, uint64_t tag,
                     cgloo_request **out);
/* cgloo__p2p_register gives a caller's request its number and lists it as live (lock held). */
void cgloo__p2p_register(cgloo_context *ctx, cgloo_request *r);
/* cgloo__p2p_abort withdraws a pending point-to-point request from the engine and its
 * transport, as cgloo_cancel does, but completes it with EABORTED instead of freeing it, and
 * wakes the threads that wait (lock held). */
void cgloo__p2p_abort(cgloo_request *r);
/* cgloo__wait_or_cancel is cgloo_wait that cancels the request when its wait ends without it
 * completing (a timeout), so that the request never outlives the call either way. Takes the
 * lock: call it without. */
int cgloo__wait_or_cancel(cgloo_request *req, int timeout_ms, cgloo_completion *done);

/* ---- revoke (revoke.c) ----
 * A rank whose collective failed tells its connected peers on CGLOO__TAG_REVOKE, a collective
 * tag of kind 255, which no collective uses (coll/coll.c gives the layout); the engine takes
 * such a message itself, no receive is ever posted for it. Once a context's collectives are
 * revoked, every wait on a collective's request ends with EPEER and every later collective
 * fails at once; point-to-point is untouched. */
#define CGLOO__TAG_COLL_BIT (1ull << 63)
#define CGLOO__TAG_REVOKE (CGLOO__TAG_COLL_BIT | 0xffull << 55)
/* cgloo__p2p_revoke_heard records the notice m from p (its payload is p's error text), gives
 * its credit back, frees it and wakes the waiters (lock held). */
void cgloo__p2p_revoke_heard(cgloo_peer *p, unexpected_msg *m);
/* cgloo__p2p_revoked: r is a collective's request and the context's collectives are revoked
 * (lock held). */
bool cgloo__p2p_revoked(const cgloo_request *r);
/* cgloo__p2p_revoker names whose collective failed ("a collective of rank 2"), in buf when it
 * needs one (at least 32 bytes). cgloo__p2p_revoked_error records why the context's
 * collectives are revoked; EPEER. Both once the collectives are revoked. */
const char *cgloo__p2p_revoker(const cgloo_context *ctx, char *buf, size_t len);
int cgloo__p2p_revoked_error(cgloo_context *ctx);
/* cgloo__p2p_revoke_send revokes the context's collectives after this rank's collective
 * failed with the error text `why`, and tells the connected peers (once per context, waiting
 * at most half a second for the notices to leave). Keeps the context's last error as it was.
 * Takes the lock: call it without. */
void cgloo__p2p_revoke_send(cgloo_context *ctx, const char *why);

/* ---- between the engine's files (match.c, for p2p.c) ---- */
/* cgloo__p2p_take_eager copies a held eager message into receive r, completes r, returns the
 * bytes as credit (the transport may fail the peer doing so) and frees the message. */
void cgloo__p2p_take_eager(cgloo_peer *p, cgloo_request *r, unexpected_msg *msg);
/* cgloo__p2p_msg_new allocates a held eager message with room for len bytes (NULL: no memory). */
unexpected_msg *cgloo__p2p_msg_new(uint64_t tag, size_t len);
/* cgloo__p2p_set_all_gone: every rank of a set receive's set (a bitmap) has failed or left. */
bool cgloo__p2p_set_all_gone(const cgloo_context *ctx, const uint64_t *mask);
/* cgloo__p2p_uncount_large: a request counted in ctx->large_open completed or was cancelled. */
void cgloo__p2p_uncount_large(cgloo_request *r);
/* cgloo__p2p_mask_has: rank is in the bitmap. */
static inline bool cgloo__p2p_mask_has(const uint64_t *mask, int rank)
{
    return (mask[rank / 64] >> (rank % 64)) & 1;
}

/* ---- the calls a transport may make upward (match.c); no others ----
 * Each runs with the context lock held, from inside a transport callback or op. */

/* cgloo__p2p_match takes the earliest posted receive that accepts a message from p with tag,
 * removing it from the engine's queues and setting its source; NULL when none is posted. The
 * transport then owns the request until it completes it. */
cgloo_request *cgloo__p2p_match(cgloo_peer *p, uint64_t tag);
/* cgloo__p2p_hold_eager allocates a held message for an eager payload of len bytes from p that
 * matched no receive; the transport reads the payload into (*out)->data, then hands it over
 * with cgloo__p2p_deliver_eager, or frees it with cgloo__p2p_msg_free if its connection fails
 * first. EPROTO when p already has too many messages waiting (a flood), ENOMEM. */
int cgloo__p2p_hold_eager(cgloo_peer *p, uint64_t tag, size_t len, unexpected_msg **out);
/* cgloo__p2p_deliver_eager hands a whole held eager message to the earliest receive that
 * accepts it (calling the transport's eager_released when it is taken, which may fail the
 * peer), or queues it. Takes ownership of msg. */
void cgloo__p2p_deliver_eager(cgloo_peer *p, unexpected_msg *msg);
/* cgloo__p2p_announce_large reports a large message of len bytes that p is ready to send,
 * named by the transport's cookie: a posted receive that accepts it is handed to the
 * transport's start_large_recv at once, else the announcement waits for one. EPROTO when p has
 * too many messages waiting, ENOMEM. */
int cgloo__p2p_announce_large(cgloo_peer *p, uint64_t tag, size_t len, uint64_t cookie);
/* cgloo__p2p_msg_free frees a held message the transport still owns. */
void cgloo__p2p_msg_free(unexpected_msg *msg);
/* cgloo__p2p_complete finishes a request: status, bytes moved, source. The transport must hold
 * no reference to it afterwards. */
void cgloo__p2p_complete(cgloo_request *req, int status, size_t bytes, int source);
/* cgloo__p2p_peer_left records that p said it is closing its context normally. */
void cgloo__p2p_peer_left(cgloo_peer *p);
/* cgloo__p2p_peer_fail makes p's failure sticky: it records `why` (static text) and err,
 * calls the transport's fail op (which closes the connection and completes what it holds),
 * then fails the receives waiting on p, including receives from a set that needed p. A second
 * call does nothing. */
void cgloo__p2p_peer_fail(cgloo_peer *p, int status, const char *why, int err);

#endif
