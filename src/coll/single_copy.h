/*
 * Collectives that read their peers' vectors straight out of the peers' memory and write
 * straight into it, for ranks that share a host (the transport's read_memory and write_memory:
 * process_vm_readv and process_vm_writev over shared memory), with no ring in between: every
 * collective's single_copy algorithm is built from these steps.
 *
 * Every rank first tells every peer where its input and output lie (cgloo__sc_begin). In the
 * reductions rank r then owns block r: it reduces every peer's block r, read in chunks that
 * stay in the cache, into its own (cgloo__sc_reduce_own), or writes each reduced chunk into
 * peers' outputs as it goes (cgloo__sc_reduce_push, _push_to); it may read other ranks'
 * finished blocks out of their outputs (cgloo__sc_gather) once they said so. The others read
 * blocks (cgloo__sc_read) or write them (cgloo__sc_write). Rounds of statuses (cgloo__sc_agree)
 * order the steps and end the call: a rank returns only once no peer reads from it or writes
 * into it any more.
 *
 * The first call of each caller tag reads a byte of every peer before anything is written and
 * every rank tells the others how it went, so that all of them learn together whether the
 * kernel allows the reads (another user, a ptrace scope and CGLOO_SHM_LARGE=copy refuse them);
 * then every rank runs the collective's usual algorithm on the untouched vectors, and the
 * context remembers it for that tag (cgloo__sc_possible says no from then on, on every rank
 * alike). Per tag: collectives of different tags run at once in different orders on different
 * ranks, so a rank's other tags cannot tell it whether its peers have probed yet (a context
 * wide flag let one rank skip the probe its peer waited for). Tags from CGLOO_SC_TAGS on probe
 * on every call.
 *
 * Steps: the single_copy algorithms use step numbers SC_STEP_* (their own tags' low byte).
 */
#ifndef CGLOO_COLL_SINGLE_COPY_H
#define CGLOO_COLL_SINGLE_COPY_H

#include "coll/coll.h"
#include "coll/slots.h"

enum { SC_STEP_WHERE, SC_STEP_PROBE, SC_STEP_REDUCED, SC_STEP_DONE, SC_STEP_OFFSETS };

/* Where one rank's vectors lie, as it tells its peers. */
typedef struct cgloo__sc_where {
    uint64_t in, out;
} cgloo__sc_where;

typedef struct cgloo__sc {
    coll *c;
    const uint8_t *in;   /* this rank's input: every block */
    uint8_t *out;        /* its output, as the collective lays it out */
    const size_t *off;   /* [size + 1] element offsets of the blocks in the inputs */
    cgloo__sc_where *at; /* [size] every rank's, this rank's included */
    uint64_t *extra;     /* [size] what each rank published for this one (begin's extra), or NULL */
    uint8_t *chunk;      /* scratch for one read, taken by the first reduction (NULL before) */
    /* The rounds go through the shared-memory slots (coll/slots.h), one cache-line hand-off
     * each, instead of messages: every peer has slots, the tag a channel, and the first
     * round's payload fits; the same on every rank, since all of it is. */
    bool slots;
    slot_set set; /* last: cgloo__sc_begin clears what comes before it */
} cgloo__sc;
/* cgloo__sc_possible: every peer of c can be read (its transport has read_memory) and the
 * context has not found the kernel refusing it. Takes the context lock. */
bool cgloo__sc_possible(const coll *c);

/* cgloo__sc_wanted: the selectors' test. bytes (the same on every rank) reach the threshold
 * for this world, min2 for 2 ranks and min_more for more (on the 2-core machine class, more
 * ranks than cores make each round a scheduling hop, so the single copy pays only from larger
 * sizes there), and every peer can be read. */
static inline bool cgloo__sc_wanted(const coll *c, size_t bytes, size_t min2, size_t min_more)
{
    return c->size > 1 && bytes >= (c->size == 2 ? min2 : min_more) && cgloo__sc_possible(c);
}

