/*
 * Revoke: a rank whose collective failed tells its peers, so that no rank waits out its timeout
 * on a rank that has already given up.
 *
 * In a ring or a tree most ranks wait on a live neighbour, not on the rank that died: without a
 * notice, a rank whose partner failed at once (it needed the dead rank) would leave the ranks
 * waiting on it blocked until their own timeout, blaming it. So a rank whose collective fails on
 * a peer, a timeout or a protocol error sends every connected peer a notice carrying its error
 * (a small eager message on a tag no collective uses); each peer then fails the collective it
 * is waiting in, and every later one, at once, with EPEER and that text, which names the rank
 * that really failed. The context stays usable for point-to-point: only its collectives are
 * revoked, as MPI's ULFM revokes a communicator. A context whose collectives were revoked is
 * made again (destroy, create, connect) to run collectives.
 *
 * Cost: nothing while collectives succeed. On a failure, one notice per connected peer from
 * each rank that failed on its own; a rank that failed because of a notice passes it on only
 * with lazy connections, where the first rank may not reach everyone.
 */
#include "core/context.h"
#include "transport/transport.h"

#include <stdio.h>

/* How long a rank that gives up waits for its notices to leave: they are small and eager, so
 * they go at once unless a peer's connection is stuck, which must not hold up the error. */
#define REVOKE_SEND_MS 500

void cgloo__p2p_revoke_heard(cgloo_peer *p, unexpected_msg *m)
{
    cgloo_context *ctx = p->ctx;
    cgloo__tp_eager_released(p, m->len); /* the credit goes back: nothing will receive it */
    if (!ctx->coll_revoked) {
        size_t n = CGLOO_MIN(m->len, sizeof ctx->revoked_why - 1);
        memcpy(ctx->revoked_why, m->data, n);
        ctx->revoked_why[n] = '\0';
        for (size_t i = 0; i < n; i++) /* the peer's text is shown to users: printable only */
            if (ctx->revoked_why[i] < 0x20 || ctx->revoked_why[i] == 0x7f)
                ctx->revoked_why[i] = '?';
        ctx->revoked_by = p->rank;
        ctx->coll_revoked = true;
    }
    cgloo__p2p_msg_free(m);
    /* The waiting thread sleeps in the poller or on progress_done: it wakes and sees the flag. */
    cgloo__ctx_wake(ctx);
    pthread_cond_broadcast(&ctx->progress_done);
}

bool cgloo__p2p_revoked(const cgloo_request *r)
{
    return r->ctx->coll_revoked && (r->tag & CGLOO__TAG_COLL_BIT) && r->tag != CGLOO__TAG_REVOKE;
}

const char *cgloo__p2p_revoker(const cgloo_context *ctx, char *buf, size_t len)
{
    if (ctx->revoked_by == ctx->rank)
        return "a collective of this rank";
    snprintf(buf, len, "a collective of rank %d", ctx->revoked_by);
    return buf;
}

int cgloo__p2p_revoked_error(cgloo_context *ctx)
{
    char who[48];
    return cgloo__ctx_error(ctx, CGLOO_EPEER,
                            "rank %d: the collectives of this context were revoked, since %s "
                            "failed: %s",
                            ctx->rank, cgloo__p2p_revoker(ctx, who, sizeof who), ctx->revoked_why);
}

/* revoke_targets lists the peers a notice goes to: connected (a lazy context dials no one for
 * it), not failed, and not the rank whose notice this rank heard. Lock held. */
static int revoke_targets(cgloo_context *ctx, int *out)
{
    int n = 0;
    for (int i = 0; i < ctx->size; i++) {
        const cgloo_peer *p = &ctx->peers[i];
        bool connected =
            p->transport && (!p->transport->connected || p->transport->connected(&ctx->peers[i]));
        if (i != ctx->rank && connected && p->status == CGLOO_OK &&
            !(ctx->coll_revoked && i == ctx->revoked_by))
            out[n++] = i;
    }
    return n;
}

void cgloo__p2p_revoke_send(cgloo_context *ctx, const char *why)
{
    int *targets = calloc((size_t)ctx->size, sizeof *targets);
    cgloo_request **reqs = calloc((size_t)ctx->size, sizeof *reqs);
    if (!targets || !reqs)
        goto out; /* no memory: the peers fall back on their timeouts */
    pthread_mutex_lock(&ctx->lock);
    bool heard = ctx->coll_revoked;
    bool send = !ctx->revoke_sent && (!heard || ctx->lazy);
    int n = send ? revoke_targets(ctx, targets) : 0;
    ctx->revoke_sent = true;
    if (!heard) {
        snprintf(ctx->revoked_why, sizeof ctx->revoked_why, "%s", why);
        ctx->revoked_by = ctx->rank;
        ctx->coll_revoked = true;
    }
    pthread_mutex_unlock(&ctx->lock);
    /* The sends' own errors must not replace the collective's, which the caller reads next. */
    char kept[CGLOO_ERROR_MAX];
    int kept_status = cgloo_context_last_error(ctx, kept, sizeof kept);
    const char *text = ctx->revoked_why; /* fixed once coll_revoked is set */
    size_t len = strlen(text);
    for (int i = 0; i < n; i++)
        if (cgloo__p2p_isend(ctx, text, len, targets[i], CGLOO__TAG_REVOKE, &reqs[i]) != CGLOO_OK)
            reqs[i] = NULL; /* that peer failed meanwhile */
    int64_t deadline = cgloo__deadline(REVOKE_SEND_MS, REVOKE_SEND_MS);
    for (int i = 0; i < n; i++)
        if (reqs[i])
            cgloo__wait_or_cancel(reqs[i], CGLOO_MAX(cgloo__remaining_ms(deadline), 1), NULL);
    pthread_mutex_lock(&ctx->err_lock);
    ctx->last_status = kept_status;
    snprintf(ctx->last_error, sizeof ctx->last_error, "%s", kept);
    pthread_mutex_unlock(&ctx->err_lock);
out:
    free(targets);
    free(reqs);
}
