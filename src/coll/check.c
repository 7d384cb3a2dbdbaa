/*
 * Check mode: before a collective's own messages flow, every rank sends every other its
 * fingerprint of the call, and every rank judges the same set of fingerprints, so that either
 * all ranks run the collective or all fail it with the same verdict. A mismatch therefore never
 * hangs and never corrupts, and the context stays usable afterwards.
 *
 * The exchange has one tag whatever the collective (kind 0 of the collective tag space, which
 * no collective uses, with the caller's tag), so that ranks in different collectives still
 * meet. Between two ranks messages of one tag match in the order sent, and each rank checks its
 * calls of one caller tag in order, so the n-th fingerprint from a peer is that peer's n-th call;
 * the call number inside the fingerprint catches a rank that skipped a call and went on.
 *
 * What must agree on every rank: the collective, the call number, the dtype, the op, the root,
 * the algorithm, the count (collectives where every rank passes the same count) or a hash of
 * the counts array (v variants that pass the array on every rank). alltoallv's counts differ
 * legitimately; only pairs must agree (what i sends j is what j expects from i), so each
 * fingerprint also carries the counts for its recipient, and a second round tells every rank
 * the pairs that disagree.
 *
 * Cost: one all-to-all of 96-byte messages (P - 1 sends and receives per rank, one latency
 * step); docs/BENCHMARKS.md ("Check mode and the flight recorder") has the figures.
 */
#include "coll/coll.h"
#include "core/context.h"

#include <inttypes.h>
#include <stdio.h>

/* Kind 0 of the collective tag space is the check's (coll.c: kinds 1 and up are collectives). */
#define CHECK_TAG_BIT (1ull << 63)
#define FP_MAGIC 0x31304b4843474355ull /* "UCGCHK01" */
#define UNUSED UINT64_MAX
/* FP_ALGORITHM of a rank that refused the call's arguments before choosing one. */
#define REFUSED_ALGORITHM (-2)
#define REFUSED ((uint64_t)(int64_t)REFUSED_ALGORITHM)

enum fp_field {
    FP_MAGIC_F,
    FP_ROW,                   /* the collective: a hash of its name */
    FP_CALL,                  /* the call number under this caller tag */
    FP_DTYPE,                 /* dtype */
    FP_OP,                    /* op; -1 none, -2 the caller's function */
    FP_ROOT,                  /* root, or -1 */
    FP_COUNT,                 /* count every rank passes, or UNUSED */
    FP_COUNTS,                /* hash of the counts array every rank passes, or UNUSED */
    FP_ALGORITHM,             /* index in the collective's table */
    FP_GLOBAL,                /* fields above this one must agree on every rank */
    FP_PAIR_SEND = FP_GLOBAL, /* alltoallv: what the sender sends the recipient */
    FP_PAIR_RECV,             /* alltoallv: what the sender expects from the recipient */
    FP_FIELDS
};
#define FP_BYTES (FP_FIELDS * 8)

/* The collectives by row, for naming another rank's call. */
static const char *const row_names[] = {
#define ROW_NAME(name, table, kind) #name,
    CGLOO_COLLECTIVES(ROW_NAME)
#undef ROW_NAME
};
static const coll_algorithm *const row_tables[] = {
#define ROW_TABLE(name, table, kind) cgloo__##table##_algorithms,
    CGLOO_COLLECTIVES(ROW_TABLE)
#undef ROW_TABLE
};

/* The collective's identity on the wire: a hash of its name, stable whatever rows are added. */
static uint64_t name_id(const char *name)
{
    return cgloo__hash64(name, strlen(name));
}

/* row_of: the row of collectives.h whose name hashes to id, or the number of rows. */
static size_t row_of(uint64_t id)
{
    size_t i = 0;
    while (i < CGLOO_ARRAY_LEN(row_names) && name_id(row_names[i]) != id)
        i++;
    return i;
}

void cgloo__coll_fp_counts(coll *c, const size_t *counts)
{
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; counts && i < c->size; i++) {
        uint8_t b[8];
        cgloo__put_u64(b, counts[i]);
        h = (h ^ cgloo__hash64(b, sizeof b)) * 1099511628211ull;
    }
    c->fp.counts_hash = h;
}

