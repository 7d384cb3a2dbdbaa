/*
 * The TCP transport against a hostile peer. Real ranks run as threads; a fake peer in the test
 * thread speaks the wire protocol with raw sockets, from its description in
 * src/transport/tcp/wire.h (encoded here by hand, so the test also checks the spec), and
 * sends what a correct rank never would: bad hellos, bad acknowledgements, and bad messages
 * after a good handshake. The real ranks must reject them with a status, close the
 * connection, keep their memory safe (run under ASan) and carry on.
 */
#include "cgloo_impl.h"
#include "mesh.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define NAME "test" /* the context name mesh.h uses */
#define MAGIC 0x4f4c4743u
#define HELLO_BYTES 56
#define HDR_BYTES 32
#define RECV_LEN 4096

enum { T_EAGER = 1, T_RTS = 2, T_READY = 3, T_DATA = 4, T_CREDIT = 5, T_BYE = 6 };

static cgloo_store *store;

/* ---- byte encoding and raw sockets ----------------------------------------------------------- */

static void put32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
    return get32(p) | (uint64_t)get32(p + 4) << 32;
}

typedef struct hello_fields {
    uint8_t type;
    uint64_t ctx_id;
    uint32_t src, dst, size, eager_max, budget;
    uint64_t src_nonce, dst_nonce;
} hello_fields;

static void hello_encode(const hello_fields *h, uint8_t *p)
{
    memset(p, 0, HELLO_BYTES);
    put32(p, MAGIC);
    p[4] = 1;
    p[5] = h->type;
    put64(p + 8, h->ctx_id);
    put32(p + 16, h->src);
    put32(p + 20, h->dst);
    put32(p + 24, h->size);
    put32(p + 28, h->eager_max);
    put64(p + 32, h->src_nonce);
    put64(p + 40, h->dst_nonce);
    put32(p + 48, h->budget);
}

static void hdr_encode(uint8_t *p, uint8_t type, uint32_t send_id, uint32_t recv_id, uint64_t tag,
                       uint64_t len)
{
    memset(p, 0, HDR_BYTES);
    p[0] = type;
    put32(p + 4, send_id);
    put32(p + 8, recv_id);
    put64(p + 16, tag);
    put64(p + 24, len);
}

static uint64_t ctx_id(void)
{
    return cgloo__hash64(NAME, strlen(NAME));
}

static void send_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* send_some sends what the peer still takes; a peer that closed on us is fine here. */
static void send_some(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        p += n;
        len -= (size_t)n;
    }
}

static void recv_all(int fd, void *buf, size_t len)
{
    uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        CHECK(n > 0);
        p += n;
        len -= (size_t)n;
    }
}

/* expect_closed reads until the other side closes (EOF or reset); fails after 5 s. */
static void expect_closed(int fd)
{
    uint8_t sink[65536];
    long long t0 = test_now_ms();
    for (;;) {
        ssize_t n = recv(fd, sink, sizeof sink, 0);
        if (n == 0 || (n < 0 && errno == ECONNRESET))
            return;
        if (n < 0 && errno != EINTR && errno != EAGAIN)
            harness_fail(__FILE__, __LINE__, "recv", strerror(errno));
        if (test_now_ms() - t0 > 5000)
            harness_fail(__FILE__, __LINE__, "expect_closed", "the peer kept the socket open");
    }
}

static void set_rcvtimeo(int fd, int ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    CHECK(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) == 0);
}

