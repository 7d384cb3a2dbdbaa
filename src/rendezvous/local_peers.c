/*
 * The host identity and the binding of same-host peers to shared memory (local_peers.h).
 *
 * The identity is a hash of the kernel's boot id and the inode numbers of this process's IPC and
 * network namespaces: equal only for processes that can share memory (one kernel, one IPC
 * namespace) and reach each other's abstract Unix sockets (one network namespace). A hostname is
 * not enough: containers share names, and one name may cover many kernels.
 *
 * Beside the identity a rank publishes what decides whether a pair of one host can share
 * memory after all: its user id (the pair's connection checks it again, SO_PEERCRED), whether
 * it can make a segment (it tried one), and whether it insists on shared memory (shm) or takes
 * TCP where sharing fails (auto). Both ranks of a pair read the same two records, so both
 * decide alike before anything connects: in the full mesh and in lazy mode, where a pair may
 * connect long after the rendezvous.
 */
#include "rendezvous/local_peers.h"
#include "transport/shm/shm.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#define HOST_TAG "|host="
/* After the tag: "<16 hex>/<8 hex>/<m><s>": identity, user id, mode (a: auto, s: shm), and
 * whether the rank can make a segment (y, n). */
#define FACTS_LEN (16 + 1 + 8 + 1 + 2)
_Static_assert(sizeof HOST_TAG - 1 + FACTS_LEN < CGLOO__HOST_SUFFIX_MAX, "the suffix fits");

typedef struct host_facts {
    char id[17];
    uint32_t uid;
    bool insists;     /* shm: a pair that cannot share memory is an error, not TCP */
    bool can_segment; /* memfd_create and its growth work in this process */
} host_facts;

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
    if (ctx->local_mode == CGLOO_LOCAL_TCP || !host_identity(&id))
        return;
    snprintf(buf, len, HOST_TAG "%016" PRIx64 "/%08" PRIx32 "/%c%c", id, (uint32_t)getuid(),
             ctx->local_mode == CGLOO_LOCAL_SHM ? 's' : 'a',
             cgloo__shm_segment_possible() ? 'y' : 'n');
}

static bool all_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return false;
    return true;
}

/* facts_parse reads what follows the tag; false unless it is exactly that (bad bytes from the
 * store make the peer one of another host, reached over TCP). */
static bool facts_parse(const char *s, host_facts *f)
{
    if (strlen(s) != FACTS_LEN || !all_hex(s, 16) || s[16] != '/' || !all_hex(s + 17, 8) ||
        s[25] != '/' || (s[26] != 'a' && s[26] != 's') || (s[27] != 'y' && s[27] != 'n'))
        return false;
    memcpy(f->id, s, 16);
    f->id[16] = '\0';
    f->uid = (uint32_t)strtoul(s + 17, NULL, 16);
    f->insists = s[26] == 's';
    f->can_segment = s[27] == 'y';
    return true;
}

/* sharing_works writes why rank `me` and rank `peer` of one host cannot share memory into why,
 * and returns false; true when they can. */
static bool sharing_works(const host_facts *mine, int me, const host_facts *theirs, int peer,
                          char *why, size_t len)
{
    if (mine->uid != theirs->uid)
        snprintf(why, len, "the two processes run as different users");
    else if (!mine->can_segment || !theirs->can_segment)
        snprintf(why, len,
                 "rank %d cannot make a shared segment (memfd_create or its growth fails)",
                 mine->can_segment ? peer : me);
    return mine->uid == theirs->uid && mine->can_segment && theirs->can_segment;
}

/* bind_one binds rank r, on this host, to shared memory, or leaves it to TCP where the two
 * cannot share memory and neither insists; where one insists, the connect fails at once on
 * both ranks. Lock held. */
static int bind_one(cgloo_context *ctx, int r, const host_facts *mine, const host_facts *theirs,
                    int *n_local)
{
    char why[128];
    if (!sharing_works(mine, ctx->rank, theirs, r, why, sizeof why)) {
        if (mine->insists || theirs->insists)
            return cgloo__ctx_error(ctx, CGLOO_ENOTSUP,
                                    "rank %d: shared memory with rank %d on this host is "
                                    "impossible: %s; CGLOO_TRANSPORT=shm (or the attribute) "
                                    "insists on it on one of them, where auto would reach the "
                                    "peer over TCP",
                                    ctx->rank, r, why);
        CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size,
                  "shared memory: rank %d is on this host, but %s; it is reached over TCP instead",
                  r, why);
        return CGLOO_OK;
    }
    cgloo__peer_fini(&ctx->peers[r]);
    int rc = cgloo__peer_bind(&ctx->peers[r], &cgloo__shm_transport);
    *n_local += rc == CGLOO_OK;
    return rc;
}

int cgloo__bind_local_peers(cgloo_context *ctx, cgloo__peer_record *recs, const char *mine,
                            int *n_local)
{
    int rc = CGLOO_OK;
    *n_local = 0;
    host_facts me = {0}, theirs;
    bool shared = *mine && facts_parse(mine + strlen(HOST_TAG), &me);
    pthread_mutex_lock(&ctx->lock);
    for (int r = 0; r < ctx->size; r++) {
        char *tag = r == ctx->rank ? NULL : strstr(recs[r].address, HOST_TAG);
        if (!tag)
            continue;
        bool local =
            shared && facts_parse(tag + strlen(HOST_TAG), &theirs) && strcmp(theirs.id, me.id) == 0;
        *tag = '\0';
        if (local && rc == CGLOO_OK)
            rc = bind_one(ctx, r, &me, &theirs, n_local);
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

int cgloo__local_connect(cgloo_context *ctx, cgloo__connector **shm_conn,
                         const cgloo__peer_record *recs, int64_t deadline)
{
    if (!*shm_conn)
        return CGLOO_OK;
    if (!ctx->lazy)
        return cgloo__shm_transport.connect(*shm_conn, recs, deadline);
    int rc = cgloo__shm_transport.connect_lazy(*shm_conn, recs);
    if (rc == CGLOO_OK) { /* the context keeps it: pairs connect on first use */
        ctx->lazy_shm = *shm_conn;
        *shm_conn = NULL;
    }
    return rc;
}
