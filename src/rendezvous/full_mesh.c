/*
 * Full-mesh connection set-up over a store.
 *
 * Each rank publishes "cgloo1 <address> <nonce>" under "<context name>/addr/<rank>", where the
 * address is whatever its device's transport publishes and the nonce this context's identity
 * in this run, reads every peer's record in one multi-get, binds every peer to the device's
 * transport and asks the transport to connect them all. The transport is made ready to accept
 * before the address is published, so that no peer can dial too early. The transport proves each
 * connection belongs to this run with the nonces; the rendezvous never sees a connection or a wire
 * format.
 */
#include "core/context.h"
#include "store/store.h"
#include "transport/transport.h"

#include <inttypes.h>
#include <stdio.h>

#define RECORD_PREFIX "cgloo1 "
#define NONCE_DIGITS 16
/* The longest record: prefix, address, a space, the nonce. */
#define RECORD_MAX (sizeof RECORD_PREFIX - 1 + CGLOO_TRANSPORT_ADDR_MAX - 1 + 1 + NONCE_DIGITS)

static void addr_key(const cgloo_context *ctx, int rank, char *key, size_t len)
{
    snprintf(key, len, "%s/addr/%d", ctx->name, rank);
}

static int mesh_publish(cgloo_context *ctx, cgloo_store *store, cgloo_device *dev)
{
    char key[CGLOO_STORE_KEY_MAX + 1], addr[CGLOO_TRANSPORT_ADDR_MAX], val[RECORD_MAX + 1];
    addr_key(ctx, ctx->rank, key, sizeof key);
    int rc = dev->transport->device_address(dev, addr, sizeof addr);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: the device has no address to publish",
                                ctx->rank);
    int n = snprintf(val, sizeof val, RECORD_PREFIX "%s %016" PRIx64, addr, ctx->nonce);
    rc = cgloo_store_set(store, key, val, (size_t)n);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "rank %d: publishing its address under '%s' failed: %s",
                                ctx->rank, key, cgloo_strerror(rc));
    return CGLOO_OK;
}

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!strchr("0123456789abcdef", s[i]) || !s[i])
            return false;
    return true;
}

/* parse_record reads "cgloo1 <address> <16 hex digits>" from the store, checking its shape
 * (an address of printable characters without spaces); the transport checks the address. */
static int parse_record(const char *val, size_t len, cgloo__peer_record *rec)
{
    const size_t pre = sizeof RECORD_PREFIX - 1, tail = 1 + NONCE_DIGITS;
    if (len > RECORD_MAX || len < pre + 1 + tail || strlen(val) != len ||
        memcmp(val, RECORD_PREFIX, pre) != 0 || val[len - tail] != ' ' ||
        !all_hex(val + len - NONCE_DIGITS, NONCE_DIGITS))
        return CGLOO_ESTORE;
    size_t alen = len - pre - tail;
    for (size_t i = 0; i < alen; i++)
        if (val[pre + i] <= ' ' || val[pre + i] > '~')
            return CGLOO_ESTORE;
    memcpy(rec->address, val + pre, alen);
    rec->address[alen] = '\0';
    rec->nonce = strtoull(val + len - NONCE_DIGITS, NULL, 16);
    return CGLOO_OK;
}

static int missing_error(cgloo_context *ctx, cgloo_store *store, int rc)
{
    char key[CGLOO_STORE_KEY_MAX + 1];
    for (int r = 0; r < ctx->size; r++) {
        addr_key(ctx, r, key, sizeof key);
        const char *keys[] = {key};
        int present = 1;
        if (r != ctx->rank && cgloo_store_check(store, keys, 1, &present) == CGLOO_OK && !present)
            return cgloo__ctx_error(ctx, rc,
                                    "rank %d: rank %d never published its address ('%s') "
                                    "within %d ms",
                                    ctx->rank, r, key, ctx->timeout_ms);
    }
    return cgloo__ctx_error(ctx, rc, "rank %d: reading the peers' addresses failed: %s", ctx->rank,
                            cgloo_strerror(rc));
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

/* mesh_read_peers fills recs (indexed by rank) from the peers' store records. */
static int mesh_read_peers(cgloo_context *ctx, cgloo_store *store, int64_t deadline,
                           cgloo__peer_record *recs)
{
    size_t n = (size_t)ctx->size - 1;
    char(*keys)[CGLOO_STORE_KEY_MAX + 1] = NULL;
    const char **kp = NULL;
    void **vals = calloc(n, sizeof *vals);
    size_t *lens = calloc(n, sizeof *lens);
    int rc = peer_keys(ctx, &keys, &kp);
    if (rc == CGLOO_OK && (!vals || !lens))
        rc = CGLOO_ENOMEM;
    if (rc == CGLOO_OK)
        rc = mesh_multi_get(ctx, store, kp, n, deadline, vals, lens);
    if (rc != CGLOO_OK && rc != CGLOO_ENOMEM && rc != CGLOO_EINTR)
        rc = missing_error(ctx, store, rc);
    for (int r = 0, i = 0; r < ctx->size && vals && lens; r++) {
        if (r == ctx->rank)
            continue;
        if (rc == CGLOO_OK && parse_record(vals[i], lens[i], &recs[r]) != CGLOO_OK)
            rc = cgloo__ctx_error(ctx, CGLOO_ESTORE,
                                  "rank %d: the store record of rank %d ('%s') is malformed",
                                  ctx->rank, r, kp[i]);
        cgloo_free(vals[i]);
        i++;
    }
    free(keys);
    free(kp);
    free(vals);
    free(lens);
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
    pthread_mutex_lock(&ctx->lock);
    for (int r = 0; r < ctx->size; r++)
        cgloo__peer_fini(&ctx->peers[r]);
    pthread_mutex_unlock(&ctx->lock);
}

static int mesh_connect(cgloo_context *ctx, cgloo_store *store, cgloo_device *dev)
{
    int64_t deadline = cgloo__now_ms() + ctx->timeout_ms;
    cgloo__peer_record *recs = calloc((size_t)ctx->size, sizeof *recs);
    if (!recs)
        return CGLOO_ENOMEM;
    const cgloo_transport *t = dev->transport;
    cgloo__connector *conn = NULL;
    int rc = mesh_bind(ctx, t);
    if (rc == CGLOO_OK)
        rc = t->connect_begin(dev, ctx, cgloo__store_host(store), &conn); /* reachable first */
    if (rc == CGLOO_OK)
        rc = mesh_publish(ctx, store, dev);
    if (rc == CGLOO_OK)
        rc = mesh_read_peers(ctx, store, deadline, recs);
    if (rc == CGLOO_OK)
        rc = t->connect(conn, recs, deadline);
    if (conn)
        t->connect_end(conn);
    if (rc != CGLOO_OK)
        mesh_undo(ctx);
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
    int rc = ctx->size > 1 ? mesh_connect(ctx, store, dev) : CGLOO_OK;
    if (rc == CGLOO_OK) {
        CGLOO_LOG(CGLOO_LOG_INFO, ctx->rank, ctx->size, "connected full mesh over %s",
                  ctx->size > 1 ? dev->transport->name : "nothing (one rank)");
        pthread_mutex_lock(&ctx->lock);
        ctx->connected = true;
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