/* cgloo__sc_begin tells every peer where in and out lie and learns theirs, and on the
 * context's first call of the tag finds out whether every rank can read. extra: NULL, or
 * [size] values, extra[q] for rank q, which rank q finds in its s->extra[this rank] (alltoall's
 * offsets ride in the same round). *refused: some rank cannot (nothing was written; run another
 * algorithm). Errors: those of the coll helpers and of the slots, ENOMEM. cgloo__sc_end frees
 * what begin and the steps took (call it whatever begin returned). */
int cgloo__sc_begin(cgloo__sc *s, coll *c, const void *in, void *out, const size_t *off,
                    const uint64_t *extra, bool *refused);
void cgloo__sc_end(cgloo__sc *s);

/* cgloo__sc_reduce_own writes block c->rank reduced over every rank into dst: every peer's,
 * read straight out of their inputs in the order rank+1, rank+2, ..., into this rank's input
 * block (out of place, rank+1's is read into dst and this rank's reduced into it, which spares
 * a copy). Takes the scratch unless 2 ranks reduce out of place. Returns the status to agree on
 * (recorded). */
int cgloo__sc_reduce_own(cgloo__sc *s, uint8_t *dst);

/* cgloo__sc_reduce_push is cgloo__sc_reduce_own that also writes each reduced chunk straight
 * into every peer's output, at byte out_at of it for the block's start, while the chunk is in
 * the cache: the peers need not read the block afterwards (no gather, no round before it).
 * Needs the slots (s->slots): each write happens within the peer's gate, which the peer shuts
 * in cgloo__sc_end, so no write outlives the peer's call. Returns the status to agree on
 * (recorded). */
int cgloo__sc_reduce_push(cgloo__sc *s, uint8_t *dst, size_t out_at);

/* cgloo__sc_reduce_push_to: for a rank that keeps no result (reduce's non-roots), whose rounds
 * go through the slots: block c->rank reduced over every rank a chunk at a time in the scratch,
 * each chunk written into rank q's output at byte out_at of it for the block's start, within
 * q's gate. Returns the status to agree on (recorded). */
int cgloo__sc_reduce_push_to(cgloo__sc *s, int q, size_t out_at);

/* cgloo__sc_gather reads every other rank's block q out of rank q's output at out_off[q]
 * (bytes) into this rank's output at the same offset. Call once every rank finished its block.
 * Returns the status to agree on (recorded). */
int cgloo__sc_gather(cgloo__sc *s, const size_t *out_off);

/* Bytes of the scratch cgloo__sc_scratch gives. */
#define CGLOO__SC_SCRATCH_BYTES (256u * 1024)

/* cgloo__sc_scratch: s's scratch of CGLOO__SC_SCRATCH_BYTES (the context's kept one, or a new
 * one; cgloo__sc_end gives it back), or NULL (ENOMEM recorded). */
uint8_t *cgloo__sc_scratch(cgloo__sc *s);

/* cgloo__sc_fallback: cgloo__sc_begin said *refused, so the call runs `algorithm` instead on
 * the vectors as they came: the probe's refusal is not the call's outcome, and the flight
 * recorder names the algorithm that ran. */
void cgloo__sc_fallback(coll *c, const char *algorithm);

/* cgloo__sc_read copies len bytes at byte `from` of rank q's input into dst. Returns the
 * status to agree on (recorded). */
int cgloo__sc_read(cgloo__sc *s, int q, void *dst, size_t from, size_t len);

/* cgloo__sc_write copies len bytes at src into rank q's output at byte out_at of it, a chunk
 * at a time, each within q's gate (needs the slots, s->slots). Returns the status to agree on
 * (recorded). */
int cgloo__sc_write(cgloo__sc *s, int q, const void *src, size_t out_at, size_t len);

/* cgloo__sc_agree tells every rank this rank's status `mine` at step and learns theirs: OK when
 * every rank's is, else the first failure, recorded naming its rank. */
int cgloo__sc_agree(cgloo__sc *s, int mine, unsigned step);

#endif
