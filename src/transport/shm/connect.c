/*
 * Connecting the shared-memory peers (the connect ops of transport.h).
 *
 * Every rank that asks for shared memory listens on an abstract Unix socket named after the
 * context id and its nonce ("\0cgloo-shm/<ctx id>/<nonce>"): it has no file, so nothing is left
 * when the process dies, and only processes in the same network namespace reach it, which the
 * host identity already required. The higher rank of each pair makes the pair's segment, a
 * sealed memfd (it can neither shrink nor grow, so a mapping never faults), and hands it over
 * with its hello; the lower rank checks the hello (context id, both ranks, the world size, both
 * nonces from the store records), that the dialler runs as the same user (SO_PEERCRED), maps
 * the segment and answers. The memfd is closed on both sides once mapped: the memory lives
 * exactly as long as one of the two mappings, and no name for it exists anywhere. The socket
 * stays open for the pair: wake-ups go through it, and its end tells of the peer's death.
 *
 * A pair that cannot share memory (the dialler cannot make the segment, the two run as different
 * users, the segment cannot be mapped) falls back to TCP when both ranks asked for "auto": the
 * hello says whether the dialler may fall back, the answer whether they do, so that both sides
 * decide alike; the rendezvous then rebinds the pair to TCP (cgloo__shm_fell_back) before TCP
 * connects. With "shm" on either side the pair fails the connect instead, saying why.
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
#include <sys/un.h>
#include <unistd.h>

#define HELLO_MAGIC 0x63676c6f6f73684cULL
#define POLL_SLICE_MS 100

/* shm_hello.flags */
#define HELLO_MAY_FALL_BACK 1u /* the dialler asked for auto: it takes TCP for this pair */
#define HELLO_NO_SEGMENT 2u    /* the dialler could not make the segment (no descriptor sent) */

typedef struct shm_hello {
    uint64_t magic, ctx_id, from_nonce, to_nonce;
    uint32_t from, to, size, eager_max, eager_budget, flags;
} shm_hello;

/* shm_ack.ok: the answer to a hello. */
enum shm_answer {
    ACK_REFUSED,    /* not a hello of this run */
    ACK_OK,         /* the segment is mapped: the pair is connected */
    ACK_TCP,        /* the pair cannot share memory; both asked for auto: it takes TCP */
    ACK_OTHER_USER, /* the two run as different users, and one insists on shm */
    ACK_NO_SEGMENT, /* the segment could not be made or mapped, and one insists on shm */
};

typedef struct shm_ack {
    uint64_t magic;
    uint32_t ok, eager_max, eager_budget, pad;
} shm_ack;

/* Why a pair cannot share memory, by answer, for the errors and the log. */
static const char *const answer_why[] = {
    [ACK_OTHER_USER] = "the two processes run as different users",
    [ACK_NO_SEGMENT] = "the shared segment could not be made or mapped",
};

/* One peer while it connects: a dialled lower rank waiting for its answer, or a socket
 * accepted from a higher rank waiting for its hello. */
typedef struct shm_pending {
    int fd;
    int rank;         /* dialled: the peer; accepted: -1 until the hello says */
    shm_segment *seg; /* dialled: the segment handed over */
} shm_pending;