/* dial connects a blocking socket to "127.0.0.1:port". */
static int dial(const char *addr)
{
    const char *colon = strrchr(addr, ':');
    CHECK(colon && strncmp(addr, "127.0.0.1", (size_t)(colon - addr)) == 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    set_rcvtimeo(fd, 200);
    return fd;
}

/* ---- store records --------------------------------------------------------------------------- */

typedef struct record {
    char addr[64];
    uint64_t nonce;
} record;

static record read_record(int rank)
{
    char key[64], fmt[32];
    snprintf(key, sizeof key, "%s/addr/%d", NAME, rank);
    void *val;
    size_t len;
    CHECK_OK(cgloo_store_get(store, key, 10000, &val, &len));
    record r = {0};
    snprintf(fmt, sizeof fmt, "cgloo2 %%63s %%%sx", SCNx64);
    CHECK(sscanf(val, fmt, r.addr, &r.nonce) == 2);
    cgloo_free(val);
    return r;
}

static void publish_record(int rank, const char *addr, uint64_t nonce)
{
    char key[64], val[128];
    snprintf(key, sizeof key, "%s/addr/%d", NAME, rank);
    /* the record of full_mesh.c, with an expiry far in the future */
    int n = snprintf(val, sizeof val, "cgloo2 %s %016" PRIx64 " 7fffffffffffffff", addr, nonce);
    CHECK_OK(cgloo_store_set(store, key, val, (size_t)n));
}

/* ---- the fake peer --------------------------------------------------------------------------- */

typedef struct fake {
    int rank, size;
    uint64_t nonce;
    int fd;             /* connection to the real rank after a handshake */
    uint32_t eager_max; /* from the real rank's acknowledgement */
    uint32_t budget;    /* ditto */
} fake;

/* fake_handshake dials the real rank `peer`, sends a correct hello and checks the ack. */
static void fake_handshake(fake *f, int peer)
{
    record rec = read_record(peer);
    int fd = dial(rec.addr);
    set_rcvtimeo(fd, 5000);
    uint8_t b[HELLO_BYTES];
    hello_encode(&(hello_fields){.type = 1,
                                 .ctx_id = ctx_id(),
                                 .src = (uint32_t)f->rank,
                                 .dst = (uint32_t)peer,
                                 .size = (uint32_t)f->size,
                                 .eager_max = 65536,
                                 .budget = 1 << 20,
                                 .src_nonce = f->nonce,
                                 .dst_nonce = rec.nonce},
                 b);
    send_all(fd, b, sizeof b);
    recv_all(fd, b, sizeof b);
    CHECK(get32(b) == MAGIC && b[4] == 1 && b[5] == 2 && b[6] == 0 && b[7] == 0);
    CHECK(get64(b + 8) == ctx_id());
    CHECK(get32(b + 16) == (uint32_t)peer && get32(b + 20) == (uint32_t)f->rank);
    CHECK(get32(b + 24) == (uint32_t)f->size);
    CHECK(get64(b + 32) == rec.nonce && get64(b + 40) == f->nonce);
    CHECK(get32(b + 52) == 0);
    f->eager_max = get32(b + 28);
    f->budget = get32(b + 48);
    CHECK(f->eager_max > 0 && f->budget >= f->eager_max);
    f->fd = fd;
}

static void fake_send_hdr(const fake *f, uint8_t type, uint32_t send_id, uint32_t recv_id,
                          uint64_t tag, uint64_t len)
{
    uint8_t h[HDR_BYTES];
    hdr_encode(h, type, send_id, recv_id, tag, len);
    send_all(f->fd, h, sizeof h);
}

static void fake_send_eager(const fake *f, uint64_t tag, const void *data, size_t len)
{
    fake_send_hdr(f, T_EAGER, 0, 0, tag, len);
    send_all(f->fd, data, len);
}

/* fake_read_hdr reads one message header from the real rank. */
static void fake_read_hdr(const fake *f, uint8_t *type, uint32_t *send_id, uint32_t *recv_id,
                          uint64_t *tag, uint64_t *len)
{
    uint8_t h[HDR_BYTES];
    recv_all(f->fd, h, sizeof h);
    CHECK(h[1] == 0 && h[2] == 0 && h[3] == 0 && get32(h + 12) == 0);
    *type = h[0];
    *send_id = get32(h + 4);
    *recv_id = get32(h + 8);
    *tag = get64(h + 16);
    *len = get64(h + 24);
}

/* ---- hellos the device must turn away -------------------------------------------------------- */

/* The real ranks 0 and 1 of 3 connect and then exchange messages with each other and with the
 * fake rank 2 (which sends tag 9 to each). */
static void *hello_real_rank(void *arg)
{
    int rank = (int)(intptr_t)arg;
    rank_env e = mesh_connect(store, rank, 3, 15000);
    char got[16] = {0};
    cgloo_completion c;
    CHECK_OK(cgloo_recv(e.ctx, got, sizeof got, 2, 9, 0, &c));
    CHECK(c.bytes == 6 && c.source == 2 && memcmp(got, "fake-2", 6) == 0);
    int mine = rank + 100, theirs = -1;
    CHECK_OK(cgloo_send(e.ctx, &mine, sizeof mine, 1 - rank, 3, 0));
    CHECK_OK(cgloo_recv(e.ctx, &theirs, sizeof theirs, 1 - rank, 3, 0, NULL));
    CHECK(theirs == 1 - rank + 100);
    CHECK_OK(cgloo_send(e.ctx, "bye", 3, 2, 10, 0));
    mesh_close(e);
    return NULL;
}

/* try_hello sends len bytes of a hello to addr and checks that the device closes on it. */
static void try_hello(const char *addr, const uint8_t *bytes, size_t len, int half_close)
{
    int fd = dial(addr);
    send_some(fd, bytes, len);
    if (half_close)
        shutdown(fd, SHUT_WR);
    expect_closed(fd);
    close(fd);
}

static void test_bad_hellos(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    fake f = {.rank = 2, .size = 3, .nonce = 0x1234567890abcdefull, .fd = -1};
    publish_record(2, "127.0.0.1:9", f.nonce);
    pthread_t th[2];
    for (intptr_t r = 0; r < 2; r++)
        CHECK(pthread_create(&th[r], NULL, hello_real_rank, (void *)r) == 0);
    record r0 = read_record(0), r1 = read_record(1);
    /* A connection that never says anything must not hold anyone up. */
    int idle = dial(r0.addr);
    hello_fields good = {.type = 1,
                         .ctx_id = ctx_id(),
                         .src = 2,
                         .dst = 0,
                         .size = 3,
                         .eager_max = 65536,
                         .budget = 1 << 20,
                         .src_nonce = f.nonce,
                         .dst_nonce = r0.nonce};
    uint8_t b[HELLO_BYTES * 4];
    hello_fields h;

    hello_encode(&good, b);
    put32(b, 0x4f4c4744u); /* wrong magic */
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    hello_encode(&good, b);
    b[4] = 2; /* wrong version */
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    hello_encode(&good, b);
    b[5] = 2; /* an ack where a hello belongs */
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    hello_encode(&good, b);
    b[6] = 2; /* a reserved flag (bit 0 is the secret flag) */
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    hello_encode(&good, b);
    put32(b + 52, 7); /* reserved tail */
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.ctx_id ^= 1; /* another communicator */
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.dst = 1; /* rank 1 does not live at rank 0's device */
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.dst = 7; /* no such rank */
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.src = 3; /* source rank out of range */
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.src = 0xffffffffu;
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.src = 0; /* a rank may not dial itself or a higher rank */
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.size = 4; /* another world size */
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.dst_nonce ^= 1; /* for another instance of rank 0 */
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    h = good, h.src_nonce ^= 1; /* not the rank 2 of this run's record */
    hello_encode(&h, b);
    try_hello(r0.addr, b, HELLO_BYTES, 0);
    hello_encode(&good, b); /* a truncated hello, then close */
    try_hello(r0.addr, b, 20, 1);
    try_hello(r0.addr, b, 0, 1);
    fill_pattern(b, sizeof b, 5); /* garbage, more than a hello's worth */
    try_hello(r0.addr, b, sizeof b, 0);
    try_hello(r1.addr, b, sizeof b, 0);
    h = good, h.dst = 1, h.dst_nonce = r0.nonce; /* rank 1 with rank 0's nonce */
    hello_encode(&h, b);
    try_hello(r1.addr, b, HELLO_BYTES, 0);

    /* Now the fake rank 2 connects properly to both and sends each a message. */
    fake f1 = f;
    fake_handshake(&f, 0);
    fake_handshake(&f1, 1);
    fake_send_eager(&f, 9, "fake-2", 6);
    fake_send_eager(&f1, 9, "fake-2", 6);
    const fake *fs[] = {&f, &f1};
    for (int i = 0; i < 2; i++) {
        uint8_t type;
        uint32_t sid, rid;
        uint64_t tag, len;
        char bye[3];
        fake_read_hdr(fs[i], &type, &sid, &rid, &tag, &len);
        CHECK(type == T_EAGER && tag == 10 && len == 3);
        recv_all(fs[i]->fd, bye, 3);
        CHECK(memcmp(bye, "bye", 3) == 0);
    }
    /* Ranks that are done close; the fake closes in turn so that their linger ends. */
    expect_closed(f.fd);
    expect_closed(f1.fd);
    close(f.fd);
    close(f1.fd);
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    expect_closed(idle); /* destroying the device closed the connection it never used */
    close(idle);
    cgloo_store_destroy(store);
}

/* ---- acknowledgements the dialling rank must turn away --------------------------------------- */

typedef struct ack_case {
    const char *what;
    int want; /* status of the real rank's connect */
    void (*mangle)(uint8_t *ack);
    size_t len; /* bytes of the ack sent before closing or stalling */
    int stall;  /* keep the socket open after the bytes */
} ack_case;

static void ack_bad_nonce(uint8_t *a)
{
    a[40] ^= 1;
}
static void ack_peer_nonce(uint8_t *a)
{
    a[32] ^= 1;
}
static void ack_is_hello(uint8_t *a)
{
    a[5] = 1;
}
static void ack_wrong_ranks(uint8_t *a)
{
    put32(a + 16, 5);
}
static void ack_wrong_size(uint8_t *a)
{
    put32(a + 24, 3);
}
static void ack_wrong_ctx(uint8_t *a)
{
    a[8] ^= 0x80;
}
static void ack_version(uint8_t *a)
{
    a[4] = 9;
}
static void ack_garbage(uint8_t *a)
{
    fill_pattern(a, HELLO_BYTES, 11);
}

static const ack_case ack_cases[] = {
    {"wrong receiver nonce", CGLOO_EPROTO, ack_bad_nonce, HELLO_BYTES, 0},
    {"wrong sender nonce", CGLOO_EPROTO, ack_peer_nonce, HELLO_BYTES, 0},
    {"hello instead of ack", CGLOO_EPROTO, ack_is_hello, HELLO_BYTES, 0},
    {"wrong ranks", CGLOO_EPROTO, ack_wrong_ranks, HELLO_BYTES, 0},
    {"wrong size", CGLOO_EPROTO, ack_wrong_size, HELLO_BYTES, 0},
    {"wrong context", CGLOO_EPROTO, ack_wrong_ctx, HELLO_BYTES, 0},
    {"wrong version", CGLOO_EPROTO, ack_version, HELLO_BYTES, 0},
    {"garbage", CGLOO_EPROTO, ack_garbage, HELLO_BYTES, 0},
    {"truncated ack, then close", CGLOO_EPROTO, NULL, 30, 0},
    {"no ack at all", CGLOO_ETIMEDOUT, NULL, 0, 1},
    {"half an ack, then silence", CGLOO_ETIMEDOUT, NULL, 30, 1},
};

typedef struct ack_real {
    cgloo_device *dev;
    cgloo_context *ctx;
} ack_real;

/* The real rank 1 of 2 dials the fake rank 0 once per bad ack, then once more for a good one,
 * which the fake first closes without a byte (as a rank that turns a hello away does): the real
 * rank dials again rather than failing. */
static void *ack_real_rank(void *arg)
{
    ack_real *a = arg;
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(ack_cases); i++) {
        const ack_case *c = &ack_cases[i];
        CHECK_OK(cgloo_context_set_timeout(a->ctx, c->stall ? 600 : 10000));
        long long t0 = test_now_ms();
        int rc = cgloo_context_connect(a->ctx, store, a->dev);
        long long took = test_now_ms() - t0;
        char detail[512];
        cgloo_context_last_error(a->ctx, detail, sizeof detail);
        if (rc != c->want || !strstr(detail, "rank 0"))
            harness_fail(__FILE__, __LINE__, c->what, detail);
        CHECK(c->stall ? took >= 500 && took < 5000 : took < 5000);
    }
    CHECK_OK(cgloo_context_set_timeout(a->ctx, 10000));
    CHECK_OK(cgloo_context_connect(a->ctx, store, a->dev));
    /* The fake announced an eager limit of 1024 bytes and a budget of 4096: both must hold. */
    CHECK_OK(cgloo_send(a->ctx, "from-1", 6, 0, 77, 0));
    uint8_t big[2000];
    fill_pattern(big, sizeof big, 79);
    CHECK_OK(cgloo_send(a->ctx, big, sizeof big, 0, 79, 0));
    cgloo_request *reqs[5];
    for (int i = 0; i < 5; i++)
        CHECK_OK(cgloo_isend(a->ctx, big, 1000, 0, 80, &reqs[i]));
    for (int i = 0; i < 5; i++)
        CHECK_OK(cgloo_wait(reqs[i], 0, NULL));
    CHECK_OK(cgloo_send(a->ctx, big, 1000, 0, 81, 0));
    char got[8] = {0};
    cgloo_completion c;
    CHECK_OK(cgloo_recv(a->ctx, got, sizeof got, 0, 78, 0, &c));
    CHECK(c.bytes == 5 && c.source == 0 && memcmp(got, "from0", 5) == 0);
    return NULL;
}

