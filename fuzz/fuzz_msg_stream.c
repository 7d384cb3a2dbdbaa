/*
 * fuzz_msg_stream: arbitrary bytes as a connected peer's message stream, into a real rank.
 *
 * Per input: a real rank 1 of 2 connects to a fake rank 0 over loopback (a correct handshake),
 * posts what a rank in a collective has open (a receive of 4096 bytes on tag 1, one of 16
 * bytes on tag 2, a receive from the set {0} on tag 3, a large send that waits for a READY
 * with send id 1, an eager send), and the fake writes the input after the first byte into the
 * socket in chunks whose size the first byte picks (1, 3, 31, 32, 33 bytes... or all at once),
 * driving the real rank's progress after each chunk so that headers and payloads are split at
 * every boundary of the staging buffer (pair.c: reassembly, header checks, payload routing).
 * Then the fake closes and the rank is destroyed.
 *
 * Expected: the requests end with OK, ETRUNC, EPROTO or EPEER, the rank's buffers are written
 * only within their lengths (each is an exact-size allocation: ASan sees one byte past), and
 * nothing leaks, crashes or hangs.
 */
#include "fuzz_peer.h"

#define INPUT_MAX (1 << 18)
#define LARGE_SEND (100 * 1000)

static cgloo_device *dev;
static int fake_fd, fake_port;
static uint8_t *large;

static const size_t chunks[] = {0, 1, 3, 7, 31, 32, 33, 64, 100, 1000, 4096, 65535, 65537};

static void setup(void)
{
    static const cgloo_tcp_attr loopback = {.hostname = "127.0.0.1"};
    if (dev)
        return;
    if (cgloo_device_tcp_create(&loopback, &dev) != CGLOO_OK)
        fake_die("device");
    fake_fd = fake_listen(&fake_port);
    large = calloc(1, LARGE_SEND);
}

/* fake_accept takes the real rank's dial and answers its hello correctly. */
static void *fake_accept(void *arg)
{
    int *out = arg;
    *out = -1;
    if (!fake_wait(fake_fd, POLLIN, 5000))
        return NULL;
    int fd;
    while ((fd = accept4(fake_fd, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR)
        ;
    uint8_t hello[HELLO_LEN], ack[HELLO_LEN];
    if (fd < 0 || fake_read(fd, hello, sizeof hello, 3000) != HELLO_LEN)
        fake_die("the real rank's hello");
    fake_good_ack(hello, ack);
    if (send(fd, ack, sizeof ack, MSG_NOSIGNAL) != HELLO_LEN)
        fake_die("send the ack");
    *out = fd;
    return NULL;
}

enum { R_TAG1, R_TAG2, R_ANY, S_LARGE, S_EAGER, DRIVER, NREQ };

typedef struct rank1 {
    cgloo_store *store;
    cgloo_context *ctx;
    cgloo_request *req[NREQ];
    uint8_t *buf[3];
    int self;
} rank1;

static void rank_connect(rank1 *r, int *fd)
{
    if (cgloo_store_hash_create(&r->store) != CGLOO_OK)
        fake_die("store");
    fake_publish(r->store, fake_port);
    cgloo_context_attr attr = {.timeout_ms = 3000, .name = FAKE_NAME, .transport = "tcp"};
    if (cgloo_context_create(1, 2, &attr, &r->ctx) != CGLOO_OK)
        fake_die("context");
    pthread_t th;
    if (pthread_create(&th, NULL, fake_accept, fd) != 0)
        fake_die("thread");
    int rc = cgloo_context_connect(r->ctx, r->store, dev);
    pthread_join(th, NULL);
    if (rc != CGLOO_OK || *fd < 0)
        fake_die("connect");
}

/* rank_post opens what the fuzzed stream may complete, in exact-size buffers. */
static void rank_post(rank1 *r)
{
    static const size_t lens[3] = {4096, 16, 65536};
    static const int srcs[1] = {0};
    for (int i = 0; i < 3; i++)
        r->buf[i] = malloc(lens[i]);
    int rc = cgloo_irecv(r->ctx, r->buf[0], lens[0], 0, 1, &r->req[R_TAG1]);
    rc |= cgloo_irecv(r->ctx, r->buf[1], lens[1], 0, 2, &r->req[R_TAG2]);
    rc |= cgloo_irecv_any(r->ctx, r->buf[2], lens[2], srcs, 1, 3, &r->req[R_ANY]);
    rc |= cgloo_isend(r->ctx, large, LARGE_SEND, 0, 4, &r->req[S_LARGE]);
    rc |= cgloo_isend(r->ctx, "eager", 5, 0, 5, &r->req[S_EAGER]);
    /* A receive from itself that nothing sends: testing it drives progress. */
    rc |= cgloo_irecv(r->ctx, &r->self, sizeof r->self, 1, 99, &r->req[DRIVER]);
    if (rc != CGLOO_OK)
        fake_die("post");
}

static void rank_drive(rank1 *r)
{
    int done = 0;
    cgloo_test(r->req[DRIVER], &done, NULL);
}

/* feed writes the stream in chunks, driving the rank and draining its replies between them. */
static void feed(rank1 *r, int fd, const uint8_t *p, size_t len, size_t chunk)
{
    int stuck = 0;
    while (len > 0 && stuck < 200) {
        size_t n = chunk ? CGLOO_MIN(chunk, len) : len;
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EINTR)
            return; /* the rank closed on a protocol error */
        if (w > 0) {
            p += w;
            len -= (size_t)w;
            stuck = 0;
        } else {
            stuck++;
        }
        rank_drive(r);
        fake_drain(fd);
    }
}

static void rank_finish(rank1 *r, int fd)
{
    shutdown(fd, SHUT_WR);
    for (int i = 0; i < 20; i++) {
        rank_drive(r);
        if (!fake_drain(fd))
            break;
    }
    for (int i = 0; i < NREQ; i++) {
        int done = 0;
        cgloo_test(r->req[i], &done, NULL); /* frees a completed request */
        if (!done)
            cgloo_cancel(r->req[i]);
    }
    fake_close_rst(fd);
    cgloo_context_destroy(r->ctx);
    cgloo_store_destroy(r->store);
    for (int i = 0; i < 3; i++)
        free(r->buf[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > INPUT_MAX)
        return 0;
    setup();
    rank1 r = {0};
    int fd;
    rank_connect(&r, &fd);
    rank_post(&r);
    feed(&r, fd, data + 1, size - 1, chunks[data[0] % CGLOO_ARRAY_LEN(chunks)]);
    rank_finish(&r, fd);
    return 0;
}
