/*
 * fuzz_hello: the connection hello and its acknowledgement, through real sockets.
 *
 * The first input byte picks the path; the rest is what a stranger sends.
 *   bit 0 clear: the bytes go to a real TCP device as an inbound hello. The device decodes it
 *     (wire_hello_decode) and files it under a registration (ctx "fuzz", rank 0 of 4, a fixed
 *     nonce) or rejects it; the harness drives cgloo__tcp_device_poll until one or the other.
 *   bit 0 set: a real rank 1 of 2 dials a fake rank 0, which answers its hello with the bytes as
 *     the acknowledgement (the handshake's check_ack); bytes after the first 56 follow as
 *     messages, should the ack pass.
 *   bit 1 set: the harness writes the right context id and nonces into the bytes first, so that
 *     the fuzzer spends its time on the checks past them rather than guessing 64-bit values.
 * Expected: every input ends in a status (a rejected connection, an EPROTO or ETIMEDOUT from
 * connect, or a connection), never a crash, a leak or a hang.
 */
#include "fuzz_peer.h"
#include "transport/tcp/tcp.h"

#define REG_NONCE 0xfeedfacecafebeefull
#define INPUT_MAX 4096

static cgloo_device *dev;
static device_reg reg;
static struct sockaddr_in dev_sa;
static int fake_fd, fake_port;

static void setup(void)
{
    static const cgloo_tcp_attr loopback = {.hostname = "127.0.0.1"};
    if (dev)
        return;
    if (cgloo_device_tcp_create(&loopback, &dev) != CGLOO_OK)
        fake_die("device");
    reg = (device_reg){.ctx_id = fake_ctx_id(), .nonce = REG_NONCE, .rank = 0, .size = 4};
    cgloo__tcp_device_register(dev, &reg);
    char addr[CGLOO_TRANSPORT_ADDR_MAX];
    cgloo__tcp_device_address(dev, addr, sizeof addr);
    dev_sa = (struct sockaddr_in){.sin_family = AF_INET,
                                  .sin_port = htons((uint16_t)atoi(strrchr(addr, ':') + 1))};
    dev_sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fake_fd = fake_listen(&fake_port);
}

/* ---- an inbound hello to the device ---- */

static void free_arrivals(device_inbound *in)
{
    while (in) {
        device_inbound *next = in->next;
        close(in->fd);
        free(in);
        in = next;
    }
}

/* device_settled: the device filed the connection (taken and freed here) or closed it. */
static int device_settled(int fd)
{
    device_inbound *got = cgloo__tcp_device_take(dev, &reg);
    if (got) {
        free_arrivals(got);
        return 1;
    }
    uint8_t b;
    ssize_t n = recv(fd, &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR);
}

static void patch_hello(uint8_t *b, size_t len, uint64_t dst_nonce)
{
    if (len >= 16)
        cgloo__put_u64(b + 8, fake_ctx_id());
    if (len >= 48)
        cgloo__put_u64(b + 40, dst_nonce);
}

static void to_device(const uint8_t *data, size_t len)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || fake_dial(fd, &dev_sa) != 0)
        fake_die("dial the device");
    if (len > 0 && send(fd, data, len, MSG_NOSIGNAL) < 0 && errno != EPIPE && errno != ECONNRESET)
        fake_die("send");
    shutdown(fd, SHUT_WR);
    struct pollfd none[1];
    for (int i = 0; i < 400 && !device_settled(fd); i++)
        cgloo__tcp_device_poll(dev, none, 0, 5);
    fake_close_rst(fd);
}

/* ---- an acknowledgement to a dialling rank ---- */

typedef struct ack_job {
    uint8_t *bytes;
    size_t len;
    int patch;
} ack_job;

static void *fake_rank0(void *arg)
{
    ack_job *j = arg;
    if (!fake_wait(fake_fd, POLLIN, 5000))
        return NULL; /* the real rank gave up before dialling */
    int fd;
    while ((fd = accept4(fake_fd, NULL, NULL, SOCK_CLOEXEC)) < 0 && errno == EINTR)
        ;
    if (fd < 0)
        fake_die("accept");
    uint8_t hello[HELLO_LEN];
    if (fake_read(fd, hello, sizeof hello, 3000) == HELLO_LEN && j->patch) {
        patch_hello(j->bytes, j->len, 0);
        if (j->len >= 48) {
            cgloo__put_u64(j->bytes + 32, FAKE_NONCE);
            cgloo__put_u64(j->bytes + 40, cgloo__get_u64(hello + 32));
        }
    }
    if (j->len > 0)
        send(fd, j->bytes, j->len, MSG_NOSIGNAL);
    shutdown(fd, SHUT_WR);
    fake_wait_closed(fd, 3000);
    fake_close_rst(fd);
    return NULL;
}

/* drain_stale_dials closes the connections a finished input left queued on the fake rank 0's
 * listener: a turned-away dial is dialled again until the deadline, and the fake accepts only
 * the first, so without this the next input's fake would answer a dead dial and its rank would
 * wait out the whole timeout (every dialler input after the first took 250 ms). */
static void drain_stale_dials(void)
{
    while (fake_wait(fake_fd, POLLIN, 0)) {
        int fd = accept4(fake_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0 && errno != EINTR)
            break;
        if (fd >= 0)
            close(fd);
    }
}

static void to_dialler(uint8_t *data, size_t len, int patch)
{
    cgloo_store *store;
    cgloo_context *ctx;
    if (cgloo_store_hash_create(&store) != CGLOO_OK)
        fake_die("store");
    fake_publish(store, fake_port);
    /* Short: a dial whose acknowledgement ends early is dialled again until the deadline (a late
     * hello is not a violation), and every input would otherwise wait it out. */
    cgloo_context_attr attr = {.timeout_ms = 250, .name = FAKE_NAME, .transport = "tcp"};
    if (cgloo_context_create(1, 2, &attr, &ctx) != CGLOO_OK)
        fake_die("context");
    ack_job j = {data, len, patch};
    pthread_t th;
    if (pthread_create(&th, NULL, fake_rank0, &j) != 0)
        fake_die("thread");
    cgloo_context_connect(ctx, store, dev);
    cgloo_context_destroy(ctx);
    pthread_join(th, NULL);
    drain_stale_dials();
    cgloo_store_destroy(store);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > INPUT_MAX)
        return 0;
    setup();
    uint8_t mode = data[0];
    uint8_t *bytes = malloc(size);
    memcpy(bytes, data + 1, size - 1);
    if (mode & 1) {
        to_dialler(bytes, size - 1, mode & 2);
    } else {
        if (mode & 2)
            patch_hello(bytes, size - 1, REG_NONCE);
        to_device(bytes, size - 1);
    }
    free(bytes);
    return 0;
}
