/*
 * Connecting the shared-memory peers (the connect ops of transport.h).
 *
 * Every rank that asks for shared memory listens on an abstract Unix socket named after the
 * context id and its nonce ("\0cgloo-shm/<ctx id>/<nonce>"): it has no file, so nothing is left
 * when the process dies, and only processes in the same network namespace reach it, which the
 * host identity already required. The rank that dials makes the pair's segment, a sealed memfd
 * (it can neither shrink nor grow, so a mapping never faults), and hands it over with its hello;
 * the other checks the hello (context id, both ranks, the world size, both nonces from the store
 * records), that the dialler runs as the same user (SO_PEERCRED), maps the segment and answers.
 * The memfd is closed on both sides once mapped: the memory lives exactly as long as one of the
 * two mappings, and no name for it exists anywhere. The socket stays open for the pair:
 * wake-ups go through it, and its end tells of the peer's death.
 *
 * Whether a pair can share memory at all (the same user; both can make a segment) both ranks
 * know from the records before anything connects (rendezvous/local_peers.c), so a connection
 * here is expected to work, and one that does not is an error.
 *
 * The full mesh (cgloo__shm_connect): the higher rank of each pair dials, and the connect blocks
 * until every pair is made. A lazy context (cgloo__shm_connect_lazy) keeps the connector for its
 * life, its listener in the context's poller, and a pair connects when the engine first sends
 * on it (cgloo__shm_peer_want), from either end. When both ends dial at once the higher rank's
 * dial wins, as over TCP: a rank answers a lower rank's hello with ACK_CROSSED while its own dial
 * to that rank is out (the lower rank drops its dial and waits for the higher one's, which is on
 * its way), and drops its own dial when a higher rank's hello reaches it first. So exactly one
 * connection survives, and sends posted meanwhile wait on the pair (pair.c) until it does.
 */
#define _GNU_SOURCE
#include "transport/shm/shm.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/un.h>
#include <unistd.h>

#define HELLO_MAGIC 0x63676c6f6f73684cULL
#define POLL_SLICE_MS 100
/* dial's answer when the peer's listen queue is full (not a status: a lazy dial retries). */
#define QUEUE_FULL (-1000)
/* A lazy dial that finds the peer's listen queue full tries again this much later: the queue
 * holds net.core.somaxconn connections (4096 by default since Linux 5.4, 128 before, and any
 * container may lower it), which a thousand ranks' first contact with one rank can fill until
 * its process next accepts. */
#define RETRY_MS 10

typedef struct shm_hello {
    uint64_t magic, ctx_id, from_nonce, to_nonce;
    uint32_t from, to, size, eager_max, eager_budget, pad;
} shm_hello;

/* shm_ack.ok: the answer to a hello. */
enum shm_answer {
    ACK_REFUSED, /* not a hello of this run, or the segment is not one */
    ACK_OK,      /* the segment is mapped: the pair is connected */
    ACK_CROSSED, /* lazy: this (higher) rank's own dial to the dialler is out, and wins */
    ACK_GONE,    /* lazy: this rank has failed the dialler (its connection broke before) */
};

typedef struct shm_ack {
    uint64_t magic;
    uint32_t ok, eager_max, eager_budget, pad;
} shm_ack;

typedef struct cgloo__connector shm_connector;

/* One socket while its pair connects: a dial waiting for its answer, or a socket accepted from
 * a peer, waiting for its hello. */
typedef struct shm_pending {
    cgloo__pollable io; /* lazy: the socket in the context's poller */
    shm_connector *c;
    int fd;
    int rank;         /* dialled: the peer; accepted: -1 until the hello says */
    shm_segment *seg; /* dialled: the segment handed over */
    bool used;        /* filed in pend (the pool's entries stay put: an event the poller
                       * collected may still name a dropped one) */
    int64_t since_ms; /* accepted: when */
} shm_pending;

struct cgloo__connector {
    cgloo_context *ctx;
    int listen_fd;
    cgloo__pollable listen_io; /* lazy: the listener in the context's poller */
    bool lazy;                 /* the descriptors are in the context's poller */
    uint64_t *nonce;           /* the peers' nonces, from their records */
    bool *awaiting;            /* lazy, by rank: a crossed dial lost; the peer's is on its way */
    int64_t *retry_at;         /* by rank: a dial due then (a full listen queue: again), 0 */
    int64_t *give_up_at;       /* lazy, by rank: and when to stop retrying */
    int timer_fd;              /* lazy: wakes the retries */
    cgloo__pollable timer_io;
    shm_pending *pool;  /* max_pend entries */
    shm_pending **pend; /* the used ones, n_pend of them */
    int n_pend, max_pend;
    int n_accepted; /* of those, sockets accepted whose hello is not read yet */
    int connected, wanted;
};

