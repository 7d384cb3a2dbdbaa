/*
 * What every collective algorithm is written with: a `coll` describing the call (context,
 * deadline, tag, dtype, reduction), and point-to-point helpers bounded by the call's deadline
 * whose errors name the collective, the algorithm, the step and the peer.
 *
 * Tags: collectives use tags with the top bit set, the kind of collective in the next 8 bits,
 * the caller's 47-bit tag above the low byte, and the algorithm's step number in the low byte,
 * so they never meet user point-to-point messages, other kinds of collectives, or collectives
 * running at once with a different caller tag. A phase of a hierarchical algorithm
 * (cgloo__coll_sub) has its number in the top 3 bits of the kind.
 * Between two ranks, messages of one tag and step match in the order sent; since every rank
 * runs the same algorithm in the same order, that is all the matching a collective needs.
 */
#ifndef CGLOO_COLL_H
#define CGLOO_COLL_H

#include "cgloo_impl.h"
#include "coll/collectives.h"
#include "reduce/reduce_kernel.h"

typedef struct coll {
    cgloo_context *ctx;
    const char *name;      /* "allreduce", ... */
    const char *algorithm; /* set by the selector */
    int rank, size;
    int timeout_ms;      /* the call's: its deadline counts from its first blocking wait */
    int64_t deadline_ms; /* 0 until then: read it through cgloo__coll_deadline */
    uint64_t tag_base;   /* 0 until the first message (coll.c, tag_base_of) */
    cgloo_dtype dtype;
    size_t esize;
    /* reduction: the caller's function if given, else the kernel for (op, dtype) */
    cgloo__reduce_kernel kernel;
    cgloo_reduce_fn user_fn;
    void *user;
    int radix;
    uint64_t user_tag; /* the caller's tag (cgloo_coll_opts.tag) */
    /* A phase of a hierarchical algorithm runs an algorithm over some ranks only (see
     * cgloo__coll_sub): rank and size are then the group's, and group[r] is the context rank of
     * group rank r. NULL: the group is the context. */
    const int *group;
    uint64_t flight_id; /* the call's entry in the flight recorder (0: none) */
    int status;         /* the failure cgloo__coll_error recorded, for the recorder */
    bool check_pending; /* check mode: this call has not met the other ranks' check yet */
    /* The call's fingerprint for check mode (check.c), filled before cgloo__coll_find: op and
     * root -1 when the collective has none, count UNUSED (UINT64_MAX) when ranks may pass
     * different counts, counts_hash for a counts array every rank passes (cgloo__coll_fp_counts),
     * sendcounts and recvcounts for alltoallv, whose pairs must agree. */
    struct {
        int op, root;
        uint64_t count, counts_hash;
        const size_t *sendcounts, *recvcounts;
    } fp;
} coll;

/* cgloo__coll_end closes the call's flight recorder entry (done, or failed with c->status). It
 * runs when the public call's `coll` goes out of scope: declare it with COLL_DECL, so that
 * every return path closes the entry without a line of its own. */
void cgloo__coll_end(coll *c);
#define COLL_DECL(c) coll c __attribute__((cleanup(cgloo__coll_end))) = {.ctx = NULL}

/* Check mode (check.c). cgloo__coll_fp_counts hashes a counts array of c->size entries into
 * the fingerprint. cgloo__coll_check exchanges fingerprints with every rank (call only when
 * ctx->check and size > 1); EINVAL with the ranks and fields that disagree, or the exchange's
 * ETIMEDOUT / EPEER / EABORTED naming the rank that did not come. */
void cgloo__coll_fp_counts(coll *c, const size_t *counts);
int cgloo__coll_check(coll *c, int algorithm);
/* cgloo__coll_check_refused takes part in the check exchange for a call this rank refused (bad
 * arguments), so that the other ranks fail it naming this rank; its outcome is not this rank's
 * error (the refusal is). */
void cgloo__coll_check_refused(coll *c);

