/*
 * Allreduce, "single_copy": every rank reads straight from its peers' vectors, for ranks that
 * share a host (coll/single_copy.h has the steps and the first call's probe).
 *
 * The vector is cut into P even blocks. After the ranks told each other where their vectors
 * lie, rank r reduces block r straight out of every peer's input into its output, says so
 * (step "reduced"), then reads every other block q straight out of rank q's output into its
 * own, and says so (step "done"): it returns only once every rank did, since until then a peer
 * may still read its output.
 *
 * Two ranks up to WHOLE_MAX_BYTES: each rank reads the peer's whole input (into its output, or
 * in place into the scratch) and says so (step "done"), reducing its own with it before (out of
 * place) or after (in place, where the peer reads the buffer until then): one round fewer, and
 * neither rank waits for the other between two halves, for twice the reduction.
 *
 * In place works: until "reduced" rank r writes only block r of its buffer, which peers read
 * only from then on; it overwrites block q after rank q's "reduced", which q sends after its
 * own reads of block q from r's buffer.
 *
 * Cost, for n bytes: three rounds of P - 1 small buffers (slot hand-offs, or messages on a tag
 * without slots) (four on a context's first call); every rank copies (P-1)/P n bytes in,
 * reduces (P-1)/P n and copies (P-1)/P n out, all by reading the peers' memory: nothing passes
 * through a ring, which would copy every byte twice in each of the ring algorithm's two passes.
 * Preconditions: a commutative op; every peer over shared memory. Memory: a 512 KiB scratch
 * kept on the context (none for 2 ranks out of place).
 */
#include "coll/allreduce/allreduce.h"
#include "coll/single_copy.h"

#include <stdlib.h>

/* Up to this many bytes, 2 ranks out of place each reduce the whole vector (whole_run).
 * p50 us of cgloo-bench, single_copy split in halves against whole, medians of five
 * alternating runs at load 3 to 11: 64 KiB 13.4 against 8.5, 256 KiB 37.1 against 25.6,
 * 512 KiB 71.4 against 52.4, 1 MiB 170 against 180, 4 MiB 735 against 782 (from 1 MiB the
 * second half's reduction costs more than the round and the wait it saves). */
#define WHOLE_MAX_BYTES (512u * 1024)
_Static_assert(WHOLE_MAX_BYTES <= CGLOO__SC_SCRATCH_BYTES, "in place, the peer's vector fits");

/* whole_wanted: 2 ranks and a vector small enough; the same on both ranks, whichever of them
 * runs in place. */
static bool whole_wanted(const coll *c, size_t bytes)
{
    return c->size == 2 && bytes <= WHOLE_MAX_BYTES;
}

/* whole_run: each of 2 ranks reads the peer's whole input and reduces it with its own, with
 * one round after the reads (no "reduced": no rank waits for the other between halves). Out of
 * place the peer's vector is read into the output and the own reduced into it before the
 * round; in place it is read into the scratch, and the buffer, which the peer reads until the
 * round, is written only after it. */
static int whole_run(cgloo__sc *s, const void *in, void *out, size_t count)
{
    coll *c = s->c;
    int peer = 1 - c->rank;
    size_t bytes = count * c->esize;
    if (in != out) {
        int mine = cgloo__sc_read(s, peer, out, 0, bytes);
        if (mine == CGLOO_OK)
            cgloo__coll_reduce(c, out, in, count);
        return cgloo__sc_agree(s, mine, SC_STEP_DONE);
    }
    uint8_t *tmp = bytes ? cgloo__sc_scratch(s) : NULL;
    int mine = bytes && !tmp ? CGLOO_ENOMEM : cgloo__sc_read(s, peer, tmp, 0, bytes);
    int rc = cgloo__sc_agree(s, mine, SC_STEP_DONE);
    if (rc == CGLOO_OK)
        cgloo__coll_reduce(c, out, tmp, count);
    return rc;
}

static int single_copy_run(coll *c, const void *in, void *out, size_t count, bool *refused)
{
    size_t *off = malloc(((size_t)c->size + 1) * sizeof *off);
    size_t *bytes_off = malloc(((size_t)c->size + 1) * sizeof *bytes_off);
    if (!off || !bytes_off) {
        free(off);
        free(bytes_off);
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d block offsets", c->size);
    }
    size_t base = count / (size_t)c->size, rem = count % (size_t)c->size;
    for (int r = 0; r <= c->size; r++) {
        off[r] = base * (size_t)r + CGLOO_MIN((size_t)r, rem);
        bytes_off[r] = off[r] * c->esize;
    }
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, in, out, off, NULL, refused);
    if (rc == CGLOO_OK && !*refused && whole_wanted(c, count * c->esize)) {
        rc = whole_run(&s, in, out, count);
    } else if (rc == CGLOO_OK && !*refused) {
        uint8_t *mine = cgloo__elem(c, out, off[c->rank]);
        rc = cgloo__sc_agree(&s, cgloo__sc_reduce_own(&s, mine), SC_STEP_REDUCED);
        if (rc == CGLOO_OK)
            rc = cgloo__sc_agree(&s, cgloo__sc_gather(&s, bytes_off), SC_STEP_DONE);
    }
    cgloo__sc_end(&s);
    free(off);
    free(bytes_off);
    return rc;
}

int cgloo__allreduce_single_copy_out_of_place(coll *c, const void *sendbuf, void *recvbuf,
                                              size_t count)
{
    bool refused = false;
    int rc = single_copy_run(c, sendbuf, recvbuf, count, &refused);
    if (!refused)
        return rc;
    /* Some rank may not read: nothing was written anywhere, so the ring runs on the vectors as
     * they came. */
    cgloo__sc_fallback(c, "ring");
    if (sendbuf == recvbuf)
        return cgloo__allreduce_ring(c, recvbuf, count);
    return cgloo__allreduce_ring_out_of_place(c, sendbuf, recvbuf, count);
}

int cgloo__allreduce_single_copy(coll *c, void *buf, size_t count)
{
    return cgloo__allreduce_single_copy_out_of_place(c, buf, buf, count);
}
