/*
 * The point-to-point engine's public side: posting tagged sends and receives (to one rank, or
 * from a set of ranks), waiting, testing and cancelling. A posted receive takes the
 * earliest-arrived unexpected message it accepts; arrivals are matched in match.c. The peer's
 * transport moves the bytes.
 */
#include "core/context.h"
#include "transport/transport.h"

static unexpected_msg *first_unexpected(cgloo_peer *p, uint64_t tag)
{
    cgloo__list *it;
    for (it = p->unexpected.next; it != &p->unexpected; it = it->next) {
        unexpected_msg *m = CGLOO_CONTAINER_OF(it, unexpected_msg, link);
        if (m->tag == tag)
            return m;
    }
    return NULL;
}

/* take_unexpected hands an unexpected message to a new receive. */
static void take_unexpected(cgloo_peer *p, cgloo_request *r, unexpected_msg *m)
{
    cgloo__list_remove(&m->link);
    p->n_unexpected--;
    r->source = p->rank;
    if (m->kind == MSG_HELD_EAGER)
        return cgloo__p2p_take_eager(p, r, m);
    uint64_t cookie = m->cookie;
    size_t len = m->len;
    free(m);
    cgloo__tp_start_large_recv(p, r, cookie, len);
}

/* ---- posting (lock held) ------------------------------------------------------------------ */

static void wake_others(cgloo_context *ctx)
{
    if (ctx->progressing)
        cgloo__ctx_wake(ctx);
    if (ctx->waiters)
        pthread_cond_broadcast(&ctx->progress_done);
}

static int post_send(cgloo_context *ctx, cgloo_request *r)
{
    cgloo_peer *p = &ctx->peers[r->peer];
    if (r->peer != ctx->rank) {
        /* A lazy pair connects on its first send; only sends dial: every message has a
         * sender, and a receive that dialled too would make both ends of every one-way first
         * contact (a ring, a tree) dial, and throw one connection away (docs/ARCHITECTURE.md,
         * "Lazy connections"). The first contact may find the peer gone. */
        cgloo__tp_want(p);
        if (p->status != CGLOO_OK)
            return cgloo__ctx_error(ctx, p->status, "rank %d: send to failed peer %d (%s): %s",
                                    ctx->rank, p->rank, p->addr[0] ? p->addr : "not connected",
                                    p->fail_why ? p->fail_why : cgloo_strerror(p->status));
        cgloo__tp_post_send(p, r);
        return CGLOO_OK;
    }
    /* To oneself: the message is copied and delivered at once. No flood limit: the sender is
     * this rank, and only memory bounds what it leaves for itself. */
    unexpected_msg *m = cgloo__p2p_msg_new(r->tag, r->len);
    if (!m)
        return cgloo__ctx_error(ctx, CGLOO_ENOMEM,
                                "rank %d: no memory for a %zu-byte send to itself", ctx->rank,
                                r->len);
    if (r->len)
        memcpy(m->data, r->buf, r->len);
    cgloo__p2p_deliver_eager(p, m);
    cgloo__p2p_complete(r, CGLOO_OK, r->len, ctx->rank);
    return CGLOO_OK;
}

static int post_recv_one(cgloo_context *ctx, cgloo_request *r)
{
    cgloo_peer *p = &ctx->peers[r->peer];
    unexpected_msg *m = first_unexpected(p, r->tag);
    if (m) {
        take_unexpected(p, r, m);
        return CGLOO_OK;
    }
    if (p->status != CGLOO_OK)
        return cgloo__ctx_error(ctx, p->status, "rank %d: receive from failed peer %d (%s)",
                                ctx->rank, p->rank, p->addr);
    cgloo__list_push_back(&p->posted, &r->link);
    return CGLOO_OK;
}

static int post_recv_set(cgloo_context *ctx, cgloo_request *r)
{
    cgloo_peer *best = NULL, *failed = NULL;
    unexpected_msg *best_m = NULL;
    for (int rank = 0; rank < ctx->size; rank++) {
        if (!cgloo__p2p_mask_has(r->src_mask, rank))
            continue;
        cgloo_peer *p = &ctx->peers[rank];
        unexpected_msg *m = first_unexpected(p, r->tag);
        if (m && (!best_m || m->arrival < best_m->arrival)) {
            best = p;
            best_m = m;
        }
        if (p->status != CGLOO_OK && !p->peer_left && !failed)
            failed = p; /* a crashed member */
    }
    if (!best_m && !failed && cgloo__p2p_set_all_gone(ctx, r->src_mask)) {
        for (int rank = 0; rank < ctx->size && !failed; rank++)
            if (cgloo__p2p_mask_has(r->src_mask, rank))
                failed = &ctx->peers[rank];
    }
    if (best_m) {
        take_unexpected(best, r, best_m);
        return CGLOO_OK;
    }
    if (failed)
        return cgloo__ctx_error(ctx, failed->status, "rank %d: receive from failed peer %d (%s)",
                                ctx->rank, failed->rank, failed->addr);
    cgloo__list_push_back(&ctx->any_posted, &r->link);
    return CGLOO_OK;
}

