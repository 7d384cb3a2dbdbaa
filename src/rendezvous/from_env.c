/*
 * A connected context from the launcher's environment in one call: CGLOO_RANK, CGLOO_SIZE,
 * CGLOO_STORE (a store URL), CGLOO_TIMEOUT_MS, CGLOO_CONTEXT_NAME, and the device's variables
 * (CGLOO_IFACE, CGLOO_HOSTNAME, CGLOO_ADVERTISE_ADDR, CGLOO_PORT).
 */
#include "core/context.h"
#include "store/store.h"

/* env_int_error explains a malformed variable as the thread's last error. */
static int env_int_error(const char *name, long min, long max)
{
    return cgloo__error_set(CGLOO_EINVAL, "%s='%s' is not a whole number from %ld to %ld", name,
                            getenv(name), min, max);
}

static int env_rank_size(int *rank, int *size, int *timeout)
{
    long r, s, t;
    if (!getenv("CGLOO_RANK") || !getenv("CGLOO_SIZE"))
        return cgloo__error_set(CGLOO_EINVAL,
                                "%s is not set: run the program under cgloo-run (cgloo-run -n 4 "
                                "PROGRAM), or set CGLOO_RANK, CGLOO_SIZE and CGLOO_STORE",
                                getenv("CGLOO_RANK") ? "CGLOO_SIZE" : "CGLOO_RANK");
    if (cgloo__env_int("CGLOO_SIZE", 1, 1L << 24, 1, &s) != CGLOO_OK)
        return env_int_error("CGLOO_SIZE", 1, 1L << 24);
    if (cgloo__env_int("CGLOO_RANK", 0, s - 1, 0, &r) != CGLOO_OK)
        return env_int_error("CGLOO_RANK", 0, s - 1);
    if (cgloo__env_int("CGLOO_TIMEOUT_MS", 1, INT32_MAX, 30000, &t) != CGLOO_OK)
        return env_int_error("CGLOO_TIMEOUT_MS", 1, INT32_MAX);
    *rank = (int)r;
    *size = (int)s;
    *timeout = (int)t;
    return CGLOO_OK;
}

/* env_store_device opens CGLOO_STORE, then the device, telling it the store's host so that it
 * chooses the address the route to the store leaves from. */
static int env_store_device(cgloo_context *ctx, int timeout)
{
    const char *url = getenv("CGLOO_STORE");
    int rc;
    if (!url || !*url)
        return cgloo__ctx_error(ctx, CGLOO_EINVAL,
                                "CGLOO_STORE is not set: it names the store the ranks meet "
                                "through, tcp://HOST:PORT (cgloo-store serves one) or "
                                "file:///SHARED/DIR (cgloo-run sets it)");
    if ((rc = cgloo_store_open(url, timeout, &ctx->owned_store)) != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "CGLOO_STORE could not be opened: %s",
                                cgloo__error_detail()); /* the URL without its password */
    cgloo_tcp_attr attr = {.store_host = cgloo__store_host(ctx->owned_store)};
    if ((rc = cgloo_device_tcp_create(&attr, &ctx->owned_device)) != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "%s", cgloo__error_detail());
    return CGLOO_OK;
}

int cgloo_context_create_from_env(cgloo_context **out)
{
    int rank = 0, size = 1, timeout = 0;
    cgloo__error_clear();
    if (!out)
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_context_create_from_env: out is NULL");
    cgloo__log_init_from_env();
    if (env_rank_size(&rank, &size, &timeout) != CGLOO_OK) {
        CGLOO_ERROR("context from environment: %s", cgloo__error_detail());
        return CGLOO_EINVAL;
    }
    cgloo_context_attr attr = {.timeout_ms = timeout, .name = getenv("CGLOO_CONTEXT_NAME")};
    cgloo_context *ctx;
    int rc = cgloo_context_create(rank, size, &attr, &ctx);
    if (rc != CGLOO_OK)
        return rc;
    if (size > 1)
        rc = env_store_device(ctx, timeout);
    if (rc == CGLOO_OK)
        rc = cgloo_context_connect(ctx, ctx->owned_store, ctx->owned_device);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(ctx, detail, sizeof detail);
        CGLOO_LOG(CGLOO_LOG_ERROR, rank, size, "context from environment: %s", detail);
        cgloo_context_destroy(ctx);
        return cgloo__error_copy(rc, detail);
    }
    *out = ctx;
    return CGLOO_OK;
}