static void test_bad_acks(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t slen = sizeof sa;
    CHECK(bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0 && listen(lfd, 16) == 0);
    CHECK(getsockname(lfd, (struct sockaddr *)&sa, &slen) == 0);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%d", ntohs(sa.sin_port));
    fake f = {.rank = 0, .size = 2, .nonce = 0xfeedfacecafebeefull, .fd = -1};
    publish_record(0, addr, f.nonce);

    ack_real a;
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &a.dev));
    CHECK_OK(cgloo_context_create(1, 2, &(cgloo_context_attr){.name = NAME}, &a.ctx));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, ack_real_rank, &a) == 0);
    record r1 = read_record(1);
    for (size_t i = 0; i <= CGLOO_ARRAY_LEN(ack_cases) + 1; i++) {
        const ack_case *c = i < CGLOO_ARRAY_LEN(ack_cases) ? &ack_cases[i] : NULL;
        int fd = accept(lfd, NULL, NULL);
        CHECK(fd >= 0);
        set_rcvtimeo(fd, 5000);
        uint8_t b[HELLO_BYTES];
        recv_all(fd, b, sizeof b);
        CHECK(get32(b) == MAGIC && b[4] == 1 && b[5] == 1 && get64(b + 8) == ctx_id());
        CHECK(get32(b + 16) == 1 && get32(b + 20) == 0 && get32(b + 24) == 2);
        CHECK(get64(b + 32) == r1.nonce && get64(b + 40) == f.nonce);
        hello_encode(&(hello_fields){.type = 2,
                                     .ctx_id = ctx_id(),
                                     .src = 0,
                                     .dst = 1,
                                     .size = 2,
                                     .eager_max = 1024,
                                     .budget = 4096,
                                     .src_nonce = f.nonce,
                                     .dst_nonce = r1.nonce},
                     b);
        if (!c && i == CGLOO_ARRAY_LEN(ack_cases)) {
            close(fd); /* turned away: the real rank dials again */
            continue;
        }
        if (!c) {
            send_all(fd, b, sizeof b);
            f.fd = fd;
            break;
        }
        if (c->mangle)
            c->mangle(b);
        send_some(fd, b, c->len);
        if (c->stall)
            expect_closed(fd); /* the real rank gives up at its timeout and closes */
        close(fd);
    }
    /* Connected: the real rank keeps to the eager limit and the credit announced above. */
    uint8_t type, got[2000];
    uint32_t sid, rid;
    uint64_t tag, len;
    fake_read_hdr(&f, &type, &sid, &rid, &tag, &len);
    CHECK(type == T_EAGER && tag == 77 && len == 6);
    recv_all(f.fd, got, 6);
    CHECK(memcmp(got, "from-1", 6) == 0);
    fake_read_hdr(&f, &type, &sid, &rid, &tag, &len); /* 2000 > 1024: rendezvous */
    CHECK(type == T_RTS && tag == 79 && len == 2000);
    fake_send_hdr(&f, T_READY, sid, 5, 0, 0);
    fake_read_hdr(&f, &type, &sid, &rid, &tag, &len);
    CHECK(type == T_DATA && rid == 5 && len == 2000);
    recv_all(f.fd, got, 2000);
    CHECK(check_pattern(got, 2000, 79));
    for (int i = 0; i < 4; i++) { /* 4090 bytes of credit left: four go eager */
        fake_read_hdr(&f, &type, &sid, &rid, &tag, &len);
        CHECK(type == T_EAGER && tag == 80 && len == 1000);
        recv_all(f.fd, got, 1000);
    }
    fake_read_hdr(&f, &type, &sid, &rid, &tag, &len); /* the fifth waits for credit */
    CHECK(type == T_RTS && tag == 80 && len == 1000);
    fake_send_hdr(&f, T_CREDIT, 0, 0, 0, 4000);
    fake_send_hdr(&f, T_READY, sid, 6, 0, 0);
    fake_read_hdr(&f, &type, &sid, &rid, &tag, &len);
    CHECK(type == T_DATA && rid == 6 && len == 1000);
    recv_all(f.fd, got, 1000);
    fake_read_hdr(&f, &type, &sid, &rid, &tag, &len); /* credit returned: eager again */
    CHECK(type == T_EAGER && tag == 81 && len == 1000);
    recv_all(f.fd, got, 1000);
    fake_send_eager(&f, 78, "from0", 5);
    pthread_join(th, NULL);
    close(f.fd);
    cgloo_context_destroy(a.ctx);
    cgloo_device_destroy(a.dev);
    close(lfd);
    cgloo_store_destroy(store);
}