static socklen_t abstract_name(struct sockaddr_un *sa, uint64_t ctx_id, uint64_t nonce)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    int n = snprintf(sa->sun_path + 1, sizeof sa->sun_path - 1,
                     "cgloo-shm/%016" PRIx64 "/%016" PRIx64, ctx_id, nonce);
    return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
}

int cgloo__shm_connect_begin(cgloo_device *dev, cgloo_context *ctx, const char *store_host,
                             cgloo__connector **out)
{
    (void)dev;
    (void)store_host;
    shm_connector *c = calloc(1, sizeof *c);
    if (c) {
        /* A dial and an accepted socket per peer at most; more wait in the listen queue. */
        c->max_pend = 2 * ctx->size;
        c->pool = calloc((size_t)c->max_pend, sizeof *c->pool);
        c->pend = calloc((size_t)c->max_pend, sizeof *c->pend);
        c->nonce = calloc((size_t)ctx->size, sizeof *c->nonce);
        c->retry_at = calloc((size_t)ctx->size, sizeof *c->retry_at);
    }
    if (!c || !c->pool || !c->pend || !c->nonce || !c->retry_at) {
        if (c) {
            free(c->pool);
            free(c->pend);
            free(c->nonce);
            free(c->retry_at);
        }
        free(c);
        return CGLOO_ENOMEM;
    }
    c->ctx = ctx;
    c->timer_fd = -1;
    struct sockaddr_un sa;
    socklen_t len = abstract_name(&sa, ctx->ctx_id, ctx->nonce);
    c->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->listen_fd < 0 || bind(c->listen_fd, (struct sockaddr *)&sa, len) != 0 ||
        listen(c->listen_fd, SOMAXCONN) != 0) {
        int err = errno;
        cgloo__shm_connect_end(c);
        return cgloo__ctx_error(ctx, cgloo__status_from_errno(err),
                                "rank %d: shared memory: cannot listen on an abstract Unix "
                                "socket: %s",
                                ctx->rank, strerror(err));
    }
    *out = c;
    return CGLOO_OK;
}

static void lazy_on_pending(cgloo__pollable *io, unsigned events);

/* pending_add files a socket; NULL (and the socket closed) when there is no room. */
static shm_pending *pending_add(shm_connector *c, int fd, int rank)
{
    shm_pending *pd = NULL;
    for (int i = 0; i < c->max_pend && c->n_pend < c->max_pend && !pd; i++)
        if (!c->pool[i].used)
            pd = &c->pool[i];
    if (!pd) {
        close(fd);
        return NULL;
    }
    *pd =
        (shm_pending){.io.on_event = lazy_on_pending, .c = c, .fd = fd, .rank = rank, .used = true};
    c->pend[c->n_pend++] = pd;
    return pd;
}

static void pending_drop(shm_connector *c, int i)
{
    shm_pending *pd = c->pend[i];
    if (pd->fd >= 0) {
        if (c->lazy)
            cgloo__poller_del(&c->ctx->poller, pd->fd);
        close(pd->fd);
    }
    if (pd->seg)
        munmap(pd->seg, sizeof(shm_segment));
    *pd = (shm_pending){.io.on_event = lazy_on_pending, .fd = -1};
    c->pend[i] = c->pend[--c->n_pend];
}

/* dial_index: the index of this rank's dial to rank; -1 when there is none. */
static int dial_index(const shm_connector *c, int rank)
{
    for (int i = 0; i < c->n_pend; i++)
        if (c->pend[i]->rank == rank)
            return i;
    return -1;
}

/* pending_index: the index of pd, which handling another socket may have moved or dropped. */
static int pending_index(const shm_connector *c, const shm_pending *pd)
{
    for (int i = 0; i < c->n_pend; i++)
        if (c->pend[i] == pd)
            return i;
    return -1;
}

void cgloo__shm_connect_end(cgloo__connector *c)
{
    while (c->n_pend > 0)
        pending_drop(c, c->n_pend - 1);
    if (c->listen_fd >= 0) {
        if (c->lazy)
            cgloo__poller_del(&c->ctx->poller, c->listen_fd);
        close(c->listen_fd);
    }
    free(c->pool);
    free(c->pend);
    free(c->nonce);
    free(c->awaiting);
    free(c->retry_at);
    free(c->give_up_at);
    if (c->timer_fd >= 0) {
        if (c->lazy)
            cgloo__poller_del(&c->ctx->poller, c->timer_fd);
        close(c->timer_fd);
    }
    free(c);
}

bool cgloo__shm_connected(cgloo_peer *p)
{
    const shm_pair *s = shm_pair_of(p);
    return s->seg && s->fd >= 0 && !s->failed;
}

/* make_segment makes and maps the sealed memfd of one pair; returns the fd (closed by the
 * caller once sent) or -1 with errno. */
