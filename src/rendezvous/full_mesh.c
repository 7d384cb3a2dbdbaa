/*
 * Full-mesh connection set-up over a store.
 *
 * Each rank publishes "cgloo2 <address> <nonce> <expiry>" under "<context name>/addr/<rank>",
 * where the address is whatever its device's transport publishes, the nonce this context's
 * identity in this run, and the expiry (Unix ms, hex) the time after which no rank of this run
 * can still be reading it. It reads every peer's record, binds every peer to the device's
 * transport and asks the transport to connect them all. The transport is made ready to accept
 * before the address is published, so that no peer can dial too early. The transport proves each
 * connection belongs to this run with the nonces; the rendezvous never sees a connection or a wire
 * format.
 *
 * Stores outlive runs (a file store's directory, a long-running store server, Redis), so a run
 * must not read the records of an earlier one. Once connected, every peer has read this rank's
 * record, so each rank marks its record done and deletes it, and an earlier clean run leaves
 * nothing. An earlier run that died during its rendezvous leaves records that expire; readers
 * wait past done and expired records for fresh ones. Each rank also counts itself in
 * "<name>/joins/<rank>": a second live claimant of one rank (two runs sharing a namespace at
 * once) fails at once with EBUSY instead of connecting the two runs' ranks to each other.
 */
#include "core/context.h"
#include "core/topology.h"
#include "rendezvous/local_peers.h"
#include "store/store.h"
#include "transport/transport.h"

#include <inttypes.h>
#include <stdio.h>
#include <time.h>

#define RECORD_PREFIX "cgloo2 "
#define RECORD_DONE "cgloo2 done"
#define HEX_DIGITS 16
/* The longest record: prefix, address, a space, the nonce, a space, the expiry. */
#define RECORD_MAX (sizeof RECORD_PREFIX - 1 + CGLOO_TRANSPORT_ADDR_MAX - 1 + 2 * (1 + HEX_DIGITS))
/* How much later than the rank's own timeout its record expires: clocks of different hosts
 * disagree by this much at most. */
#define EXPIRY_SLACK_MS 10000
/* Polling a record that is there but stale (done or expired) until a fresh one replaces it. */
#define STALE_POLL_MIN_MS 5
#define STALE_POLL_MAX_MS 100

/* store_why writes " (<the store's detail>)" into buf, or "" when the store keeps none: a
 * Redis store's own words say why a rendezvous failed better than a status can. */
static const char *store_why(cgloo_store *store, char *buf, size_t len)
{
    char d[400];
    buf[0] = '\0';
    if (cgloo_store_last_error(store, d, sizeof d) == CGLOO_OK && d[0])
        snprintf(buf, len, " (%s)", d);
    return buf;
}

static void addr_key(const cgloo_context *ctx, int rank, char *key, size_t len)
{
    snprintf(key, len, "%s/addr/%d", ctx->name, rank);
}

static void joins_key(const cgloo_context *ctx, char *key, size_t len)
{
    snprintf(key, len, "%s/joins/%d", ctx->name, ctx->rank);
}

static int64_t unix_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int mesh_publish(cgloo_context *ctx, cgloo_store *store, cgloo_device *dev, const char *host)
{
    char key[CGLOO_STORE_KEY_MAX + 1], addr[CGLOO_TRANSPORT_ADDR_MAX], val[RECORD_MAX + 1];
    addr_key(ctx, ctx->rank, key, sizeof key);
    int rc = dev->transport->device_address(dev, addr, sizeof addr);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: the device has no address to publish",
                                ctx->rank);
    if (strlen(addr) + strlen(host) < sizeof addr)
        strcat(addr, host); /* peers on this host bind to shared memory (local_peers.h) */
    uint64_t expiry = (uint64_t)(unix_ms() + ctx->timeout_ms + EXPIRY_SLACK_MS);
    int n = snprintf(val, sizeof val, RECORD_PREFIX "%s %016" PRIx64 " %016" PRIx64, addr,
                     ctx->nonce, expiry);
    rc = cgloo_store_set(store, key, val, (size_t)n);
    char why[410];
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: publishing its address under '%s' failed: %s%s",
                                ctx->rank, key, cgloo_strerror(rc),
                                store_why(store, why, sizeof why));
    return CGLOO_OK;
}

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i]) || !s[i])
            return false;
    return true;
}

