/*
 * Sub-contexts: cgloo_context_split, MPI_Comm_split's semantics over a connected context.
 *
 * Every rank of the parent gives its color, its key and what a child's connect needs of it (the
 * device's address and a fresh nonce) in one allgather over the parent, so the store is never
 * touched. Ranks of one color form a child, ordered by key and then parent rank. Each member
 * makes its child context and makes it reachable through the parent's device (connect_begin),
 * and a second allgather over the parent, of each rank's set-up status, tells every rank that
 * every member can be dialled (a hello that arrives before its context registered would be
 * refused) or which rank could not. Then the child connects through the same transport connect
 * the store rendezvous uses, given the records from the first allgather instead of the store's.
 *
 * The child's context id is derived from the parent's, the parent's split count and the color,
 * so siblings and the parent never share an id: a hello can only reach the child it names, and
 * the child's messages travel on its own connections, where no tag of the parent or a sibling
 * can meet them.
 *
 * Same-host members bind to shared memory exactly as in the store rendezvous (local_peers.h):
 * each record's address carries the host identity, the child inherits the parent's choice of
 * transport, and the shared-memory pairs connect before TCP's, whose connect then takes the pairs
 * that fell back.
 */
#include "core/auth.h"
#include "core/context.h"
#include "rendezvous/local_peers.h"
#include "core/topology.h"
#include "transport/transport.h"

#include <inttypes.h>
#include <stdio.h>

/* What each rank gives the others in the first allgather (bytes of one build: every rank of a
 * job runs the same library on the same kind of host). */
typedef struct split_record {
    int32_t color, key;
    uint64_t nonce;
    char address[CGLOO_TRANSPORT_ADDR_MAX];
} split_record;

/* What a member learns from the records: its child's rank and size, and the peers' records in
 * child rank order. */
typedef struct split_plan {
    int rank, size;
    cgloo__peer_record *recs;
    char host[CGLOO__HOST_SUFFIX_MAX]; /* this rank's host identity suffix, "" for TCP only */
    cgloo__connector *conn;            /* the device transport's */
    cgloo__connector *shm_conn;        /* shared memory's, when host is set */
    int n_local;                       /* members bound to shared memory */
} split_plan;

/* comes_before: parent rank a orders before parent rank b in their child (same color). */
static bool comes_before(const split_record *all, int a, int b)
{
    return all[a].key < all[b].key || (all[a].key == all[b].key && a < b);
}

/* split_plan_make finds this rank's child rank and size and lists the members' records in
 * child rank order. ENOMEM. */
static int split_plan_make(const cgloo_context *parent, const split_record *all, split_plan *plan)
{
    int me = parent->rank, color = all[me].color;
    plan->rank = plan->size = 0;
    for (int r = 0; r < parent->size; r++)
        if (all[r].color == color) {
            plan->size++;
            plan->rank += comes_before(all, r, me);
        }
    plan->recs = calloc((size_t)plan->size, sizeof *plan->recs);
    if (!plan->recs)
        return CGLOO_ENOMEM;
    for (int r = 0; r < parent->size; r++) {
        if (all[r].color != color)
            continue;
        int at = 0;
        for (int q = 0; q < parent->size; q++)
            at += all[q].color == color && comes_before(all, q, r);
        memcpy(plan->recs[at].address, all[r].address, CGLOO_TRANSPORT_ADDR_MAX);
        plan->recs[at].nonce = all[r].nonce;
    }
    return CGLOO_OK;
}

/* child_inherit gives the child what the parent has that create does not set: its id, nonce,
 * secret, device and interrupt check. */
