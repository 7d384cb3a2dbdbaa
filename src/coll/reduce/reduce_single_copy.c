/*
 * Reduce, "single_copy": the ranks reduce every rank's input read straight out of that rank's
 * memory, for ranks that share a host (coll/single_copy.h has the steps and the first call's
 * probe). No vector passes through a message. Two ways, chosen alike on every rank:
 *
 * Shared (where the rounds go through the slots; 2 ranks from SHARED_MIN_BYTES, more ranks
 * always), as the allreduce's pushes: the vector is cut into P even blocks. Rank r reduces block
 * r out of every rank's input a chunk at a time; the root into its recvbuf, every other rank in
 * its scratch, writing each reduced chunk straight into the root's recvbuf while it is in its
 * cache (within the root's gate, coll/slots.h). Then every rank says it is done: a rank returns
 * only once every rank did, since until then a peer may still read its input, and the root only
 * once every block was written. Each rank reads (P-1)/P n and reduces (P-1)/P n; a non-root also
 * writes n/P.
 *
 * Root alone (the rounds as messages, or 2 ranks below SHARED_MIN_BYTES): the root walks the
 * vector in chunks that stay in its cache: it reads the next rank's chunk straight into recvbuf
 * and reduces its own input into it (no copy of its own input), then reads every further rank's
 * chunk into the context's single-copy scratch and reduces it in. The root reads (P-1) n and
 * reduces it; the others only wait. Sharing where the rounds go as messages would need a round
 * more (every rank reduces block r, then the root reads the blocks back), which measured no
 * better: the extra round and the root's second read of (P-1)/P n ate what the shared
 * reduction saved. p50 us, alone against that, cgloo-bench over shared memory (load 6 to 20): 4
 * ranks 256 KiB 187-204 / 120-244, 1 MiB 665-729 / 1260-2135. The push needs no such round.
 * 4 ranks over the slots, p50 us of alternating runs, root alone against shared (Open MPI's
 * vader in the same minutes), one line crossing in 0.3 us: 128 KiB 63-69 / 63-70, 256 KiB
 * 110-124 / 79-87 (94-104), 1 MiB 416-457 / 247-332 (362-375), 4 MiB 2333-2628 / 916-1057
 * (2170-3114), 16 MiB 12577-14870 / 6530-7667 (12333-14127).
 *
 * In place on the root works: shared, a rank reads a chunk of the root's input before it writes
 * that chunk, and no other rank reads block r of it; alone, no peer reads the root's memory, so
 * it reduces every peer's chunk into recvbuf (== sendbuf) through the scratch. Any P, any root.
 * Preconditions: a commutative op (the order of the operands differs by rank and block).
 *
 * Cost, for n bytes: two rounds of P - 1 small buffers (slot hand-offs, or messages on a tag
 * without slots; three on a context's first call); nothing is copied twice.
 * Memory: the context's single-copy scratch, on every rank that reduces through it (a non-root
 * sharing, the root alone when P > 2 or in place, any rank sharing when P > 2).
 */
#include "coll/reduce/reduce.h"
#include "coll/pattern/blocks.h"
#include "coll/single_copy.h"

#include <stdlib.h>

/* Bytes of the root's reduction at a time (the scratch holds CGLOO__SC_SCRATCH_BYTES): its
 * piece of recvbuf stays in cache between the read that fills it and the reductions into it.
 * cgloo-bench --mode reduce, 2 ranks over shared memory,
 * p50 us of one run each on the shared 2-core machine (load 60 to 270), chunks of 32 / 64 / 128
 * / 256 KiB: 1 MiB 244 / 160-194 / 213 / 257, 4 MiB 1054 / 790-904 / 1033 / 1747. */
#define REDUCE_SC_CHUNK (64u * 1024)
_Static_assert(REDUCE_SC_CHUNK <= CGLOO__SC_SCRATCH_BYTES, "a chunk is read into the scratch");

/* root_chunk reduces elements [from, from + n) of every rank into dst: the first peer's are
 * read straight into dst (no copy of the root's own input) unless dst already holds the
 * root's own (in place), the others' through scratch. */
