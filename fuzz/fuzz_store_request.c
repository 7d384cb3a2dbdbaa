/*
 * fuzz_store_request: arbitrary bytes as a client's requests to the TCP store server.
 *
 * Per input: a real server (cgloo_store_server_start, its own thread) on a loopback port; a
 * raw client connects, sends a correct hello first when bit 0 of the first byte is set (else
 * the bytes themselves must pass as one), then the rest of the input as request frames,
 * half-closes and reads the answers until the server closes or goes quiet for 30 ms (a GET or
 * WAIT parks up to its own timeout). The server then stops, with whatever it still holds.
 * Every frame goes through the server's real reader: hello check, header bounds, body growth,
 * and each op's body parser (tcp_store_server.c).
 *
 * Expected: answers or a closed connection, never a crash, a leak, a read past a body or a
 * server that no longer stops.
 */
#include "store/tcp_store_proto.h"

#include <cgloo/cgloo.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define INPUT_MAX (1 << 20)
#define QUIET_MS 30

static void die(const char *what)
{
    fprintf(stderr, "fuzz harness: %s failed (%s)\n", what, strerror(errno));
    abort();
}

static int dial(int port)
{
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0)
        return fd;
    /* libFuzzer's SIGALRM watchdog interrupts system calls: finish the connect. */
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int err = errno;
    socklen_t len = sizeof err;
    if (err == EINTR) {
        while (poll(&p, 1, 5000) < 0 && errno == EINTR)
            ;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    }
    if (err)
        die("dial the server");
    return fd;
}

/* drain reads answers; returns 0 once the server closed or went quiet. */
static int drain(int fd, int ms)
{
    uint8_t sink[65536];
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    while ((rc = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    if (rc != 1)
        return 0;
    ssize_t n = recv(fd, sink, sizeof sink, MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EINTR));
}

/* send_input writes the bytes, reading answers between writes so that neither side blocks. */
static void send_input(int fd, const uint8_t *p, size_t len)
{
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return; /* the server closed on a violation */
        if (w > 0) {
            p += w;
            len -= (size_t)w;
        } else if (!drain(fd, QUIET_MS)) {
            return; /* the server stopped reading: a parked request */
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > INPUT_MAX)
        return 0;
    cgloo_store_server *srv;
    if (cgloo_store_server_start("127.0.0.1", 0, &srv) != CGLOO_OK)
        die("server start");
    int fd = dial(cgloo_store_server_port(srv));
    if (data[0] & 1) {
        uint8_t hello[TCP_STORE_HELLO_LEN];
        tcp_store_hello_put(hello, 0);
        send_input(fd, hello, sizeof hello);
    }
    send_input(fd, data + 1, size - 1);
    shutdown(fd, SHUT_WR);
    while (drain(fd, QUIET_MS))
        ;
    /* A reset, not a FIN: no TIME-WAIT socket per input to run out of loopback ports. */
    struct linger l = {.l_onoff = 1, .l_linger = 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    close(fd);
    cgloo_store_server_stop(srv);
    return 0;
}