/* A decoded fingerprint. */
typedef struct fp {
    uint64_t f[FP_FIELDS];
} fp;

static void fp_encode(const fp *x, uint8_t *out)
{
    for (int i = 0; i < FP_FIELDS; i++)
        cgloo__put_u64(out + 8 * i, x->f[i]);
}

static void fp_decode(const uint8_t *in, fp *x)
{
    for (int i = 0; i < FP_FIELDS; i++)
        x->f[i] = cgloo__get_u64(in + 8 * i);
}

static fp fp_mine(const coll *c, uint64_t call, int algorithm)
{
    fp x = {.f = {
                [FP_MAGIC_F] = FP_MAGIC,
                [FP_ROW] = name_id(c->name),
                [FP_CALL] = call,
                [FP_DTYPE] = (uint64_t)c->dtype,
                [FP_OP] = (uint64_t)(int64_t)c->fp.op,
                [FP_ROOT] = (uint64_t)(int64_t)c->fp.root,
                [FP_COUNT] = c->fp.count,
                [FP_COUNTS] = c->fp.counts_hash,
                [FP_ALGORITHM] = (uint64_t)(int64_t)algorithm,
                [FP_PAIR_SEND] = UNUSED,
                [FP_PAIR_RECV] = UNUSED,
            }};
    return x;
}

static bool fp_same(const fp *a, const fp *b)
{
    for (int i = 0; i < FP_GLOBAL; i++)
        if (a->f[i] != b->f[i])
            return false;
    return true;
}

/* ---- describing a disagreement ---------------------------------------------------------- */

typedef struct text {
    char *buf;
    size_t len, cap;
} text;

