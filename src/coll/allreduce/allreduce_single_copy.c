/*
 * Allreduce, "single_copy": every rank reads straight from its peers' buffers, for ranks that
 * share a host (the transport's read_memory: process_vm_readv over shared memory).
 *
 * The vector is cut into P blocks. Each rank tells every peer where its input and its output
 * lie (step 0). Rank r owns block r: it starts from its own input's block and reduces into it
 * every peer's block r, read in chunks of CHUNK bytes straight out of the peer's input into a
 * buffer that stays in the cache. It tells every peer how that went (step 1); once all said so,
 * it reads every other block q straight out of rank q's output into its own (one copy), and
 * tells every peer it is done (step 2), returning only when every peer is: until then a peer
 * may still be reading its output.
 *
 * In place works: rank r writes only block r of its buffer until step 1, and no peer reads
 * block r of it after its own step 1 but from the output, which then holds the result; rank r
 * overwrites block q of its buffer only after rank q's step-1 message, which q sends after its
 * reads of block q from r's buffer.
 *
 * The first call on a context reads one element of every peer before writing anything and
 * tells the peers the outcome (step 3), so that every rank learns together whether the kernel
 * allows the reads (another user, a ptrace scope, CGLOO_SHM_LARGE=copy refuse them); if any
 * rank cannot, every rank runs the ring on the untouched vectors instead, and the context
 * remembers it so that its selector no longer picks this algorithm.
 *
 * Cost, for n bytes: three rounds of P - 1 small messages (four on the first call); every
 * rank copies (P-1)/P n bytes in, reduces (P-1)/P n and copies (P-1)/P n out, all by reading
 * memory: nothing passes through a ring, and no rank waits on another's copies but at the
 * three rounds. Against the ring over shared memory, which copies every byte twice (into the
 * ring and out of it) in each of its two passes. Preconditions: a commutative op (block r is
 * reduced in the order r, r+1, ..., r-1), every peer reachable by read_memory.
 * Memory: CHUNK bytes of scratch.
 */
#include "coll/allreduce/allreduce.h"
#include "core/context.h"
#include "core/flight.h"
#include "transport/transport.h"

#include <stdlib.h>

/* Bytes read and reduced at a time: large enough that a system call is noise (one
 * process_vm_readv pins the pages it copies), small enough to stay in a 2-core machine's
 * L2 between the copy and the reduction. */
#define CHUNK (256u * 1024)

enum { STEP_WHERE, STEP_REDUCED, STEP_DONE, STEP_PROBE };

/* Where a rank's vectors lie, as step 0 sends it. */
typedef struct where {
    uint64_t in, out;
} where;

typedef struct single_copy {
    coll *c;
    const uint8_t *in;
    uint8_t *out;
    size_t count;
    where *at; /* [size]: every rank's, this rank's included */
    size_t *off;
    uint8_t *chunk;
} single_copy;

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

/* agree exchanges each rank's status at step; OK when all are, else the first failure, naming
 * the rank (*refused: every failure was a refusal of the reads). */
static int agree(coll *c, int mine, unsigned step, bool *refused)
{
    int32_t *all = calloc((size_t)c->size, sizeof *all), me = mine;
    if (!all)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d statuses", c->size);
    int rc = exchange(c, &me, all, sizeof me, step);
    *refused = rc == CGLOO_OK;
    for (int q = 0; rc == CGLOO_OK && q < c->size; q++)
        if (all[q] != CGLOO_OK) {
            *refused = *refused && all[q] == CGLOO_ENOTSUP;
            rc = q == c->rank ? all[q]
                              : cgloo__coll_error(c, all[q], "step %u: rank %d failed: %s", step, q,
                                                  cgloo_strerror(all[q]));
        }
    if (rc == CGLOO_OK)
        *refused = false;
    free(all);
    return rc;
}

/* peer_read copies len bytes at addr of rank q into dst, recording a failure. */
static int peer_read(single_copy *s, int q, void *dst, uint64_t addr, size_t len)
{
    cgloo_peer *p = &s->c->ctx->peers[q];
    int rc = p->transport && p->transport->read_memory
                 ? p->transport->read_memory(p, dst, addr, len)
                 : CGLOO_ENOTSUP;
    if (rc == CGLOO_OK)
        return rc;
    return cgloo__coll_error(s->c, rc, "reading %zu bytes of rank %d's vector failed: %s", len, q,
                             rc == CGLOO_ENOTSUP ? "the kernel does not allow it"
                                                 : cgloo_strerror(rc));
}

/* probe reads one element of every peer's input, before anything is written. */
static int probe(single_copy *s)
{
    int rc = CGLOO_OK;
    for (int q = 0; q < s->c->size && rc == CGLOO_OK; q++)
        if (q != s->c->rank)
            rc = peer_read(s, q, s->chunk, s->at[q].in, s->c->esize);
    return rc;
}