/* ---- bad messages after a good handshake ----------------------------------------------------- */

/* One case: what the fake rank 1 sends once rank 0 has a receive (tag 1, RECV_LEN bytes)
 * pending from it, and the status that receive must end with. */
typedef struct msg_case {
    const char *name;
    void (*send)(fake *f);
    int want;
} msg_case;

static const msg_case *current;

static void *msg_real_rank(void *arg)
{
    rank_env e = mesh_connect(store, 0, 2, 10000);
    uint8_t *buf = malloc(RECV_LEN); /* exact size: ASan catches a byte written past it */
    cgloo_request *r;
    CHECK_OK(cgloo_irecv(e.ctx, buf, RECV_LEN, 1, 1, &r));
    CHECK_OK(cgloo_store_set(store, "posted", "1", 1));
    long long t0 = test_now_ms();
    CHECK_STATUS(cgloo_wait(r, 0, NULL), current->want);
    /* Failed by the bad bytes, not by the 10 s timeout. The flood case alone takes a few
     * seconds under ThreadSanitizer beside another test on two cores. */
    CHECK(test_now_ms() - t0 < 9000);
    char detail[512];
    CHECK(cgloo_context_last_error(e.ctx, detail, sizeof detail) == current->want);
    if (!strstr(detail, "peer 1"))
        harness_fail(__FILE__, __LINE__, "last error names peer 1", detail);
    /* The failure sticks to the connection, and only to it. */
    CHECK_STATUS(cgloo_recv(e.ctx, buf, RECV_LEN, 1, 1, 0, NULL), current->want);
    CHECK_STATUS(cgloo_send(e.ctx, buf, 10, 1, 1, 0), current->want);
    CHECK_OK(cgloo_send(e.ctx, "self", 4, 0, 2, 0));
    CHECK_OK(cgloo_recv(e.ctx, buf, RECV_LEN, 0, 2, 0, NULL));
    CHECK(memcmp(buf, "self", 4) == 0);
    free(buf);
    long long t1 = test_now_ms();
    mesh_close(e);
    CHECK(test_now_ms() - t1 < 3000);
    return NULL;
}