/* parse_record reads "cgloo2 <address> <16 hex digits> <16 hex digits>" from the store,
 * checking its shape (an address of printable characters without spaces); the transport checks
 * the address. *expiry gets the record's expiry. */
static int parse_record(const char *val, size_t len, cgloo__peer_record *rec, int64_t *expiry)
{
    const size_t pre = sizeof RECORD_PREFIX - 1, tail = 2 * (1 + HEX_DIGITS);
    if (len > RECORD_MAX || len < pre + 1 + tail || strlen(val) != len ||
        memcmp(val, RECORD_PREFIX, pre) != 0 || val[len - tail] != ' ' ||
        val[len - HEX_DIGITS - 1] != ' ' || !all_hex(val + len - tail + 1, HEX_DIGITS) ||
        !all_hex(val + len - HEX_DIGITS, HEX_DIGITS))
        return CGLOO_ESTORE;
    size_t alen = len - pre - tail;
    for (size_t i = 0; i < alen; i++)
        if (val[pre + i] <= ' ' || val[pre + i] > '~')
            return CGLOO_ESTORE;
    memcpy(rec->address, val + pre, alen);
    rec->address[alen] = '\0';
    rec->nonce = strtoull(val + len - tail + 1, NULL, 16);
    *expiry = (int64_t)strtoull(val + len - HEX_DIGITS, NULL, 16);
    return CGLOO_OK;
}

/* record_state: a fresh record (OK, parsed into rec), one left by an earlier run (done or
 * expired) or none yet (an empty value: ENOTFOUND), or one that is not a record at all
 * (ESTORE). Empty is none: torch's TCPStore answers a get of a key deleted after the wait with
 * an empty value (a peer whose connect failed takes its record back). */
static int record_state(const char *val, size_t len, cgloo__peer_record *rec)
{
    int64_t expiry;
    if (len == 0 || (len == sizeof RECORD_DONE - 1 && memcmp(val, RECORD_DONE, len) == 0))
        return CGLOO_ENOTFOUND;
    if (parse_record(val, len, rec, &expiry) != CGLOO_OK)
        return CGLOO_ESTORE;
    return expiry < unix_ms() ? CGLOO_ENOTFOUND : CGLOO_OK;
}

/* mesh_claim counts this rank in; a count above one means an earlier claimant, which is live
 * when its record is there, fresh and not ours: another run in its rendezvous right now. A
 * store without counters (an exchange made for one run, such as MPI's) needs no claim and no
 * clean-up: *claimed says whether there was one. */
static int mesh_claim(cgloo_context *ctx, cgloo_store *store, bool *claimed)
{
    char key[CGLOO_STORE_KEY_MAX + 1];
    int64_t joins = 0;
    joins_key(ctx, key, sizeof key);
    int rc = cgloo_store_add(store, key, 1, &joins);
    *claimed = rc == CGLOO_OK;
    if (rc == CGLOO_ENOTSUP)
        return CGLOO_OK;
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: counting itself in under '%s' failed: %s",
                                ctx->rank, key, cgloo_strerror(rc));
    if (joins == 1)
        return CGLOO_OK;
    void *val = NULL;
    size_t len = 0;
    cgloo__peer_record rec;
    addr_key(ctx, ctx->rank, key, sizeof key);
    rc = cgloo_store_get(store, key, 1, &val, &len);
    bool live = rc == CGLOO_OK && record_state(val, len, &rec) == CGLOO_OK &&
                rec.nonce != ctx->nonce; /* not this context's own earlier try */
    cgloo_free(val);
    if (!live)
        return CGLOO_OK; /* what an earlier run left: done, expired, or never published */
    return cgloo__ctx_error(ctx, CGLOO_EBUSY,
                            "rank %d: another run is in its rendezvous as rank %d of '%s' on "
                            "this store (its record '%s' is fresh); runs that share a store at "
                            "once need different context names (CGLOO_CONTEXT_NAME) or run ids "
                            "(CGLOO_RUN_ID)",
                            ctx->rank, ctx->rank, ctx->name, key);
}

/* mesh_finish marks this rank's record done, then deletes it and its count, once every peer
 * has read it (a store that cannot delete keeps the done mark). Failures here are harmless. */