static int make_segment(shm_segment **out)
{
    int fd = memfd_create("cgloo-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -1;
    void *m = MAP_FAILED;
    if (ftruncate(fd, sizeof(shm_segment)) == 0 &&
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) == 0)
        m = mmap(NULL, sizeof(shm_segment), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    shm_segment *seg = m;
    seg->magic = SHM_MAGIC;
    seg->ring_bytes = SHM_RING_BYTES;
    *out = seg;
    return fd;
}

bool cgloo__shm_segment_possible(void)
{
    shm_segment *seg;
    int fd = make_segment(&seg);
    if (fd < 0)
        return false;
    munmap(seg, sizeof *seg);
    close(fd);
    return true;
}

/* send_fd sends buf and, when fd >= 0, the descriptor with it. */
static bool send_with_fd(int sock, const void *buf, size_t len, int fd)
{
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {(void *)buf, len};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    if (fd >= 0) {
        memset(&ctl, 0, sizeof ctl);
        m.msg_control = ctl.b;
        m.msg_controllen = sizeof ctl.b;
        struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
        cm->cmsg_level = SOL_SOCKET;
        cm->cmsg_type = SCM_RIGHTS;
        cm->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    }
    return sendmsg(sock, &m, MSG_NOSIGNAL | MSG_DONTWAIT) == (ssize_t)len;
}

/* recv_with_fd reads exactly len bytes (a local socket delivers a small message whole) and
 * the descriptor sent with them, if any (*fd -1 when none). 1: got it, 0: not yet, -1: bad. */
static int recv_with_fd(int sock, void *buf, size_t len, int *fd)
{
    union {
        char b[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } ctl;
    struct iovec iov = {buf, len};
    struct msghdr m = {
        .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b};
    *fd = -1;
    ssize_t n = recvmsg(sock, &m, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    struct cmsghdr *cm = n > 0 ? CMSG_FIRSTHDR(&m) : NULL;
    if (cm && cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS &&
        cm->cmsg_len == CMSG_LEN(sizeof(int)))
        memcpy(fd, CMSG_DATA(cm), sizeof *fd);
    if (n != (ssize_t)len || (m.msg_flags & MSG_CTRUNC)) {
        if (*fd >= 0)
            close(*fd);
        *fd = -1;
        return -1;
    }
    return 1;
}

static int peer_pid(int sock, uid_t *uid)
{
    struct ucred cr;
    socklen_t len = sizeof cr;
    if (getsockopt(sock, SOL_SOCKET, SO_PEERCRED, &cr, &len) != 0)
        return -1;
    *uid = cr.uid;
    return cr.pid;
}

/* attach binds a connected pair to its peer (lock held); on failure closes fd and unmaps seg. */
static int attach(shm_connector *c, int rank, int fd, shm_segment *seg, int dir, uint32_t eager_max,
                  uint32_t eager_budget)
{
    cgloo_context *ctx = c->ctx;
    uid_t uid;
    int pid = peer_pid(fd, &uid);
    cgloo_peer *p = &ctx->peers[rank];
    int rc = ctx->aborted ? CGLOO_EABORTED : CGLOO_OK;
    if (rc == CGLOO_OK)
        rc = cgloo__shm_pair_attach(p, fd, seg, dir, pid, eager_max, eager_budget);
    if (rc != CGLOO_OK) {
        close(fd);
        munmap(seg, sizeof *seg);
        return rc;
    }
    snprintf(p->addr, sizeof p->addr, "shared memory, pid %d", pid);
    c->connected++;
    return CGLOO_OK;
}

/* dial sends the hello, with a fresh segment, to rank; the dial waits in c->pend for its
 * answer. A status and *why when it cannot: the segment (ENOTSUP) or the socket. */
static int dial(shm_connector *c, int rank, const char **why)
{
    cgloo_context *ctx = c->ctx;
    struct sockaddr_un sa;
    socklen_t len = abstract_name(&sa, ctx->ctx_id, c->nonce[rank]);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    /* A local connect is made or refused at once; EAGAIN is a full listen queue. */
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, len) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        *why = err == ECONNREFUSED ? "nothing listens at its shared-memory socket (its process "
                                     "is gone, or its context)"
               : err == EAGAIN     ? "its shared-memory socket's listen queue stayed full"
                                   : "its shared-memory socket cannot be reached";
        return err == ECONNREFUSED ? CGLOO_EPEER
               : err == EAGAIN     ? QUEUE_FULL
                                   : cgloo__status_from_errno(err);
    }
    shm_pending *pd = pending_add(c, fd, rank);
    int mfd = pd ? make_segment(&pd->seg) : -1;
    if (mfd < 0) {
        *why = pd ? "this rank could not make the pair's shared segment"
                  : "no room for another dial (a dial per peer at most: a bug)";
        if (pd)
            pending_drop(c, c->n_pend - 1);
        return pd ? CGLOO_ENOTSUP : CGLOO_ENOMEM;
    }
    shm_hello h = {.magic = HELLO_MAGIC,
                   .ctx_id = ctx->ctx_id,
                   .from_nonce = ctx->nonce,
                   .to_nonce = c->nonce[rank],
                   .from = (uint32_t)ctx->rank,
                   .to = (uint32_t)rank,
                   .size = (uint32_t)ctx->size,
                   .eager_max = ctx->eager_max,
                   .eager_budget = ctx->eager_budget};
    bool sent = send_with_fd(fd, &h, sizeof h, mfd);
    int err = errno;
    close(mfd);
    if (sent)
        return CGLOO_OK;
    pending_drop(c, c->n_pend - 1);
    *why = "the hello could not be sent";
    return cgloo__status_from_errno(err);
}

/* What a hello is to this rank. */
enum hello_kind {
    HELLO_BAD,    /* not of this run (or not from a peer on shared memory) */
    HELLO_LATE,   /* this run's, but the pair is connected already: a crossed dial's */
    HELLO_FAILED, /* this run's, from a peer this rank has failed */
    HELLO_GOOD,
};

/* hello_check checks a hello against this context and the peers' store records: the full mesh
 * takes hellos from higher ranks only, a lazy context from any peer on shared memory. */
static enum hello_kind hello_check(const shm_connector *c, const shm_hello *h)
{
    cgloo_context *ctx = c->ctx;
    if (h->magic != HELLO_MAGIC || h->ctx_id != ctx->ctx_id || h->to != (uint32_t)ctx->rank ||
        h->size != (uint32_t)ctx->size || h->to_nonce != ctx->nonce ||
        h->from >= (uint32_t)ctx->size || h->from == (uint32_t)ctx->rank ||
        (!c->lazy && h->from < (uint32_t)ctx->rank))
        return HELLO_BAD;
    cgloo_peer *p = &ctx->peers[h->from];
    if (p->transport != &cgloo__shm_transport || c->nonce[h->from] != h->from_nonce)
        return HELLO_BAD;
    return p->status != CGLOO_OK ? HELLO_FAILED : shm_pair_of(p)->seg ? HELLO_LATE : HELLO_GOOD;
}

/* map_segment maps a segment a peer handed over, after checking it is one: sealed against
 * shrinking, large enough, with the magic. NULL when it is not. */
static shm_segment *map_segment(int mfd)
{
    struct stat st;
    int seals = fcntl(mfd, F_GET_SEALS);
    if (seals < 0 || !(seals & F_SEAL_SHRINK) || fstat(mfd, &st) != 0 ||
        (size_t)st.st_size < sizeof(shm_segment))
        return NULL;
    void *m = mmap(NULL, sizeof(shm_segment), PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0);
    if (m == MAP_FAILED)
        return NULL;
    if (((shm_segment *)m)->magic != SHM_MAGIC ||
        ((shm_segment *)m)->ring_bytes != SHM_RING_BYTES) {
        munmap(m, sizeof(shm_segment));
        return NULL;
    }
    return m;
}

/* crossed: a lazy hello from `from` while this rank's own dial to it is out. The higher rank's
 * dial wins: a lower dialler is told so; a higher one's hello replaces this rank's dial. */
static bool crossed(shm_connector *c, int from)
{
    int i = c->lazy ? dial_index(c, from) : -1;
    if (i < 0)
        return false;
    if (from < c->ctx->rank)
        return true;
    pending_drop(c, i);
    return false;
}

/* answer_hello: the answer to a hello of `kind` (hello_check) read from an accepted socket,
 * with the segment it mapped for ACK_OK. A late hello is answered as a crossed one: its
 * dialler, if it still waits, has a connection coming or none to make. */
static enum shm_answer answer_hello(shm_connector *c, enum hello_kind kind, int fd,
                                    const shm_hello *h, int mfd, shm_segment **seg)
{
    uid_t uid = (uid_t)-1;
    *seg = NULL;
    if (kind == HELLO_LATE)
        return ACK_CROSSED;
    if (kind == HELLO_FAILED)
        return ACK_GONE;
    if (kind == HELLO_BAD || peer_pid(fd, &uid) <= 0 || uid != getuid() || mfd < 0)
        return ACK_REFUSED;
    if (crossed(c, (int)h->from))
        return ACK_CROSSED;
    *seg = map_segment(mfd);
    return *seg ? ACK_OK : ACK_REFUSED;
}

/* hello_failed: in a lazy context, a hello of this run from `from` that did not connect the pair
 * fails that peer on this side too, where this rank waits for the pair (its dial, dropped for
 * this hello, or a crossing it lost): the dialler fails it on its side alike, and neither is
 * left waiting for a connection that will not come. */
static void hello_failed(shm_connector *c, int from, enum shm_answer answer, bool sent)
{
    cgloo_peer *p = &c->ctx->peers[from];
    if (!c->lazy || p->status != CGLOO_OK || shm_pair_of(p)->seg)
        return;
    c->awaiting[from] = false;
    cgloo__p2p_peer_fail(p, answer == ACK_OK ? CGLOO_EPEER : CGLOO_EPROTO,
                         answer == ACK_OK && !sent
                             ? "its shared-memory hello came, but its socket closed before this "
                               "rank's answer"
                             : "its shared-memory hello was refused here (another user, or no "
                               "usable segment; see the log)",
                         0);
}

/* on_hello: accepted socket i says hello; a good one is answered and attached. Returns a
 * status only for what ends the connect (an abort, no memory); a bad hello is logged and
 * dropped. Lock held in lazy mode. */
static int on_hello(shm_connector *c, int i)
{
    cgloo_context *ctx = c->ctx;
    shm_pending *pd = c->pend[i];
    shm_hello h;
    int mfd;
    int got = recv_with_fd(pd->fd, &h, sizeof h, &mfd);
    if (got == 0)
        return CGLOO_OK;
    c->n_accepted--;
    shm_segment *seg = NULL;
    enum hello_kind kind = got > 0 ? hello_check(c, &h) : HELLO_BAD;
    enum shm_answer answer = got > 0 ? answer_hello(c, kind, pd->fd, &h, mfd, &seg) : ACK_REFUSED;
    if (mfd >= 0)
        close(mfd);
    i = pending_index(c, pd); /* crossed() may have dropped a dial */
    shm_ack a = {.magic = HELLO_MAGIC,
                 .ok = answer,
                 .eager_max = ctx->eager_max,
                 .eager_budget = ctx->eager_budget};
    bool sent = got > 0 && send_with_fd(pd->fd, &a, sizeof a, -1);
    if (answer != ACK_OK || !sent) {
        if (answer == ACK_REFUSED && got > 0)
            CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size,
                      "shared memory: refused a connection (a hello that is not for this run, "
                      "from another user, or with no usable segment)");
        if (seg)
            munmap(seg, sizeof *seg);
        pending_drop(c, i);
        if (kind == HELLO_GOOD && answer != ACK_CROSSED)
            hello_failed(c, (int)h.from, answer, sent);
        return CGLOO_OK;
    }
    int fd = pd->fd;
    if (c->lazy)
        cgloo__poller_del(&ctx->poller, fd);
    pd->fd = -1;
    pending_drop(c, i);
    int rc = attach(c, (int)h.from, fd, seg, 1, h.eager_max, h.eager_budget);
    if (rc != CGLOO_OK && c->lazy)
        cgloo__p2p_peer_fail(&ctx->peers[h.from], rc, "its shared-memory pair could not be set up",
                             0);
    return rc;
}