static void run_msg_case(const msg_case *c)
{
    current = c;
    CHECK_OK(cgloo_store_hash_create(&store));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, msg_real_rank, NULL) == 0);
    fake f = {.rank = 1, .size = 2, .nonce = 0x0123456789abcdefull, .fd = -1};
    read_record(0);
    publish_record(1, "127.0.0.1:9", f.nonce);
    fake_handshake(&f, 0);
    void *v;
    size_t n;
    CHECK_OK(cgloo_store_get(store, "posted", 10000, &v, &n));
    cgloo_free(v);
    c->send(&f);
    if (f.fd >= 0) {
        expect_closed(f.fd); /* the real rank hung up on us */
        close(f.fd);
    }
    pthread_join(th, NULL);
    cgloo_store_destroy(store);
}

static void bad_type_0(fake *f)
{
    fake_send_hdr(f, 0, 0, 0, 1, 4);
}
static void bad_type_7(fake *f)
{
    fake_send_hdr(f, 7, 0, 0, 1, 4);
}
static void bad_type_255(fake *f)
{
    fake_send_hdr(f, 255, 0, 0, 1, 4);
}

static void bad_reserved(fake *f, int at)
{
    uint8_t h[HDR_BYTES];
    hdr_encode(h, T_EAGER, 0, 0, 1, 4);
    h[at] = 0x10;
    send_all(f->fd, h, sizeof h);
    send_all(f->fd, "abcd", 4);
}
static void bad_reserved_1(fake *f)
{
    bad_reserved(f, 1);
}
static void bad_reserved_3(fake *f)
{
    bad_reserved(f, 3);
}
static void bad_reserved_12(fake *f)
{
    bad_reserved(f, 12);
}
static void bad_reserved_15(fake *f)
{
    bad_reserved(f, 15);
}

static void eager_huge(fake *f)
{
    fake_send_hdr(f, T_EAGER, 0, 0, 1, 1ull << 63);
}
static void eager_max_plus_one(fake *f)
{
    fake_send_hdr(f, T_EAGER, 0, 0, 1, (uint64_t)f->eager_max + 1);
    uint8_t *junk = calloc(1, (size_t)f->eager_max + 1);
    send_some(f->fd, junk, (size_t)f->eager_max + 1);
    free(junk);
}

/* eager_over_credit sends full-size eager messages on another tag (so they are held) until
 * the budget granted in the ack is exceeded. */
static void eager_over_credit(fake *f)
{
    size_t n = f->eager_max;
    uint8_t *payload = malloc(n);
    fill_pattern(payload, n, 3);
    for (uint32_t sent = 0; sent <= f->budget; sent += (uint32_t)n) {
        uint8_t h[HDR_BYTES];
        hdr_encode(h, T_EAGER, 0, 0, 2, n);
        send_some(f->fd, h, sizeof h);
        send_some(f->fd, payload, n);
    }
    free(payload);
}

static void ready_unannounced(fake *f)
{
    fake_send_hdr(f, T_READY, 12345, 1, 0, 0);
}

static void ready_id_zero(fake *f)
{
    fake_send_hdr(f, T_READY, 0, 0, 0, 0);
}

/* data_len_differs announces 1000 bytes for the pending receive, then sends DATA of `len`. */
static void data_len_differs(fake *f, uint64_t len)
{
    fake_send_hdr(f, T_RTS, 7, 0, 1, 1000);
    uint8_t type;
    uint32_t sid, rid;
    uint64_t tag, rlen;
    fake_read_hdr(f, &type, &sid, &rid, &tag, &rlen);
    CHECK(type == T_READY && sid == 7 && rid != 0);
    fake_send_hdr(f, T_DATA, 0, rid, 0, len);
    uint8_t junk[RECV_LEN * 2];
    memset(junk, 0x5a, sizeof junk);
    send_some(f->fd, junk, (size_t)CGLOO_MIN(len, sizeof junk));
}
static void data_longer(fake *f)
{
    data_len_differs(f, RECV_LEN + 1000);
}
static void data_shorter(fake *f)
{
    data_len_differs(f, 999);
}
static void data_huge(fake *f)
{
    data_len_differs(f, UINT64_MAX);
}

static void truncated_header(fake *f)
{
    uint8_t h[HDR_BYTES];
    hdr_encode(h, T_EAGER, 0, 0, 1, 4);
    send_all(f->fd, h, 10);
    close(f->fd);
    f->fd = -1;
}

static void truncated_payload(fake *f)
{
    fake_send_hdr(f, T_EAGER, 0, 0, 1, 100);
    send_all(f->fd, "only-some", 9);
    close(f->fd);
    f->fd = -1;
}

static void plain_close(fake *f)
{
    close(f->fd);
    f->fd = -1;
}

/* rts_flood announces more messages than a receiver holds unexpected from one peer (2^20):
 * a bounded queue, not memory without end. */
static void rts_flood(fake *f)
{
    enum { BATCH = 4096 };
    uint8_t *batch = malloc((size_t)BATCH * HDR_BYTES);
    uint32_t id = 1;
    for (int i = 0; i < BATCH; i++)
        hdr_encode(batch + (size_t)i * HDR_BYTES, T_RTS, 0, 0, 3, 1 << 20);
    for (int b = 0; b <= (1 << 20) / BATCH; b++) {
        for (int i = 0; i < BATCH; i++, id++)
            put32(batch + (size_t)i * HDR_BYTES + 4, id);
        send_some(f->fd, batch, (size_t)BATCH * HDR_BYTES);
    }
    free(batch);
}

/* A departure (BYE, then close) still fails a receive that was waiting on the peer. */
static void bye_then_close(fake *f)
{
    fake_send_hdr(f, T_BYE, 0, 0, 0, 0);
    close(f->fd);
    f->fd = -1;
}