static void mesh_finish(cgloo_context *ctx, cgloo_store *store)
{
    char key[CGLOO_STORE_KEY_MAX + 1];
    addr_key(ctx, ctx->rank, key, sizeof key);
    cgloo_store_set(store, key, RECORD_DONE, sizeof RECORD_DONE - 1);
    cgloo_store_delete(store, key);
    joins_key(ctx, key, sizeof key);
    cgloo_store_delete(store, key);
}

/* peer_keys lists every peer's record key (not this rank's); free with free(). */
static int peer_keys(const cgloo_context *ctx, char (**keys)[CGLOO_STORE_KEY_MAX + 1],
                     const char ***kp)
{
    size_t n = (size_t)ctx->size - 1;
    *keys = calloc(n, sizeof **keys);
    *kp = calloc(n, sizeof **kp);
    if (!*keys || !*kp)
        return CGLOO_ENOMEM;
    for (int r = 0, i = 0; r < ctx->size; r++)
        if (r != ctx->rank) {
            addr_key(ctx, r, (*keys)[i], sizeof(*keys)[i]);
            (*kp)[i] = (*keys)[i];
            i++;
        }
    return CGLOO_OK;
}

/* mesh_multi_get waits for the peers' records until the deadline, in slices between which it
 * calls the context's interrupt check, if it has one. */
static int mesh_multi_get(cgloo_context *ctx, cgloo_store *store, const char **keys, size_t n,
                          int64_t deadline, void **vals, size_t *lens)
{
    for (;;) {
        int left = CGLOO_MAX(cgloo__remaining_ms(deadline), 1);
        int slice = ctx->interrupt_fn ? CGLOO_MIN(left, CGLOO_INTERRUPT_CHECK_MS) : left;
        int rc = cgloo_store_multi_get(store, keys, n, slice, vals, lens);
        if (rc != CGLOO_ETIMEDOUT || cgloo__remaining_ms(deadline) == 0)
            return rc;
        if (cgloo__ctx_interrupted(ctx))
            return cgloo__ctx_error(ctx, CGLOO_EINTR, "rank %d: connect interrupted", ctx->rank);
    }
}

/* peer_rank: the rank of entry i of the peers' key list (every rank but this one). */
static int peer_rank(const cgloo_context *ctx, size_t i)
{
    return (int)i < ctx->rank ? (int)i : (int)i + 1;
}

/* Why a peer's record is not one this run can use: for the timeout's list, and for the first. */
enum record_lack { LACK_NONE, LACK_UNPUBLISHED, LACK_STALE, LACK_MALFORMED };
static const char *const lack_short[] = {
    [LACK_UNPUBLISHED] = "not published",
    [LACK_STALE] = "an earlier run's record",
    [LACK_MALFORMED] = "malformed",
};
static const char *const lack_long[] = {
    [LACK_UNPUBLISHED] = "never published its address",
    [LACK_STALE] = "did not publish its address in this run (its key holds a record an earlier "
                   "run left)",
    [LACK_MALFORMED] = "published a record that is no address",
};

/* record_lack asks the store afresh what is under key; *err is the store's status. */
static enum record_lack record_lack(cgloo_store *store, const char *key, int *err)
{
    const char *keys[] = {key};
    int present = 0;
    *err = cgloo_store_check(store, keys, 1, &present);
    if (*err != CGLOO_OK || !present)
        return LACK_UNPUBLISHED;
    void *val = NULL;
    size_t len = 0;
    cgloo__peer_record rec;
    int rc = cgloo_store_get(store, key, 1, &val, &len);
    int state = rc == CGLOO_OK ? record_state(val, len, &rec) : rc;
    cgloo_free(val);
    if (rc == CGLOO_OK && len == 0)
        return LACK_UNPUBLISHED;
    return state == CGLOO_OK          ? LACK_NONE
           : state == CGLOO_ENOTFOUND ? LACK_STALE
           : state == CGLOO_ESTORE    ? LACK_MALFORMED
                                      : LACK_UNPUBLISHED;
}

/* missing_error: the peers' records did not all come. On a timeout says how far the read got:
 * how many records are there, which ranks are missing and why (the store is asked once more,
 * key by key: only when a connect fails); otherwise the store's own detail. */
