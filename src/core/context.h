/*
 * The internal shape of a context, its pairs and its requests. One mutex per context guards
 * all of it; the thread that waits drives the sockets (see cgloo__progress in context.c).
 */
#ifndef CGLOO_CONTEXT_H
#define CGLOO_CONTEXT_H

#include "cgloo_impl.h"
#include "core/list.h"
#include "net/net.h"
#include "transport/tcp/wire.h"

#include <pthread.h>

enum req_kind { REQ_SEND, REQ_RECV, REQ_CTL };

/* Where a send is on its way through the socket. */
enum send_phase {
    SEND_EAGER,       /* header + payload queued */
    SEND_RTS,         /* ready-to-send header queued */
    SEND_AWAIT_READY, /* waiting for the receiver's READY */
    SEND_DATA,        /* DATA header + payload queued */
};

struct cgloo_request {
    cgloo__list link; /* in exactly one queue while pending */
    cgloo_context *ctx;
    uint8_t kind, phase;
    bool done;
    bool detached; /* cancelled while partly sent: the engine finishes it and frees it */
    int status;
    int peer;           /* send: destination; recv: the one source, or -1 for a set */
    uint64_t *src_mask; /* recv from a set: bitmap of ranks (owned) */
    uint64_t tag;
    uint8_t *buf; /* send: payload; recv: destination */
    size_t len;   /* send: payload length; recv: capacity */
    size_t bytes; /* bytes moved, reported at completion */
    int source;
    uint64_t seq; /* recv: posting order, so FIFO holds across single and set receives */
    uint32_t id;  /* send: its send id; recv: its recv id once a large message matched */
    /* progress through the socket of the message being written */
    uint8_t hdr[MSG_HDR_LEN];
    size_t hdr_off;
    size_t data_len, data_off;
    void *owned; /* private copy of a detached send's payload */
};

/* A message that arrived before its receive was posted. */
typedef struct unexpected_msg {
    cgloo__list link;
    uint8_t type; /* MSG_EAGER (payload held here) or MSG_RTS (payload still at the sender) */
    uint32_t send_id;
    uint64_t tag;
    size_t len;
    uint64_t arrival; /* context-wide arrival order, for receives from a set */
    uint8_t *data;
} unexpected_msg;

enum rx_state { RX_HEADER, RX_PAYLOAD };

/* One peer. The self pair (rank == ctx->rank) has no socket and uses only the queues. */
typedef struct cgloo_pair {
    cgloo_context *ctx;
    int rank;
    int fd;     /* -1 when not connected or closed */
    int status; /* sticky: once a connection fails, every operation on it fails so */
    /* why it failed (static text) and the errno, for error details */
    const char *fail_why;
    int fail_err;
    char addr[CGLOO_ADDR_TEXT_MAX];
    bool want_out;  /* EPOLLOUT registered */
    bool peer_left; /* the peer said BYE: its close is a normal departure */
    /* eager flow control */
    uint32_t peer_eager_max;
    int64_t credits;      /* eager bytes this side may still send */
    uint64_t eager_held;  /* eager bytes received and not yet returned as credit */
    uint64_t credit_owed; /* of those, bytes already handed to the application */
    /* queues */
    cgloo__list sendq;       /* requests whose bytes are being written, in order */
    cgloo__list awaiting;    /* large sends waiting for READY */
    cgloo__list posted;      /* receives from this rank only */
    cgloo__list unexpected;  /* unexpected_msg */
    cgloo__list large_recvs; /* receives waiting for DATA */
    size_t n_unexpected;
    uint32_t next_send_id, next_recv_id;
    /* receive side: a staging buffer, and the message being parsed */
    uint8_t *rbuf;
    size_t rstart, rend;
    int rx_state;
    wire_msg rx;
    uint8_t *rx_dst; /* where payload goes; NULL: discard */
    size_t rx_left;
    cgloo_request *rx_req;  /* receive the payload completes, or NULL */
    unexpected_msg *rx_msg; /* unexpected message the payload fills, or NULL */
    bool rx_trunc;          /* the payload is too long for rx_req: complete with ETRUNC */
} cgloo_pair;

typedef struct cgloo_device cgloo_device;

