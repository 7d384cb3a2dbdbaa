/*
 * cgloo_context_create_from_mpi: the full-mesh rendezvous of any context, with MPI standing in
 * for the store. The connect publishes this rank's record and then waits for the peers'; the
 * store here keeps what was set, and at the first wait after a set every rank exchanges what it
 * set with MPI_Allgatherv. Every rank's connect sets once and then waits, so each makes the same
 * collective call once, as MPI requires. A key that is not there after the exchange never will
 * be: waits on it fail at once rather than sit out the timeout.
 *
 * Built as the cgloo_mpi library, so that the core library never needs MPI. It sets the
 * context's owned device through the internal header (core/context.h), compiled from the same
 * sources as the library it links.
 */
#include <cgloo/cgloo_mpi.h>

#include "core/context.h"

#include <limits.h>
#include <stdlib.h>

/* Only the public API and the context's fields are used here: the library's internal functions
 * are hidden in its shared object. */

static void put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

typedef struct mpi_store {
    MPI_Comm comm;
    cgloo_store *table; /* every record known here: a hash store */
    uint8_t *pending;   /* records set since the last exchange: u32 klen | key | u32 vlen | value */
    size_t pending_len;
} mpi_store;

static int pending_put(mpi_store *m, const void *p, size_t n)
{
    uint8_t *nb = realloc(m->pending, m->pending_len + n);
    if (!nb)
        return CGLOO_ENOMEM;
    memcpy(nb + m->pending_len, p, n);
    m->pending = nb;
    m->pending_len += n;
    return CGLOO_OK;
}

static int pending_u32(mpi_store *m, uint32_t v)
{
    uint8_t b[4];
    put_u32(b, v);
    return pending_put(m, b, 4);
}

static int mpi_set(void *user, const char *key, const void *value, size_t len)
{
    mpi_store *m = user;
    size_t klen = strlen(key);
    int rc = cgloo_store_set(m->table, key, value, len);
    if (rc == CGLOO_OK && len > INT_MAX / 2)
        rc = CGLOO_EINVAL;
    if (rc == CGLOO_OK)
        rc = pending_u32(m, (uint32_t)klen);
    if (rc == CGLOO_OK)
        rc = pending_put(m, key, klen);
    if (rc == CGLOO_OK)
        rc = pending_u32(m, (uint32_t)len);
    if (rc == CGLOO_OK)
        rc = pending_put(m, value, len);
    return rc;
}

/* take_records files every record of one rank's block into the table. */
static int take_records(mpi_store *m, const uint8_t *p, size_t n)
{
    while (n >= 8) {
        uint32_t klen = get_u32(p);
        if (klen == 0 || klen > CGLOO_STORE_KEY_MAX || n < 8 + (size_t)klen)
            return CGLOO_EPROTO;
        char key[CGLOO_STORE_KEY_MAX + 1];
        memcpy(key, p + 4, klen);
        key[klen] = '\0';
        uint32_t vlen = get_u32(p + 4 + klen);
        if (n - 8 - klen < vlen)
            return CGLOO_EPROTO;
        int rc = cgloo_store_set(m->table, key, p + 8 + klen, vlen);
        if (rc != CGLOO_OK)
            return rc;
        p += 8 + klen + vlen;
        n -= 8 + (size_t)klen + vlen;
    }
    return n == 0 ? CGLOO_OK : CGLOO_EPROTO;
}

/* gather_blocks runs the two collectives: every rank's block size, then the blocks. */
static int gather_blocks(mpi_store *m, int size, int *counts, int *offsets, uint8_t **all)
{
    int mine = (int)m->pending_len;
    if (MPI_Allgather(&mine, 1, MPI_INT, counts, 1, MPI_INT, m->comm) != MPI_SUCCESS)
        return CGLOO_EIO;
    size_t total = 0;
    for (int r = 0; r < size; r++) {
        if (counts[r] < 0 || total + (size_t)counts[r] > INT_MAX)
            return CGLOO_EPROTO;
        offsets[r] = (int)total;
        total += (size_t)counts[r];
    }
    if (!(*all = malloc(total ? total : 1)))
        return CGLOO_ENOMEM;
    if (MPI_Allgatherv(m->pending, mine, MPI_BYTE, *all, counts, offsets, MPI_BYTE, m->comm) !=
        MPI_SUCCESS)
        return CGLOO_EIO;
    return CGLOO_OK;
}

/* exchange gives every rank what every rank set since the last exchange. */
static int exchange(mpi_store *m)
{
    int size;
    MPI_Comm_size(m->comm, &size);
    int *counts = calloc((size_t)size, sizeof *counts);
    int *offsets = calloc((size_t)size, sizeof *offsets);
    uint8_t *all = NULL;
    int rc = counts && offsets ? gather_blocks(m, size, counts, offsets, &all) : CGLOO_ENOMEM;
    for (int r = 0; rc == CGLOO_OK && r < size; r++)
        rc = take_records(m, all + offsets[r], (size_t)counts[r]);
    free(all);
    free(counts);
    free(offsets);
    free(m->pending);
    m->pending = NULL;
    m->pending_len = 0;
    return rc;
}