static int child_inherit(cgloo_context *parent, cgloo_context *child, uint64_t seq, int color,
                         uint64_t nonce)
{
    uint64_t id[3] = {parent->ctx_id, seq, (uint64_t)color};
    child->ctx_id = cgloo__hash64(id, sizeof id);
    child->nonce = nonce;
    child->device = parent->device;
    if (child->device) {
        cgloo__device_hold(child->device); /* the parent may go first */
        child->device_held = true;
    }
    child->interrupt_fn = parent->interrupt_fn;
    child->interrupt_user = parent->interrupt_user;
    if (child->secret) {
        cgloo__secret_wipe(child->secret);
        free(child->secret);
        child->secret = NULL;
    }
    if (!parent->secret)
        return CGLOO_OK;
    child->secret = malloc(sizeof *child->secret);
    if (!child->secret)
        return CGLOO_ENOMEM;
    *child->secret = *parent->secret;
    return CGLOO_OK;
}

/* child_create makes the unconnected child with the parent's settings. */
static int child_create(cgloo_context *parent, const split_plan *plan, uint64_t seq, int color,
                        uint64_t nonce, cgloo_context **out)
{
    char name[256];
    snprintf(name, sizeof name, "%s.split%" PRIu64 ".%d", parent->name, seq, color);
    cgloo_context_attr attr = {.timeout_ms = parent->timeout_ms,
                               .name = name,
                               .progress_thread = parent->pt_wanted,
                               .check = parent->check ? 1 : -1,
                               .flight_recorder = parent->flight.ring ? (int)parent->flight.n : -1,
                               .lazy = parent->lazy ? 1 : -1,
                               .transport = parent->local_mode == CGLOO_LOCAL_TCP   ? "tcp"
                                            : parent->local_mode == CGLOO_LOCAL_SHM ? "shm"
                                                                                    : "auto"};
    cgloo_context *child = NULL;
    int rc = cgloo_context_create(plan->rank, plan->size, &attr, &child);
    if (rc == CGLOO_OK)
        rc = child_inherit(parent, child, seq, color, nonce);
    if (rc != CGLOO_OK) {
        cgloo_context_destroy(child);
        return rc;
    }
    *out = child;
    return CGLOO_OK;
}

/* child_bind gives every peer of the child the device's transport (under the lock, as
 * full_mesh.c does). */
static int child_bind(cgloo_context *child, const cgloo_transport *t)
{
    int rc = CGLOO_OK;
    pthread_mutex_lock(&child->lock);
    for (int r = 0; r < child->size && rc == CGLOO_OK; r++)
        if (r != child->rank)
            rc = cgloo__peer_bind(&child->peers[r], t);
    pthread_mutex_unlock(&child->lock);
    return rc;
}

/* child_topology gives the child its parent's host topology, restricted to its members (parent
 * ranks in child rank order). */
static int child_topology(const cgloo_context *parent, const split_record *all, int size,
                          cgloo_context *child)
{
    int *members = calloc((size_t)size, sizeof *members);
    if (!members)
        return CGLOO_ENOMEM;
    int color = all[parent->rank].color;
    for (int r = 0; r < parent->size; r++) {
        int at = 0;
        for (int q = 0; all[r].color == color && q < parent->size; q++)
            at += all[q].color == color && comes_before(all, q, r);
        if (all[r].color == color)
            members[at] = r;
    }
    int rc = cgloo__topology_sub(parent->topo, members, size, &child->topo);
    free(members);
    return rc;
}

/* child_begin makes the child and, when it has peers, binds them (same-host ones to shared
 * memory) and makes it reachable through the device and shared memory. A rank whose shared
 * memory cannot listen fails here under auto too, since its identity is published already: the
 * split fails naming it (split_agree), as it would when its TCP set-up failed. */
static int child_begin(cgloo_context *parent, const split_record *all, uint64_t seq,
                       split_plan *plan, cgloo_context **child)
{
    const split_record *mine = &all[parent->rank];
    int rc = split_plan_make(parent, all, plan);
    if (rc == CGLOO_OK)
        rc = child_create(parent, plan, seq, mine->color, mine->nonce, child);
    if (rc == CGLOO_OK)
        rc = child_topology(parent, all, plan->size, *child);
    if (rc != CGLOO_OK || plan->size == 1)
        return rc;
    const cgloo_transport *t = parent->device->transport;
    rc = child_bind(*child, t);
    if (rc == CGLOO_OK)
        rc = cgloo__bind_local_peers(*child, plan->recs, plan->host, &plan->n_local);
    if (rc == CGLOO_OK)
        rc = t->connect_begin(parent->device, *child, NULL, &plan->conn);
    if (rc == CGLOO_OK && plan->host[0])
        rc = cgloo__shm_transport.connect_begin(NULL, *child, NULL, &plan->shm_conn);
    return rc;
}