static int missing_error(cgloo_context *ctx, cgloo_store *store, int rc, const char **kp,
                         const bool *fresh)
{
    char why[410];
    if (rc != CGLOO_ETIMEDOUT) /* the store failed: its own detail says more than a check */
        return cgloo__ctx_error(ctx, rc, "rank %d: reading the peers' addresses failed: %s%s",
                                ctx->rank, cgloo_strerror(rc), store_why(store, why, sizeof why));
    cgloo__rank_list missing = {0};
    enum record_lack first_lack = LACK_NONE;
    size_t n = (size_t)ctx->size - 1, first = 0;
    int err = CGLOO_OK;
    for (size_t i = 0; i < n && err == CGLOO_OK; i++) {
        enum record_lack lack = fresh[i] ? LACK_NONE : record_lack(store, kp[i], &err);
        if (lack == LACK_NONE || err != CGLOO_OK)
            continue;
        if (first_lack == LACK_NONE) {
            first_lack = lack;
            first = i;
        }
        cgloo__rank_list_add(&missing, peer_rank(ctx, i), lack_short[lack]);
    }
    if (err != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc,
                                "rank %d: reading the peers' addresses timed out after %d ms",
                                ctx->rank, ctx->timeout_ms);
    if (first_lack == LACK_NONE) /* late, not missing: a loaded store or host */
        return cgloo__ctx_error(
            ctx, rc,
            "rank %d: reading the peers' addresses took longer than %d ms "
            "(all %d are there now: they came, or the store answered, too late)",
            ctx->rank, ctx->timeout_ms, (int)n);
    return cgloo__ctx_error(ctx, rc,
                            "rank %d: read the addresses of %d of %d peers within %d ms; missing: "
                            "%s; rank %d %s ('%s')",
                            ctx->rank, (int)n - missing.total, (int)n, ctx->timeout_ms,
                            cgloo__rank_list_text(&missing), peer_rank(ctx, first),
                            lack_long[first_lack], kp[first]);
}

/* read_round reads the records still missing (fresh[i] false) once, waiting until each is
 * there; fills recs for the fresh ones and says in *stale how many were left by an earlier
 * run. */
static int read_round(cgloo_context *ctx, cgloo_store *store, int64_t deadline, const char **kp,
                      bool *fresh, cgloo__peer_record *recs, size_t *stale)
{
    size_t n = (size_t)ctx->size - 1, m = 0;
    const char **pending = calloc(n, sizeof *pending);
    size_t *idx = calloc(n, sizeof *idx), *lens = calloc(n, sizeof *lens);
    void **vals = calloc(n, sizeof *vals);
    int rc = pending && idx && lens && vals ? CGLOO_OK : CGLOO_ENOMEM;
    for (size_t i = 0; rc == CGLOO_OK && i < n; i++)
        if (!fresh[i]) {
            idx[m] = i;
            pending[m++] = kp[i];
        }
    if (rc == CGLOO_OK)
        rc = mesh_multi_get(ctx, store, pending, m, deadline, vals, lens);
    if (rc != CGLOO_OK && rc != CGLOO_ENOMEM && rc != CGLOO_EINTR)
        rc = missing_error(ctx, store, rc, kp, fresh);
    *stale = 0;
    for (size_t j = 0; j < m && vals; j++) {
        int r = peer_rank(ctx, idx[j]);
        int state = rc == CGLOO_OK ? record_state(vals[j], lens[j], &recs[r]) : rc;
        if (state == CGLOO_ESTORE)
            rc = cgloo__ctx_error(ctx, CGLOO_ESTORE,
                                  "rank %d: the store record of rank %d ('%s') is malformed",
                                  ctx->rank, r, pending[j]);
        fresh[idx[j]] = state == CGLOO_OK;
        *stale += state == CGLOO_ENOTFOUND;
        cgloo_free(vals[j]);
    }
    free(pending);
    free(idx);
    free(lens);
    free(vals);
    return rc;
}

/* mesh_read_peers fills recs (indexed by rank) from the peers' fresh store records, waiting
 * past the records an earlier run left (done or expired) until fresh ones replace them. */