/* read_ack reads the answer to dial i: 1 with *a filled, 0 not yet, -1 the socket ended. */
static int read_ack(shm_connector *c, int i, shm_ack *a)
{
    int mfd;
    int got = recv_with_fd(c->pend[i]->fd, a, sizeof *a, &mfd);
    if (mfd >= 0)
        close(mfd);
    if (got > 0 && a->magic != HELLO_MAGIC)
        a->ok = ACK_REFUSED;
    return got;
}

/* take_dial hands the socket and segment of answered dial i to the pair. */
static int take_dial(shm_connector *c, int i, const shm_ack *a)
{
    shm_pending *pd = c->pend[i];
    int fd = pd->fd, rank = pd->rank;
    shm_segment *seg = pd->seg;
    if (c->lazy)
        cgloo__poller_del(&c->ctx->poller, fd);
    pd->fd = -1;
    pd->seg = NULL;
    pending_drop(c, i);
    return attach(c, rank, fd, seg, 0, a->eager_max, a->eager_budget);
}

/* make_room: an accepted socket is to be filed while as many as the world has ranks wait for
 * their hellos. A peer's dialler sends its hello with the connect, so those with a hello are
 * answered first; then the longest idle one goes (a process of this host that connects and says
 * nothing, which the abstract socket cannot keep out). So the pool never fills: dials (one per
 * peer) always find room, and the listener is always drained (it is level-triggered). */
