/*
 * A connected context from the launcher's environment in one call: rank, size and store as
 * launcher_env.c reads them (cgloo-run, torchrun, mpirun, PMI, Slurm), CGLOO_TIMEOUT_MS,
 * CGLOO_HOSTNAME / CGLOO_IFACE, CGLOO_CONTEXT_NAME.
 */
#include "core/context.h"

static int env_rank_size(cgloo_launch_info *li, int *rank, int *size, int *timeout)
{
    long t;
    if (cgloo_launch_info_from_env(li) != CGLOO_OK ||
        cgloo__env_int("CGLOO_TIMEOUT_MS", 1, INT32_MAX, 30000, &t) != CGLOO_OK)
        return CGLOO_EINVAL;
    *rank = li->rank;
    *size = li->size;
    *timeout = (int)t;
    return CGLOO_OK;
}

int cgloo_context_create_from_env(cgloo_context **out)
{
    int rank, size, timeout;
    cgloo_launch_info li;
    if (!out)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    if (env_rank_size(&li, &rank, &size, &timeout) != CGLOO_OK) {
        CGLOO_ERROR("context from environment: %s",
                    li.detail[0] ? li.detail : "CGLOO_TIMEOUT_MS is malformed");
        return CGLOO_EINVAL;
    }
    cgloo_context_attr attr = {.timeout_ms = timeout, .name = getenv("CGLOO_CONTEXT_NAME")};
    cgloo_context *ctx;
    int rc = cgloo_context_create(rank, size, &attr, &ctx);
    if (rc != CGLOO_OK)
        return rc;
    const char *url = li.store;
    if (size > 1) {
        if ((rc = cgloo_launch_store_open(&li, timeout, &ctx->owned_store)) != CGLOO_OK)
            cgloo__ctx_error(ctx, rc, "the store '%s' could not be opened: %s", url,
                             cgloo_strerror(rc));
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