/* ---- public API ----------------------------------------------------------------------------- */

static int check_ready(cgloo_context *ctx)
{
    if (!ctx->connected)
        return CGLOO_ESTATE;
    if (ctx->aborted)
        return CGLOO_EABORTED;
    return CGLOO_OK;
}

static cgloo_request *request_new(cgloo_context *ctx, int kind, void *buf, size_t len, int peer,
                                  uint64_t tag)
{
    /* malloc, not calloc: glibc's calloc skips the per-thread cache and costs about 400
     * instructions a call here, a fifth of a shared-memory round trip (callgrind, 8-byte
     * ping-pong); the literal zeroes every other field. */
    cgloo_request *r = malloc(sizeof *r);
    if (!r)
        return NULL;
    *r = (cgloo_request){.ctx = ctx,
                         .kind = (uint8_t)kind,
                         .buf = buf,
                         .len = len,
                         .peer = peer,
                         .tag = tag,
                         .source = -1};
    cgloo__list_init(&r->link);
    cgloo__list_init(&r->live_link);
    return r;
}

static void request_free(cgloo_request *r)
{
    free(r->src_mask);
    free(r);
}

void cgloo__p2p_register(cgloo_context *ctx, cgloo_request *r)
{
    r->id = ++ctx->last_request_id;
    cgloo__list_push_back(&ctx->live_requests, &r->live_link);
}

/* count_large: a caller's request that needs progress to move while nobody waits for it
 * (larger than an eager message, not yet done) is counted for the progress thread. */
static void count_large(cgloo_context *ctx, cgloo_request *r)
{
    if (r->done || r->len <= ctx->eager_max)
        return;
    r->large_open = true;
    ctx->large_open++;
    cgloo__pt_large_opened(ctx);
}

/* flight_begin records a caller's send or receive in the flight recorder (lock held). */
static void flight_begin(cgloo_context *ctx, cgloo_request *r)
{
    r->flight_id = cgloo__flight_begin(&ctx->flight, r->kind == REQ_SEND ? "send" : "recv", r->tag,
                                       r->len, -1, r->peer);
    if (r->done)
        cgloo__flight_end(&ctx->flight, r->flight_id, r->status);
}

/* post locks the context, posts r with fn, and hands it out or frees it. A caller's request
 * (not a collective's) may be moved by the progress thread. */
static int post(cgloo_context *ctx, cgloo_request *r, int (*fn)(cgloo_context *, cgloo_request *),
                bool caller, cgloo_request **out)
{
    pthread_mutex_lock(&ctx->lock);
    int rc = check_ready(ctx);
    if (rc == CGLOO_OK) {
        r->seq = ++ctx->post_seq;
        rc = fn(ctx, r);
    }
    if (rc == CGLOO_OK && caller) {
        count_large(ctx, r);
        cgloo__p2p_register(ctx, r);
        flight_begin(ctx, r);
    }
    if (rc == CGLOO_OK)
        wake_others(ctx);
    pthread_mutex_unlock(&ctx->lock);
    if (rc != CGLOO_OK) {
        request_free(r);
        return rc;
    }
    *out = r;
    return CGLOO_OK;
}

static int isend(cgloo_context *ctx, const void *buf, size_t len, int dst, uint64_t tag,
                 bool caller, cgloo_request **out)
{
    if (!ctx || !out || (len && !buf) || len > PTRDIFF_MAX || dst < 0 || dst >= ctx->size)
        return CGLOO_EINVAL;
    cgloo_request *r = request_new(ctx, REQ_SEND, (void *)buf, len, dst, tag);
    if (!r)
        return CGLOO_ENOMEM;
    return post(ctx, r, post_send, caller, out);
}

static int irecv(cgloo_context *ctx, void *buf, size_t len, int src, uint64_t tag, bool caller,
                 cgloo_request **out)
{
    if (!ctx || !out || (len && !buf) || len > PTRDIFF_MAX || src < 0 || src >= ctx->size)
        return CGLOO_EINVAL;
    cgloo_request *r = request_new(ctx, REQ_RECV, buf, len, src, tag);
    if (!r)
        return CGLOO_ENOMEM;
    return post(ctx, r, post_recv_one, caller, out);
}