static void make_room(shm_connector *c)
{
    for (int i = c->n_pend - 1; i >= 0 && c->n_accepted >= c->ctx->size; i--)
        if (i < c->n_pend && c->pend[i]->rank < 0) /* a hello may drop more than its entry */
            (void)on_hello(c, i); /* what ends the connect shows again in its next round */
    int oldest = -1;
    for (int i = 0; i < c->n_pend && c->n_accepted >= c->ctx->size; i++)
        if (c->pend[i]->rank < 0 &&
            (oldest < 0 || c->pend[i]->since_ms < c->pend[oldest]->since_ms))
            oldest = i;
    if (oldest >= 0 && c->n_accepted >= c->ctx->size) {
        CGLOO_LOG(CGLOO_LOG_WARN, c->ctx->rank, c->ctx->size,
                  "shared memory: closed a connection that sent no hello (%d wait)", c->n_accepted);
        c->n_accepted--;
        pending_drop(c, oldest);
    }
}

/* accept_all files the sockets peers connected (in lazy mode, in the context's poller too). */
static void accept_all(shm_connector *c)
{
    int fd;
    while ((fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0) {
        if (c->n_accepted >= c->ctx->size)
            make_room(c);
        shm_pending *pd = pending_add(c, fd, -1);
        if (!pd)
            continue;
        pd->since_ms = cgloo__now_ms();
        c->n_accepted++;
        if (c->lazy && cgloo__poller_add(&c->ctx->poller, fd, CGLOO_POLL_IN, &pd->io) != CGLOO_OK) {
            close(pd->fd); /* not in the poller: pending_drop must not take it out */
            pd->fd = -1;
            c->n_accepted--;
            pending_drop(c, c->n_pend - 1);
        }
    }
}

/* ---- the full mesh ------------------------------------------------------------------------- */

/* on_ack: a dialled lower rank answers. */
static int on_ack(shm_connector *c, int i)
{
    int rank = c->pend[i]->rank;
    shm_ack a;
    int got = read_ack(c, i, &a);
    if (got == 0)
        return CGLOO_OK;
    if (got > 0 && a.ok == ACK_OK)
        return take_dial(c, i, &a);
    pending_drop(c, i);
    return cgloo__ctx_error(c->ctx, CGLOO_EPROTO,
                            "rank %d: shared memory: rank %d on this host refused the "
                            "connection (another run, or another user)",
                            c->ctx->rank, rank);
}

/* poll_round waits up to timeout_ms for hellos, answers and new sockets, and handles them
 * (under the lock: an abort from another thread may be failing the peers meanwhile). */
static int poll_round(shm_connector *c, int timeout_ms)
{
    struct pollfd fds[c->n_pend + 1];
    shm_pending *who[c->n_pend + 1];
    for (int i = 0; i < c->n_pend; i++) {
        fds[i] = (struct pollfd){.fd = c->pend[i]->fd, .events = POLLIN};
        who[i] = c->pend[i];
    }
    fds[c->n_pend] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
    int n = c->n_pend;
    if (poll(fds, (nfds_t)n + 1, timeout_ms) <= 0)
        return CGLOO_OK;
    int rc = CGLOO_OK;
    pthread_mutex_lock(&c->ctx->lock);
    for (int j = 0; j < n && rc == CGLOO_OK; j++) {
        int i = fds[j].revents ? pending_index(c, who[j]) : -1;
        if (i >= 0)
            rc = who[j]->rank >= 0 ? on_ack(c, i) : on_hello(c, i);
    }
    if (rc == CGLOO_OK && fds[n].revents)
        accept_all(c); /* its make_room may answer hellos, which attach pairs */
    pthread_mutex_unlock(&c->ctx->lock);
    return rc;
}

/* waiting_for names the first shared-memory peer not yet connected. */
static int waiting_for(const shm_connector *c)
{
    const cgloo_context *ctx = c->ctx;
    for (int r = 0; r < ctx->size; r++) {
        const cgloo_peer *p = &ctx->peers[r];
        if (p->transport == &cgloo__shm_transport && !shm_pair_of((cgloo_peer *)p)->seg &&
            r != ctx->rank)
            return r;
    }
    return -1;
}

static void take_nonces(shm_connector *c, const cgloo__peer_record *peers)
{
    for (int r = 0; r < c->ctx->size; r++)
        c->nonce[r] = peers[r].nonce;
}

/* count_wanted counts the pairs on shared memory, which the full mesh connects, and marks the
 * lower ranks for dialling. */
static void count_wanted(shm_connector *c)
{
    cgloo_context *ctx = c->ctx;
    for (int r = 0; r < ctx->size; r++) {
        bool shm = r != ctx->rank && ctx->peers[r].transport == &cgloo__shm_transport;
        c->wanted += shm;
        c->retry_at[r] = shm && r < ctx->rank ? 1 : 0;
    }
}

/* dial_due dials the lower ranks whose dial is due: at first all, then those whose listen
 * queue was full, RETRY_MS later (the connect's deadline bounds the retries); *later counts
 * the dials still to retry. */
static int dial_due(shm_connector *c, int *later)
{
    cgloo_context *ctx = c->ctx;
    int64_t now = cgloo__now_ms();
    *later = 0;
    for (int r = 0; r < ctx->rank; r++) {
        if (!c->retry_at[r] || now < c->retry_at[r])
            continue;
        const char *why;
        int rc = dial(c, r, &why);
        c->retry_at[r] = rc == QUEUE_FULL ? now + RETRY_MS : 0;
        *later += rc == QUEUE_FULL;
        if (rc != CGLOO_OK && rc != QUEUE_FULL)
            return cgloo__ctx_error(ctx, rc,
                                    "rank %d: shared memory: could not reach rank %d on "
                                    "this host: %s",
                                    ctx->rank, r, why);
    }
    return CGLOO_OK;
}

int cgloo__shm_connect(cgloo__connector *c, const cgloo__peer_record *peers, int64_t deadline_ms)
{
    cgloo_context *ctx = c->ctx;
    take_nonces(c, peers);
    count_wanted(c);
    int rc = CGLOO_OK, done = 0, later = 0;
    while (rc == CGLOO_OK && (rc = dial_due(c, &later)) == CGLOO_OK && c->connected < c->wanted) {
        if (c->connected > done) { /* a stall is bounded, not the mesh (TCP's) */
            done = c->connected;
            deadline_ms = CGLOO_MAX(deadline_ms, cgloo__now_ms() + ctx->timeout_ms);
        }
        int left = cgloo__remaining_ms(deadline_ms);
        if (left == 0) {
            int r = waiting_for(c);
            return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT,
                                    "rank %d: shared memory: connected to %d of %d peers on this "
                                    "host, and to none more within %d ms; waiting for rank %d (%s)",
                                    ctx->rank, c->connected, c->wanted, ctx->timeout_ms, r,
                                    r > ctx->rank    ? "no hello arrived"
                                    : c->retry_at[r] ? "its listen queue stayed full"
                                                     : "dialled, no answer");
        }
        if (cgloo__ctx_aborted(ctx))
            return CGLOO_EABORTED;
        rc = poll_round(c, CGLOO_MIN(left, later ? RETRY_MS : POLL_SLICE_MS));
    }
    return rc;
}