static int exchange_if_pending(mpi_store *m)
{
    return m->pending ? exchange(m) : CGLOO_OK;
}

static int mpi_check(void *user, const char *const *keys, size_t nkeys, int *all_present)
{
    return cgloo_store_check(((mpi_store *)user)->table, keys, nkeys, all_present);
}

static int mpi_wait(void *user, const char *const *keys, size_t nkeys, int timeout_ms)
{
    mpi_store *m = user;
    int present = 0, rc = exchange_if_pending(m);
    if (rc == CGLOO_OK)
        rc = cgloo_store_check(m->table, keys, nkeys, &present);
    return rc == CGLOO_OK && !present ? CGLOO_ETIMEDOUT : rc;
}

static int mpi_get(void *user, const char *key, int timeout_ms, void **value, size_t *len)
{
    mpi_store *m = user;
    int rc = mpi_wait(user, &key, 1, timeout_ms);
    void *v = NULL;
    if (rc == CGLOO_OK)
        rc = cgloo_store_get(m->table, key, 1, &v, len);
    if (rc != CGLOO_OK)
        return rc;
    /* The library frees a custom store's values with free(); the table's come from it too. */
    *value = v;
    return CGLOO_OK;
}

static int mpi_add(void *user, const char *key, int64_t delta, int64_t *result)
{
    return CGLOO_ENOTSUP; /* no counter can be shared without a collective per call */
}

static void mpi_destroy(void *user)
{
    mpi_store *m = user;
    cgloo_store_destroy(m->table);
    free(m->pending);
    free(m);
}

static const cgloo_store_callbacks mpi_callbacks = {
    .set = mpi_set,
    .get = mpi_get,
    .wait = mpi_wait,
    .add = mpi_add,
    .check = mpi_check,
    .destroy = mpi_destroy,
};

static int mpi_store_create(MPI_Comm comm, cgloo_store **out)
{
    mpi_store *m = calloc(1, sizeof *m);
    if (!m)
        return CGLOO_ENOMEM;
    m->comm = comm;
    int rc = cgloo_store_hash_create(&m->table);
    if (rc == CGLOO_OK)
        rc = cgloo_store_custom_create(&mpi_callbacks, m, out);
    if (rc != CGLOO_OK) {
        cgloo_store_destroy(m->table);
        free(m);
    }
    return rc;
}

/* all_ok tells every rank whether every rank succeeded so far, so that they fail together
 * instead of some waiting in a collective the others never reach. */
static int all_ok(MPI_Comm comm, int rc)
{
    int mine = rc == CGLOO_OK, all = 0;
    if (MPI_Allreduce(&mine, &all, 1, MPI_INT, MPI_LAND, comm) != MPI_SUCCESS)
        return CGLOO_EIO;
    return rc != CGLOO_OK ? rc : all ? CGLOO_OK : CGLOO_EPEER;
}

/* env_timeout reads CGLOO_TIMEOUT_MS as cgloo_context_create_from_env does. */
static int env_timeout(int *out)
{
    const char *v = getenv("CGLOO_TIMEOUT_MS");
    char *end;
    long t = v && *v ? strtol(v, &end, 10) : 30000;
    if (v && *v && (*end || t < 1 || t > INT32_MAX))
        return CGLOO_EINVAL;
    *out = (int)t;
    return CGLOO_OK;
}

int cgloo_context_create_from_mpi(MPI_Comm comm, cgloo_context **out)
{
    int rank, size, timeout = 0;
    if (!out || MPI_Comm_rank(comm, &rank) != MPI_SUCCESS ||
        MPI_Comm_size(comm, &size) != MPI_SUCCESS)
        return CGLOO_EINVAL;
    int rc = env_timeout(&timeout);
    cgloo_context_attr attr = {.timeout_ms = timeout, .name = getenv("CGLOO_CONTEXT_NAME")};
    cgloo_context *ctx = NULL;
    if (rc == CGLOO_OK)
        rc = cgloo_context_create(rank, size, &attr, &ctx);
    if (rc == CGLOO_OK && size > 1 && (rc = mpi_store_create(comm, &ctx->owned_store)) == CGLOO_OK)
        rc = cgloo_device_tcp_create(NULL, &ctx->owned_device);
    if ((rc = all_ok(comm, rc)) == CGLOO_OK)
        rc = cgloo_context_connect(ctx, ctx->owned_store, ctx->owned_device);
    if (rc != CGLOO_OK) {
        cgloo_context_destroy(ctx);
        return rc;
    }
    *out = ctx;
    return CGLOO_OK;
}