/* How long a failed exchange keeps reading the parent's connections, so that a death that
 * already reached this rank (its connection's end is in the socket) is seen and named even when
 * the failure this rank met first was its echo: a live rank that gave up and left. */
#define SETTLE_MS 20

/* named_peer: the rank a failure's detail already names ("peer 3 (address): ..."), or -1. */
static int named_peer(const char *detail)
{
    for (const char *p = detail; (p = strstr(p, "peer ")) != NULL; p += 5)
        if (p[5] >= '0' && p[5] <= '9')
            return atoi(p + 5);
    return -1;
}

/* exchange_failed names, after the failure `rc` of an exchange over the parent, every rank
 * whose connection broke. */
static int exchange_failed(cgloo_context *parent, int rc)
{
    char detail[CGLOO_ERROR_MAX], failed[512] = "";
    if (rc != CGLOO_EPEER && rc != CGLOO_ETIMEDOUT)
        return rc;
    cgloo_context_last_error(parent, detail, sizeof detail);
    int64_t until = cgloo__now_ms() + SETTLE_MS;
    pthread_mutex_lock(&parent->lock);
    while (!parent->progressing && cgloo__now_ms() < until)
        cgloo__ctx_poll_once(parent, 1, false);
    cgloo__p2p_failed_peers(parent, named_peer(detail), failed, sizeof failed);
    pthread_mutex_unlock(&parent->lock);
    /* Recorded again: the polling may have recorded a later peer's failure over it. */
    if (!failed[0] || strstr(detail, "these ranks broke"))
        return cgloo__ctx_error(parent, rc, "%s", detail);
    return cgloo__ctx_error(parent, rc, "%s; the connections to these ranks broke: %s", detail,
                            failed);
}

/* split_agree tells every rank of the parent whether every rank set up its part (its status in
 * an allgather); returns the first failure, naming the rank. */
static int split_agree(cgloo_context *parent, int mine)
{
    int32_t *all = calloc((size_t)parent->size, sizeof *all), me = mine;
    if (!all)
        return CGLOO_ENOMEM;
    int rc = cgloo_allgather(parent, &me, all, 1, CGLOO_INT32, NULL);
    if (rc != CGLOO_OK)
        rc = exchange_failed(parent, rc);
    for (int r = 0; rc == CGLOO_OK && r < parent->size; r++)
        if (all[r] != CGLOO_OK)
            rc = cgloo__ctx_error(parent, all[r],
                                  "rank %d: split: rank %d could not make its child: %s",
                                  parent->rank, r, cgloo_strerror(all[r]));
    free(all);
    return rc;
}

/* child_finish marks the connected child usable (and starts its progress thread if wanted). */
static int child_finish(cgloo_context *child)
{
    int rc = CGLOO_OK;
    pthread_mutex_lock(&child->lock);
    child->connected = true;
    if (child->pt_wanted)
        rc = cgloo__pt_start(child);
    pthread_mutex_unlock(&child->lock);
    return rc;
}