/* ---- lazy connections (the top of this file) ----------------------------------------------- */

/* lazy_on_ack: the peer answers this rank's dial i. */
static void lazy_on_ack(shm_connector *c, int i)
{
    cgloo_peer *p = &c->ctx->peers[c->pend[i]->rank];
    shm_ack a;
    int got = read_ack(c, i, &a);
    if (got == 0)
        return;
    if (got > 0 && a.ok == ACK_OK) {
        int rc = take_dial(c, i, &a);
        if (rc != CGLOO_OK)
            cgloo__p2p_peer_fail(p, rc, "its shared-memory pair could not be set up", 0);
        return;
    }
    pending_drop(c, i);
    if (got > 0 && a.ok == ACK_CROSSED) { /* the peer's own dial is on its way */
        c->awaiting[p->rank] = true;
        return;
    }
    if (got > 0 && a.ok == ACK_GONE)
        cgloo__p2p_peer_fail(p, CGLOO_EPEER,
                             "it answered this rank's shared-memory hello saying it had failed "
                             "this rank (their connection broke before)",
                             0);
    else if (got > 0)
        cgloo__p2p_peer_fail(p, CGLOO_EPROTO,
                             "it refused this rank's shared-memory hello (see its log)", 0);
    else
        cgloo__p2p_peer_fail(p, CGLOO_EPEER,
                             "its process or its context ended before it answered this rank's "
                             "shared-memory hello",
                             0);
}

