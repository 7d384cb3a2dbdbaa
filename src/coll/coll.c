/*
 * The collective framework: argument checks, the reduction choice, tagged point-to-point bounded
 * by the call's deadline, errors that say which collective, algorithm, step and peer failed,
 * and algorithm lookup by name.
 */
#include "coll/coll.h"
#include "coll/pattern/blocks.h"
#include "core/context.h"

#include <ctype.h>
#include <stdio.h>

/* Tag layout: bit 63 marks a collective, bits 55..62 the kind of collective, bits 8..54 the
 * caller's tag, bits 0..7 the algorithm's step. Two different collectives therefore never
 * match each other's messages, even if ranks disagree on the call order. */
#define COLL_TAG_BIT (1ull << 63)
#define COLL_KIND_SHIFT 55
#define COLL_USER_TAG_MAX (1ull << 47)
/* The phases of a hierarchical algorithm (cgloo__coll_sub) set bits 60..62, the top 3 bits of
 * the kind, which the listed collectives (kinds below 32) leave clear; a name outside the list
 * (kind 32 and up) has no hierarchical algorithm. */
#define COLL_PHASE_SHIFT 60
#define COLL_PHASE_MAX 7

/* Kinds 1 to 31 are the listed collectives'; a name outside the list hashes to 32 and up. */
#define COLL_KIND_CHECK(name, table, kind)                                                         \
    _Static_assert((kind) >= 1 && (kind) < 32, #name ": kind out of range");
CGLOO_COLLECTIVES(COLL_KIND_CHECK)
#undef COLL_KIND_CHECK

/* coll_kind: the number of a collective's tag space (collectives.h). */
static uint64_t coll_kind(const char *name)
{
    static const struct {
        const char *name;
        uint64_t kind;
    } kinds[] = {
#define COLL_KIND(name, table, kind) {#name, kind},
        CGLOO_COLLECTIVES(COLL_KIND)
#undef COLL_KIND
    };
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(kinds); i++)
        if (strcmp(name, kinds[i].name) == 0)
            return kinds[i].kind;
    return (cgloo__hash64(name, strlen(name)) % 200) + 32;
}