int cgloo__p2p_isend(cgloo_context *ctx, const void *buf, size_t len, int dst, uint64_t tag,
                     cgloo_request **out)
{
    return isend(ctx, buf, len, dst, tag, false, out);
}

int cgloo__p2p_irecv(cgloo_context *ctx, void *buf, size_t len, int src, uint64_t tag,
                     cgloo_request **out)
{
    return irecv(ctx, buf, len, src, tag, false, out);
}

int cgloo_isend(cgloo_context *ctx, const void *buf, size_t len, int dst, uint64_t tag,
                cgloo_request **out)
{
    if (tag > CGLOO_TAG_MAX)
        return CGLOO_EINVAL;
    return isend(ctx, buf, len, dst, tag, true, out);
}

int cgloo_irecv(cgloo_context *ctx, void *buf, size_t len, int src, uint64_t tag,
                cgloo_request **out)
{
    if (tag > CGLOO_TAG_MAX)
        return CGLOO_EINVAL;
    return irecv(ctx, buf, len, src, tag, true, out);
}

int cgloo_irecv_any(cgloo_context *ctx, void *buf, size_t len, const int *srcs, size_t nsrcs,
                    uint64_t tag, cgloo_request **out)
{
    if (!ctx || !out || (len && !buf) || len > PTRDIFF_MAX || !srcs || nsrcs == 0 ||
        tag > CGLOO_TAG_MAX)
        return CGLOO_EINVAL;
    for (size_t i = 0; i < nsrcs; i++)
        if (srcs[i] < 0 || srcs[i] >= ctx->size)
            return CGLOO_EINVAL;
    cgloo_request *r = request_new(ctx, REQ_RECV, buf, len, -1, tag);
    uint64_t *mask = calloc((size_t)(ctx->size + 63) / 64, sizeof *mask);
    if (!r || !mask) {
        free(r);
        free(mask);
        return CGLOO_ENOMEM;
    }
    for (size_t i = 0; i < nsrcs; i++)
        mask[srcs[i] / 64] |= 1ull << (srcs[i] % 64);
    r->src_mask = mask;
    return post(ctx, r, post_recv_set, true, out);
}

static void fill_completion(const cgloo_request *r, cgloo_completion *done)
{
    if (done) {
        done->source = r->source;
        done->bytes = r->bytes;
    }
}

static int timeout_error(cgloo_context *ctx, const cgloo_request *r, int waited_ms)
{
    if (r->kind == REQ_SEND)
        return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT,
                                "rank %d: send of %zu bytes to rank %d (tag %llu) timed out "
                                "after %d ms",
                                ctx->rank, r->len, r->peer, (unsigned long long)r->tag, waited_ms);
    if (r->peer >= 0)
        return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT,
                                "rank %d: receive from rank %d (tag %llu) timed out after %d ms",
                                ctx->rank, r->peer, (unsigned long long)r->tag, waited_ms);
    return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT,
                            "rank %d: receive from a set of ranks (tag %llu) timed out after %d ms",
                            ctx->rank, (unsigned long long)r->tag, waited_ms);
}

/* name_broken appends to the context's last error the other peers whose connections broke,
 * for a caller's request (a collective's own name them in the collective's error): a peer
 * that closed its context, or a receive that timed out, is often the consequence of another
 * rank's crash, and that rank is the one to name (lock held). */
static void name_broken(cgloo_context *ctx, const cgloo_request *r, int peer)
{
    char failed[512], detail[CGLOO_ERROR_MAX];
    if (r->id == 0)
        return;
    cgloo__p2p_failed_peers(ctx, peer, failed, sizeof failed);
    if (!failed[0])
        return;
    int status = cgloo_context_last_error(ctx, detail, sizeof detail);
    cgloo__ctx_error(ctx, status, "%s; the connections to these ranks broke: %s", detail, failed);
}

/* request_error re-records the failure of the connection a failed request depended on, so
 * that the last error names this request's peer, not another peer that failed in the same
 * round of progress (lock held). */
static void request_error(cgloo_context *ctx, const cgloo_request *r)
{
    int peer = r->peer >= 0 ? r->peer : r->source;
    if (r->status == CGLOO_OK || peer < 0 || peer == ctx->rank)
        return;
    cgloo_peer *p = &ctx->peers[peer];
    if (p->status == r->status)
        cgloo__peer_error(p);
    if (r->status == CGLOO_EPEER)
        name_broken(ctx, r, peer);
}