static void add(text *t, const char *fmt, ...) CGLOO_PRINTF(2, 3);
static void add(text *t, const char *fmt, ...)
{
    if (t->len + 1 >= t->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        t->len = CGLOO_MIN(t->len + (size_t)n, t->cap - 1);
}

/* differs: field i is not the same in every fingerprint. */
static bool differs(const fp *all, int n, int i)
{
    for (int r = 1; r < n; r++)
        if (all[r].f[i] != all[0].f[i])
            return true;
    return false;
}

/* refused: some rank refused its arguments (its algorithm field says so, not a choice). */
static bool refused(const fp *all, int n)
{
    for (int r = 0; r < n; r++)
        if (all[r].f[FP_ALGORITHM] == REFUSED)
            return true;
    return false;
}

static void describe(text *t, const fp *x, const fp *all, int n)
{
    size_t row = row_of(x->f[FP_ROW]);
    add(t, "%s", row < CGLOO_ARRAY_LEN(row_names) ? row_names[row] : "(unknown collective)");
    if (x->f[FP_COUNT] != UNUSED)
        add(t, " count %" PRIu64, x->f[FP_COUNT]);
    if (x->f[FP_COUNTS] != UNUSED && differs(all, n, FP_COUNTS))
        add(t, " counts#%04" PRIx64, x->f[FP_COUNTS] & 0xffff);
    const char *dt = cgloo_dtype_name((cgloo_dtype)x->f[FP_DTYPE]);
    add(t, " %s", dt ? dt : "(bad dtype)");
    int64_t op = (int64_t)x->f[FP_OP];
    if (op >= 0)
        add(t, " %s", cgloo_op_name((cgloo_op)op) ? cgloo_op_name((cgloo_op)op) : "(bad op)");
    else if (op == -2)
        add(t, " custom reduce_fn");
    if ((int64_t)x->f[FP_ROOT] >= 0)
        add(t, " root %" PRId64, (int64_t)x->f[FP_ROOT]);
    /* the algorithm only where the collectives are the same (else it differs anyway) */
    if (differs(all, n, FP_ALGORITHM) && !differs(all, n, FP_ROW) &&
        row < CGLOO_ARRAY_LEN(row_tables) && !refused(all, n)) {
        const coll_algorithm *table = row_tables[row];
        uint64_t k = 0;
        while (table[k].name && k < x->f[FP_ALGORITHM])
            k++;
        add(t, " algorithm %s", table[k].name ? table[k].name : "(unknown)");
    }
    if (x->f[FP_ALGORITHM] == REFUSED)
        add(t, " (refused as invalid there)");
    if (differs(all, n, FP_CALL))
        add(t, " (its call %" PRIu64 ")", x->f[FP_CALL]);
}

/* disagreement: group the ranks by fingerprint: "rank 0,2: ...; rank 1: ...". */
static void disagreement(text *t, const fp *all, int n)
{
    bool *done = calloc((size_t)n, sizeof *done);
    if (!done) {
        add(t, "ranks disagree (no memory to say how)");
        return;
    }
    add(t, "ranks disagree: ");
    for (int r = 0; r < n; r++) {
        if (done[r])
            continue;
        add(t, "%srank %d", r ? "; " : "", r);
        for (int s = r + 1; s < n; s++)
            if (!done[s] && fp_same(&all[r], &all[s])) {
                done[s] = true;
                add(t, ",%d", s);
            }
        add(t, ": ");
        describe(t, &all[r], all, n);
    }
    free(done);
}

/* ---- the exchange ------------------------------------------------------------------------ */

/* exchange sends out[r] (FP_BYTES each, r != rank) to every other rank and receives in[r] from
 * each, under the check tag and round `round`. On a timeout it names the first rank that did
 * not answer. */
static int exchange(coll *c, uint64_t call, int round, const uint8_t *out, uint8_t *in)
{
    uint64_t tag = CHECK_TAG_BIT | c->user_tag << 8 | (uint64_t)round;
    int n = c->size, rc = CGLOO_OK;
    cgloo_request **reqs = calloc(2 * (size_t)n, sizeof *reqs);
    if (!reqs)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "check: no memory");
    int failed = -1;
    for (int r = 0; r < n && rc == CGLOO_OK; r++) {
        failed = r;
        if (r != c->rank)
            rc = cgloo__p2p_irecv(c->ctx, in + (size_t)r * FP_BYTES, FP_BYTES, r, tag, &reqs[r]);
    }
    for (int r = 0; r < n && rc == CGLOO_OK; r++) {
        failed = r;
        if (r != c->rank)
            rc = cgloo__p2p_isend(c->ctx, out + (size_t)r * FP_BYTES, FP_BYTES, r, tag,
                                  &reqs[n + r]);
    }
    for (int i = 0; i < 2 * n; i++) {
        if (!reqs[i])
            continue;
        if (rc != CGLOO_OK) {
            cgloo_cancel(reqs[i]);
            continue;
        }
        int left = cgloo__remaining_ms(cgloo__coll_deadline(c));
        cgloo__flight_waiting(&c->ctx->flight, c->flight_id, i % n, -1,
                              i < n ? FLIGHT_WAIT_RECV : FLIGHT_WAIT_SEND);
        cgloo_completion done;
        rc = cgloo__wait_or_cancel(reqs[i], left > 0 ? left : 1, &done);
        if (rc == CGLOO_OK && i < n && done.bytes != FP_BYTES)
            rc = CGLOO_EPROTO;
        if (rc != CGLOO_OK)
            failed = i % n;
    }
    free(reqs);
    if (rc == CGLOO_OK)
        return CGLOO_OK;
    if (rc == CGLOO_ETIMEDOUT)
        cgloo__flight_log(&c->ctx->flight);
    char detail[CGLOO_ERROR_MAX];
    cgloo_context_last_error(c->ctx, detail, sizeof detail);
    if (rc == CGLOO_ETIMEDOUT)
        return cgloo__coll_error(c, rc,
                                 "check: %s call %" PRIu64 ": rank %d did not make this call "
                                 "within the timeout (it skipped it, is still in an earlier "
                                 "call, or is stuck)",
                                 c->name, call, failed);
    return cgloo__coll_error(c, rc, "check: %s call %" PRIu64 ": exchange with rank %d: %s (%s)",
                             c->name, call, failed, cgloo_strerror(rc), detail);
}

/* pair_problem: the first peer whose alltoallv counts disagree with this rank's, as three
 * fields (peer, what this rank expects from it, what it sends), peer UNUSED when none. */
