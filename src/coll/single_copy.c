/*
 * The steps of the single_copy collectives (single_copy.h): where the vectors lie, the first
 * call's probe, reducing a block straight out of the peers' inputs, reading finished blocks
 * out of their outputs, and the rounds of statuses that order them.
 */
#include "coll/single_copy.h"
#include "core/context.h"
#include "core/flight.h"
#include "transport/transport.h"

#include <stdlib.h>

/* Bytes read and reduced (and pushed) at a time: large enough that a system call is noise (one
 * process_vm_readv pins the pages it copies), small enough to stay in a 2-core machine's L2
 * between the copy, the reduction and the push. 2 ranks pushing, cgloo-bench p50 us at 1, 4,
 * 16 and 64 MiB, medians of 5 alternating runs at load 8 to 12: 128 KiB 112, 646, 2667, 43930;
 * 256 KiB 103, 554, 2428, 24261; 512 KiB 103, 597, 2495, 33422; 1 MiB 104, 717, 5768, 36081
 * (and 64 KiB 154 and 736 against 132 and 716 at 1 and 4 MiB, 3 runs at load 2). Reading each
 * chunk into a small buffer that stays hot instead (reduce there, push it, copy it to the
 * output) was slower: a two-process model of the loop, 4 MiB, 612 to 788 us against 563 to 660
 * with chunks of 256 KiB, with non-temporal stores into the output or not. */
#define SC_CHUNK (256u * 1024)
_Static_assert(SC_CHUNK <= CGLOO__SC_SCRATCH_BYTES, "a chunk is read into the scratch");

/* sc_known: what this call's tag knows of the reads (0 for a tag without a slot). */
static int sc_known(const coll *c)
{
    if (c->user_tag >= CGLOO_SC_TAGS)
        return 0;
    pthread_mutex_lock(&c->ctx->lock);
    int known = c->ctx->single_copy[c->user_tag];
    pthread_mutex_unlock(&c->ctx->lock);
    return known;
}

bool cgloo__sc_possible(const coll *c)
{
    cgloo_context *ctx = c->ctx;
    if (c->group || sc_known(c) < 0) /* a phase over some ranks; or the kernel refused */
        return false;
    pthread_mutex_lock(&ctx->lock);
    bool ok = true;
    for (int q = 0; q < c->size && ok; q++) {
        const cgloo_peer *p = &ctx->peers[q];
        ok = q == c->rank ||
             (p->transport && p->transport->read_memory && p->transport->write_memory);
    }
    pthread_mutex_unlock(&ctx->lock);
    return ok;
}