/* reduce_own reduces block r (this rank's) of every peer's input into this rank's output. */
static int reduce_own(single_copy *s)
{
    coll *c = s->c;
    size_t first = s->off[c->rank], n = s->off[c->rank + 1] - first;
    uint8_t *mine = cgloo__elem(c, s->out, first);
    if (s->in != s->out)
        memcpy(mine, cgloo__elem(c, s->in, first), n * c->esize);
    size_t per_chunk = CGLOO_MAX(CHUNK / c->esize, 1);
    for (int k = 1; k < c->size; k++) {
        int q = (c->rank + k) % c->size;
        for (size_t done = 0; done < n; done += per_chunk) {
            size_t m = CGLOO_MIN(per_chunk, n - done);
            uint64_t addr = s->at[q].in + (first + done) * c->esize;
            int rc = peer_read(s, q, s->chunk, addr, m * c->esize);
            if (rc != CGLOO_OK)
                return rc;
            cgloo__coll_reduce(c, mine + done * c->esize, s->chunk, m);
        }
    }
    return CGLOO_OK;
}

/* gather_blocks reads every other rank's reduced block out of its output into this rank's. */
static int gather_blocks(single_copy *s)
{
    coll *c = s->c;
    int rc = CGLOO_OK;
    for (int k = 1; k < c->size && rc == CGLOO_OK; k++) {
        int q = (c->rank + k) % c->size;
        size_t first = s->off[q], bytes = (s->off[q + 1] - first) * c->esize;
        if (bytes)
            rc = peer_read(s, q, cgloo__elem(c, s->out, first), s->at[q].out + first * c->esize,
                           bytes);
    }
    return rc;
}

/* first_call: the probe round. OK to go on; *refused when a rank cannot read (nothing was
 * written anywhere). The outcome is kept on the context, the same on every rank. */
static int first_call(single_copy *s, bool *refused)
{
    int rc = agree(s->c, probe(s), STEP_PROBE, refused);
    if (rc == CGLOO_OK || *refused) {
        cgloo_context *ctx = s->c->ctx;
        pthread_mutex_lock(&ctx->lock);
        ctx->single_copy = *refused ? -1 : 1;
        pthread_mutex_unlock(&ctx->lock);
    }
    return rc;
}

static int single_copy_run(single_copy *s, bool *refused)
{
    coll *c = s->c;
    pthread_mutex_lock(&c->ctx->lock);
    int known = c->ctx->single_copy;
    pthread_mutex_unlock(&c->ctx->lock);
    if (known < 0) { /* asked for by name where it cannot run */
        *refused = true;
        return CGLOO_OK;
    }
    where mine = {(uint64_t)(uintptr_t)s->in, (uint64_t)(uintptr_t)s->out};
    int rc = exchange(c, &mine, s->at, sizeof mine, STEP_WHERE);
    bool probed = known != 0;
    if (rc == CGLOO_OK && !probed)
        rc = first_call(s, refused);
    if (rc != CGLOO_OK)
        return rc;
    bool later; /* a refusal after the probe is a failure: blocks were written */
    rc = agree(c, reduce_own(s), STEP_REDUCED, &later);
    if (rc == CGLOO_OK)
        rc = agree(c, gather_blocks(s), STEP_DONE, &later);
    return rc;
}

int cgloo__allreduce_single_copy_out_of_place(coll *c, const void *sendbuf, void *recvbuf,
                                              size_t count)
{
    single_copy s = {.c = c, .in = sendbuf, .out = recvbuf, .count = count};
    s.at = calloc((size_t)c->size, sizeof *s.at);
    s.off = malloc(((size_t)c->size + 1) * sizeof *s.off);
    s.chunk = malloc(CHUNK);
    bool refused = false;
    int rc = s.at && s.off && s.chunk
                 ? CGLOO_OK
                 : cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for the scratch");
    if (rc == CGLOO_OK) {
        size_t base = count / (size_t)c->size, rem = count % (size_t)c->size;
        for (int r = 0; r <= c->size; r++)
            s.off[r] = base * (size_t)r + CGLOO_MIN((size_t)r, rem);
        rc = single_copy_run(&s, &refused);
    }
    free(s.off);
    free(s.at);
    free(s.chunk);
    if (!refused)
        return rc;
    /* Some rank may not read: nothing was written anywhere, so the ring runs on the vectors as
     * they came. */
    c->status = CGLOO_OK;
    c->algorithm = "ring";
    cgloo__flight_detail(&c->ctx->flight, c->flight_id, c->algorithm, c->fp.count, c->fp.root);
    if (sendbuf == recvbuf)
        return cgloo__allreduce_ring(c, recvbuf, count);
    return cgloo__allreduce_ring_out_of_place(c, sendbuf, recvbuf, count);
}

int cgloo__allreduce_single_copy(coll *c, void *buf, size_t count)
{
    return cgloo__allreduce_single_copy_out_of_place(c, buf, buf, count);
}

bool cgloo__allreduce_single_copy_possible(const coll *c)
{
    cgloo_context *ctx = c->ctx;
    pthread_mutex_lock(&ctx->lock);
    bool ok = ctx->single_copy >= 0;
    for (int q = 0; q < c->size && ok; q++) {
        const cgloo_peer *p = &ctx->peers[q];
        ok = q == c->rank || (p->transport && p->transport->read_memory);
    }
    pthread_mutex_unlock(&ctx->lock);
    return ok;
}
