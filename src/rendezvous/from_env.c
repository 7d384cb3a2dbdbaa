/*
 * A connected context from the launcher's environment in one call: rank, size and store as
 * launcher_env.c reads them (cgloo-run, torchrun, mpirun, PMI, Slurm), CGLOO_TIMEOUT_MS,
 * CGLOO_CONTEXT_NAME, and the device's variables (CGLOO_IFACE, CGLOO_HOSTNAME,
 * CGLOO_ADVERTISE_ADDR, CGLOO_PORT).
 */
#include "core/context.h"
#include "store/store.h"

/* env_int_error explains a malformed variable as the thread's last error. */
static int env_int_error(const char *name, long min, long max)
{
    return cgloo__error_set(CGLOO_EINVAL, "%s='%s' is not a whole number from %ld to %ld", name,
                            getenv(name), min, max);
}

static int env_rank_size(cgloo_launch_info *li, int *rank, int *size, int *timeout)
{
    long t;
    if (cgloo_launch_info_from_env(li) != CGLOO_OK)
        return cgloo__error_set(CGLOO_EINVAL, "%s", li->detail);
    if (cgloo__env_int("CGLOO_TIMEOUT_MS", 1, INT32_MAX, 30000, &t) != CGLOO_OK)
        return env_int_error("CGLOO_TIMEOUT_MS", 1, INT32_MAX);
    *rank = li->rank;
    *size = li->size;
    *timeout = (int)t;
    return CGLOO_OK;
}

/* env_store_device opens the launcher's store (serving it first on the rank that hosts it),
 * then the device, telling it the store's host so that it chooses the address the route to
 * the store leaves from. */
static int env_store_device(cgloo_context *ctx, const cgloo_launch_info *li, int timeout)
{
    int rc = cgloo_launch_store_open(li, timeout, &ctx->owned_store);
    if (rc != CGLOO_OK) {
        const char *why = cgloo__error_detail(); /* the URL without its password */
        return cgloo__ctx_error(ctx, rc, "the store of the %s launcher could not be opened: %s",
                                li->launcher, why[0] ? why : cgloo_strerror(rc));
    }
    cgloo_tcp_attr attr = {.store_host = cgloo__store_host(ctx->owned_store)};
    if ((rc = cgloo_device_tcp_create(&attr, &ctx->owned_device)) != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc, "%s", cgloo__error_detail());
    return CGLOO_OK;
}

int cgloo_context_create_from_env(cgloo_context **out)
{
    int rank = 0, size = 1, timeout = 0;
    cgloo_launch_info li;
    cgloo__error_clear();
    if (!out)
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_context_create_from_env: out is NULL");
    cgloo__log_init_from_env();
    if (env_rank_size(&li, &rank, &size, &timeout) != CGLOO_OK) {
        CGLOO_ERROR("context from environment: %s", cgloo__error_detail());
        return CGLOO_EINVAL;
    }
    cgloo_context_attr attr = {.timeout_ms = timeout, .name = getenv("CGLOO_CONTEXT_NAME")};
    cgloo_context *ctx;
    int rc = cgloo_context_create(rank, size, &attr, &ctx);
    if (rc != CGLOO_OK)
        return rc;
    if (size > 1)
        rc = env_store_device(ctx, &li, timeout);
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