/* lazy_on_pending: a hello arrived on an accepted socket, or an answer on a dial. */
static void lazy_on_pending(cgloo__pollable *io, unsigned events)
{
    (void)events;
    shm_pending *pd = CGLOO_CONTAINER_OF(io, shm_pending, io);
    if (!pd->used) /* dropped while its event waited in the batch */
        return;
    shm_connector *c = pd->c;
    int i = pending_index(c, pd);
    if (i < 0 || c->ctx->aborted)
        return;
    if (pd->rank >= 0)
        lazy_on_ack(c, i);
    else
        (void)on_hello(c, i); /* a failure fails the peer it names */
}

static void lazy_on_listen(cgloo__pollable *io, unsigned events)
{
    (void)events;
    accept_all(CGLOO_CONTAINER_OF(io, shm_connector, listen_io));
}

/* lazy_arm sets the timer to the earliest retry (none: disarmed). */
static void lazy_arm(shm_connector *c)
{
    int64_t next = INT64_MAX;
    for (int r = 0; r < c->ctx->size; r++)
        if (c->retry_at[r])
            next = CGLOO_MIN(next, c->retry_at[r]);
    struct itimerspec its = {0};
    if (next != INT64_MAX) {
        int64_t ms = CGLOO_MAX(next - cgloo__now_ms(), 0);
        its.it_value.tv_sec = ms / 1000;
        its.it_value.tv_nsec = (ms % 1000) * 1000000 + 1; /* zero would disarm it */
    }
    timerfd_settime(c->timer_fd, 0, &its, NULL);
}

/* lazy_dial dials p, in the context's poller; a full listen queue is retried (lazy_arm) until
 * half the context's timeout has passed, and any other failure fails p. */