/* request_wait is cgloo_wait that also says whether the request is still pending (its wait
 * timed out) or was freed. Transports fail a broken connection with EPEER, never ETIMEDOUT,
 * but the flag tells without relying on every transport keeping that rule. */
static int request_wait(cgloo_request *r, int timeout_ms, cgloo_completion *done, bool *pending)
{
    *pending = r != NULL; /* a bad timeout leaves the request as it was */
    if (!r || timeout_ms < 0)
        return CGLOO_EINVAL;
    *pending = false;
    cgloo_context *ctx = r->ctx;
    pthread_mutex_lock(&ctx->lock);
    int t = timeout_ms > 0 ? timeout_ms : ctx->timeout_ms;
    int rc = r->done ? CGLOO_OK : cgloo__progress(ctx, r, cgloo__deadline(t, t));
    if (rc == CGLOO_EABORTED) {
        /* Abort fails every pair, which completes every queued request; finish this one too in
         * case it sat nowhere, so that an aborted wait always frees its request. */
        if (!r->done)
            cgloo__p2p_complete(r, CGLOO_EABORTED, 0, -1);
        rc = CGLOO_OK;
    }
    if (rc == CGLOO_ETIMEDOUT) {
        timeout_error(ctx, r, t);
        name_broken(ctx, r, r->peer);
        if (r->flight_id)
            cgloo__flight_log(&ctx->flight); /* what else this rank was waiting for */
    } else if (rc == CGLOO_EINTR)
        cgloo__ctx_error(ctx, rc, "rank %d: a wait was interrupted (the interrupt check asked)",
                         ctx->rank);
    else if (rc == CGLOO_EPEER) /* a collective's, whose collectives were revoked */
        cgloo__p2p_revoked_error(ctx);
    else if (rc == CGLOO_OK)
        request_error(ctx, r);
    if (rc == CGLOO_OK)
        cgloo__list_remove(&r->live_link); /* freed below: no abort may find it any more */
    pthread_mutex_unlock(&ctx->lock);
    if (rc != CGLOO_OK) {
        *pending = true;
        return rc;
    }
    rc = r->status;
    fill_completion(r, done);
    request_free(r);
    return rc;
}

int cgloo_wait(cgloo_request *r, int timeout_ms, cgloo_completion *done)
{
    if (r && r->kind == REQ_COLL && timeout_ms >= 0)
        return cgloo__job_wait(r, timeout_ms, done);
    bool pending;
    return request_wait(r, timeout_ms, done, &pending);
}

int cgloo__wait_or_cancel(cgloo_request *r, int timeout_ms, cgloo_completion *done)
{
    bool pending;
    int rc = request_wait(r, timeout_ms, done, &pending);
    if (pending) {
        cgloo__flight_end(&r->ctx->flight, r->flight_id, rc); /* timed out, not cancelled */
        cgloo_cancel(r);
    }
    return rc;
}

int cgloo_test(cgloo_request *r, int *completed, cgloo_completion *done)
{
    if (!r || !completed)
        return CGLOO_EINVAL;
    if (r->kind == REQ_COLL)
        return cgloo__job_test(r, completed, done);
    cgloo_context *ctx = r->ctx;
    pthread_mutex_lock(&ctx->lock);
    if (!r->done)
        cgloo__progress(ctx, r, 0);
    bool finished = r->done;
    bool aborted = ctx->aborted; /* read under the lock: abort may be setting it */
    if (finished) {
        request_error(ctx, r);
        cgloo__list_remove(&r->live_link);
    }
    pthread_mutex_unlock(&ctx->lock);
    *completed = finished;
    if (!finished)
        return aborted ? CGLOO_EABORTED : CGLOO_OK;
    int rc = r->status;
    fill_completion(r, done);
    request_free(r);
    return rc;
}

/* withdraw takes a pending request back from the engine and its transport, so that nothing
 * touches its buffer any more (lock held). A completed request has nothing left to withdraw. */
static void withdraw(cgloo_context *ctx, cgloo_request *r)
{
    cgloo__p2p_uncount_large(r);
    if (r->tp) {
        /* The transport holds it: a send queued or in flight, or a receive it matched and is
         * filling (from r->source, when the receive named a set). */
        int peer = r->kind == REQ_SEND || r->peer >= 0 ? r->peer : r->source;
        CGLOO_ASSERT(peer >= 0 && peer < ctx->size);
        cgloo__tp_cancel(&ctx->peers[peer], r);
    }
    cgloo__list_remove(&r->link); /* a receive still posted with the engine */
    cgloo__flight_end(&ctx->flight, r->flight_id, CGLOO_EABORTED); /* when not ended yet */
}