struct cgloo__connector {
    cgloo_context *ctx;
    int listen_fd;
    shm_pending *pend; /* size entries at most: one per peer */
    int n_pend;
    int connected, wanted;
    bool *fell_back; /* by rank: the pair takes TCP (both asked for auto) */
    int n_fell_back;
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
    cgloo__connector *c = calloc(1, sizeof *c);
    if (c) {
        c->pend = calloc((size_t)ctx->size, sizeof *c->pend);
        c->fell_back = calloc((size_t)ctx->size, sizeof *c->fell_back);
    }
    if (!c || !c->pend || !c->fell_back) {
        if (c) {
            free(c->pend);
            free(c->fell_back);
        }
        free(c);
        return CGLOO_ENOMEM;
    }
    c->ctx = ctx;
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

static void pending_drop(cgloo__connector *c, int i)
{
    if (c->pend[i].fd >= 0)
        close(c->pend[i].fd);
    if (c->pend[i].seg)
        munmap(c->pend[i].seg, sizeof(shm_segment));
    c->pend[i] = c->pend[--c->n_pend];
}

void cgloo__shm_connect_end(cgloo__connector *c)
{
    while (c->n_pend > 0)
        pending_drop(c, c->n_pend - 1);
    if (c->listen_fd >= 0)
        close(c->listen_fd);
    free(c->pend);
    free(c->fell_back);
    free(c);
}

bool cgloo__shm_fell_back(const cgloo__connector *c, int rank)
{
    return c->fell_back[rank];
}

bool cgloo__shm_connected(cgloo_peer *p)
{
    const shm_pair *s = shm_pair_of(p);
    return s->seg && s->fd >= 0 && !s->failed;
}

/* may_fall_back: this context takes TCP for a pair that cannot share memory. */
static bool may_fall_back(const cgloo_context *ctx)
{
    return ctx->local_mode == CGLOO_LOCAL_AUTO;
}

/* fall_back records that the pair with rank takes TCP, and says why in the log. */
static void fall_back(cgloo__connector *c, int rank, enum shm_answer why)
{
    c->fell_back[rank] = true;
    c->n_fell_back++;
    CGLOO_LOG(CGLOO_LOG_WARN, c->ctx->rank, c->ctx->size,
              "shared memory: rank %d is on this host, but %s; it is reached over TCP instead",
              rank, answer_why[why]);
}

/* insist_error: a pair that cannot share memory, where one side insists on it. */
static int insist_error(cgloo__connector *c, int rank, enum shm_answer why)
{
    return cgloo__ctx_error(c->ctx, CGLOO_ENOTSUP,
                            "rank %d: shared memory with rank %d on this host is impossible: %s; "
                            "CGLOO_TRANSPORT=shm (or the attribute) insists on it on one of them, "
                            "where auto would reach the peer over TCP",
                            c->ctx->rank, rank, answer_why[why]);
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
    return sendmsg(sock, &m, MSG_NOSIGNAL) == (ssize_t)len;
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

/* attach binds a connected pair to its peer, under the lock (an abort may be failing peers). */
static int attach(cgloo__connector *c, int rank, int fd, shm_segment *seg, int dir,
                  uint32_t eager_max, uint32_t eager_budget)
{
    cgloo_context *ctx = c->ctx;
    uid_t uid;
    int pid = peer_pid(fd, &uid);
    pthread_mutex_lock(&ctx->lock);
    cgloo_peer *p = &ctx->peers[rank];
    int rc = ctx->aborted ? CGLOO_EABORTED : CGLOO_OK;
    if (rc == CGLOO_OK)
        rc = cgloo__shm_pair_attach(p, fd, seg, dir, pid, eager_max, eager_budget);
    if (rc == CGLOO_OK) {
        snprintf(p->addr, sizeof p->addr, "shared memory, pid %d", pid);
        c->connected++;
    }
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

/* dial sends the hello, with a fresh segment, to a lower rank. */
static int dial(cgloo__connector *c, int rank, const cgloo__peer_record *rec)
{
    cgloo_context *ctx = c->ctx;
    struct sockaddr_un sa;
    socklen_t len = abstract_name(&sa, ctx->ctx_id, rec->nonce);
    shm_pending *pd = &c->pend[c->n_pend++];
    *pd = (shm_pending){.fd = -1, .rank = rank};
    pd->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int mfd = -1, seg_err = 0;
    bool ok = pd->fd >= 0 && connect(pd->fd, (struct sockaddr *)&sa, len) == 0;
    if (ok && (mfd = make_segment(&pd->seg)) < 0)
        seg_err = errno; /* the hello says so: the peer learns it at once, and the answer
                          * says whether the pair takes TCP */
    shm_hello h = {.magic = HELLO_MAGIC,
                   .ctx_id = ctx->ctx_id,
                   .from_nonce = ctx->nonce,
                   .to_nonce = rec->nonce,
                   .from = (uint32_t)ctx->rank,
                   .to = (uint32_t)rank,
                   .size = (uint32_t)ctx->size,
                   .eager_max = ctx->eager_max,
                   .eager_budget = ctx->eager_budget,
                   .flags = (may_fall_back(ctx) ? HELLO_MAY_FALL_BACK : 0) |
                            (mfd < 0 ? HELLO_NO_SEGMENT : 0)};
    ok = ok && send_with_fd(pd->fd, &h, sizeof h, mfd);
    int err = errno;
    if (mfd >= 0)
        close(mfd);
    if (ok && seg_err && !may_fall_back(ctx)) {
        pending_drop(c, c->n_pend - 1);
        return cgloo__ctx_error(ctx, CGLOO_ENOTSUP,
                                "rank %d: shared memory: could not make the segment for rank %d: "
                                "%s; CGLOO_TRANSPORT=shm (or the attribute) insists on shared "
                                "memory, where auto would reach the peer over TCP",
                                ctx->rank, rank, strerror(seg_err));
    }
    if (ok)
        return CGLOO_OK;
    pending_drop(c, c->n_pend - 1);
    return cgloo__ctx_error(ctx, cgloo__status_from_errno(err),
                            "rank %d: shared memory: could not reach rank %d on this host: %s",
                            ctx->rank, rank, strerror(err));
}

/* hello_ok checks a hello against this context and the peers' store records. */
static bool hello_ok(cgloo__connector *c, const shm_hello *h, const cgloo__peer_record *peers)
{
    cgloo_context *ctx = c->ctx;
    if (h->magic != HELLO_MAGIC || h->ctx_id != ctx->ctx_id || h->to != (uint32_t)ctx->rank ||
        h->size != (uint32_t)ctx->size || h->to_nonce != ctx->nonce ||
        h->from >= (uint32_t)ctx->size || h->from <= (uint32_t)ctx->rank)
        return false;
    cgloo_peer *p = &ctx->peers[h->from];
    shm_pair *s = p->transport == &cgloo__shm_transport ? shm_pair_of(p) : NULL;
    return s && !s->seg && !c->fell_back[h->from] && peers[h->from].nonce == h->from_nonce;
}

/* map_segment maps a segment a higher rank handed over, after checking it is one: sealed
 * against shrinking, large enough, with the magic. NULL when it is not. */
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

/* on_no_sharing answers a hello of this run whose pair cannot share memory: TCP when both ask
 * for auto, else an error on both sides. */
static int on_no_sharing(cgloo__connector *c, int i, const shm_hello *h, enum shm_answer why)
{
    bool tcp = may_fall_back(c->ctx) && (h->flags & HELLO_MAY_FALL_BACK);
    shm_ack a = {.magic = HELLO_MAGIC, .ok = tcp ? ACK_TCP : why, .pad = why};
    send_with_fd(c->pend[i].fd, &a, sizeof a, -1); /* a dialler gone meanwhile learns nothing */
    pending_drop(c, i);
    if (!tcp)
        return insist_error(c, (int)h->from, why);
    fall_back(c, (int)h->from, why);
    return CGLOO_OK;
}

/* on_hello: an accepted socket says hello; a good one is answered and attached. Returns a
 * status only for what ends the connect (an abort, no memory); a bad hello is logged and
 * dropped. */
static int on_hello(cgloo__connector *c, int i, const cgloo__peer_record *peers)
{
    cgloo_context *ctx = c->ctx;
    shm_pending *pd = &c->pend[i];
    shm_hello h;
    int mfd;
    int got = recv_with_fd(pd->fd, &h, sizeof h, &mfd);
    if (got == 0)
        return CGLOO_OK;
    uid_t uid = (uid_t)-1;
    shm_segment *seg = NULL;
    bool good = got > 0 && hello_ok(c, &h, peers) && peer_pid(pd->fd, &uid) > 0;
    enum shm_answer answer = !good                              ? ACK_REFUSED
                             : uid != getuid()                  ? ACK_OTHER_USER
                             : mfd < 0                          ? ACK_NO_SEGMENT
                             : (seg = map_segment(mfd)) == NULL ? ACK_NO_SEGMENT
                                                                : ACK_OK;
    if (mfd >= 0)
        close(mfd);
    if (answer != ACK_REFUSED && answer != ACK_OK)
        return on_no_sharing(c, i, &h, answer);
    shm_ack a = {.magic = HELLO_MAGIC,
                 .ok = answer,
                 .eager_max = ctx->eager_max,
                 .eager_budget = ctx->eager_budget};
    if (answer != ACK_OK || !send_with_fd(pd->fd, &a, sizeof a, -1)) {
        CGLOO_LOG(CGLOO_LOG_WARN, ctx->rank, ctx->size,
                  "shared memory: refused a connection (a hello that is not for this run)");
        if (seg)
            munmap(seg, sizeof *seg);
        pending_drop(c, i);
        return CGLOO_OK;
    }
    int fd = pd->fd;
    pd->fd = -1;
    pending_drop(c, i);
    int rc = attach(c, (int)h.from, fd, seg, 1, h.eager_max, h.eager_budget);
    if (rc != CGLOO_OK) {
        close(fd);
        munmap(seg, sizeof *seg);
    }
    return rc;
}

/* on_ack: a dialled lower rank answers. */
static int on_ack(cgloo__connector *c, int i)
{
    cgloo_context *ctx = c->ctx;
    shm_pending *pd = &c->pend[i];
    shm_ack a;
    int mfd;
    int got = recv_with_fd(pd->fd, &a, sizeof a, &mfd);
    if (got == 0)
        return CGLOO_OK;
    if (mfd >= 0)
        close(mfd);
    int rank = pd->rank;
    if (got > 0 && a.magic == HELLO_MAGIC && a.ok != ACK_REFUSED && a.ok != ACK_OK) {
        pending_drop(c, i);
        enum shm_answer why = a.pad == ACK_OTHER_USER ? ACK_OTHER_USER : ACK_NO_SEGMENT;
        if (a.ok != ACK_TCP || !may_fall_back(ctx))
            return insist_error(c, rank, why);
        fall_back(c, rank, why);
        return CGLOO_OK;
    }
    if (got < 0 || a.magic != HELLO_MAGIC || a.ok != ACK_OK) {
        pending_drop(c, i);
        return cgloo__ctx_error(ctx, CGLOO_EPROTO,
                                "rank %d: shared memory: rank %d on this host refused the "
                                "connection (another run, or another user)",
                                ctx->rank, rank);
    }
    int fd = pd->fd;
    shm_segment *seg = pd->seg;
    pd->fd = -1;
    pd->seg = NULL;
    pending_drop(c, i);
    int rc = attach(c, rank, fd, seg, 0, a.eager_max, a.eager_budget);
    if (rc != CGLOO_OK) {
        close(fd);
        munmap(seg, sizeof *seg);
    }
    return rc;
}

static void accept_all(cgloo__connector *c)
{
    int fd;
    while (c->n_pend < c->ctx->size &&
           (fd = accept4(c->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >= 0)
        c->pend[c->n_pend++] = (shm_pending){.fd = fd, .rank = -1};
}

/* poll_round waits up to timeout_ms for hellos, answers and new sockets, and handles them. */
static int poll_round(cgloo__connector *c, const cgloo__peer_record *peers, int timeout_ms)
{
    struct pollfd fds[c->n_pend + 1];
    for (int i = 0; i < c->n_pend; i++)
        fds[i] = (struct pollfd){.fd = c->pend[i].fd, .events = POLLIN};
    fds[c->n_pend] = (struct pollfd){.fd = c->listen_fd, .events = POLLIN};
    int n = c->n_pend;
    if (poll(fds, (nfds_t)n + 1, timeout_ms) <= 0)
        return CGLOO_OK;
    int rc = CGLOO_OK;
    for (int i = n - 1; i >= 0 && rc == CGLOO_OK; i--) { /* backwards: handling drops entry i */
        if (!fds[i].revents)
            continue;
        rc = c->pend[i].rank >= 0 ? on_ack(c, i) : on_hello(c, i, peers);
    }
    if (rc == CGLOO_OK && fds[n].revents)
        accept_all(c);
    return rc;
}

/* waiting_for names the first shared-memory peer not yet connected. */
static int waiting_for(const cgloo__connector *c)
{
    const cgloo_context *ctx = c->ctx;
    for (int r = 0; r < ctx->size; r++) {
        const cgloo_peer *p = &ctx->peers[r];
        if (p->transport == &cgloo__shm_transport && !shm_pair_of((cgloo_peer *)p)->seg &&
            r != ctx->rank && !c->fell_back[r])
            return r;
    }
    return -1;
}

int cgloo__shm_connect(cgloo__connector *c, const cgloo__peer_record *peers, int64_t deadline_ms)
{
    cgloo_context *ctx = c->ctx;
    int rc = CGLOO_OK;
    for (int r = 0; r < ctx->size; r++)
        if (r != ctx->rank && ctx->peers[r].transport == &cgloo__shm_transport) {
            c->wanted++;
            if (r < ctx->rank && rc == CGLOO_OK)
                rc = dial(c, r, &peers[r]);
        }
    int done = 0;
    while (rc == CGLOO_OK && c->connected + c->n_fell_back < c->wanted) {
        if (c->connected + c->n_fell_back > done) { /* a stall is bounded, not the mesh (TCP's) */
            done = c->connected + c->n_fell_back;
            deadline_ms = CGLOO_MAX(deadline_ms, cgloo__now_ms() + ctx->timeout_ms);
        }
        int left = cgloo__remaining_ms(deadline_ms);
        if (left == 0) {
            int r = waiting_for(c);
            return cgloo__ctx_error(ctx, CGLOO_ETIMEDOUT,
                                    "rank %d: shared memory: connected to %d of %d peers on this "
                                    "host, and to none more within %d ms; waiting for rank %d (%s)",
                                    ctx->rank, c->connected, c->wanted, ctx->timeout_ms, r,
                                    r < ctx->rank ? "dialled, no answer" : "no hello arrived");
        }
        if (cgloo__ctx_aborted(ctx))
            return CGLOO_EABORTED;
        rc = poll_round(c, peers, CGLOO_MIN(left, POLL_SLICE_MS));
    }
    return rc;
}
