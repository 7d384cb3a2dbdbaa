/*
 * Reduce, "single_copy": the root reduces every rank's input read straight out of that rank's
 * memory, for ranks that share a host (coll/single_copy.h has the steps and the first call's
 * probe); 2 ranks from SHARED_MIN_BYTES share the reduction (below). No vector passes through a
 * message.
 *
 * After the ranks told each other where their inputs lie, the root walks the vector in chunks
 * that stay in its cache: it reads the next rank's chunk straight into recvbuf and reduces its
 * own input into it (no copy of its own input), then reads every further rank's chunk into the
 * context's single-copy scratch and reduces it in. Then every rank says it is done: a rank returns
 * only once the root did, since until then the root may still read its input.
 *
 * In place on the root works: when the root reduces alone no peer reads its memory, so it
 * reduces every peer's chunk into recvbuf (== sendbuf) through the scratch. Any P, any root.
 * Preconditions: a commutative op (the root reduces in the order root+1, root, root+2, ...).
 *
 * Cost, for n bytes: two rounds of P - 1 small buffers (slot hand-offs, or messages on a tag
 * without slots; three on a context's first call); the
 * root reads (P-1) n bytes once and reduces them, nothing is copied twice. Beyond 2 ranks the
 * other ranks only wait, so the reduction is not shared. Sharing it with a round more (every rank
 * reduces block r the same way, then the root reads the blocks) measured no better on the 2-core
 * machine class: the extra round and the root's second read of (P-1)/P n ate what the halved
 * reduction saved. p50 us, this against that, cgloo-bench over shared memory (load 6 to 20): 2
 * ranks 64 KiB 11-13 / 18-19, 1 MiB 236 / 178-264, 4 MiB 1078-1107 / 866-1106; 4 ranks 256 KiB
 * 187-204 / 120-244, 1 MiB 665-729 / 1260-2135; with single_copy.h's own reduce step, 64 MiB at 2
 * ranks 25-54 ms / 124-141 ms.
 *
 * Two ranks from SHARED_MIN_BYTES, where the rounds go through the slots, share it without
 * that round, as the allreduce does: the vector is cut in two blocks, the root reduces its own
 * into recvbuf, the other rank reduces the other a chunk at a time in its scratch and writes
 * each chunk straight into the root's recvbuf while it is in its cache (within the root's
 * gate, coll/slots.h). Each rank reads n/2 and reduces n/2; the other also writes n/2. In place
 * on the root works: the other rank reads a chunk of the root's input before it writes that
 * chunk, and the root never reads that block of its own buffer.
 * Memory: the context's single-copy scratch, on the root when P > 2 or in place, and on the
 * other rank where the two share the reduction.
 */
#include "coll/reduce/reduce.h"
#include "coll/single_copy.h"

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

/* shared_reduce: 2 ranks whose rounds go through the slots share the reduction, as the
 * allreduce's pushes do: each reduces one half, the root into recvbuf, the other a chunk at a
 * time in its scratch, writing each chunk into the root's recvbuf while it is in its cache. */
static int shared_reduce(cgloo__sc *s, void *recvbuf, int root, const size_t *off)
{
    coll *c = s->c;
    if (c->rank == root)
        return cgloo__sc_reduce_own(s, cgloo__elem(c, recvbuf, off[root]));
    return cgloo__sc_reduce_push_from_scratch(s, off[c->rank] * c->esize);
}

static int single_copy_run(coll *c, const void *sendbuf, void *recvbuf, size_t count, int root,
                           bool *refused)
{
    size_t half = count / 2, off[3] = {0, count - half, count}; /* block r is rank r's */
    bool share = c->size == 2 && count * c->esize >= SHARED_MIN_BYTES;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, sendbuf, recvbuf, share ? off : NULL, NULL, refused);
    if (rc == CGLOO_OK && !*refused) {
        int mine = share && s.slots  ? shared_reduce(&s, recvbuf, root, off)
                   : c->rank == root ? root_reduce(&s, sendbuf, recvbuf, count)
                                     : CGLOO_OK;
        rc = cgloo__sc_agree(&s, mine, SC_STEP_DONE);
    }
    cgloo__sc_end(&s);
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