void cgloo_cancel(cgloo_request *r)
{
    if (!r)
        return;
    if (r->kind == REQ_COLL)
        return cgloo__job_cancel(r);
    cgloo_context *ctx = r->ctx;
    pthread_mutex_lock(&ctx->lock);
    withdraw(ctx, r);
    cgloo__list_remove(&r->live_link);
    request_free(r);
    pthread_mutex_unlock(&ctx->lock);
}

static void abort_error(cgloo_context *ctx, const cgloo_request *r)
{
    const char *why = "aborted by cgloo_context_abort_request";
    if (r->kind == REQ_SEND)
        cgloo__ctx_error(ctx, CGLOO_EABORTED, "rank %d: send of %zu bytes to rank %d (tag %llu) %s",
                         ctx->rank, r->len, r->peer, (unsigned long long)r->tag, why);
    else if (r->peer >= 0)
        cgloo__ctx_error(ctx, CGLOO_EABORTED, "rank %d: receive from rank %d (tag %llu) %s",
                         ctx->rank, r->peer, (unsigned long long)r->tag, why);
    else
        cgloo__ctx_error(ctx, CGLOO_EABORTED, "rank %d: receive from a set of ranks (tag %llu) %s",
                         ctx->rank, (unsigned long long)r->tag, why);
}

void cgloo__p2p_abort(cgloo_request *r)
{
    cgloo_context *ctx = r->ctx;
    withdraw(ctx, r);
    cgloo__p2p_complete(r, CGLOO_EABORTED, 0, r->source);
    abort_error(ctx, r);
    /* The thread that waits sleeps in the poller or on progress_done: either way it wakes,
     * finds the request done and returns. */
    cgloo__ctx_wake(ctx);
    pthread_cond_broadcast(&ctx->progress_done);
}

uint64_t cgloo_request_id(const cgloo_request *r)
{
    return r ? r->id : 0;
}

static cgloo_request *find_live(cgloo_context *ctx, uint64_t id)
{
    cgloo__list *it;
    for (it = ctx->live_requests.next; it != &ctx->live_requests; it = it->next) {
        cgloo_request *r = CGLOO_CONTAINER_OF(it, cgloo_request, live_link);
        if (r->id == id)
            return r;
    }
    return NULL;
}

int cgloo_context_abort_request(cgloo_context *ctx, uint64_t id)
{
    if (!ctx || id == 0)
        return CGLOO_EINVAL;
    pthread_mutex_lock(&ctx->lock);
    cgloo_request *r = find_live(ctx, id);
    bool pending = r && !r->done;
    if (pending && r->kind == REQ_COLL)
        cgloo__job_abort(ctx, r->job);
    else if (pending)
        cgloo__p2p_abort(r);
    pthread_mutex_unlock(&ctx->lock);
    return pending ? CGLOO_OK : CGLOO_ENOTFOUND;
}

int cgloo_send(cgloo_context *ctx, const void *buf, size_t len, int dst, uint64_t tag,
               int timeout_ms)
{
    cgloo_request *r;
    if (timeout_ms < 0) /* checked before posting: a failed call leaves nothing behind */
        return CGLOO_EINVAL;
    int rc = cgloo_isend(ctx, buf, len, dst, tag, &r);
    return rc != CGLOO_OK ? rc : cgloo__wait_or_cancel(r, timeout_ms, NULL);
}

int cgloo_recv(cgloo_context *ctx, void *buf, size_t len, int src, uint64_t tag, int timeout_ms,
               cgloo_completion *done)
{
    cgloo_request *r;
    if (timeout_ms < 0)
        return CGLOO_EINVAL;
    int rc = cgloo_irecv(ctx, buf, len, src, tag, &r);
    return rc != CGLOO_OK ? rc : cgloo__wait_or_cancel(r, timeout_ms, done);
}

int cgloo_recv_any(cgloo_context *ctx, void *buf, size_t len, const int *srcs, size_t nsrcs,
                   uint64_t tag, int timeout_ms, cgloo_completion *done)
{
    cgloo_request *r;
    if (timeout_ms < 0)
        return CGLOO_EINVAL;
    int rc = cgloo_irecv_any(ctx, buf, len, srcs, nsrcs, tag, &r);
    return rc != CGLOO_OK ? rc : cgloo__wait_or_cancel(r, timeout_ms, done);
}