/* split_connect connects the child's members once every rank is reachable. */
static int split_connect(cgloo_context *parent, cgloo_context *child, split_plan *plan)
{
    int rc = CGLOO_OK;
    cgloo__connector **conn = &plan->conn;
    if (*conn) {
        int64_t deadline = cgloo__now_ms() + parent->timeout_ms;
        const cgloo_transport *t = parent->device->transport;
        bool lazy = child->lazy && t->connect_lazy; /* the child keeps the connector */
        rc = cgloo__local_connect(child, &plan->shm_conn, plan->recs, deadline);
        if (rc == CGLOO_OK)
            rc =
                lazy ? t->connect_lazy(*conn, plan->recs) : t->connect(*conn, plan->recs, deadline);
        if (rc == CGLOO_OK && lazy) {
            child->lazy_conn = *conn;
            child->lazy_transport = t;
            *conn = NULL;
        }
        if (rc != CGLOO_OK) {
            char detail[CGLOO_ERROR_MAX];
            cgloo_context_last_error(child, detail, sizeof detail);
            cgloo__ctx_error(parent, rc, "rank %d: split: connecting the child failed: %s",
                             parent->rank, detail);
        }
    }
    if (rc == CGLOO_OK && plan->n_local > 0)
        CGLOO_LOG(CGLOO_LOG_INFO, child->rank, child->size, "%d peers on this host over shm",
                  plan->n_local);
    return rc == CGLOO_OK ? child_finish(child) : rc;
}

/* split_exchange runs the first allgather: every rank's record. */
static int split_exchange(cgloo_context *parent, int color, int key, split_record *all, char *host,
                          size_t host_len)
{
    split_record mine = {.color = color < 0 ? -1 : color, .key = key};
    mine.nonce = cgloo__random64();
    if (color >= 0 && parent->device) {
        int rc = parent->device->transport->device_address(parent->device, mine.address,
                                                           sizeof mine.address);
        if (rc != CGLOO_OK)
            return cgloo__ctx_error(parent, rc, "rank %d: split: the device has no address",
                                    parent->rank);
        cgloo__host_suffix(parent, host, host_len); /* the child inherits the parent's choice */
        if (strlen(mine.address) + strlen(host) < sizeof mine.address)
            strcat(mine.address, host); /* members on this host bind to shared memory */
        else
            host[0] = '\0';
    }
    int rc = cgloo_allgather(parent, &mine, all, sizeof mine, CGLOO_UINT8, NULL);
    for (int r = 0; r < parent->size; r++)
        all[r].address[CGLOO_TRANSPORT_ADDR_MAX - 1] = '\0';
    return rc == CGLOO_OK ? rc : exchange_failed(parent, rc);
}

static int split_checked(cgloo_context *parent, int color, int key, cgloo_context **out)
{
    if (!parent->connected)
        return cgloo__ctx_error(parent, CGLOO_ESTATE,
                                "rank %d: split: the context is not connected", parent->rank);
    pthread_mutex_lock(&parent->lock);
    uint64_t seq = ++parent->splits;
    pthread_mutex_unlock(&parent->lock);
    split_record *all = calloc((size_t)parent->size, sizeof *all);
    if (!all)
        return CGLOO_ENOMEM;
    split_plan plan = {0};
    cgloo_context *child = NULL;
    int rc = split_exchange(parent, color, key, all, plan.host, sizeof plan.host);
    if (rc != CGLOO_OK) {
        free(all);
        return rc;
    }
    int mine = color >= 0 ? child_begin(parent, all, seq, &plan, &child) : CGLOO_OK;
    rc = split_agree(parent, mine);
    if (rc == CGLOO_OK && child)
        rc = split_connect(parent, child, &plan);
    if (plan.shm_conn)
        cgloo__shm_transport.connect_end(plan.shm_conn);
    if (plan.conn)
        parent->device->transport->connect_end(plan.conn);
    if (rc != CGLOO_OK)
        cgloo_context_destroy(child);
    else
        *out = child;
    free(plan.recs);
    free(all);
    return rc;
}

int cgloo_context_split(cgloo_context *parent, int color, int key, cgloo_context **out)
{
    cgloo__error_clear();
    if (!parent || !out)
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_context_split: %s is NULL",
                                !parent ? "the context" : "out");
    int rc = split_checked(parent, color, key, out);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_context_last_error(parent, detail, sizeof detail);
        cgloo__error_copy(rc, detail);
    }
    return rc;
}