static void pair_problem(const coll *c, const fp *all, uint64_t out[3])
{
    out[0] = UNUSED;
    for (int r = 0; r < c->size && c->fp.recvcounts; r++) {
        uint64_t sends = r == c->rank ? c->fp.sendcounts[r] : all[r].f[FP_PAIR_SEND];
        if (sends != c->fp.recvcounts[r]) {
            out[0] = (uint64_t)r;
            out[1] = c->fp.recvcounts[r];
            out[2] = sends;
            return;
        }
    }
}

/* pairs_round: every rank tells every other the first pair problem it sees, so that all ranks
 * fail together and name the same pairs. */
static int pairs_round(coll *c, uint64_t call, const fp *all, uint8_t *out, uint8_t *in, text *t)
{
    fp mine = {.f = {[0] = FP_MAGIC}};
    pair_problem(c, all, &mine.f[1]);
    for (int r = 0; r < c->size; r++)
        fp_encode(&mine, out + (size_t)r * FP_BYTES);
    memcpy(in + (size_t)c->rank * FP_BYTES, out, FP_BYTES);
    int rc = exchange(c, call, 1, out, in);
    if (rc != CGLOO_OK)
        return rc;
    bool bad = false;
    for (int r = 0; r < c->size; r++) {
        fp x;
        fp_decode(in + (size_t)r * FP_BYTES, &x);
        if (x.f[1] == UNUSED)
            continue;
        add(t, "%srank %d expects %" PRIu64 " elements from rank %" PRIu64 ", which sends %" PRIu64,
            bad ? "; " : "ranks disagree: ", r, x.f[2], x.f[1], x.f[3]);
        bad = true;
    }
    return bad ? CGLOO_EINVAL : CGLOO_OK;
}

/* verdict: decode every rank's fingerprint, and describe the disagreement if any. */
static bool verdict(const coll *c, const uint8_t *in, fp *all, text *t)
{
    bool same = true;
    for (int r = 0; r < c->size; r++) {
        fp_decode(in + (size_t)r * FP_BYTES, &all[r]);
        same = same && fp_same(&all[r], &all[0]);
    }
    if (!same)
        disagreement(t, all, c->size);
    return same;
}

int cgloo__coll_check(coll *c, int algorithm)
{
    c->check_pending = false;
    pthread_mutex_lock(&c->ctx->lock);
    uint64_t call = cgloo__ctx_check_call(c->ctx, c->user_tag);
    pthread_mutex_unlock(&c->ctx->lock);
    size_t bytes = (size_t)c->size * FP_BYTES;
    uint8_t *buf = malloc(2 * bytes);
    fp *all = calloc((size_t)c->size, sizeof *all);
    if (!call || !buf || !all) {
        free(buf);
        free(all);
        return cgloo__coll_error(c, CGLOO_ENOMEM, "check: no memory");
    }
    uint8_t *out = buf, *in = buf + bytes;
    fp mine = fp_mine(c, call, algorithm);
    for (int r = 0; r < c->size; r++) {
        if (c->fp.sendcounts) {
            mine.f[FP_PAIR_SEND] = c->fp.sendcounts[r];
            mine.f[FP_PAIR_RECV] = c->fp.recvcounts[r];
        }
        fp_encode(&mine, out + (size_t)r * FP_BYTES);
    }
    memcpy(in + (size_t)c->rank * FP_BYTES, out + (size_t)c->rank * FP_BYTES, FP_BYTES);
    char why[CGLOO_ERROR_MAX - 128];
    text t = {.buf = why, .cap = sizeof why};
    int rc = exchange(c, call, 0, out, in);
    if (rc == CGLOO_OK && !verdict(c, in, all, &t))
        rc = CGLOO_EINVAL;
    else if (rc == CGLOO_OK && c->fp.sendcounts && !refused(all, c->size))
        rc = pairs_round(c, call, all, out, in, &t);
    free(buf);
    free(all);
    if (rc == CGLOO_EINVAL)
        return cgloo__coll_error(c, rc, "check: %s call %" PRIu64 ": %s", c->name, call, why);
    return rc;
}

void cgloo__coll_check_refused(coll *c)
{
    /* the exchange's own errors must not recurse, nor replace the refusal as the detail */
    int status = c->status;
    (void)cgloo__coll_check(c, REFUSED_ALGORITHM);
    c->status = status;
}
