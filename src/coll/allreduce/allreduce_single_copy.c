/*
 * Allreduce, "single_copy": every rank reads straight from its peers' vectors and writes
 * straight into their outputs, for ranks that share a host (coll/single_copy.h has the steps
 * and the first call's probe).
 *
 * The vector is cut into P even blocks. After the ranks told each other where their vectors
 * lie, rank r reduces block r a chunk at a time straight out of every peer's input into its
 * output, and writes each reduced chunk at once, while it is in the cache, into every peer's
 * output (process_vm_writev, "push"), then says so (step "done"): it returns only once every
 * rank did, since until then a peer may still read its input or write its output. Its peers'
 * outputs are open to the writes only while they are in the call: each rank opens its gate
 * before the first round and shuts it before it returns (coll/slots.h), so that a peer that
 * gave up (a timeout) gets no write into a buffer it has handed back. Where the rounds go as
 * messages (a tag without slots, hence without gates) rank r says "reduced" instead and then
 * reads every other block q out of rank q's output (the "split" steps, one round more).
 *
 * Why push rather than read the blocks afterwards: the reduced chunk is in the writer's cache,
 * while a reader of a finished block fetches it out of its owner's cache, or from L3 once it
 * was evicted, after the round that says it is there. 2 ranks, float32 sum, cgloo-bench p50
 * us, push against split, medians of 3 alternating runs at load 2: 1 MiB 143 against 178,
 * 4 MiB 678 against 767, 16 MiB 2872 against 3103, 64 MiB 24.1 ms against 26.5 (the same
 * runs: Open MPI's vader 292, 1188, 5354 and 56533 us).
 *
 * Two ranks up to WHOLE_MAX_PUSHED_BYTES (WHOLE_MAX_BYTES where the blocks are read
 * afterwards instead of pushed), neither in place: each rank reads the peer's whole input
 * into its output, reduces its own into it and says so (step "done"): one round fewer, and
 * neither rank waits for the other between two halves, for twice the reduction.
 *
 * Where some rank runs in place, calls below IN_PLACE_PUSHED_MIN_BYTES (IN_PLACE_MIN_BYTES
 * where the blocks are read afterwards) are declined after the first round (which tells every
 * rank where every vector lies, so all decline alike) and run the message-based choice
 * instead: a vector its owner just wrote is read out of that owner's cache, which costs more
 * there than the copies through the rings. The whole-vector path runs only where no rank is in
 * place (a rank in place overwrites the input its peer reads whole).
 *
 * In place works: a rank writes into a peer's buffer only chunks of its own block, each after
 * it read that chunk out of every peer (and no other rank reads a block it does not own); in
 * the split steps, until "reduced" rank r writes only block r of its buffer, which peers read
 * only from then on; it overwrites block q after rank q's "reduced", which q sends after its
 * own reads of block q from r's buffer.
 *
 * Cost, for n bytes: two rounds of P - 1 small buffers (slot hand-offs) (three on a context's
 * first call; the split steps three rounds, as messages); every rank copies (P-1)/P n bytes in,
 * reduces (P-1)/P n and copies n/P out to each of P - 1 peers, all straight between the ranks'
 * memories: nothing passes through a ring, which would copy every byte twice in each of the
 * ring algorithm's two passes. Preconditions: a commutative op; every peer over shared memory.
 * Memory: a 256 KiB scratch kept on the context (none for 2 ranks out of place).
 */
#include "coll/allreduce/allreduce.h"
#include "coll/pattern/blocks.h"
#include "coll/single_copy.h"

#include <stdlib.h>

/* Up to this many bytes, 2 ranks out of place each reduce the whole vector (whole_run).
 * p50 us of cgloo-bench, single_copy split in halves against whole, medians of five
 * alternating runs at load 3 to 11: 64 KiB 13.4 against 8.5, 256 KiB 37.1 against 25.6,
 * 512 KiB 71.4 against 52.4, 1 MiB 170 against 180, 4 MiB 735 against 782 (from 1 MiB the
 * second half's reduction costs more than the round and the wait it saves). */
#define WHOLE_MAX_BYTES (512u * 1024)
/* Where the blocks are pushed (the rounds go through the slots), only up to this many: the
 * pushes skip the round between halves, and each rank reduces half the vector. p50 us of
 * cgloo-bench, whole against push, 2 ranks, medians of 7 alternating runs at load 5 to 7:
 * 32 KiB 5.7 against 6.3, 64 KiB 9.1 against 9.5, 128 KiB 15.3 against 14.2, 256 KiB 29.1
 * against 24.1, 512 KiB 58.1 against 43.4. */
#define WHOLE_MAX_PUSHED_BYTES (64u * 1024)
_Static_assert(WHOLE_MAX_PUSHED_BYTES <= WHOLE_MAX_BYTES, "pushes beat halves read afterwards");

/* In place (on some rank), the single copy runs only from this many bytes where the blocks
 * are read after a round (no slots), and declines smaller calls to the message-based choice
 * after its first round. 2 ranks, p50 us of the previous choice against single_copy, in place
 * (a loop of cgloo_allreduce on one buffer, medians of three runs at load 12): 4 KiB 2.65
 * against 3.94, 64 KiB 16.6 against 23, 256 KiB 46 against 57, 512 KiB 97 against 116, 1 MiB
 * 262 against 251. A peer's vector it wrote last is read out of that peer's cache, which costs
 * more than the copies through the rings. */
