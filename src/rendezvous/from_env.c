/*
 * A connected context from the launcher's environment in one call: CGLOO_RANK, CGLOO_SIZE,
 * CGLOO_STORE (a store URL), CGLOO_TIMEOUT_MS, CGLOO_HOSTNAME / CGLOO_IFACE, CGLOO_CONTEXT_NAME.
 */
#include "core/context.h"

static int env_rank_size(int *rank, int *size, int *timeout)
{
    long r, s, t;
    if (!getenv("CGLOO_RANK") || !getenv("CGLOO_SIZE"))
        return CGLOO_EINVAL;
    if (cgloo__env_int("CGLOO_SIZE", 1, 1L << 24, 1, &s) != CGLOO_OK ||
        cgloo__env_int("CGLOO_RANK", 0, s - 1, 0, &r) != CGLOO_OK ||
        cgloo__env_int("CGLOO_TIMEOUT_MS", 1, INT32_MAX, 30000, &t) != CGLOO_OK)
        return CGLOO_EINVAL;
    *rank = (int)r;
    *size = (int)s;
    *timeout = (int)t;
    return CGLOO_OK;
}

int cgloo_context_create_from_env(cgloo_context **out)
{
    int rank, size, timeout;
    if (!out)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    if (env_rank_size(&rank, &size, &timeout) != CGLOO_OK) {
        CGLOO_ERROR("CGLOO_RANK, CGLOO_SIZE or CGLOO_TIMEOUT_MS is missing or malformed");
        return CGLOO_EINVAL;
    }
    cgloo_context_attr attr = {.timeout_ms = timeout, .name = getenv("CGLOO_CONTEXT_NAME")};
    cgloo_context *ctx;
    int rc = cgloo_context_create(rank, size, &attr, &ctx);
    if (rc != CGLOO_OK)
        return rc;
    const char *url = getenv("CGLOO_STORE");
    char why[400];
    if (size > 1) {
        if (!url || !*url)
            rc = cgloo__ctx_error(ctx, CGLOO_EINVAL, "CGLOO_STORE is not set");
        else if ((rc = cgloo_store_open_detail(url, timeout, why, sizeof why, &ctx->owned_store)) !=
                 CGLOO_OK)
            cgloo__ctx_error(ctx, rc, "CGLOO_STORE could not be opened: %s", why);
        else if ((rc = cgloo_device_tcp_create(NULL, &ctx->owned_device)) != CGLOO_OK)
            cgloo__ctx_error(ctx, rc, "no device on CGLOO_HOSTNAME/CGLOO_IFACE: %s",
                             cgloo_strerror(rc));
    }
    if (rc == CGLOO_OK)
        rc = cgloo_context_connect(ctx, ctx->owned_store, ctx->owned_device);
    if (rc != CGLOO_OK) {
        char detail[512];
        cgloo_context_last_error(ctx, detail, sizeof detail);
        CGLOO_LOG(CGLOO_LOG_ERROR, rank, size, "context from environment: %s", detail);
        cgloo_context_destroy(ctx);
        return rc;
    }
    *out = ctx;
    return CGLOO_OK;
}