static int mesh_read_peers(cgloo_context *ctx, cgloo_store *store, int64_t deadline,
                           cgloo__peer_record *recs)
{
    char(*keys)[CGLOO_STORE_KEY_MAX + 1] = NULL;
    const char **kp = NULL;
    bool *fresh = calloc((size_t)ctx->size, sizeof *fresh);
    int rc = fresh ? peer_keys(ctx, &keys, &kp) : CGLOO_ENOMEM;
    int poll_ms = STALE_POLL_MIN_MS;
    size_t stale = 1;
    while (rc == CGLOO_OK && stale > 0) {
        rc = read_round(ctx, store, deadline, kp, fresh, recs, &stale);
        if (rc != CGLOO_OK || stale == 0)
            break;
        int left = cgloo__remaining_ms(deadline);
        if (left == 0)
            rc = missing_error(ctx, store, CGLOO_ETIMEDOUT, kp, fresh);
        else if (cgloo__ctx_interrupted(ctx))
            rc = cgloo__ctx_error(ctx, CGLOO_EINTR, "rank %d: connect interrupted", ctx->rank);
        else
            cgloo__sleep_ms(CGLOO_MIN(left, poll_ms));
        poll_ms = CGLOO_MIN(2 * poll_ms, STALE_POLL_MAX_MS);
    }
    free(keys);
    free(kp);
    free(fresh);
    return rc;
}

/* mesh_bind gives every peer but this rank the device's transport. Under the lock: an abort
 * from another thread may be failing the peers meanwhile. */
