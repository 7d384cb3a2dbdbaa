/*
 * The host identity and the binding of same-host peers to shared memory (local_peers.h).
 *
 * The identity is a hash of the kernel's boot id and the inode numbers of this process's IPC and
 * network namespaces: equal only for processes that can share memory (one kernel, one IPC
 * namespace) and reach each other's abstract Unix sockets (one network namespace). A hostname is
 * not enough: containers share names, and one name may cover many kernels.
 */
#include "rendezvous/local_peers.h"
#include "transport/shm/shm.h"

#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>

#define HOST_TAG "|host="

/* host_identity hashes boot id, IPC and network namespace; false when one cannot be read. */
static bool host_identity(uint64_t *out)
{
    char text[128] = {0};
    FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
    if (!f)
        return false;
    bool ok = fgets(text, 40, f) != NULL;
    fclose(f);
    struct stat ipc, net;
    if (!ok || stat("/proc/self/ns/ipc", &ipc) != 0 || stat("/proc/self/ns/net", &net) != 0)
        return false;
    size_t n = strlen(text);
    snprintf(text + n, sizeof text - n, "/%" PRIu64 ":%" PRIu64 "/%" PRIu64 ":%" PRIu64,
             (uint64_t)ipc.st_dev, (uint64_t)ipc.st_ino, (uint64_t)net.st_dev,
             (uint64_t)net.st_ino);
    *out = cgloo__hash64(text, strlen(text));
    return true;
}

void cgloo__host_suffix(const cgloo_context *ctx, char *buf, size_t len)
{
    uint64_t id;
    buf[0] = '\0';
    if (ctx->local_mode != CGLOO_LOCAL_TCP && host_identity(&id))
        snprintf(buf, len, HOST_TAG "%016" PRIx64, id);
}

int cgloo__bind_local_peers(cgloo_context *ctx, cgloo__peer_record *recs, const char *mine,
                            int *n_local)
{
    int rc = CGLOO_OK;
    *n_local = 0;
    pthread_mutex_lock(&ctx->lock);
    for (int r = 0; r < ctx->size; r++) {
        char *tag = r == ctx->rank ? NULL : strstr(recs[r].address, HOST_TAG);
        if (!tag)
            continue;
        bool local = *mine && strcmp(tag, mine) == 0;
        *tag = '\0';
        if (!local || rc != CGLOO_OK)
            continue;
        cgloo__peer_fini(&ctx->peers[r]);
        rc = cgloo__peer_bind(&ctx->peers[r], &cgloo__shm_transport);
        *n_local += rc == CGLOO_OK;
    }
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

int cgloo__local_begin(cgloo_context *ctx, char *host, size_t len, cgloo__connector **shm_conn)
{
    *shm_conn = NULL;
    cgloo__host_suffix(ctx, host, len);
    if (ctx->local_mode == CGLOO_LOCAL_TCP)
        return CGLOO_OK;
    if (!host[0] && ctx->local_mode == CGLOO_LOCAL_SHM)
        return cgloo__ctx_error(ctx, CGLOO_ENOTSUP,
                                "rank %d: CGLOO_TRANSPORT=shm (or the attribute), but this host's "
                                "identity cannot be read (/proc/sys/kernel/random/boot_id, "
                                "/proc/self/ns/ipc, /proc/self/ns/net); auto would use TCP",
                                ctx->rank);
    if (!host[0]) {
        CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size,
                  "this host's identity cannot be read: every peer over TCP");
        return CGLOO_OK;
    }
    int rc = cgloo__shm_transport.connect_begin(NULL, ctx, NULL, shm_conn);
    if (rc == CGLOO_OK || ctx->local_mode == CGLOO_LOCAL_SHM)
        return rc;
    char detail[CGLOO_ERROR_MAX];
    cgloo_context_last_error(ctx, detail, sizeof detail);
    CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size, "%s: every peer over TCP", detail);
    host[0] = '\0'; /* no identity published: every peer binds this rank to TCP */
    return CGLOO_OK;
}

/* rebind_fallbacks gives t the shared-memory peers whose pair fell back; returns how many
 * stay on shared memory. Under the lock (an abort may be failing peers meanwhile). */
static int rebind_fallbacks(cgloo_context *ctx, cgloo__connector *shm_conn,
                            const cgloo_transport *t, int *n_shm)
{
    int rc = CGLOO_OK;
    *n_shm = 0;
    pthread_mutex_lock(&ctx->lock);
    for (int r = 0; r < ctx->size; r++) {
        cgloo_peer *p = &ctx->peers[r];
        if (r == ctx->rank || p->transport != &cgloo__shm_transport)
            continue;
        if (!cgloo__shm_fell_back(shm_conn, r)) {
            (*n_shm)++;
            continue;
        }
        cgloo__peer_fini(p);
        if (rc == CGLOO_OK)
            rc = cgloo__peer_bind(p, t);
    }
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

int cgloo__local_connect(cgloo_context *ctx, cgloo__connector *shm_conn,
                         const cgloo__peer_record *recs, int64_t deadline, const cgloo_transport *t,
                         int *n_shm)
{
    *n_shm = 0;
    if (!shm_conn)
        return CGLOO_OK;
    int rc = cgloo__shm_transport.connect(shm_conn, recs, deadline);
    return rc == CGLOO_OK ? rebind_fallbacks(ctx, shm_conn, t, n_shm) : rc;
}
