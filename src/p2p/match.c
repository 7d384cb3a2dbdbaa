/*
 * The engine's side of arrivals: peers, matching, completion, and the calls a transport makes
 * upward (declared in p2p.h).
 *
 * Matching rule: an arriving message goes to the earliest-posted receive that accepts its
 * source and tag, whether that receive named one rank or a set. A posted receive takes the
 * earliest-arrived unexpected message it accepts (p2p.c).
 */
#include "core/context.h"
#include "transport/transport.h"

#include <stdio.h>

/* Unexpected messages one peer may leave queued before it is judged to be flooding. */
#define UNEXPECTED_MAX (1u << 20)

/* ---- peers ----------------------------------------------------------------------------------- */

void cgloo__peer_init(cgloo_peer *p, cgloo_context *ctx, int rank)
{
    memset(p, 0, sizeof *p);
    p->ctx = ctx;
    p->rank = rank;
    cgloo__list_init(&p->posted);
    cgloo__list_init(&p->unexpected);
}

int cgloo__peer_bind(cgloo_peer *p, const cgloo_transport *t)
{
    void *state = calloc(1, t->peer_size);
    if (!state)
        return CGLOO_ENOMEM;
    p->tp = state;
    t->peer_init(p);
    p->transport = t; /* last: a bound peer has initialised state */
    return CGLOO_OK;
}

void cgloo__p2p_msg_free(unexpected_msg *m)
{
    if (m) {
        free(m->data);
        free(m);
    }
}

void cgloo__peer_fini(cgloo_peer *p)
{
    if (p->transport) {
        p->transport->peer_fini(p);
        free(p->tp);
    }
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, &p->unexpected)
    {
        cgloo__p2p_msg_free(CGLOO_CONTAINER_OF(it, unexpected_msg, link));
    }
    cgloo__peer_init(p, p->ctx, p->rank);
}

int cgloo__peer_error(cgloo_peer *p)
{
    cgloo_context *ctx = p->ctx;
    return cgloo__ctx_error(ctx, p->status, "rank %d: peer %d (%s): %s%s%s", ctx->rank, p->rank,
                            p->addr[0] ? p->addr : "not connected", p->fail_why,
                            p->fail_err ? ": " : "", p->fail_err ? strerror(p->fail_err) : "");
}

/* How long a rank whose wait failed because a peer left keeps reading, so that a death the
 * kernel already reported is seen before the broken connections are listed. */
#define DEPARTURE_SETTLE_MS 20

/* settle_departure: `gone` closed its context normally, which is often its answer to another
 * rank's death. Over TCP that death arrives through the poller in the same round as the close;
 * shared-memory pairs are read from memory, and the poller is asked only every few rounds, so a
 * close read from a ring can come first, and the rank really gone would go unnamed. Lock held;
 * only with shared-memory pairs, and only when no other thread drives the context. */
static void settle_departure(cgloo_context *ctx, int gone)
{
    if (gone < 0 || gone >= ctx->size || gone == ctx->rank || !ctx->peers[gone].peer_left ||
        cgloo__list_empty(&ctx->spinners))
        return;
    char detail[CGLOO_ERROR_MAX];
    int status = cgloo_context_last_error(ctx, detail, sizeof detail);
    int64_t until = cgloo__now_ms() + DEPARTURE_SETTLE_MS;
    while (!ctx->progressing && cgloo__now_ms() < until)
        cgloo__ctx_poll_once(ctx, 1, false);
    cgloo__ctx_error(ctx, status, "%s", detail); /* not a later peer's failure read meanwhile */
}

void cgloo__p2p_failed_peers(cgloo_context *ctx, int skip, char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    settle_departure(ctx, skip);
    for (int r = 0; r < ctx->size && used < len; r++) {
        const cgloo_peer *p = &ctx->peers[r];
        if (r == skip || r == ctx->rank || p->status == CGLOO_OK || p->peer_left ||
            p->status == CGLOO_EABORTED)
            continue;
        int n = snprintf(buf + used, len - used, "%srank %d (%s: %s%s%s)", used ? "; " : "", r,
                         p->addr[0] ? p->addr : "not connected", p->fail_why,
                         p->fail_err ? ": " : "", p->fail_err ? strerror(p->fail_err) : "");
        used += n > 0 ? (size_t)n : 0;
    }
}

/* ---- completion and matching ------------------------------------------------------------------
 */

void cgloo__p2p_uncount_large(cgloo_request *r)
{
    if (r->large_open) {
        r->large_open = false;
        r->ctx->large_open--;
    }
}

void cgloo__p2p_complete(cgloo_request *r, int status, size_t bytes, int source)
{
    cgloo__list_remove(&r->link);
    cgloo__p2p_uncount_large(r);
    r->tp = NULL;
    r->status = status;
    r->bytes = bytes;
    r->source = source;
    r->done = true;
    cgloo__flight_end(&r->ctx->flight, r->flight_id, status);
}

static cgloo_request *first_posted(cgloo__list *list, uint64_t tag, int rank)
{
    cgloo__list *it;
    for (it = list->next; it != list; it = it->next) {
        cgloo_request *r = CGLOO_CONTAINER_OF(it, cgloo_request, link);
        if (r->tag == tag && (!r->src_mask || cgloo__p2p_mask_has(r->src_mask, rank)))
            return r;
    }
    return NULL;
}