int cgloo__coll_error(coll *c, int status, const char *fmt, ...)
{
    char what[CGLOO_ERROR_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    /* In check mode a call refused before its check still meets the other ranks' check, so
     * that they fail at once naming this rank instead of waiting for it (check.c). */
    if (c->check_pending && (status == CGLOO_EINVAL || status == CGLOO_ENOTSUP))
        cgloo__coll_check_refused(c);
    pthread_mutex_lock(&c->ctx->lock);
    cgloo__ctx_error(c->ctx, status, "rank %d: %s(%s): %s", c->ctx->rank, c->name,
                     c->algorithm ? c->algorithm : "-", what);
    pthread_mutex_unlock(&c->ctx->lock);
    c->status = status;
    return status;
}

/* revokes: a failure that leaves the ranks out of step for good: a peer is gone or broke the
 * protocol. Not a timeout: a late peer may still come, and a caller may wait with a short
 * timeout and go on (the others time out on their own). Not a bad argument or an unknown
 * algorithm: they fail before anything is sent, on every rank alike, or meet the others in
 * check mode. */
static bool revokes(int status)
{
    return status == CGLOO_EPEER || status == CGLOO_EPROTO;
}

void cgloo__coll_end(coll *c)
{
    if (!c->ctx)
        return;
    if (c->flight_id)
        cgloo__flight_end(&c->ctx->flight, c->flight_id, c->status);
    if (revokes(c->status)) {
        char why[CGLOO_ERROR_MAX];
        cgloo_context_last_error(c->ctx, why, sizeof why);
        cgloo__p2p_revoke_send(c->ctx, why);
    }
}

/* wait_turn lets the non-blocking collectives of the same tag issued before this call finish
 * first, so that collectives run in program order on every rank. */
static int wait_turn(coll *c, uint64_t tag)
{
    pthread_mutex_lock(&c->ctx->lock);
    int rc = cgloo__pt_wait_turn(c->ctx, tag, cgloo__coll_deadline(c));
    pthread_mutex_unlock(&c->ctx->lock);
    if (rc != CGLOO_OK)
        return cgloo__coll_error(c, rc, "waiting for the earlier non-blocking collectives: %s",
                                 cgloo_strerror(rc));
    return CGLOO_OK;
}

int cgloo__coll_begin(coll *c, cgloo_context *ctx, const char *name, cgloo_dtype dtype,
                      const cgloo_coll_opts *opts)
{
    if (!ctx)
        return CGLOO_EINVAL;
    *c = (coll){.ctx = ctx,
                .name = name,
                .rank = ctx->rank,
                .size = ctx->size,
                .dtype = dtype,
                .fp = {.op = -1, .root = -1, .count = UINT64_MAX, .counts_hash = UINT64_MAX}};
    /* abort and set_timeout may change these from other threads */
    pthread_mutex_lock(&ctx->lock);
    bool connected = ctx->connected, aborted = ctx->aborted, revoked = ctx->coll_revoked;
    int ctx_timeout = ctx->timeout_ms;
    /* no progress thread: no non-blocking collective was issued before this call */
    bool jobs = ctx->pt_count > 0;
    pthread_mutex_unlock(&ctx->lock);
    if (!connected)
        return cgloo__coll_error(c, CGLOO_ESTATE, "the context is not connected");
    if (aborted)
        return cgloo__coll_error(c, CGLOO_EABORTED, "the context was aborted");
    if (revoked) { /* revoked_by and revoked_why are fixed once it is set */
        char who[48];
        return cgloo__coll_error(
            c, CGLOO_EPEER, "the collectives of this context were revoked, since %s failed: %s",
            cgloo__p2p_revoker(ctx, who, sizeof who), ctx->revoked_why);
    }
    c->esize = cgloo_dtype_size(dtype);
    if (c->esize == 0)
        return cgloo__coll_error(c, CGLOO_EINVAL, "invalid dtype %d", (int)dtype);
    if (opts && (opts->timeout_ms < 0 || opts->tag >= COLL_USER_TAG_MAX || opts->radix < 0))
        return cgloo__coll_error(c, CGLOO_EINVAL, "invalid options (timeout, tag or radix)");
    int timeout = opts && opts->timeout_ms ? opts->timeout_ms : ctx_timeout;
    /* the recorder's start from the coarse clock (cgloo_impl.h); the deadline from the fine
     * clock, but only once a wait blocks (cgloo__coll_deadline): the coarse clock may lag more
     * than a tick (after an idle spell, 7 ms behind with 4 ms ticks), and a call that finds its
     * peers ready never reads the fine one */
    int64_t now_ns = cgloo__coarse_ns();
    c->timeout_ms = timeout;
    c->user_tag = opts ? opts->tag : 0;
    c->flight_id =
        cgloo__flight_begin_at(&ctx->flight, name, c->user_tag, 0, (int)dtype, -1, now_ns);
    int rc = jobs ? wait_turn(c, c->user_tag) : CGLOO_OK;
    if (rc != CGLOO_OK)
        return rc;
    c->radix = opts && opts->radix ? opts->radix : 2;
    c->check_pending = ctx->check && c->size > 1;
    return CGLOO_OK;
}

int64_t cgloo__coll_deadline(coll *c)
{
    if (!c->deadline_ms)
        c->deadline_ms = cgloo__now_ms() + c->timeout_ms;
    return c->deadline_ms;
}

int cgloo__coll_set_op(coll *c, cgloo_op op, const cgloo_coll_opts *opts)
{
    c->fp.op = opts && opts->reduce_fn ? -2 : (int)op;
    if (opts && opts->reduce_fn) {
        c->user_fn = opts->reduce_fn;
        c->user = opts->reduce_user;
        return CGLOO_OK;
    }
    c->kernel = cgloo__reduce_kernel_for(op, c->dtype);
    if (!c->kernel)
        return cgloo__coll_error(c, CGLOO_EINVAL, "op %s is not defined for dtype %s",
                                 cgloo_op_name(op) ? cgloo_op_name(op) : "(invalid)",
                                 cgloo_dtype_name(c->dtype));
    return CGLOO_OK;
}

/* ---- gather and scatter, plain and v: the checks they share --------------------------------- */

/* rooted_check: the root is a rank, and the v form has counts that agree with this rank's own
 * count. Errors name the arguments as the call does (gatherv: recvcounts and sendcount). */
static int rooted_check(coll *c, const coll_rooted *r)
{
    const char *counts = r->to_root ? "recvcounts" : "sendcounts";
    const char *own = r->to_root ? "sendcount" : "recvcount";
    if (r->v && !r->counts)
        return cgloo__coll_error(c, CGLOO_EINVAL, "%s is NULL", counts);
    if (r->root < 0 || r->root >= c->size)
        return cgloo__coll_error(c, CGLOO_EINVAL, "root %d is not a rank of %d", r->root, c->size);
    if (r->v && r->count != r->counts[c->rank])
        return cgloo__coll_error(c, CGLOO_EINVAL, "%s %zu differs from %s[%d] %zu", own, r->count,
                                 counts, c->rank, r->counts[c->rank]);
    return CGLOO_OK;
}

/* rooted_buffers: this rank's block and, on the root, the buffer of all blocks are there. */
static int rooted_buffers(coll *c, const coll_rooted *r, const size_t *off)
{
    const void *ownbuf = r->to_root ? r->sendbuf : r->recvbuf;
    const void *rootbuf = r->to_root ? r->recvbuf : r->sendbuf;
    size_t own = blocks_bytes(off, c->rank);
    if (own > 0 && !ownbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL %s for %zu bytes",
                                 r->to_root ? "sendbuf" : "recvbuf", own);
    if (c->rank == r->root && off[c->size] > 0 && !rootbuf)
        return cgloo__coll_error(c, CGLOO_EINVAL, "NULL %s at the root",
                                 r->to_root ? "recvbuf" : "sendbuf");
    return CGLOO_OK;
}

int cgloo__coll_begin_rooted(coll *c, cgloo_context *ctx, const char *name, cgloo_dtype dtype,
                             const cgloo_coll_opts *opts, const coll_rooted *r, size_t **off)
{
    *off = NULL;
    int rc = cgloo__coll_begin(c, ctx, name, dtype, opts);
    c->fp.root = r->root;
    if (!r->v)
        c->fp.count = r->count;
    if (rc == CGLOO_OK)
        rc = rooted_check(c, r);
    if (rc == CGLOO_OK && r->v)
        cgloo__coll_fp_counts(c, r->counts);
    if (rc == CGLOO_OK)
        rc = cgloo__coll_blocks(c, r->v ? r->counts : NULL, r->count, off);
    if (rc == CGLOO_OK)
        rc = rooted_buffers(c, r, *off);
    if (rc != CGLOO_OK) {
        free(*off);
        *off = NULL;
    }
    return rc;
}

/* ---- point-to-point within a collective ---------------------------------------------------- */

/* tag_base_of: the collective's tags without the step. Worked out on the first message, not in
 * cgloo__coll_begin: the slot algorithms send none, and finding the kind by name was about 170
 * of a shared-memory barrier's 1,100 instructions (callgrind). */
static uint64_t tag_base_of(const coll *c)
{
    if (c->tag_base)
        return c->tag_base;
    return COLL_TAG_BIT | coll_kind(c->name) << COLL_KIND_SHIFT | c->user_tag << 8;
}

static uint64_t coll_tag(coll *c, unsigned step)
{
    c->tag_base = tag_base_of(c);
    return c->tag_base | (step & 0xffu);
}

/* coll_post_error records a failed send or receive. A timeout or a broken connection may be
 * the echo of another rank's failure (the ranks wait on each other in turn), so the ranks whose
 * connection broke are named too: with a host cut off, every rank then names it. */
static int coll_post_error(coll *c, int rc, const char *what, int peer, unsigned step)
{
    char detail[CGLOO_ERROR_MAX], failed[512] = "";
    cgloo_context_last_error(c->ctx, detail, sizeof detail);
    if (rc == CGLOO_ETIMEDOUT) /* what every operation of this rank was waiting for */
        cgloo__flight_log(&c->ctx->flight);
    if (rc == CGLOO_ETIMEDOUT || rc == CGLOO_EPEER) {
        pthread_mutex_lock(&c->ctx->lock);
        cgloo__p2p_failed_peers(c->ctx, peer, failed, sizeof failed);
        pthread_mutex_unlock(&c->ctx->lock);
    }
    return cgloo__coll_error(c, rc, "step %u: %s rank %d failed: %s (%s)%s%s", step, what, peer,
                             cgloo_strerror(rc), detail,
                             failed[0] ? "; the connections to these ranks broke: " : "", failed);
}

int cgloo__coll_peer_error(coll *c, int rc, const char *what, int peer, unsigned step)
{
    return coll_post_error(c, rc, what, peer, step);
}

int cgloo__coll_isend(coll *c, int peer, const void *buf, size_t bytes, unsigned step,
                      cgloo_request **out)
{
    if (c->group)
        peer = c->group[peer];
    int rc = cgloo__p2p_isend(c->ctx, buf, bytes, peer, coll_tag(c, step), out);
    return rc == CGLOO_OK ? rc : coll_post_error(c, rc, "send to", peer, step);
}

int cgloo__coll_irecv(coll *c, int peer, void *buf, size_t bytes, unsigned step,
                      cgloo_request **out)
{
    if (c->group)
        peer = c->group[peer];
    int rc = cgloo__p2p_irecv(c->ctx, buf, bytes, peer, coll_tag(c, step), out);
    return rc == CGLOO_OK ? rc : coll_post_error(c, rc, "receive from", peer, step);
}

void cgloo__coll_sub(coll *c, coll *sub, const int *ranks, int n, unsigned phase,
                     const char *algorithm)
{
    CGLOO_ASSERT(phase >= 1 && phase <= COLL_PHASE_MAX);
    *sub = *c;
    sub->group = ranks;
    sub->size = n;
    sub->rank = -1;
    for (int i = 0; i < n; i++)
        if (ranks[i] == c->ctx->rank)
            sub->rank = i;
    sub->algorithm = algorithm;
    sub->deadline_ms = cgloo__coll_deadline(c); /* the phases share the call's */
    sub->tag_base = (tag_base_of(c) & ~((uint64_t)COLL_PHASE_MAX << COLL_PHASE_SHIFT)) |
                    (uint64_t)phase << COLL_PHASE_SHIFT;
    sub->check_pending = false;
}

int cgloo__coll_sub_end(coll *c, const coll *sub, int rc)
{
    if (rc != CGLOO_OK && c->status == CGLOO_OK)
        c->status = sub->status ? sub->status : rc;
    return rc;
}

int cgloo__coll_wait(coll *c, cgloo_request **req)
{
    cgloo_request *r = *req;
    if (!r)
        return CGLOO_OK;
    /* Read what the error message needs before the request is freed. */
    bool is_recv = r->kind == REQ_RECV;
    int peer = r->peer;
    unsigned step = (unsigned)(r->tag & 0xffu);
    size_t expected = r->len;
    cgloo__flight_waiting(&c->ctx->flight, c->flight_id, peer, (int)step,
                          is_recv ? FLIGHT_WAIT_RECV : FLIGHT_WAIT_SEND);
    int left = cgloo__remaining_ms(cgloo__coll_deadline(c));
    cgloo_completion done;
    int rc = cgloo__wait_or_cancel(r, left > 0 ? left : 1, &done);
    *req = NULL;
    if (rc != CGLOO_OK)
        return coll_post_error(c, rc, is_recv ? "receive from" : "send to", peer, step);
    if (is_recv && done.bytes != expected)
        return cgloo__coll_error(c, CGLOO_EPROTO,
                                 "step %u: rank %d sent %zu bytes where %zu were expected (do the "
                                 "ranks agree on the arguments?)",
                                 step, peer, done.bytes, expected);
    return CGLOO_OK;
}

int cgloo__coll_waitall(coll *c, cgloo_request **reqs, int n)
{
    int rc = CGLOO_OK;
    for (int i = 0; i < n; i++) {
        if (rc == CGLOO_OK) {
            rc = cgloo__coll_wait(c, &reqs[i]);
        } else if (reqs[i]) {
            cgloo_cancel(reqs[i]);
            reqs[i] = NULL;
        }
    }
    return rc;
}

int cgloo__coll_blocks(coll *c, const size_t *counts, size_t count, size_t **out)
{
    *out = malloc(((size_t)c->size + 1) * sizeof **out);
    if (!*out)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %d block offsets", c->size);
    if (blocks_fill(*out, c->size, counts, count, c->esize))
        return CGLOO_OK;
    free(*out);
    *out = NULL;
    return cgloo__coll_error(c, CGLOO_EINVAL, "the total size of the blocks overflows");
}

int cgloo__coll_finish(coll *c, cgloo_request **reqs, int n, int rc)
{
    if (rc == CGLOO_OK)
        return cgloo__coll_waitall(c, reqs, n);
    for (int i = 0; i < n; i++) {
        cgloo_cancel(reqs[i]);
        reqs[i] = NULL;
    }
    return rc;
}

/* Bytes copied between two looks at the transports in cgloo__coll_copy_polling. A large message
 * waits for its receiver's READY (and a large send for the root's turn), so a root that copied
 * its own 2 MiB block before looking held its peer for the whole copy. 256 KiB takes 15 to 25 us
 * to copy; a look that finds nothing costs one poll. 2 ranks over TCP, 4 MiB, p50 us of seven
 * alternating runs at load 1 to 4, copy first against polling: gather 464-803 (median 491)
 * against 196-292 (203; Open MPI 502-521 in the minutes after), scatter 423-607 (514) against
 * 356-407 (390); alltoall 956-1023 against 957-1009, where both ranks copy and send at once and
 * no core was idle. Over shared memory, 16 MiB through the single copy: within noise. */
#define COPY_POLL_BYTES (256 * 1024)

void cgloo__coll_copy_polling(coll *c, void *dst, const void *src, size_t bytes)
{
    if (cgloo__bytes_overlap(dst, bytes, src, bytes)) { /* pieces would overwrite their source */
        memmove(dst, src, bytes);
        return;
    }
    for (size_t done = 0; done < bytes;) {
        size_t n = CGLOO_MIN(bytes - done, (size_t)COPY_POLL_BYTES);
        memmove((uint8_t *)dst + done, (const uint8_t *)src + done, n);
        done += n;
        if (done == bytes)
            break;
        pthread_mutex_lock(&c->ctx->lock);
        if (!c->ctx->progressing) /* another thread drives them: it answers for us */
            cgloo__ctx_poll_all(c->ctx);
        pthread_mutex_unlock(&c->ctx->lock);
    }
}

int cgloo__coll_send(coll *c, int peer, const void *buf, size_t bytes, unsigned step)
{
    cgloo_request *r = NULL;
    int rc = cgloo__coll_isend(c, peer, buf, bytes, step, &r);
    return rc != CGLOO_OK ? rc : cgloo__coll_wait(c, &r);
}

int cgloo__coll_recv(coll *c, int peer, void *buf, size_t bytes, unsigned step)
{
    cgloo_request *r = NULL;
    int rc = cgloo__coll_irecv(c, peer, buf, bytes, step, &r);
    return rc != CGLOO_OK ? rc : cgloo__coll_wait(c, &r);
}

int cgloo__coll_sendrecv(coll *c, int dst, const void *sbuf, size_t sbytes, int src, void *rbuf,
                         size_t rbytes, unsigned step)
{
    cgloo_request *reqs[2] = {NULL, NULL};
    int rc = CGLOO_OK;
    if (src >= 0)
        rc = cgloo__coll_irecv(c, src, rbuf, rbytes, step, &reqs[0]);
    if (rc == CGLOO_OK && dst >= 0)
        rc = cgloo__coll_isend(c, dst, sbuf, sbytes, step, &reqs[1]);
    if (rc != CGLOO_OK) {
        cgloo_cancel(reqs[0]);
        return rc;
    }
    return cgloo__coll_waitall(c, reqs, 2);
}

/* ---- algorithm lookup ------------------------------------------------------------------------ */

extern char **environ;

/* env_scan reads CGLOO_<NAME>_ALGORITHM, looking at a variable only when it starts with "CG". */
static const char *env_scan(const char *name)
{
    char var[64] = "CGLOO_";
    size_t n = 6;
    for (const char *p = name; *p && n < 40; p++)
        var[n++] = (char)toupper((unsigned char)*p);
    memcpy(var + n, "_ALGORITHM=", sizeof "_ALGORITHM=");
    n += sizeof "_ALGORITHM=" - 1;
    for (char **e = environ; e && *e; e++)
        if ((*e)[0] == 'C' && (*e)[1] == 'G' && strncmp(*e, var, n) == 0)
            return (*e)[n] ? *e + n : NULL;
    return NULL;
}

/* coll_env_choice: CGLOO_<NAME>_ALGORITHM as the context read it at its first call of this
 * collective, as it reads its other variables once at creation. Reading the environment on
 * every call cost about 800 of the 2500 instructions of a 4-byte allreduce over shared-memory
 * slots (callgrind; docs/BENCHMARKS.md, "Shared memory"). */
static const char *coll_env_choice(const coll *c)
{
    cgloo_context *ctx = c->ctx;
    int n = atomic_load_explicit(&ctx->coll_env_n, memory_order_acquire);
    for (int i = 0; i < n; i++)
        if (ctx->coll_env[i].name == c->name)
            return ctx->coll_env[i].value;
    const char *v;
    pthread_mutex_lock(&ctx->lock);
    n = atomic_load_explicit(&ctx->coll_env_n, memory_order_relaxed);
    int i = 0;
    while (i < n && ctx->coll_env[i].name != c->name)
        i++;
    if (i < n) {
        v = ctx->coll_env[i].value;
    } else if (n < CGLOO_COLL_ENV_MAX) {
        v = env_scan(c->name);
        ctx->coll_env[n].name = c->name;
        ctx->coll_env[n].value = v ? strdup(v) : NULL;
        v = ctx->coll_env[n].value;
        atomic_store_explicit(&ctx->coll_env_n, n + 1, memory_order_release);
    } else {
        v = env_scan(c->name); /* every slot taken: read it each time */
    }
    pthread_mutex_unlock(&ctx->lock);
    return v;
}

int cgloo__coll_find(coll *c, const coll_algorithm *table, int n, const cgloo_coll_opts *opts,
                     int fallback)
{
    const char *want = opts && opts->algorithm ? opts->algorithm : coll_env_choice(c);
    int found = want ? -1 : fallback;
    for (int i = 0; want && i < n && found < 0; i++)
        if (strcmp(table[i].name, want) == 0)
            found = i;
    if (found < 0) {
        char names[256] = "";
        for (int i = 0; i < n; i++)
            snprintf(names + strlen(names), sizeof names - strlen(names), "%s%s", i ? ", " : "",
                     table[i].name);
        return cgloo__coll_error(c, CGLOO_ENOTSUP, "no algorithm named '%s' (there are: %s)",
                                 want ? want : "(none)", names);
    }
    c->algorithm = table[found].name;
    cgloo__flight_detail(&c->ctx->flight, c->flight_id, c->algorithm, c->fp.count, c->fp.root);
    if (c->ctx->check && c->size > 1) {
        int rc = cgloo__coll_check(c, found);
        if (rc != CGLOO_OK)
            return rc;
    }
    return found;
}