static int mesh_bind(cgloo_context *ctx, const cgloo_transport *t)
{
    int rc = CGLOO_OK;
    pthread_mutex_lock(&ctx->lock);
    for (int r = 0; r < ctx->size && rc == CGLOO_OK; r++)
        if (r != ctx->rank)
            rc = cgloo__peer_bind(&ctx->peers[r], t);
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

/* mesh_undo releases whatever a failed connect bound and opened, so that connect may be tried
 * again (an aborted context stays aborted). */
static void mesh_undo(cgloo_context *ctx)
{
    if (ctx->lazy_shm) { /* handed over before TCP's part failed */
        cgloo__shm_transport.connect_end(ctx->lazy_shm);
        ctx->lazy_shm = NULL;
    }
    pthread_mutex_lock(&ctx->lock);
    for (int r = 0; r < ctx->size; r++)
        cgloo__peer_fini(&ctx->peers[r]);
    pthread_mutex_unlock(&ctx->lock);
}

/* mesh_lazy_finish: in lazy mode a rank's record may still be unread by its peers when it
 * returns, so the last rank to read them all (a count in the store) removes every record and
 * count; a store without counters keeps them until they expire. That is 2P round trips on one
 * rank, but no rank waits for another: a store barrier after which every rank removed its own
 * record would hold every rank's connect until the slowest read (the whole timeout when a rank
 * died after publishing), and woke every rank at once for its round trips; at 1024 ranks on this
 * machine the two were not told apart among runs that differ by 2x (docs/BENCHMARKS.md). */
static void mesh_lazy_finish(cgloo_context *ctx, cgloo_store *store, const cgloo__peer_record *recs)
{
    char key[CGLOO_STORE_KEY_MAX + 1], count[CGLOO_STORE_KEY_MAX + 1];
    int64_t read = 0;
    /* Scoped by rank 0's nonce: a count an earlier run left (it died reading) is not this
     * run's, which would otherwise reach the world size before every rank has read. */
    snprintf(count, sizeof count, "%s/lazy_read/%016" PRIx64, ctx->name,
             ctx->rank == 0 ? ctx->nonce : recs[0].nonce);
    if (cgloo_store_add(store, count, 1, &read) != CGLOO_OK || read != ctx->size)
        return;
    for (int r = 0; r < ctx->size; r++) {
        addr_key(ctx, r, key, sizeof key);
        if (cgloo_store_delete(store, key) != CGLOO_OK) /* one round trip per key, not two */
            cgloo_store_set(store, key, RECORD_DONE, sizeof RECORD_DONE - 1);
        snprintf(key, sizeof key, "%s/joins/%d", ctx->name, r);
        cgloo_store_delete(store, key);
    }
    cgloo_store_delete(store, count);
}

/* mesh_peers_connect hands the records to the transport: connect the full mesh now, or, in
 * lazy mode, keep the connector for the context's life (ctx->lazy_conn) and connect nothing. */
static int mesh_peers_connect(cgloo_context *ctx, const cgloo_transport *t, cgloo__connector **conn,
                              const cgloo__peer_record *recs, int64_t deadline)
{
    if (!ctx->lazy || !t->connect_lazy)
        return t->connect(*conn, recs, deadline);
    int rc = t->connect_lazy(*conn, recs);
    if (rc == CGLOO_OK) {
        ctx->lazy_conn = *conn;
        ctx->lazy_transport = t;
        *conn = NULL;
    }
    return rc;
}

static int mesh_connect(cgloo_context *ctx, cgloo_store *store, cgloo_device *dev)
{
    int64_t deadline = cgloo__now_ms() + ctx->timeout_ms;
    cgloo__peer_record *recs = calloc((size_t)ctx->size, sizeof *recs);
    if (!recs)
        return CGLOO_ENOMEM;
    const cgloo_transport *t = dev->transport;
    cgloo__connector *conn = NULL, *shm_conn = NULL;
    char host[CGLOO__HOST_SUFFIX_MAX] = "";
    int n_local = 0;
    bool claimed = false;
    int rc = mesh_claim(ctx, store, &claimed);
    if (rc == CGLOO_OK)
        rc = mesh_bind(ctx, t);
    if (rc == CGLOO_OK)
        rc = t->connect_begin(dev, ctx, cgloo__store_host(store), &conn); /* reachable first */
    if (rc == CGLOO_OK)
        rc = cgloo__local_begin(ctx, host, sizeof host, &shm_conn);
    if (rc == CGLOO_OK)
        rc = mesh_publish(ctx, store, dev, host);
    if (rc == CGLOO_OK)
        rc = mesh_read_peers(ctx, store, deadline, recs);
    if (rc == CGLOO_OK) /* before the identities are cut off */
        rc = cgloo__ctx_topology_set(ctx, recs, host);
    if (rc == CGLOO_OK)
        rc = cgloo__bind_local_peers(ctx, recs, host, &n_local);
    if (rc == CGLOO_OK)
        rc = cgloo__local_connect(ctx, &shm_conn, recs, deadline);
    if (rc == CGLOO_OK)
        rc = mesh_peers_connect(ctx, t, &conn, recs, deadline);
    if (shm_conn)
        cgloo__shm_transport.connect_end(shm_conn);
    if (conn)
        t->connect_end(conn);
    if (rc != CGLOO_OK)
        mesh_undo(ctx);
    else if (claimed && ctx->lazy_conn)
        mesh_lazy_finish(ctx, store, recs);
    else if (claimed)
        mesh_finish(ctx, store);
    if (rc == CGLOO_OK && n_local > 0)
        CGLOO_LOG(CGLOO_LOG_INFO, ctx->rank, ctx->size, "%d peers on this host over shm", n_local);
    free(recs);
    return rc;
}

/* connect_checked is cgloo_context_connect once the context is known. */
static int connect_checked(cgloo_context *ctx, cgloo_store *store, cgloo_device *dev)
{
    if (ctx->connected)
        return cgloo__ctx_error(ctx, CGLOO_ESTATE, "rank %d: the context is already connected",
                                ctx->rank);
    if (ctx->size > 1 && (!store || !dev))
        return cgloo__ctx_error(ctx, CGLOO_EINVAL, "rank %d: connect needs a store and a device",
                                ctx->rank);
    if (!ctx->local_fixed) /* the device's attribute, else the variable's (context.c) */
        ctx->local_mode = dev && dev->local_mode >= 0 ? (uint8_t)dev->local_mode : ctx->local_env;
    int rc = ctx->size > 1 ? mesh_connect(ctx, store, dev) : CGLOO_OK;
    if (rc == CGLOO_OK) {
        CGLOO_LOG(CGLOO_LOG_INFO, ctx->rank, ctx->size, "connected %s over %s",
                  ctx->lazy_conn || ctx->lazy_shm ? "lazily (on first use)" : "full mesh",
                  ctx->size > 1 ? dev->transport->name : "nothing (one rank)");
        pthread_mutex_lock(&ctx->lock);
        ctx->connected = true;
        ctx->device = ctx->size > 1 ? dev : NULL;
        if (ctx->pt_wanted)
            rc = cgloo__pt_start(ctx);
        pthread_mutex_unlock(&ctx->lock);
    }
    return rc;
}

int cgloo_context_connect(cgloo_context *ctx, cgloo_store *store, cgloo_device *dev)
{
    cgloo__error_clear();
    if (!ctx)
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_context_connect: the context is NULL");
    int rc = connect_checked(ctx, store, dev);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(ctx, detail, sizeof detail);
        cgloo__error_copy(rc, detail);
    }
    return rc;
}