static void credit_overflow(fake *f)
{
    fake_send_hdr(f, T_CREDIT, 0, 0, 0, UINT64_MAX);
}
static void credit_overflow_sum(fake *f)
{
    /* Each fits alone; together they pass INT64_MAX. */
    fake_send_hdr(f, T_CREDIT, 0, 0, 0, (uint64_t)INT64_MAX - (1u << 20));
    fake_send_hdr(f, T_CREDIT, 0, 0, 0, (uint64_t)INT64_MAX - (1u << 20));
}

static const msg_case msg_cases[] = {
    {"type_0", bad_type_0, CGLOO_EPROTO},
    {"type_7", bad_type_7, CGLOO_EPROTO},
    {"type_255", bad_type_255, CGLOO_EPROTO},
    {"reserved_1", bad_reserved_1, CGLOO_EPROTO},
    {"reserved_3", bad_reserved_3, CGLOO_EPROTO},
    {"reserved_12", bad_reserved_12, CGLOO_EPROTO},
    {"reserved_15", bad_reserved_15, CGLOO_EPROTO},
    {"eager_2^63", eager_huge, CGLOO_EPROTO},
    {"eager_max+1", eager_max_plus_one, CGLOO_EPROTO},
    {"eager_over_credit", eager_over_credit, CGLOO_EPROTO},
    {"ready_unannounced", ready_unannounced, CGLOO_EPROTO},
    {"ready_id_0", ready_id_zero, CGLOO_EPROTO},
    {"data_longer", data_longer, CGLOO_EPROTO},
    {"data_shorter", data_shorter, CGLOO_EPROTO},
    {"data_2^64-1", data_huge, CGLOO_EPROTO},
    {"truncated_header", truncated_header, CGLOO_EPEER},
    {"truncated_payload", truncated_payload, CGLOO_EPEER},
    {"close", plain_close, CGLOO_EPEER},
    {"bye_then_close", bye_then_close, CGLOO_EPEER},
    {"rts_flood", rts_flood, CGLOO_EPROTO},
    {"credit_overflow", credit_overflow, CGLOO_EPROTO},
    {"credit_overflow_sum", credit_overflow_sum, CGLOO_EPROTO},
};

static void test_bad_messages(void)
{
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(msg_cases); i++) {
        fprintf(stderr, "     case %s\n", msg_cases[i].name);
        run_msg_case(&msg_cases[i]);
    }
}

/* ---- two peers failing in one round of progress ---------------------------------------------- */

/* Fake ranks 1 and 2 both send bad bytes before real rank 0 drives its context; the receive
 * from rank 1 fails, and the detail must be about rank 1 even though rank 2's failure is
 * handled after it. */
static void *two_fail_real_rank(void *arg)
{
    rank_env e = mesh_connect(store, 0, 3, 10000);
    int v;
    cgloo_request *r;
    CHECK_OK(cgloo_irecv(e.ctx, &v, sizeof v, 1, 1, &r));
    CHECK_OK(cgloo_store_set(store, "posted", "1", 1));
    void *val;
    size_t n;
    CHECK_OK(cgloo_store_get(store, "sent", 10000, &val, &n));
    cgloo_free(val);
    test_sleep_ms(50); /* both sockets have their bytes before anyone reads them */
    CHECK_STATUS(cgloo_wait(r, 0, NULL), CGLOO_EPROTO);
    char detail[512];
    CHECK(cgloo_context_last_error(e.ctx, detail, sizeof detail) == CGLOO_EPROTO);
    if (!strstr(detail, "peer 1") || !strstr(detail, "unknown message type"))
        harness_fail(__FILE__, __LINE__, "last error is about peer 1", detail);
    CHECK_STATUS(cgloo_recv(e.ctx, &v, sizeof v, 2, 1, 0, NULL), CGLOO_EPROTO);
    CHECK(cgloo_context_last_error(e.ctx, detail, sizeof detail) == CGLOO_EPROTO);
    if (!strstr(detail, "peer 2"))
        harness_fail(__FILE__, __LINE__, "last error is about peer 2", detail);
    mesh_close(e);
    return NULL;
}

static void test_error_names_the_peer(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, two_fail_real_rank, NULL) == 0);
    fake f1 = {.rank = 1, .size = 3, .nonce = 11, .fd = -1};
    fake f2 = {.rank = 2, .size = 3, .nonce = 22, .fd = -1};
    read_record(0);
    publish_record(1, "127.0.0.1:9", f1.nonce);
    publish_record(2, "127.0.0.1:9", f2.nonce);
    fake_handshake(&f1, 0);
    fake_handshake(&f2, 0);
    void *v;
    size_t n;
    CHECK_OK(cgloo_store_get(store, "posted", 10000, &v, &n));
    cgloo_free(v);
    bad_type_7(&f1);
    test_sleep_ms(10);
    bad_reserved_1(&f2);
    CHECK_OK(cgloo_store_set(store, "sent", "1", 1));
    expect_closed(f1.fd);
    expect_closed(f2.fd);
    close(f1.fd);
    close(f2.fd);
    pthread_join(th, NULL);
    cgloo_store_destroy(store);
}

/* ---- huge declared lengths ------------------------------------------------------------------- */