static void lazy_dial(shm_connector *c, cgloo_peer *p)
{
    const char *why;
    int rc = dial(c, p->rank, &why);
    int64_t now = cgloo__now_ms();
    if (rc == QUEUE_FULL) {
        if (!c->give_up_at[p->rank])
            c->give_up_at[p->rank] = now + CGLOO_MAX(c->ctx->timeout_ms / 2, 1);
        if (now < c->give_up_at[p->rank]) {
            c->retry_at[p->rank] = now + RETRY_MS;
            return lazy_arm(c);
        }
        rc = CGLOO_EPEER;
    }
    c->give_up_at[p->rank] = 0;
    shm_pending *pd = rc == CGLOO_OK ? c->pend[c->n_pend - 1] : NULL;
    if (pd) {
        rc = cgloo__poller_add(&p->ctx->poller, pd->fd, CGLOO_POLL_IN, &pd->io);
        why = "the context's poller refused its dial";
        if (rc != CGLOO_OK) {
            close(pd->fd);
            pd->fd = -1;
            pending_drop(c, c->n_pend - 1);
        }
    }
    if (rc != CGLOO_OK)
        cgloo__p2p_peer_fail(p, rc, why, 0);
}

/* lazy_wanted: p is to be dialled (not connected, not failed, no dial out, none coming). */
static bool lazy_wanted(shm_connector *c, cgloo_peer *p)
{
    return p->status == CGLOO_OK && !shm_pair_of(p)->seg && !c->awaiting[p->rank] &&
           !c->retry_at[p->rank] && dial_index(c, p->rank) < 0;
}

static void lazy_on_timer(cgloo__pollable *io, unsigned events)
{
    (void)events;
    shm_connector *c = CGLOO_CONTAINER_OF(io, shm_connector, timer_io);
    uint64_t v;
    ssize_t got = read(c->timer_fd, &v, sizeof v);
    (void)got;
    int64_t now = cgloo__now_ms();
    for (int r = 0; r < c->ctx->size && !c->ctx->aborted; r++) {
        if (!c->retry_at[r] || now < c->retry_at[r])
            continue;
        c->retry_at[r] = 0;
        if (lazy_wanted(c, &c->ctx->peers[r]))
            lazy_dial(c, &c->ctx->peers[r]);
    }
    lazy_arm(c);
}

/* lazy_register puts the listener and the retry timer in the context's poller (lock held). */
static int lazy_register(shm_connector *c)
{
    cgloo__poller *pl = &c->ctx->poller;
    c->listen_io.on_event = lazy_on_listen;
    c->timer_io.on_event = lazy_on_timer;
    int rc = cgloo__poller_add(pl, c->listen_fd, CGLOO_POLL_IN, &c->listen_io);
    if (rc == CGLOO_OK && (rc = cgloo__poller_add(pl, c->timer_fd, CGLOO_POLL_IN, &c->timer_io)))
        cgloo__poller_del(pl, c->listen_fd);
    return rc;
}

int cgloo__shm_connect_lazy(cgloo__connector *c, const cgloo__peer_record *peers)
{
    cgloo_context *ctx = c->ctx;
    c->awaiting = calloc((size_t)ctx->size, sizeof *c->awaiting);
    c->give_up_at = calloc((size_t)ctx->size, sizeof *c->give_up_at);
    if (!c->awaiting || !c->give_up_at)
        return cgloo__ctx_error(ctx, CGLOO_ENOMEM, "rank %d: out of memory", ctx->rank);
    c->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (c->timer_fd < 0)
        return cgloo__ctx_error(ctx, cgloo__status_from_errno(errno), "rank %d: timerfd: %s",
                                ctx->rank, strerror(errno));
    take_nonces(c, peers);
    pthread_mutex_lock(&ctx->lock);
    int rc = lazy_register(c);
    c->lazy = rc == CGLOO_OK;
    if (c->lazy)
        accept_all(c); /* peers that dialled before the records were read */
    pthread_mutex_unlock(&ctx->lock);
    if (rc != CGLOO_OK)
        return cgloo__ctx_error(ctx, rc,
                                "rank %d: setting up lazy shared-memory connections "
                                "failed: %s",
                                ctx->rank, cgloo_strerror(rc));
    return CGLOO_OK;
}

void cgloo__shm_peer_want(cgloo_peer *p)
{
    shm_connector *c = p->ctx->lazy_shm;
    if (c && lazy_wanted(c, p))
        lazy_dial(c, p);
}

void cgloo__shm_lazy_forget(cgloo_peer *p)
{
    shm_connector *c = p->ctx->lazy_shm;
    int i = c ? dial_index(c, p->rank) : -1;
    if (i >= 0)
        pending_drop(c, i);
    if (c) {
        c->awaiting[p->rank] = false;
        c->retry_at[p->rank] = 0;
        c->give_up_at[p->rank] = 0;
    }
}