#define IN_PLACE_MIN_BYTES (1024u * 1024)
/* Where the blocks are pushed, from this many: each chunk reaches the peers while it is in the
 * writer's cache. 2 ranks in place, p50 us of the message-based choice against pushes (a loop of
 * cgloo_allreduce on one buffer that the caller touches once a page before each call, medians of
 * three alternating runs at load 3): 4 KiB 3.0 against 3.8, 8 KiB 3.8 against 3.6, 16 KiB 5.8
 * against 4.1, 64 KiB 15.9 against 9.8, 256 KiB 50.1 against 24.1, 512 KiB 86.9 against 41.0. */
#define IN_PLACE_PUSHED_MIN_BYTES (16u * 1024)
_Static_assert(IN_PLACE_PUSHED_MIN_BYTES <= IN_PLACE_MIN_BYTES, "pushes pay from smaller sizes");

/* in_place_any: some rank runs in place (the first round told every rank where every vector
 * lies, so all of them answer alike). */
static bool in_place_any(const cgloo__sc *s)
{
    for (int q = 0; q < s->c->size; q++)
        if (s->at[q].in == s->at[q].out)
            return true;
    return false;
}

/* whole_run: each of 2 ranks, neither in place, reads the peer's whole input into its output,
 * reduces its own into it and says so: one round fewer (no "reduced"), and no rank waits for
 * the other between halves. */
static int whole_run(cgloo__sc *s, const void *in, void *out, size_t count)
{
    coll *c = s->c;
    int mine = cgloo__sc_read(s, 1 - c->rank, out, 0, count * c->esize);
    if (mine == CGLOO_OK)
        cgloo__coll_reduce(c, out, in, count);
    return cgloo__sc_agree(s, mine, SC_STEP_DONE);
}

/* split_run: rank r reduces block r, then reads the others' (the steps above). */
static int split_run(cgloo__sc *s, void *out, const size_t *off, const size_t *bytes_off)
{
    uint8_t *mine = cgloo__elem(s->c, out, off[s->c->rank]);
    int rc = cgloo__sc_agree(s, cgloo__sc_reduce_own(s, mine), SC_STEP_REDUCED);
    if (rc == CGLOO_OK)
        rc = cgloo__sc_agree(s, cgloo__sc_gather(s, bytes_off), SC_STEP_DONE);
    return rc;
}

/* push_run: rank r reduces block r and writes it into every peer's output as it goes; one
 * round ends it. */
static int push_run(cgloo__sc *s, void *out, const size_t *bytes_off)
{
    uint8_t *mine = (uint8_t *)out + bytes_off[s->c->rank];
    return cgloo__sc_agree(s, cgloo__sc_reduce_push(s, mine, bytes_off[s->c->rank]), SC_STEP_DONE);
}

/* How a call runs, once the first round told every rank where every vector lies. */
enum sc_way { SC_NONE, SC_DECLINE, SC_WHOLE, SC_PUSH, SC_SPLIT };

/* sc_choose: the same on every rank, from what all of them know alike (the size, every rank's
 * addresses, whether the rounds go through the slots). */
static enum sc_way sc_choose(const cgloo__sc *s, size_t bytes)
{
    bool in_place = in_place_any(s);
    if (in_place && bytes < (s->slots ? IN_PLACE_PUSHED_MIN_BYTES : IN_PLACE_MIN_BYTES))
        return SC_DECLINE;
    if (!in_place && s->c->size == 2 &&
        bytes <= (s->slots ? WHOLE_MAX_PUSHED_BYTES : WHOLE_MAX_BYTES))
        return SC_WHOLE;
    return s->slots ? SC_PUSH : SC_SPLIT;
}

/* single_copy_run: *refused as cgloo__sc_begin says; *declined: some rank runs in place below
 * the size from which the single copy pays in place (sc_choose; nothing was read or written). */
static int single_copy_run(coll *c, const void *in, void *out, size_t count, bool *refused,
                           bool *declined)
{
    size_t *off = malloc(((size_t)c->size + 1) * sizeof *off);
    size_t *bytes_off = malloc(((size_t)c->size + 1) * sizeof *bytes_off);
    if (!off || !bytes_off) {
        free(off);
        free(bytes_off);
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d block offsets", c->size);
    }
    size_t bytes = count * c->esize;
    blocks_even(off, c->size, count);
    for (int r = 0; r <= c->size; r++)
        bytes_off[r] = off[r] * c->esize;
    cgloo__sc s;
    int rc = cgloo__sc_begin(&s, c, in, out, off, NULL, refused);
    enum sc_way way = rc == CGLOO_OK && !*refused ? sc_choose(&s, bytes) : SC_NONE;
    *declined = way == SC_DECLINE;
    if (way == SC_WHOLE)
        rc = whole_run(&s, in, out, count);
    else if (way == SC_PUSH)
        rc = push_run(&s, out, bytes_off);
    else if (way == SC_SPLIT)
        rc = split_run(&s, out, off, bytes_off);
    cgloo__sc_end(&s);
    free(off);
    free(bytes_off);
    return rc;
}

int cgloo__allreduce_single_copy_out_of_place(coll *c, const void *sendbuf, void *recvbuf,
                                              size_t count)
{
    bool refused = false, declined = false;
    int rc = single_copy_run(c, sendbuf, recvbuf, count, &refused, &declined);
    if (declined)
        return cgloo__allreduce_without_single_copy(c, sendbuf, recvbuf, count);
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