static void *rts_real_rank(void *arg)
{
    rank_env e = mesh_connect(store, 0, 2, 10000);
    uint8_t *small = malloc(16);
    cgloo_request *r;
    /* A receive posted before the announcement. */
    CHECK_OK(cgloo_irecv(e.ctx, small, 16, 1, 1, &r));
    CHECK_OK(cgloo_store_set(store, "posted", "1", 1));
    CHECK_STATUS(cgloo_wait(r, 0, NULL), CGLOO_ETRUNC);
    /* Announcements that arrived first (tags 4 and 5; tag 6 comes after them). */
    cgloo_completion c;
    CHECK_OK(cgloo_recv(e.ctx, small, 16, 1, 6, 0, &c));
    CHECK(c.bytes == 2 && memcmp(small, "ok", 2) == 0);
    CHECK_STATUS(cgloo_recv(e.ctx, small, 16, 1, 4, 0, NULL), CGLOO_ETRUNC);
    int srcs[] = {1};
    CHECK_STATUS(cgloo_recv_any(e.ctx, small, 16, srcs, 1, 5, 0, NULL), CGLOO_ETRUNC);
    /* The connection is still good. */
    CHECK_OK(cgloo_recv(e.ctx, small, 16, 1, 7, 0, &c));
    CHECK(c.bytes == 5 && memcmp(small, "alive", 5) == 0);
    CHECK_OK(cgloo_send(e.ctx, "done", 4, 1, 8, 0));
    free(small);
    mesh_close(e);
    return NULL;
}

static void expect_discard_ready(fake *f, uint32_t send_id)
{
    uint8_t type;
    uint32_t sid, rid;
    uint64_t tag, len;
    fake_read_hdr(f, &type, &sid, &rid, &tag, &len);
    CHECK(type == T_READY && sid == send_id && rid == 0); /* recv id 0: "discard" */
}

static void test_huge_rts(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, rts_real_rank, NULL) == 0);
    fake f = {.rank = 1, .size = 2, .nonce = 42, .fd = -1};
    read_record(0);
    publish_record(1, "127.0.0.1:9", f.nonce);
    fake_handshake(&f, 0);
    void *v;
    size_t n;
    CHECK_OK(cgloo_store_get(store, "posted", 10000, &v, &n));
    cgloo_free(v);
    fake_send_hdr(&f, T_RTS, 1, 0, 1, 1ull << 40);
    expect_discard_ready(&f, 1);
    fake_send_hdr(&f, T_RTS, 2, 0, 4, 1ull << 40);
    fake_send_hdr(&f, T_RTS, 3, 0, 5, UINT64_MAX);
    fake_send_eager(&f, 6, "ok", 2);
    expect_discard_ready(&f, 2);
    expect_discard_ready(&f, 3);
    /* A sender that was told "discard" owes no DATA; the stream goes on with the next message. */
    fake_send_eager(&f, 7, "alive", 5);
    uint8_t type;
    uint32_t sid, rid;
    uint64_t tag, len;
    fake_read_hdr(&f, &type, &sid, &rid, &tag, &len);
    CHECK(type == T_EAGER && tag == 8 && len == 4);
    char done[4];
    recv_all(f.fd, done, 4);
    expect_closed(f.fd);
    close(f.fd);
    pthread_join(th, NULL);
    cgloo_store_destroy(store);
}

/* ---- a hello that never finishes ------------------------------------------------------------ */

/* Real ranks 0 and 1 of 3; the fake rank 2 connects to rank 0 only after the device has dropped
 * the connections that never finished their hello (10 s, HELLO_DEADLINE_MS in device.c). */
static long long slow_rank1_connect_ms;

static void *slow_real_rank(void *arg)
{
    int rank = (int)(intptr_t)arg;
    long long t0 = test_now_ms();
    rank_env e = mesh_connect(store, rank, 3, 30000);
    if (rank == 1)
        slow_rank1_connect_ms = test_now_ms() - t0;
    int mine = rank, theirs = -1;
    CHECK_OK(cgloo_send(e.ctx, &mine, sizeof mine, 1 - rank, 3, 0));
    CHECK_OK(cgloo_recv(e.ctx, &theirs, sizeof theirs, 1 - rank, 3, 0, NULL));
    CHECK(theirs == 1 - rank);
    CHECK_OK(cgloo_send(e.ctx, "bye", 3, 2, 10, 0));
    mesh_close(e);
    return NULL;
}