/* cgloo__coll_begin checks the context and dtype and fills c from the options. Errors: EINVAL
 * (detail recorded), ESTATE (not connected), EABORTED. */
int cgloo__coll_begin(coll *c, cgloo_context *ctx, const char *name, cgloo_dtype dtype,
                      const cgloo_coll_opts *opts);
/* cgloo__coll_deadline: the call's deadline (monotonic ms), its timeout from the first time it
 * is asked for, which every wait that may block does first (coll.c says why not at begin). */
int64_t cgloo__coll_deadline(coll *c);
/* cgloo__coll_set_op picks the reduction; EINVAL for a bad op or a bitwise op on floats. */
int cgloo__coll_set_op(coll *c, cgloo_op op, const cgloo_coll_opts *opts);
/* cgloo__coll_error records "<name>(<algorithm>): <what>" as the context's error. */
int cgloo__coll_error(coll *c, int status, const char *fmt, ...) CGLOO_PRINTF(3, 4);

/* cgloo__coll_reduce: inout[i] = inout[i] (op) in[i] for count elements. */
static inline void cgloo__coll_reduce(const coll *c, void *inout, const void *in, size_t count)
{
    if (count == 0)
        return;
    if (c->user_fn)
        c->user_fn(inout, in, count, c->dtype, c->user);
    else
        c->kernel(inout, in, count);
}

/* cgloo__bytes_overlap: [a, a + alen) and [b, b + blen) share a byte (a collective refuses
 * buffers that overlap other than in the in-place form it documents: its copies would read
 * bytes it has already overwritten). */
static inline bool cgloo__bytes_overlap(const void *a, size_t alen, const void *b, size_t blen)
{
    uintptr_t x = (uintptr_t)a, y = (uintptr_t)b;
    return alen && blen && x < y + blen && y < x + alen;
}

/* Byte address of element `i` of buf. */
static inline uint8_t *cgloo__elem(const coll *c, const void *buf, size_t i)
{
    return (uint8_t *)buf + i * c->esize;
}

/* Point-to-point within the collective. Sizes are in bytes; a receive must get exactly
 * `bytes` (anything else means the ranks disagree on the arguments: EPROTO). */
int cgloo__coll_isend(coll *c, int peer, const void *buf, size_t bytes, unsigned step,
                      cgloo_request **out);
int cgloo__coll_irecv(coll *c, int peer, void *buf, size_t bytes, unsigned step,
                      cgloo_request **out);
/* cgloo__coll_peer_error records rc from an exchange with peer at step ("step S: <what> rank P
 * failed: ..."), naming the ranks whose connections broke, as a failed send or receive does;
 * the context's last error is its detail. Returns rc. */
int cgloo__coll_peer_error(coll *c, int rc, const char *what, int peer, unsigned step);
/* cgloo__coll_wait waits for one request (set to NULL once consumed). */
int cgloo__coll_wait(coll *c, cgloo_request **req);
/* cgloo__coll_waitall waits for n requests (NULL entries skipped, entries set to NULL). On the
 * first failure it cancels the rest and returns that failure. */
int cgloo__coll_waitall(coll *c, cgloo_request **reqs, int n);
/* cgloo__coll_finish ends a batch of posts: when rc (the posts' status) is OK it waits for all
 * n requests, otherwise it cancels them all (NULL entries skipped) and returns rc. */
int cgloo__coll_finish(coll *c, cgloo_request **reqs, int n, int rc);
/* cgloo__coll_copy_polling copies bytes from src to dst (memmove) with requests posted: between
 * pieces it drives the transports once without waiting, so that a peer asking to send a large
 * message hears that its receive is posted while this rank copies, not after. */
void cgloo__coll_copy_polling(coll *c, void *dst, const void *src, size_t bytes);
int cgloo__coll_send(coll *c, int peer, const void *buf, size_t bytes, unsigned step);
int cgloo__coll_recv(coll *c, int peer, void *buf, size_t bytes, unsigned step);
/* cgloo__coll_sendrecv sends to dst and receives from src at once (either may be skipped
 * with a negative rank). */