cgloo_request *cgloo__p2p_match(cgloo_peer *p, uint64_t tag)
{
    cgloo_context *ctx = p->ctx;
    cgloo_request *one = first_posted(&p->posted, tag, p->rank);
    cgloo_request *any =
        cgloo__list_empty(&ctx->any_posted) ? NULL : first_posted(&ctx->any_posted, tag, p->rank);
    cgloo_request *r = !any ? one : !one ? any : one->seq < any->seq ? one : any;
    if (r) {
        cgloo__list_remove(&r->link);
        r->source = p->rank;
    }
    return r;
}

void cgloo__p2p_take_eager(cgloo_peer *p, cgloo_request *r, unexpected_msg *m)
{
    bool trunc = m->len > r->len;
    if (!trunc && m->len)
        memcpy(r->buf, m->data, m->len);
    cgloo__tp_eager_released(p, m->len);
    cgloo__p2p_complete(r, trunc ? CGLOO_ETRUNC : CGLOO_OK, trunc ? 0 : m->len, p->rank);
    cgloo__p2p_msg_free(m);
}

static void queue_unexpected(cgloo_peer *p, unexpected_msg *m)
{
    m->arrival = ++p->ctx->arrival_seq;
    cgloo__list_push_back(&p->unexpected, &m->link);
    p->n_unexpected++;
}

unexpected_msg *cgloo__p2p_msg_new(uint64_t tag, size_t len)
{
    unexpected_msg *m = calloc(1, sizeof *m);
    uint8_t *data = malloc(len ? len : 1);
    if (!m || !data) {
        free(m);
        free(data);
        return NULL;
    }
    *m = (unexpected_msg){.kind = MSG_HELD_EAGER, .tag = tag, .len = len, .data = data};
    cgloo__list_init(&m->link);
    return m;
}

int cgloo__p2p_hold_eager(cgloo_peer *p, uint64_t tag, size_t len, unexpected_msg **out)
{
    if (p->n_unexpected >= UNEXPECTED_MAX)
        return CGLOO_EPROTO;
    *out = cgloo__p2p_msg_new(tag, len);
    return *out ? CGLOO_OK : CGLOO_ENOMEM;
}

void cgloo__p2p_deliver_eager(cgloo_peer *p, unexpected_msg *m)
{
    if (m->tag == CGLOO__TAG_REVOKE)
        return cgloo__p2p_revoke_heard(p, m);
    cgloo_request *r = cgloo__p2p_match(p, m->tag);
    if (r)
        return cgloo__p2p_take_eager(p, r, m);
    queue_unexpected(p, m);
}

int cgloo__p2p_announce_large(cgloo_peer *p, uint64_t tag, size_t len, uint64_t cookie)
{
    cgloo_request *r = cgloo__p2p_match(p, tag);
    if (r) {
        cgloo__tp_start_large_recv(p, r, cookie, len);
        return CGLOO_OK;
    }
    if (p->n_unexpected >= UNEXPECTED_MAX)
        return CGLOO_EPROTO;
    unexpected_msg *m = calloc(1, sizeof *m);
    if (!m)
        return CGLOO_ENOMEM;
    *m = (unexpected_msg){.kind = MSG_HELD_LARGE, .cookie = cookie, .tag = tag, .len = len};
    cgloo__list_init(&m->link);
    queue_unexpected(p, m);
    return CGLOO_OK;
}

/* ---- failure --------------------------------------------------------------------------------- */

void cgloo__p2p_peer_left(cgloo_peer *p)
{
    p->peer_left = true;
}

bool cgloo__p2p_set_all_gone(const cgloo_context *ctx, const uint64_t *mask)
{
    for (int rank = 0; rank < ctx->size; rank++)
        if (cgloo__p2p_mask_has(mask, rank) && ctx->peers[rank].status == CGLOO_OK)
            return false;
    return true;
}

/* A peer that crashed fails every set receive that includes it: the set's sender may have
 * been that peer. A peer that left normally (it said so) fails them only when no member of
 * the set is left to send. */
static void fail_set_receives(cgloo_context *ctx, cgloo_peer *p)
{
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, &ctx->any_posted)
    {
        cgloo_request *r = CGLOO_CONTAINER_OF(it, cgloo_request, link);
        if (cgloo__p2p_mask_has(r->src_mask, p->rank) &&
            (!p->peer_left || cgloo__p2p_set_all_gone(ctx, r->src_mask)))
            cgloo__p2p_complete(r, p->status, 0, p->rank);
    }
}

void cgloo__p2p_peer_fail(cgloo_peer *p, int status, const char *why, int err)
{
    if (p->status != CGLOO_OK)
        return;
    cgloo_context *ctx = p->ctx;
    p->status = status;
    p->fail_why = why;
    p->fail_err = err;
    if (p->rank != ctx->rank)
        cgloo__peer_error(p);
    if (p->transport)
        p->transport->fail(p, status);
    cgloo__list *it, *tmp;
    CGLOO_LIST_FOR_EACH_SAFE(it, tmp, &p->posted)
    {
        cgloo__p2p_complete(CGLOO_CONTAINER_OF(it, cgloo_request, link), status, 0, p->rank);
    }
    fail_set_receives(ctx, p);
}