/* expect_open: nothing arrives and the socket stays open for ms (the device still waits). */
static void expect_open(int fd, int ms)
{
    uint8_t b;
    set_rcvtimeo(fd, ms);
    ssize_t n = recv(fd, &b, 1, 0);
    CHECK(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    set_rcvtimeo(fd, 200);
}

static void test_slow_hello(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    fake f = {.rank = 2, .size = 3, .nonce = 0x5151515151515151ull, .fd = -1};
    publish_record(2, "127.0.0.1:9", f.nonce);
    pthread_t th[2];
    for (intptr_t r = 0; r < 2; r++)
        CHECK(pthread_create(&th[r], NULL, slow_real_rank, (void *)r) == 0);
    record r0 = read_record(0);
    long long t0 = test_now_ms();
    int silent = dial(r0.addr), partial = dial(r0.addr);
    uint8_t b[HELLO_BYTES];
    hello_encode(&(hello_fields){.type = 1, .ctx_id = ctx_id(), .src = 2, .dst = 0, .size = 3}, b);
    send_all(partial, b, 20); /* a third of a hello, then nothing */
    fake f1 = f;
    fake_handshake(&f1, 1); /* rank 1 finishes its connect meanwhile */
    expect_open(silent, 1000);
    /* Rank 0 keeps serving its device while it waits for rank 2; the late hellos go at 10 s. */
    while (test_now_ms() - t0 < 9000)
        test_sleep_ms(100);
    expect_open(partial, 10);
    expect_closed(silent);
    expect_closed(partial);
    CHECK(test_now_ms() - t0 >= 10000);
    close(silent);
    close(partial);
    fake_handshake(&f, 0);
    const fake *fs[] = {&f, &f1};
    for (int i = 0; i < 2; i++) {
        uint8_t type;
        uint32_t sid, rid;
        uint64_t tag, len;
        char bye[3];
        fake_read_hdr(fs[i], &type, &sid, &rid, &tag, &len);
        CHECK(type == T_EAGER && tag == 10 && len == 3);
        recv_all(fs[i]->fd, bye, 3);
        expect_closed(fs[i]->fd);
        close(fs[i]->fd);
    }
    for (int r = 0; r < 2; r++)
        pthread_join(th[r], NULL);
    /* Rank 1 was not held up by the hellos that rank 0 was still waiting for. */
    CHECK(slow_rank1_connect_ms < 8000);
    cgloo_store_destroy(store);
}

/* ---- a flood of connections during collectives ---------------------------------------------- */

#define FLOOD_RANKS 3
#define FLOOD_ROUNDS 300
#define FLOOD_COUNT 1000

static _Atomic int flood_done;

static void flood_rank(int rank, int size, void *arg)
{
    rank_env e = mesh_connect(store, rank, size, 30000);
    char key[32], addr[256];
    snprintf(key, sizeof key, "flood/%d", rank);
    CHECK_OK(cgloo_device_address(e.dev, addr, sizeof addr));
    CHECK_OK(cgloo_store_set(store, key, addr, strlen(addr) + 1));
    int32_t v[FLOOD_COUNT];
    /* Allreduce until rank 0 has seen the flood end (and done FLOOD_ROUNDS at least). */
    for (int round = 0;; round++) {
        for (int i = 0; i < FLOOD_COUNT; i++)
            v[i] = rank * 1000 + i + round;
        CHECK_OK(cgloo_allreduce(e.ctx, v, v, FLOOD_COUNT, CGLOO_INT32, CGLOO_SUM, NULL));
        for (int i = 0; i < FLOOD_COUNT; i++)
            CHECK(v[i] == 3000 + 3 * (i + round)); /* ranks 0, 1, 2: 0 + 1000 + 2000 */
        int32_t stop = rank == 0 && flood_done && round >= FLOOD_ROUNDS;
        CHECK_OK(cgloo_broadcast(e.ctx, &stop, 1, CGLOO_INT32, 0, NULL));
        if (stop)
            break;
    }
    mesh_close(e);
}

static void *flood_ranks(void *arg)
{
    run_ranks(FLOOD_RANKS, flood_rank, NULL);
    return NULL;
}

/* flood opens n connections to addr without waiting for them, some sending garbage. */
static int flood(const char *addr, int *fds, int n)
{
    const char *colon = strrchr(addr, ':');
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(colon + 1))};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int opened = 0;
    uint8_t junk[HELLO_BYTES];
    fill_pattern(junk, sizeof junk, 17);
    for (int i = 0; i < n; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
        if (fd < 0)
            break;
        if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS) {
            close(fd);
            continue;
        }
        if (i % 3 == 0)
            send(fd, junk, sizeof junk, MSG_NOSIGNAL);
        fds[opened++] = fd;
    }
    return opened;
}

static void test_flood_during_collectives(void)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int want = (int)CGLOO_MIN((rlim_t)2000, rl.rlim_cur > 200 ? rl.rlim_cur - 200 : 0);
    CHECK_OK(cgloo_store_hash_create(&store));
    pthread_t th;
    CHECK(pthread_create(&th, NULL, flood_ranks, NULL) == 0);
    void *a0, *a1;
    size_t n;
    CHECK_OK(cgloo_store_get(store, "flood/0", 10000, &a0, &n));
    CHECK_OK(cgloo_store_get(store, "flood/1", 10000, &a1, &n));
    int *fds = malloc(sizeof(int) * (size_t)want);
    int opened = flood(a0, fds, want / 2);
    opened += flood(a1, fds + opened, want - opened);
    cgloo_free(a0);
    cgloo_free(a1);
    fprintf(stderr, "     %d connections opened to ranks 0 and 1\n", opened);
    CHECK(opened > 100);
    test_sleep_ms(200);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    free(fds);
    flood_done = 1;
    pthread_join(th, NULL);
    cgloo_store_destroy(store);
}

/* ---- a flood of silent connections while a rank connects ------------------------------------ */

static void *late_rank1(void *arg)
{
    rank_env e = mesh_connect(store, 1, 2, 30000);
    CHECK_OK(cgloo_send(e.ctx, "late", 4, 0, 1, 0));
    mesh_close(e);
    return NULL;
}

static void *waiting_rank0(void *arg)
{
    rank_env e = mesh_connect(store, 0, 2, 30000);
    char got[4];
    CHECK_OK(cgloo_recv(e.ctx, got, sizeof got, 1, 1, 0, NULL));
    CHECK(memcmp(got, "late", 4) == 0);
    mesh_close(e);
    return NULL;
}

/* More silent connections than the device keeps hellos for (1024) reach rank 0 while it waits
 * for rank 1; rank 1 dials after them and must still get through (the device closes the
 * oldest silent ones to make room, not the newcomer). */
static void test_flood_during_connect(void)
{
    struct rlimit rl;
    CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    int want = (int)CGLOO_MIN((rlim_t)1500, rl.rlim_cur > 200 ? rl.rlim_cur - 200 : 0);
    CHECK_OK(cgloo_store_hash_create(&store));
    pthread_t th0, th1;
    CHECK(pthread_create(&th0, NULL, waiting_rank0, NULL) == 0);
    record r0 = read_record(0);
    int *fds = malloc(sizeof(int) * (size_t)want);
    int opened = flood(r0.addr, fds, want);
    fprintf(stderr, "     %d connections opened to rank 0\n", opened);
    CHECK(opened > 1100);
    test_sleep_ms(500); /* rank 0's device accepts them */
    CHECK(pthread_create(&th1, NULL, late_rank1, NULL) == 0);
    pthread_join(th1, NULL);
    pthread_join(th0, NULL);
    for (int i = 0; i < opened; i++)
        close(fds[i]);
    free(fds);
    cgloo_store_destroy(store);
}

static const test_case tests[] = {
    {"bad_hellos", test_bad_hellos, 30},
    {"bad_acks", test_bad_acks, 30},
    {"bad_messages", test_bad_messages, 60},
    {"error_names_the_peer", test_error_names_the_peer, 30},
    {"huge_rts", test_huge_rts, 30},
    {"slow_hello", test_slow_hello, 60},
    {"flood_during_collectives", test_flood_during_collectives, 60},
    {"flood_during_connect", test_flood_during_connect, 60},
};
TEST_MAIN(tests)
