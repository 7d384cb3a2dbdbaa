/*
 * A fake rank 0 for the fuzz targets that need a real rank on the other end of a real socket:
 * it listens on loopback, publishes its store record, accepts the real rank 1's dial, reads its
 * hello and answers with an acknowledgement of the fuzzer's choosing (or a correct one). The
 * real rank runs the library's own connect, so the harness drives the handshake and the receive
 * path through their sockets exactly as a peer would, with no refactor of either.
 */
#ifndef CGLOO_FUZZ_PEER_H
#define CGLOO_FUZZ_PEER_H

#include "transport/tcp/wire.h"

#include <cgloo/cgloo.h>

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define FAKE_NAME "fuzz"
#define FAKE_NONCE ((uint64_t)0x0123456789abcdefull)

/* fake_die stops the harness on a failure of the harness itself (not of the code under test). */
static inline void fake_die(const char *what)
{
    fprintf(stderr, "fuzz harness: %s failed (%s)\n", what, strerror(errno));
    abort();
}

static inline uint64_t fake_ctx_id(void)
{
    return cgloo__hash64(FAKE_NAME, strlen(FAKE_NAME));
}

/* fake_listen opens the listening socket of the fake rank 0 (kept for the whole run). */
static inline int fake_listen(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(fd, 64) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        fake_die("listen");
    *port = ntohs(sa.sin_port);
    return fd;
}

/* fake_publish writes rank 0's record as the rendezvous does (expiry far ahead). */
static inline void fake_publish(cgloo_store *store, int port)
{
    char val[128];
    int n = snprintf(val, sizeof val, "cgloo2 127.0.0.1:%d %016" PRIx64 " 7fffffffffffffff", port,
                     FAKE_NONCE);
    if (cgloo_store_set(store, FAKE_NAME "/addr/0", val, (size_t)n) != CGLOO_OK)
        fake_die("store set");
}

/* fake_wait waits up to ms for fd to become ready for events (1) or not (0). libFuzzer's
 * SIGALRM (its -timeout watchdog) interrupts system calls: they are retried here. */
static inline int fake_wait(int fd, short events, int ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    int rc;
    while ((rc = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    return rc == 1;
}

/* fake_dial connects fd to sa, finishing a connect that a signal interrupted. */
static inline int fake_dial(int fd, const struct sockaddr_in *sa)
{
    if (connect(fd, (const struct sockaddr *)sa, sizeof *sa) == 0)
        return 0;
    if (errno != EINTR || !fake_wait(fd, POLLOUT, 5000))
        return -1;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    errno = err;
    return err ? -1 : 0;
}

/* fake_read reads up to len bytes within ms; returns the count read. */
static inline size_t fake_read(int fd, uint8_t *buf, size_t len, int ms)
{
    size_t got = 0;
    while (got < len && fake_wait(fd, POLLIN, ms)) {
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

/* fake_good_ack answers the real rank's hello as a correct rank 0 would. */
static inline void fake_good_ack(const uint8_t *hello, uint8_t *ack)
{
    wire_hello h = {0};
    if (wire_hello_decode(hello, &h) != NULL)
        memset(&h, 0, sizeof h);
    wire_hello a = {.type = HELLO_TYPE_ACK,
                    .ctx_id = fake_ctx_id(),
                    .src_rank = 0,
                    .dst_rank = 1,
                    .size = 2,
                    .eager_max = 65536,
                    .eager_budget = 1 << 20,
                    .src_nonce = FAKE_NONCE,
                    .dst_nonce = h.src_nonce};
    wire_hello_encode(&a, ack);
}

/* fake_drain reads and drops whatever the real rank sent; returns 0 once it closed. */
static inline int fake_drain(int fd)
{
    uint8_t sink[65536];
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
        if (n == 0)
            return 0;
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 1 : 0;
    }
}

/* fake_close_rst closes with a reset rather than a FIN: tens of thousands of connections a run
 * would otherwise leave as many sockets in TIME-WAIT and run out of loopback ports. */
static inline void fake_close_rst(int fd)
{
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
}

/* fake_wait_closed drains fd until the real rank closes it, for at most ms. */
static inline void fake_wait_closed(int fd, int ms)
{
    while (fake_drain(fd) && fake_wait(fd, POLLIN, ms))
        ;
}

#endif