static int root_chunk(cgloo__sc *s, const uint8_t *own, uint8_t *dst, uint8_t *scratch, size_t from,
                      size_t n)
{
    coll *c = s->c;
    size_t at = from * c->esize, len = n * c->esize;
    int k = 1, rc = CGLOO_OK;
    if (dst != own) {
        rc = cgloo__sc_read(s, (c->rank + k++) % c->size, dst + at, at, len);
        if (rc == CGLOO_OK)
            cgloo__coll_reduce(c, dst + at, own + at, n);
    }
    for (; k < c->size && rc == CGLOO_OK; k++) {
        rc = cgloo__sc_read(s, (c->rank + k) % c->size, scratch, at, len);
        if (rc == CGLOO_OK)
            cgloo__coll_reduce(c, dst + at, scratch, n);
    }
    return rc;
}

/* root_reduce: the whole reduction on the root, one chunk at a time over every rank. */
static int root_reduce(cgloo__sc *s, const void *sendbuf, void *recvbuf, size_t count)
{
    coll *c = s->c;
    uint8_t *scratch = NULL;
    if (c->size == 1) { /* a world of one: nothing to read */
        if (recvbuf != sendbuf)
            memcpy(recvbuf, sendbuf, count * c->esize);
        return CGLOO_OK;
    }
    if ((c->size > 2 || sendbuf == recvbuf) && !(scratch = cgloo__sc_scratch(s)))
        return CGLOO_ENOMEM; /* recorded */
    size_t per = CGLOO_MAX(REDUCE_SC_CHUNK / c->esize, 1);
    int rc = CGLOO_OK;
    for (size_t done = 0; done < count && rc == CGLOO_OK; done += per)
        rc = root_chunk(s, sendbuf, recvbuf, scratch, done, CGLOO_MIN(per, count - done));
    return rc;
}

/* From this many bytes, 2 ranks share the reduction (shared_reduce) where the rounds go through
 * the slots. cgloo-bench --verify over shared memory, 2 ranks, p50 us of the root alone against
 * shared, two alternating runs each (an AMD EPYC KVM guest of the 2-core class): 64 KiB 6.4-6.8
 * against 10.1, 256 KiB 25.0-25.5 against 17.8, 1 MiB 106-121 against 59-60, 4 MiB 585-595
 * against 265-337, 16 MiB 4329-4687 against 2250-2581 (Open MPI's vader in the same minutes:
 * 7.7, 27.6, 101, 403, 3774). */
#define SHARED_MIN_BYTES (256u * 1024)

/* shared_reduce: ranks whose rounds go through the slots share the reduction, as the
 * allreduce's pushes do: rank r reduces block r, the root into recvbuf, the others a chunk at a
 * time in their scratch, writing each chunk into the root's recvbuf while it is in the cache. */
static int shared_reduce(cgloo__sc *s, void *recvbuf, int root, const size_t *off)
{
    coll *c = s->c;
    if (c->rank == root)
        return cgloo__sc_reduce_own(s, cgloo__elem(c, recvbuf, off[root]));
    return cgloo__sc_reduce_push_to(s, root, off[c->rank] * c->esize);
}

/* shared_wanted: the ranks share the reduction where the rounds go through the slots (the same
 * answer on every rank). More than 2 ranks always: the root alone reads (P-1) n. */
static bool shared_wanted(const coll *c, size_t count)
{
    return c->size > 2 || (c->size == 2 && count * c->esize >= SHARED_MIN_BYTES);
}

static int single_copy_run(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root,
                           bool *refused)
{
    bool share = shared_wanted(c, count);
    size_t *off = share ? malloc(((size_t)c->size + 1) * sizeof *off) : NULL;
    if (share && !off)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d block offsets", c->size);
    if (off)
        blocks_even(off, c->size, count); /* block r is rank r's */
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, sendbuf, recvbuf, off, NULL, refused);
    if (rc == CGLOO_OK && !*refused) {
        int mine = share && s.slots  ? shared_reduce(&s, recvbuf, root, off)
                   : c->rank == root ? root_reduce(&s, sendbuf, recvbuf, count)
                                     : CGLOO_OK;
        rc = cgloo__sc_agree(&s, mine, SC_STEP_DONE);
    }
    cgloo__sc_end(&s);
    free(off);
    return rc;
}

int cgloo__reduce_single_copy(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root)
{
    bool refused = false;
    int rc = single_copy_run(c, sendbuf, recvbuf, count, root, &refused);
    if (!refused)
        return rc;
    /* Some rank may not read: nothing was written anywhere, so the selector's message-passing
     * choice runs on the vectors as they came. */
    reduce_fn fallback = cgloo__reduce_message_choice(c, count);
    cgloo__sc_fallback(c, fallback == cgloo__reduce_rsg ? "reduce_scatter_gather" : "binomial");
    return fallback(c, sendbuf, recvbuf, count, root);
}