struct cgloo_context {
    int rank, size;
    int timeout_ms;
    char *name;
    uint64_t ctx_id;
    uint64_t nonce; /* this instance's identity in hellos */
    pthread_mutex_t lock;
    pthread_cond_t progress_done;
    bool progressing;
    int waiters;
    int epfd, wakefd;
    bool connected;
    bool aborted;
    cgloo_pair *pairs;      /* size entries, including self */
    cgloo__list any_posted; /* receives from a set of ranks */
    uint64_t post_seq, arrival_seq;
    uint32_t eager_max, eager_budget; /* what this side accepts from each peer */
    int spin_us;
    int64_t yield_after_ns; /* spin this long before yielding between polls */
    /* last error detail */
    int last_status;
    char last_error[512];
    /* owned by contexts made from the environment */
    cgloo_store *owned_store;
    cgloo_device *owned_device;
};

/* ---- context.c ---- */
/* cgloo__ctx_error records the detail of an error on the context and logs it; returns status. */
int cgloo__ctx_error(cgloo_context *ctx, int status, const char *fmt, ...) CGLOO_PRINTF(3, 4);
/* cgloo__progress drives the sockets until req is done, the deadline passes or the context is
 * aborted. ctx->lock is held on entry and on return. Returns OK when done, else ETIMEDOUT or
 * EABORTED. deadline_ms 0 means poll once without waiting. */
int cgloo__progress(cgloo_context *ctx, cgloo_request *req, int64_t deadline_ms);
/* cgloo__ctx_wake interrupts a thread sleeping in epoll_wait (lock held). */
void cgloo__ctx_wake(cgloo_context *ctx);

/* ---- p2p/p2p.c ---- */
/* cgloo__complete finishes a request (lock held): status, bytes, source; frees detached ones. */
void cgloo__complete(cgloo_request *req, int status, size_t bytes, int source);
/* cgloo__match_posted takes the earliest posted receive that accepts (src, tag), or NULL. */
cgloo_request *cgloo__match_posted(cgloo_context *ctx, cgloo_pair *p, uint64_t tag);
/* cgloo__deliver_eager hands a whole unexpected eager message to a posted receive, or queues it.
 * Takes ownership of msg. */
void cgloo__deliver_eager(cgloo_pair *p, unexpected_msg *msg);
/* cgloo__wait_or_cancel is cgloo_wait that cancels the request when its wait ends without it
 * completing (a timeout), so that the request never outlives the call either way. */
int cgloo__wait_or_cancel(cgloo_request *req, int timeout_ms, cgloo_completion *done);
/* cgloo__fail_set_receives fails every receive from a set that includes p->rank. */
void cgloo__fail_set_receives(cgloo_context *ctx, cgloo_pair *p);

/* ---- transport/tcp/pair.c ---- */
void cgloo__pair_init(cgloo_pair *p, cgloo_context *ctx, int rank);
/* cgloo__pair_attach adopts a connected socket after a good handshake. */
int cgloo__pair_attach(cgloo_pair *p, int fd, const wire_hello *peer_hello, const char *addr);
/* cgloo__pair_close shuts the socket down gracefully (see context destroy) and frees buffers. */
void cgloo__pair_fini(cgloo_pair *p);
/* cgloo__pair_post_send queues a send (eager if small and credit allows, else RTS). */
void cgloo__pair_post_send(cgloo_pair *p, cgloo_request *req);
/* cgloo__pair_start_large_recv sends READY for a matched large message of len bytes. */
void cgloo__pair_start_large_recv(cgloo_pair *p, cgloo_request *req, uint32_t send_id, size_t len);
/* cgloo__pair_eager_consumed returns n eager bytes as credit once enough has built up. */
void cgloo__pair_eager_consumed(cgloo_pair *p, size_t n);
/* cgloo__pair_on_event handles epoll events on the pair's socket. */
void cgloo__pair_on_event(cgloo_pair *p, uint32_t events);
/* cgloo__pair_fail closes the connection with a sticky error and fails what depends on it.
 * `why` must be static text: the pair keeps it for cgloo__pair_error. */
void cgloo__pair_fail(cgloo_pair *p, int status, const char *why, int err);
/* cgloo__pair_error records the failure of p (a peer's pair) as the context's last error, and
 * returns its status (lock held). */
int cgloo__pair_error(cgloo_pair *p);
/* cgloo__pair_say_bye queues a BYE before a normal close. */
void cgloo__pair_say_bye(cgloo_pair *p);
/* cgloo__pair_cancel withdraws req from the pair's queues (see cgloo_cancel). */
void cgloo__pair_cancel(cgloo_pair *p, cgloo_request *req);

#endif
