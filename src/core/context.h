/*
 * The internal shape of a context. One mutex per context guards all of it, its peers and its
 * requests; the thread that waits drives the transports through the context's poller (see
 * cgloo__progress in context.c). The context knows its peers only through the point-to-point
 * engine (p2p/p2p.h); how bytes move is each peer's transport's business.
 */
#ifndef CGLOO_CONTEXT_H
#define CGLOO_CONTEXT_H

#include "cgloo_impl.h"
#include "loop/poller.h"
#include "p2p/p2p.h"

#include <pthread.h>

struct cgloo_context {
    int rank, size;
    int timeout_ms;
    char *name;
    uint64_t ctx_id;
    uint64_t nonce; /* this instance's identity in the rendezvous */
    pthread_mutex_t lock;
    pthread_cond_t progress_done;
    bool progressing;
    int waiters;
    cgloo__poller poller;
    bool connected;
    bool aborted;
    cgloo_peer *peers;      /* size entries, including self */
    cgloo__list any_posted; /* receives from a set of ranks */
    uint64_t post_seq, arrival_seq;
    uint32_t eager_max, eager_budget; /* what this side accepts from each peer */
    int spin_us;
    int64_t yield_after_ns;          /* spin this long before yielding between polls */
    cgloo_interrupt_fn interrupt_fn; /* see cgloo_context_set_interrupt_check */
    void *interrupt_user;
    /* last error detail, under err_lock (taken inside `lock` or alone, never around it), so
     * that connect, which runs mostly without `lock`, and abort can both record one */
    pthread_mutex_t err_lock;
    int last_status;
    char last_error[512];
    /* owned by contexts made from the environment */
    cgloo_store *owned_store;
    cgloo_device *owned_device;
};

/* cgloo__ctx_error records the detail of an error on the context and logs it; returns status.
 * Callable with or without ctx->lock. */
int cgloo__ctx_error(cgloo_context *ctx, int status, const char *fmt, ...) CGLOO_PRINTF(3, 4);
/* cgloo__progress drives the transports until req is done, the deadline passes or the context
 * is aborted. ctx->lock is held on entry and on return. Returns OK when done, else ETIMEDOUT or
 * EABORTED. deadline_ms 0 means poll once without waiting. */
int cgloo__progress(cgloo_context *ctx, cgloo_request *req, int64_t deadline_ms);
/* cgloo__ctx_interrupted calls the interrupt check, if any (lock not held), and says whether
 * the wait should end with EINTR. */
bool cgloo__ctx_interrupted(cgloo_context *ctx);
/* cgloo__ctx_aborted says whether the context was aborted (takes ctx->lock: for threads that
 * do not hold it, such as a connecting one). */
bool cgloo__ctx_aborted(cgloo_context *ctx);
/* cgloo__ctx_wake interrupts a thread sleeping in the poller (lock held). */
void cgloo__ctx_wake(cgloo_context *ctx);

#endif