int cgloo__coll_sendrecv(coll *c, int dst, const void *sbuf, size_t sbytes, int src, void *rbuf,
                         size_t rbytes, unsigned step);

/* cgloo__coll_blocks allocates and fills the byte offset table of per-rank blocks (size + 1
 * entries, see pattern/blocks.h): counts[r] elements for rank r, or `count` each when counts is
 * NULL. Errors: ENOMEM, EINVAL when the total overflows. Free *out with free(). */
int cgloo__coll_blocks(coll *c, const size_t *counts, size_t count, size_t **out);

/* The arguments of a rooted call whose blocks sit back to back on the root: gather and scatter,
 * plain and v. The plain form leaves counts NULL and gives every rank's count in `count`; the v
 * form (v true) gives counts (per rank, on the root's side; NULL is an error) and this rank's
 * own count in `count`, which must equal counts[rank]. to_root: the blocks go to the root's
 * recvbuf (gather), else they come from its sendbuf (scatter); errors name the buffers by it. */
typedef struct coll_rooted {
    const void *sendbuf;
    void *recvbuf;
    const size_t *counts;
    size_t count;
    int root;
    bool v, to_root;
} coll_rooted;

/* cgloo__coll_begin_rooted is cgloo__coll_begin for a rooted call, then the checks its forms
 * share (counts, root, the buffers the blocks need), and the layout of the root's blocks in
 * *off (size + 1 byte offsets, see pattern/blocks.h; free() it; NULL on failure). Sends
 * nothing. Errors: those of cgloo__coll_begin, EINVAL (detail recorded), ENOMEM. */
int cgloo__coll_begin_rooted(coll *c, cgloo_context *ctx, const char *name, cgloo_dtype dtype,
                             const cgloo_coll_opts *opts, const coll_rooted *r, size_t **off);

/* cgloo__coll_sub makes `sub` the view of c over n of its context's ranks (ranks[i] the context
 * rank of group rank i; the caller's rank among them, else sub->rank is -1 and sub must not
 * run), so that any algorithm runs over them unchanged: its sends and receives go to the
 * context ranks, in tag space `phase` (1 to 7, one per phase of the calling algorithm, so that
 * phases never match each other's messages), and its errors name `algorithm`; its deadline
 * is c's (fixed now if it was not yet). Never blocks.
 * cgloo__coll_sub_end hands a phase's outcome (rc, returned) back to c. */
void cgloo__coll_sub(coll *c, coll *sub, const int *ranks, int n, unsigned phase,
                     const char *algorithm);
int cgloo__coll_sub_end(coll *c, const coll *sub, int rc);

/* Algorithm tables. Each collective's top file names its algorithms by an enum, and keeps two
 * arrays indexed by it with designated initialisers: a table of coll_algorithm (name and
 * description; one more entry, all NULL, ends it for cgloo_algorithm_names) and an array of
 * the collective's own function type. The enum's order is the order the names are listed in. */
typedef struct coll_algorithm {
    const char *name;
    const char *description;
} coll_algorithm;

/* cgloo__coll_find returns the index in table (n entries) of the algorithm named by
 * opts->algorithm, else by the environment variable CGLOO_<NAME>_ALGORITHM (NAME being c->name),
 * else `fallback` (the selector's choice), and sets c->algorithm to its name. An unknown name
 * returns CGLOO_ENOTSUP (negative) with the names there are recorded. Never blocks. */
int cgloo__coll_find(coll *c, const coll_algorithm *table, int n, const cgloo_coll_opts *opts,
                     int fallback);

/* The tables, one per row of collectives.h. A v variant's row declares its collective's table
 * again, which C allows. */
#define COLL_TABLE_DECLARE(name, table, kind)                                                      \
    extern const coll_algorithm cgloo__##table##_algorithms[];
CGLOO_COLLECTIVES(COLL_TABLE_DECLARE)
#undef COLL_TABLE_DECLARE

#endif