/* exchange sends `mine` (len bytes) to every peer and receives theirs into all[q * len]. */
static int exchange(coll *c, const void *mine, void *all, size_t len, unsigned step)
{
    cgloo_request **reqs = calloc(2 * (size_t)c->size, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d requests", 2 * c->size);
    int rc = CGLOO_OK;
    for (int q = 0; q < c->size && rc == CGLOO_OK; q++)
        if (q != c->rank)
            rc = cgloo__coll_irecv(c, q, (uint8_t *)all + (size_t)q * len, len, step, &reqs[q]);
    for (int q = 0; q < c->size && rc == CGLOO_OK; q++)
        if (q != c->rank)
            rc = cgloo__coll_isend(c, q, mine, len, step, &reqs[c->size + q]);
    memcpy((uint8_t *)all + (size_t)c->rank * len, mine, len);
    rc = cgloo__coll_finish(c, reqs, 2 * c->size, rc);
    free(reqs);
    return rc;
}

/* sc_round sends `mine` (len bytes) to every peer and receives theirs into all[q * len]:
 * through the slots where s has them, else as messages. */
static int sc_round(cgloo__sc *s, const void *mine, void *all, size_t len, unsigned step)
{
    if (!s->slots)
        return exchange(s->c, mine, all, len, step);
    slot_set *set = &s->set;
    set->step = step - 1; /* the put counts it up to `step`, which errors name */
    int rc = cgloo__slots_put(set, mine, len);
    if (rc == CGLOO_OK)
        rc = cgloo__slots_wait(set, len);
    if (rc != CGLOO_OK)
        return rc;
    for (int i = 0; i < set->n; i++)
        memcpy((uint8_t *)all + (size_t)set->p[i].rank * len, cgloo__slots_data(set, i), len);
    cgloo__slots_done(set);
    memcpy((uint8_t *)all + (size_t)s->c->rank * len, mine, len);
    return CGLOO_OK;
}

/* status_known: v is one of the library's statuses (a peer sent it: anything else is EPROTO). */
static bool status_known(int32_t v)
{
    switch (v) {
#define STATUS_CASE(name, value, text) case value:
        CGLOO_STATUS_MAP(STATUS_CASE)
#undef STATUS_CASE
        return true;
    }
    return false;
}

/* statuses exchanges this rank's status and returns everyone's in *all (free it); a peer's
 * status that is none of the library's is taken as EPROTO. */
static int statuses(cgloo__sc *s, int mine, unsigned step, int32_t **all)
{
    coll *c = s->c;
    int32_t me = mine;
    *all = calloc((size_t)c->size, sizeof **all);
    if (!*all)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d statuses", c->size);
    int rc = sc_round(s, &me, *all, sizeof me, step);
    for (int q = 0; rc == CGLOO_OK && q < c->size; q++)
        if (!status_known((*all)[q]))
            (*all)[q] = CGLOO_EPROTO;
    return rc;
}

/* first_failure: OK when every status is, else the first failure, recorded naming its rank
 * (this rank's own is recorded already). */
static int first_failure(coll *c, const int32_t *all, unsigned step)
{
    for (int q = 0; q < c->size; q++)
        if (all[q] != CGLOO_OK)
            return q == c->rank ? all[q]
                                : cgloo__coll_error(c, all[q], "step %u: rank %d failed: %s", step,
                                                    q, cgloo_strerror(all[q]));
    return CGLOO_OK;
}

/* own_failure_first: this rank failed (`mine`, recorded as `why`) and then the round that tells
 * the peers failed too, which recorded over it: the call's error is the cause, with the round's
 * failure after it (a peer that left early fails both; the first one says how). */
static int own_failure_first(coll *c, int mine, const char *why, int round)
{
    pthread_mutex_lock(&c->ctx->lock);
    cgloo__ctx_error(c->ctx, mine, "%s (telling the peers then failed too: %s)", why,
                     cgloo_strerror(round));
    pthread_mutex_unlock(&c->ctx->lock);
    c->status = mine;
    return mine;
}

int cgloo__sc_agree(cgloo__sc *s, int mine, unsigned step)
{
    char why[CGLOO_ERROR_MAX] = "";
    if (mine != CGLOO_OK)
        cgloo_context_last_error(s->c->ctx, why, sizeof why);
    int32_t *all = NULL;
    int rc = statuses(s, mine, step, &all);
    if (rc == CGLOO_OK)
        rc = first_failure(s->c, all, step);
    else if (mine != CGLOO_OK)
        rc = own_failure_first(s->c, mine, why, rc);
    free(all);
    return rc;
}

/* peer_copy copies len bytes between buf and addr of rank q: out of q's memory into buf, or
 * with to_peer from buf into q's; records a failure. */
static int peer_copy(cgloo__sc *s, int q, void *buf, uint64_t addr, size_t len, bool to_peer)
{
    cgloo_peer *p = &s->c->ctx->peers[q];
    const cgloo_transport *t = p->transport;
    int rc = !t                           ? CGLOO_ENOTSUP
             : to_peer && t->write_memory ? t->write_memory(p, buf, addr, len)
             : !to_peer && t->read_memory ? t->read_memory(p, buf, addr, len)
                                          : CGLOO_ENOTSUP;
    if (rc == CGLOO_OK)
        return rc;
    return cgloo__coll_error(
        s->c, rc, "%s %zu bytes %s rank %d's %s failed: %s", to_peer ? "writing" : "reading", len,
        to_peer ? "into" : "of", q, to_peer ? "output" : "vector",
        rc == CGLOO_ENOTSUP ? "the kernel does not allow it" : cgloo_strerror(rc));
}

/* peer_read copies len bytes at addr of rank q into dst, recording a failure. */
static int peer_read(cgloo__sc *s, int q, void *dst, uint64_t addr, size_t len)
{
    return peer_copy(s, q, dst, addr, len, false);
}

/* probe reads a byte of every peer's input, before anything is written; of its output where it
 * has no input (a rank with nothing to send may pass none, and its peers may still write into
 * its output: gatherv's root with a block of 0), so that every peer is tried. */
static int probe(cgloo__sc *s)
{
    int rc = CGLOO_OK;
    uint8_t byte;
    for (int q = 0; q < s->c->size && rc == CGLOO_OK; q++) {
        uint64_t at = s->at[q].in ? s->at[q].in : s->at[q].out;
        if (q != s->c->rank && at)
            rc = peer_read(s, q, &byte, at, 1);
    }
    return rc;
}

int cgloo__sc_read(cgloo__sc *s, int q, void *dst, size_t from, size_t len)
{
    return len ? peer_read(s, q, dst, s->at[q].in + from, len) : CGLOO_OK;
}

/* first_call: the probe round; the outcome is kept on the context, the same on every rank. */
static int first_call(cgloo__sc *s, bool *refused)
{
    coll *c = s->c;
    int32_t *all = NULL;
    int rc = statuses(s, probe(s), SC_STEP_PROBE, &all);
    bool can = rc == CGLOO_OK, cannot = rc == CGLOO_OK;
    for (int q = 0; rc == CGLOO_OK && q < c->size; q++) {
        can = can && all[q] == CGLOO_OK;
        cannot = cannot && (all[q] == CGLOO_OK || all[q] == CGLOO_ENOTSUP);
    }
    *refused = cannot && !can;
    if (rc == CGLOO_OK && !can && !*refused)
        rc = first_failure(c, all, SC_STEP_PROBE); /* a peer is gone, say */
    free(all);
    if ((can || *refused) && c->user_tag < CGLOO_SC_TAGS) {
        pthread_mutex_lock(&c->ctx->lock);
        c->ctx->single_copy[c->user_tag] = can ? 1 : -1;
        pthread_mutex_unlock(&c->ctx->lock);
    }
    return rc;
}

/* where_round tells every peer where this rank's vectors lie (and its extra value for that
 * peer) and learns theirs, through the slots when the payload fits in one. */
static int where_round(cgloo__sc *s, const uint64_t *extra)
{
    coll *c = s->c;
    size_t words = 2 + (extra ? (size_t)c->size : 0), len = words * sizeof(uint64_t);
    uint64_t *all = calloc((size_t)c->size + 1, len);
    if (!all)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d ranks' addresses", c->size);
    uint64_t *mine = all + (size_t)c->size * words;
    mine[0] = (uint64_t)(uintptr_t)s->in;
    mine[1] = (uint64_t)(uintptr_t)s->out;
    if (extra)
        memcpy(mine + 2, extra, (size_t)c->size * sizeof *extra);
    int rc = CGLOO_OK;
    s->slots = cgloo__coll_slots_reach(c) && len <= CGLOO_SLOT_DATA;
    if (s->slots)
        rc = cgloo__slots_open(c, &s->set, -1);
    if (rc == CGLOO_OK && s->slots)
        cgloo__slots_gate_open(&s->set); /* before the peers learn where out lies */
    if (rc == CGLOO_OK)
        rc = sc_round(s, mine, all, len, SC_STEP_WHERE);
    for (int q = 0; rc == CGLOO_OK && q < c->size; q++) {
        const uint64_t *w = all + (size_t)q * words;
        s->at[q] = (cgloo__sc_where){w[0], w[1]};
        if (extra)
            s->extra[q] = w[2 + c->rank];
    }
    free(all);
    return rc;
}

int cgloo__sc_begin(cgloo__sc *s, coll *c, const void *in, void *out, const size_t *off,
                    const uint64_t *extra, bool *refused)
{
    /* all but the slot set (5 KiB with its peers' lined copies), which is opened, not cleared */
    memset(s, 0, offsetof(cgloo__sc, set));
    s->c = c;
    s->in = in;
    s->out = out;
    s->off = off;
    *refused = false;
    int known = sc_known(c);
    if (known < 0) { /* asked for by name where it cannot run */
        *refused = true;
        return CGLOO_OK;
    }
    s->at = calloc((size_t)c->size, sizeof *s->at);
    s->extra = extra ? calloc((size_t)c->size, sizeof *s->extra) : NULL;
    if (!s->at || (extra && !s->extra))
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d ranks' addresses", c->size);
    int rc = where_round(s, extra);
    if (rc == CGLOO_OK && known == 0)
        rc = first_call(s, refused);
    return rc;
}

void cgloo__sc_fallback(coll *c, const char *algorithm)
{
    c->status = CGLOO_OK;
    c->algorithm = algorithm;
    cgloo__flight_detail(&c->ctx->flight, c->flight_id, c->algorithm, c->fp.count, c->fp.root);
}

/* scratch_take: the context's kept scratch, or a new one (NULL: no memory). Kept because a
 * fresh scratch is above glibc's mmap threshold: every call would map it, fault its pages in
 * and unmap it again. */
static uint8_t *scratch_take(cgloo_context *ctx)
{
    void *kept = atomic_exchange(&ctx->sc_scratch, NULL);
    return kept ? kept : malloc(CGLOO__SC_SCRATCH_BYTES);
}

/* scratch_give keeps p for the next call, or frees it when another call's is kept already. */
static void scratch_give(cgloo_context *ctx, void *p)
{
    void *none = NULL;
    if (p && !atomic_compare_exchange_strong(&ctx->sc_scratch, &none, p))
        free(p);
}

void cgloo__sc_end(cgloo__sc *s)
{
    int stalled = s->slots ? cgloo__slots_gate_close(&s->set) : -1;
    if (stalled >= 0)
        CGLOO_LOG(CGLOO_LOG_ERROR, s->c->rank, s->c->size,
                  "rank %d stayed in a write into this rank's output for %d ms after the "
                  "collective ended: that memory may still change",
                  stalled, SLOTS_GATE_WAIT_MS);
    if (s->slots)
        cgloo__slots_close(&s->set);
    free(s->at);
    free(s->extra);
    scratch_give(s->c->ctx, s->chunk);
    s->at = NULL;
    s->extra = NULL;
    s->chunk = NULL;
}

/* reduce_chunk writes elements [done, done + m) of block c->rank, reduced over every rank, to
 * `to`: each peer's chunk read straight out of its input, in the order rank+1, rank+2, ..., into
 * the scratch and reduced into `to`; with `own` (this rank's chunk, out of place), `to` does not
 * hold this rank's part yet: rank+1's chunk is read straight into `to` and `own` reduced into it
 * (the op commutes, so the result is the same), which spares copying it first. `to` may be the
 * scratch's start only with `own` and 2 ranks (no other peer's chunk passes through it), or its
 * second half (the first holds the peers' chunks). */
static int reduce_chunk(cgloo__sc *s, uint8_t *to, const uint8_t *own, size_t done, size_t m)
{
    coll *c = s->c;
    size_t len = m * c->esize;
    uint64_t from = (s->off[c->rank] + done) * c->esize;
    for (int k = 1; k < c->size; k++) {
        int q = (c->rank + k) % c->size;
        bool into_to = k == 1 && own;
        int rc = peer_read(s, q, into_to ? to : s->chunk, s->at[q].in + from, len);
        if (rc != CGLOO_OK)
            return rc;
        cgloo__coll_reduce(c, to, into_to ? own : s->chunk, m);
    }
    return CGLOO_OK;
}

/* Whom reduce_block writes each reduced chunk to: nobody, every peer, or (>= 0) one rank. */
enum { PUSH_NONE = -2, PUSH_ALL = -1 };

/* push_one writes len bytes at src into rank q's output at byte out_at, within q's gate. */
static int push_one(cgloo__sc *s, int q, const uint8_t *src, size_t out_at, size_t len)
{
    coll *c = s->c;
    int i = q - (q > c->rank); /* the set holds the others */
    if (!cgloo__slots_gate_enter(&s->set, i))
        return cgloo__coll_error(c, CGLOO_EPEER,
                                 "rank %d left the collective before rank %d wrote into its "
                                 "buffer",
                                 q, c->rank);
    /* write_memory does not write src: the cast only fits peer_copy's buffer */
    int rc = peer_copy(s, q, (void *)(uintptr_t)src, s->at[q].out + out_at, len, true);
    cgloo__slots_gate_leave(&s->set, i);
    return rc;
}

int cgloo__sc_write(cgloo__sc *s, int q, const void *src, size_t out_at, size_t len)
{
    CGLOO_ASSERT(s->slots && q != s->c->rank);
    int rc = CGLOO_OK;
    for (size_t done = 0; done < len && rc == CGLOO_OK; done += SC_CHUNK)
        rc = push_one(s, q, (const uint8_t *)src + done, out_at + done,
                      CGLOO_MIN(SC_CHUNK, len - done));
    return rc;
}

/* push_chunk writes len bytes at src into rank `to`'s output at byte out_at, or with PUSH_ALL
 * into every peer's, in the order rank+1, rank+2, ... (so that the ranks' writes spread over
 * the peers). */
static int push_chunk(cgloo__sc *s, int to, const uint8_t *src, size_t out_at, size_t len)
{
    coll *c = s->c;
    if (to != PUSH_ALL)
        return push_one(s, to, src, out_at, len);
    int rc = CGLOO_OK;
    for (int k = 1; k < c->size && rc == CGLOO_OK; k++)
        rc = push_one(s, (c->rank + k) % c->size, src, out_at, len);
    return rc;
}

uint8_t *cgloo__sc_scratch(cgloo__sc *s)
{
    if (!s->chunk && !(s->chunk = scratch_take(s->c->ctx)))
        cgloo__coll_error(s->c, CGLOO_ENOMEM, "no memory for %u bytes of scratch",
                          CGLOO__SC_SCRATCH_BYTES);
    return s->chunk;
}

/* reduce_block reduces block c->rank into dst a chunk at a time (reduce_chunk), all peers'
 * before the next chunk so that it stays in the cache, and writes each chunk as soon as it is
 * reduced to `push` (PUSH_NONE, PUSH_ALL or a rank) at byte out_at of its output. dst NULL
 * (pushing): each chunk is reduced in the scratch and kept nowhere else; with more than 2 ranks
 * the scratch's second half holds it while the peers' chunks are read into the first. */
static int reduce_block(cgloo__sc *s, uint8_t *dst, int push, size_t out_at)
{
    coll *c = s->c;
    size_t first = s->off[c->rank], n = s->off[c->rank + 1] - first;
    const uint8_t *own = cgloo__elem(c, s->in, first);
    bool apart = dst != own; /* out of place: the first peer's chunk is read into dst */
    bool halves = !dst && c->size > 2;
    CGLOO_ASSERT(dst || push != PUSH_NONE);
    if (n == 0)
        return CGLOO_OK;
    if ((c->size > 2 || !apart || !dst) && !cgloo__sc_scratch(s))
        return CGLOO_ENOMEM;
    size_t per_chunk = CGLOO_MAX((halves ? SC_CHUNK / 2 : SC_CHUNK) / c->esize, 1);
    uint8_t *held = halves ? s->chunk + CGLOO__SC_SCRATCH_BYTES / 2 : s->chunk;
    int rc = CGLOO_OK;
    for (size_t done = 0; done < n && rc == CGLOO_OK; done += per_chunk) {
        size_t m = CGLOO_MIN(per_chunk, n - done), at = done * c->esize;
        uint8_t *to = dst ? dst + at : held;
        rc = reduce_chunk(s, to, apart ? own + at : NULL, done, m);
        if (rc == CGLOO_OK && push != PUSH_NONE)
            rc = push_chunk(s, push, to, out_at + at, m * c->esize);
    }
    return rc;
}

int cgloo__sc_reduce_own(cgloo__sc *s, uint8_t *dst)
{
    return reduce_block(s, dst, PUSH_NONE, 0);
}

int cgloo__sc_reduce_push(cgloo__sc *s, uint8_t *dst, size_t out_at)
{
    CGLOO_ASSERT(s->slots);
    return reduce_block(s, dst, PUSH_ALL, out_at);
}

int cgloo__sc_reduce_push_to(cgloo__sc *s, int q, size_t out_at)
{
    CGLOO_ASSERT(s->slots && q >= 0 && q < s->c->size && q != s->c->rank);
    return reduce_block(s, NULL, q, out_at);
}

int cgloo__sc_gather(cgloo__sc *s, const size_t *out_off)
{
    coll *c = s->c;
    int rc = CGLOO_OK;
    for (int k = 1; k < c->size && rc == CGLOO_OK; k++) {
        int q = (c->rank + k) % c->size;
        size_t bytes = out_off[q + 1] - out_off[q];
        if (bytes)
            rc = peer_read(s, q, s->out + out_off[q], s->at[q].out + out_off[q], bytes);
    }
    return rc;
}
