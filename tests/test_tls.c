/*
 * TLS on the TCP transport, with certificates made at test time by the openssl command
 * (tls_certs.sh): collectives over TLS with payloads large enough for partial writes and
 * records left pending in the session; a peer's first message that arrives in the same read as
 * the handshake's last record, on either side; proof that the bytes on a real connection are
 * encrypted (a relay between the dialler and the listener captures them, and a known payload
 * must not appear in them, while it does without TLS); and the peers that must not join: one
 * without TLS, one whose certificate comes from another CA, an expired one, and one naming
 * another host when host names are checked. Skips (77) in a build without OpenSSL or without
 * the openssl command.
 */
#define _GNU_SOURCE /* memmem */
#include "mesh.h"
#include "transport/tcp/tcp.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static char certs[512]; /* the directory tls_certs.sh filled */
static char paths[16][640];
static int npaths;

static const char *cert_path(const char *name)
{
    char *p = paths[npaths++ % 16];
    snprintf(p, sizeof paths[0], "%s/%s", certs, name);
    return p;
}

/* tls_of gives the attribute for a certificate name from tls_certs.sh ("good", "stranger"). */
static cgloo_tls_attr tls_of(const char *name, int verify_host)
{
    char pem[64], key[64];
    snprintf(pem, sizeof pem, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    return (cgloo_tls_attr){.cert = cert_path(pem),
                            .key = cert_path(key),
                            .ca = cert_path("ca.pem"),
                            .verify_host = verify_host};
}

/* ---- a world of ranks as threads, each with its own device attribute -------------------- */

typedef struct rank_spec {
    cgloo_tcp_attr tcp;
    cgloo_tls_attr tls;
    bool use_tls;
    int rc; /* what connect returned */
    char detail[600];
} rank_spec;

typedef struct world {
    cgloo_store *store;
    rank_spec spec[4];
    int timeout_ms;
    const char *secret; /* the job secret every rank proves (NULL: none) */
    void (*body)(cgloo_context *ctx, int rank, int size, void *arg);
    void *arg;
} world;

static void world_rank(int rank, int size, void *arg)
{
    world *w = arg;
    rank_spec *s = &w->spec[rank];
    s->tcp.hostname = "127.0.0.1";
    s->tcp.tls = s->use_tls ? &s->tls : NULL;
    cgloo_device *dev = NULL;
    CHECK_OK(cgloo_device_tcp_create(&s->tcp, &dev));
    cgloo_context_attr attr = {.timeout_ms = w->timeout_ms, .name = "tls", .secret = w->secret};
    cgloo_context *ctx;
    CHECK_OK(cgloo_context_create(rank, size, &attr, &ctx));
    s->rc = cgloo_context_connect(ctx, w->store, dev);
    cgloo_context_last_error(ctx, s->detail, sizeof s->detail);
    if (s->rc == CGLOO_OK && w->body)
        w->body(ctx, rank, size, w->arg);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
}

static void world_run(world *w, int size)
{
    CHECK_OK(cgloo_store_hash_create(&w->store));
    run_ranks(size, world_rank, w);
    cgloo_store_destroy(w->store);
}

static void expect_all_ok(const world *w, int size)
{
    for (int r = 0; r < size; r++)
        if (w->spec[r].rc != CGLOO_OK)
            harness_fail(__FILE__, __LINE__, "connect over TLS", w->spec[r].detail);
}

/* ---- collectives over TLS ------------------------------------------------------------------- */

static void allreduce_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    /* 16 MiB: many partial writes per send, and reads that stop inside a record. */
    const size_t counts[] = {1, 1000, 4u << 20};
    const char *algs[] = {"ring", "halving_doubling"};
    for (size_t a = 0; a < 2; a++) {
        for (size_t k = 0; k < 3; k++) {
            size_t n = counts[k];
            float *buf = malloc(n * sizeof *buf);
            CHECK(buf);
            for (size_t i = 0; i < n; i++)
                buf[i] = (float)((i % 1000) + rank);
            cgloo_coll_opts o = {.algorithm = algs[a]};
            CHECK_OK(cgloo_allreduce(ctx, buf, buf, n, CGLOO_FLOAT32, CGLOO_SUM, &o));
            for (size_t i = 0; i < n; i++) {
                float want = (float)size * (float)(i % 1000) + (float)(size * (size - 1) / 2);
                if (buf[i] != want) {
                    harness_fail(__FILE__, __LINE__, "allreduce over TLS", algs[a]);
                    break;
                }
            }
            free(buf);
        }
    }
    /* Point-to-point both ways at once, 9 MiB, each rank with its successor. */
    size_t len = 9u << 20;
    uint8_t *out = malloc(len), *in = malloc(len);
    CHECK(out && in);
    fill_pattern(out, len, (uint32_t)rank);
    int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    cgloo_request *sr, *rr;
    CHECK_OK(cgloo_irecv(ctx, in, len, prev, 7, &rr));
    CHECK_OK(cgloo_isend(ctx, out, len, next, 7, &sr));
    CHECK_OK(cgloo_wait(sr, 0, NULL));
    CHECK_OK(cgloo_wait(rr, 0, NULL));
    CHECK(check_pattern(in, len, (uint32_t)prev));
    free(out);
    free(in);
}

static void test_collectives(void)
{
    for (int size = 2; size <= 4; size++) {
        world w = {.timeout_ms = 60000, .body = allreduce_body};
        for (int r = 0; r < size; r++)
            w.spec[r] = (rank_spec){.tls = tls_of("good", 1), .use_tls = true};
        world_run(&w, size);
        expect_all_ok(&w, size);
    }
}

/* ---- the relay: a TCP forwarder between the dialler and the listener ------------------------ */

typedef struct relay {
    int listen_fd, port;
    int target_port; /* rank 0's real port */
    bool coalesce;   /* forward TLS records two at a time (relay_hold) */
    uint8_t *seen;   /* every byte, both directions */
    size_t seen_len, seen_cap;
    pthread_t thread;
} relay;

static int listen_loopback(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && listen(fd, 4) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    *port = ntohs(a.sin_port);
    return fd;
}

static void relay_keep(relay *r, const uint8_t *p, size_t n)
{
    if (r->seen_len + n > r->seen_cap) {
        r->seen_cap = (r->seen_len + n) * 2;
        r->seen = realloc(r->seen, r->seen_cap);
        CHECK(r->seen);
    }
    memcpy(r->seen + r->seen_len, p, n);
    r->seen_len += n;
}

/* A coalescing relay holds what one side sends until two TLS records are whole (or HOLD_MS
 * passed), then forwards them in one write: the receiver then finds a record and the next one in
 * the same read, as a loaded machine makes happen by chance when a peer sends its first message
 * right behind its last handshake record. */
#define HOLD_MS 300

typedef struct held {
    uint8_t buf[1 << 17];
    size_t len;
    long long since; /* when the oldest byte held arrived */
} held;

/* whole_records counts the complete TLS records (5-byte header, 16-bit length) at the front. */
static int whole_records(const uint8_t *p, size_t len)
{
    int n = 0;
    for (size_t off = 0; off + 5 <= len; n++) {
        off += 5 + ((size_t)p[off + 3] << 8 | p[off + 4]);
        if (off > len)
            break;
    }
    return n;
}

static void relay_forward(held *h, int to)
{
    for (size_t off = 0; off < h->len;) {
        ssize_t w = write(to, h->buf + off, h->len - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    h->len = 0;
}

/* relay_hold decides whether what h holds may wait for more. */
static bool relay_hold(const relay *r, const held *h)
{
    return r->coalesce && h->len > 0 && whole_records(h->buf, h->len) < 2 &&
           test_now_ms() - h->since < HOLD_MS;
}

/* relay_wait_ms is how long the relay may sleep: until the oldest held bytes are due. */
static int relay_wait_ms(const held *h)
{
    int ms = 30000;
    for (int i = 0; i < 2; i++)
        if (h[i].len > 0)
            ms = (int)CGLOO_MAX(0, CGLOO_MIN(ms, h[i].since + HOLD_MS - test_now_ms()));
    return ms;
}

/* relay_pump forwards both ways until both sides have closed. */
static void *relay_pump(void *arg)
{
    relay *r = arg;
    int a = accept(r->listen_fd, NULL, NULL);
    int b = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in t = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)r->target_port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (a < 0 || b < 0 || connect(b, (struct sockaddr *)&t, sizeof t) != 0)
        return NULL;
    int fds[2] = {a, b};
    bool open[2] = {true, true};
    static held h[2];
    h[0].len = h[1].len = 0;
    while (open[0] || open[1]) {
        struct pollfd p[2] = {{.fd = open[0] ? a : -1, .events = POLLIN},
                              {.fd = open[1] ? b : -1, .events = POLLIN}};
        if (poll(p, 2, relay_wait_ms(h)) < 0)
            break;
        for (int i = 0; i < 2; i++) {
            if (p[i].revents) {
                if (h[i].len == sizeof h[i].buf)
                    relay_forward(&h[i], fds[1 - i]);
                ssize_t n = read(fds[i], h[i].buf + h[i].len, sizeof h[i].buf - h[i].len);
                if (n <= 0) {
                    relay_forward(&h[i], fds[1 - i]);
                    open[i] = false;
                    shutdown(fds[1 - i], SHUT_WR);
                    continue;
                }
                if (h[i].len == 0)
                    h[i].since = test_now_ms();
                relay_keep(r, h[i].buf + h[i].len, (size_t)n);
                h[i].len += (size_t)n;
            }
            if (!relay_hold(r, &h[i]))
                relay_forward(&h[i], fds[1 - i]);
        }
    }
    close(a);
    close(b);
    return NULL;
}

/* A payload no TLS record would carry by chance. */
#define SECRET "cgloo-secret-payload-7f3a9c"

static void secret_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    /* An eager message and a large one (RTS, READY, DATA): both paths of the pair. */
    size_t lens[] = {sizeof SECRET * 4, 1u << 20};
    for (size_t k = 0; k < 2; k++) {
        char *buf = malloc(lens[k]);
        CHECK(buf);
        for (size_t i = 0; i < lens[k]; i++)
            buf[i] = SECRET[i % (sizeof SECRET - 1)];
        if (rank == 1) {
            CHECK_OK(cgloo_send(ctx, buf, lens[k], 0, k, 0));
        } else {
            memset(buf, 0, lens[k]);
            CHECK_OK(cgloo_recv(ctx, buf, lens[k], 1, k, 0, NULL));
            CHECK(buf[0] == SECRET[0] &&
                  buf[lens[k] - 1] == SECRET[(lens[k] - 1) % (sizeof SECRET - 1)]);
        }
        free(buf);
    }
}

/* world_run_relayed runs two ranks of w, rank 1 dialling rank 0 through relay r (whose
 * coalesce the caller set); returns once both ranks and the relay are done. */
static void world_run_relayed(world *w, relay *r)
{
    r->listen_fd = listen_loopback(&r->port);
    int probe_port;
    close(listen_loopback(&probe_port)); /* a free port for rank 0 to listen on */
    r->target_port = probe_port;
    char advertise[64];
    snprintf(advertise, sizeof advertise, "127.0.0.1:%d", r->port);
    w->spec[0].tcp = (cgloo_tcp_attr){.port_min = probe_port, .advertise = advertise};
    CHECK(pthread_create(&r->thread, NULL, relay_pump, r) == 0);
    world_run(w, 2);
    pthread_join(r->thread, NULL);
    close(r->listen_fd);
}

/* run_relayed runs two ranks, rank 1 dialling rank 0 through the relay; returns whether the
 * secret was seen on the wire, and how many bytes crossed. */
static bool run_relayed(bool tls, size_t *crossed)
{
    relay r = {0};
    world w = {.timeout_ms = 20000, .body = secret_body};
    for (int k = 0; k < 2; k++)
        w.spec[k] = (rank_spec){.tls = tls_of("good", 1), .use_tls = tls};
    world_run_relayed(&w, &r);
    expect_all_ok(&w, 2);
    bool found = memmem(r.seen, r.seen_len, SECRET, sizeof SECRET - 1) != NULL;
    *crossed = r.seen_len;
    free(r.seen);
    return found;
}

static void test_bytes_encrypted(void)
{
    size_t plain_bytes, tls_bytes;
    /* Without TLS the relay must see the payload, or it would prove nothing with TLS. */
    CHECK(run_relayed(false, &plain_bytes));
    CHECK(plain_bytes > (1u << 20));
    CHECK(!run_relayed(true, &tls_bytes));
    CHECK(tls_bytes > (1u << 20));
}

/* ---- records that arrive with the handshake's last one ----------------------------------- */

/* first_message_body: each rank sends its peer a small message at once after connecting, and
 * posts that send before it waits for anything, as rank_program's first round does. */
static void first_message_body(cgloo_context *ctx, int rank, int size, void *arg)
{
    int peer = 1 - rank, got = -1, mine = 100 + rank;
    cgloo_request *rr, *sr;
    CHECK_OK(cgloo_irecv(ctx, &got, sizeof got, peer, 0, &rr));
    CHECK_OK(cgloo_isend(ctx, &mine, sizeof mine, peer, 0, &sr));
    CHECK_OK(cgloo_wait(sr, 0, NULL));
    if (cgloo_wait(rr, 0, NULL) != CGLOO_OK) {
        char detail[600];
        cgloo_context_last_error(ctx, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__,
                     rank ? "the dialler's first receive" : "the listener's first receive", detail);
    }
    CHECK(got == 100 + peer);
    /* Nothing more may arrive before both receives are done (a close would send BYE, whose
     * arrival would read the stranded message too). */
    pthread_barrier_wait(arg);
}

/* The peer's first message arrives in the same read as the last handshake record (the relay
 * makes it so), and goes into the session's buffer, where no poll reports it; then the rank
 * posts a send before it reads. With a secret the listener meets it (the dialler's message
 * rides with its proof), without one the dialler (the listener's with its acknowledgement). */
static void test_first_message_with_handshake(void)
{
    pthread_barrier_t both;
    CHECK(pthread_barrier_init(&both, NULL, 2) == 0);
    for (int with_secret = 1; with_secret >= 0; with_secret--) {
        relay r = {.coalesce = true};
        world w = {.timeout_ms = 30000,
                   .body = first_message_body,
                   .arg = &both,
                   .secret = with_secret ? "first-message-secret" : NULL};
        for (int k = 0; k < 2; k++)
            w.spec[k] = (rank_spec){.tls = tls_of("good", 1), .use_tls = true};
        world_run_relayed(&w, &r);
        expect_all_ok(&w, 2);
        free(r.seen);
    }
    pthread_barrier_destroy(&both);
}

/* ---- peers that must not join --------------------------------------------------------------- */

/* expect_refused runs two ranks that must both fail to connect, quickly, and the side named
 * must say why with `words` (either side when who is -1). */
static void expect_refused(world *w, int who, const char *words)
{
    long long t0 = test_now_ms();
    world_run(w, 2);
    for (int r = 0; r < 2; r++)
        if (w->spec[r].rc == CGLOO_OK)
            harness_fail(__FILE__, __LINE__, "a peer that must be refused connected", words);
    bool said = false;
    for (int r = 0; r < 2; r++)
        if ((who < 0 || who == r) && strstr(w->spec[r].detail, words))
            said = true;
    if (!said) {
        char both[1300];
        snprintf(both, sizeof both, "expected '%s'; rank 0: %s | rank 1: %s", words,
                 w->spec[0].detail, w->spec[1].detail);
        harness_fail(__FILE__, __LINE__, "the error names why", both);
    }
    CHECK(test_now_ms() - t0 < 4 * w->timeout_ms); /* no hang */
}

static world pair_world(cgloo_tls_attr a, bool tls_a, cgloo_tls_attr b, bool tls_b)
{
    world w = {.timeout_ms = 3000};
    w.spec[0] = (rank_spec){.tls = a, .use_tls = tls_a};
    w.spec[1] = (rank_spec){.tls = b, .use_tls = tls_b};
    return w;
}

static void test_plaintext_refused(void)
{
    /* A plaintext dialler (rank 1) against a TLS listener, and the other way round. */
    world w = pair_world(tls_of("good", 0), true, tls_of("good", 0), false);
    expect_refused(&w, 0, "TLS handshake failed");
    w = pair_world(tls_of("good", 0), false, tls_of("good", 0), true);
    expect_refused(&w, 1, "TLS handshake with rank 0");
}

static void test_other_ca_refused(void)
{
    /* The stranger trusts our CA, but its own certificate comes from another one. */
    world w = pair_world(tls_of("good", 0), true, tls_of("stranger", 0), true);
    expect_refused(&w, 0, "certificate");
    w = pair_world(tls_of("stranger", 0), true, tls_of("good", 0), true);
    expect_refused(&w, 1, "certificate refused");
}

static void test_expired_refused(void)
{
    world w = pair_world(tls_of("expired", 0), true, tls_of("good", 0), true);
    expect_refused(&w, 1, "expired");
}

static void test_host_names(void)
{
    /* A certificate for another host passes without the check (so the check is what refuses). */
    world ok = pair_world(tls_of("good", 0), true, tls_of("wrongname", 0), true);
    world_run(&ok, 2);
    expect_all_ok(&ok, 2);
    /* The listener checks the dialler's name; the dialler checks the listener's. */
    world w = pair_world(tls_of("good", 1), true, tls_of("wrongname", 0), true);
    expect_refused(&w, 0, "does not name its host 127.0.0.1");
    w = pair_world(tls_of("wrongname", 0), true, tls_of("good", 1), true);
    expect_refused(&w, 1, "certificate refused");
}

static void test_bad_settings(void)
{
    cgloo_tls_attr t = tls_of("good", 0);
    t.key = NULL;
    cgloo_tcp_attr a = {.hostname = "127.0.0.1", .tls = &t};
    cgloo_device *dev = NULL;
    char detail[512];
    CHECK_STATUS(cgloo_device_tcp_create(&a, &dev), CGLOO_EINVAL);
    cgloo_last_error(detail, sizeof detail);
    CHECK(strstr(detail, "missing: key"));
    t = tls_of("good", 0);
    t.ca = cert_path("no-such-ca.pem");
    CHECK_STATUS(cgloo_device_tcp_create(&a, &dev), CGLOO_EINVAL);
    cgloo_last_error(detail, sizeof detail);
    CHECK(strstr(detail, "no-such-ca.pem"));
    t = tls_of("good", 0);
    t.key = cert_path("stranger.key"); /* another certificate's key */
    CHECK_STATUS(cgloo_device_tcp_create(&a, &dev), CGLOO_EINVAL);
    /* The variables: a partial set is refused, not taken for "no TLS". */
    setenv("CGLOO_TLS_CERT", cert_path("good.pem"), 1);
    CHECK_STATUS(cgloo_device_tcp_create(&(cgloo_tcp_attr){.hostname = "127.0.0.1"}, &dev),
                 CGLOO_EINVAL);
    cgloo_last_error(detail, sizeof detail);
    CHECK(strstr(detail, "CGLOO_TLS_KEY"));
    setenv("CGLOO_TLS_KEY", cert_path("good.key"), 1);
    setenv("CGLOO_TLS_CA", cert_path("ca.pem"), 1);
    CHECK_OK(cgloo_device_tcp_create(&(cgloo_tcp_attr){.hostname = "127.0.0.1"}, &dev));
    CHECK(cgloo__tcp_device_tls(dev) != NULL);
    cgloo_device_destroy(dev);
}

/* ---- a peer that vanishes ----------------------------------------------------------------- */

/* connect_alone connects `rank` of 2 over TLS through a file store (the peer is a process). */
static cgloo_context *connect_alone(const char *dir, int rank, cgloo_device **dev)
{
    cgloo_store *st;
    CHECK_OK(cgloo_store_file_create(dir, "vanish", &st));
    cgloo_tls_attr tls = tls_of("good", 0);
    cgloo_tcp_attr a = {.hostname = "127.0.0.1", .tls = &tls};
    CHECK_OK(cgloo_device_tcp_create(&a, dev));
    cgloo_context *ctx;
    cgloo_context_attr attr = {.timeout_ms = 20000, .name = "vanish"};
    CHECK_OK(cgloo_context_create(rank, 2, &attr, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, st, *dev));
    cgloo_store_destroy(st);
    return ctx;
}

static void test_peer_vanishes(void)
{
    /* A peer that leaves in the middle of a large message, with bytes unread (its kernel
     * resets the connection while this side is still writing): the send fails, nothing hangs,
     * and nothing here dies of SIGPIPE (the sessions send with MSG_NOSIGNAL; the harness
     * ignores SIGPIPE, so it is put back first). */
    signal(SIGPIPE, SIG_DFL); /* the harness ignores it; a library must not rely on that */
    char dir[600];
    snprintf(dir, sizeof dir, "%s/vanish", certs);
    size_t len = 64u << 20;
    pid_t child = fork();
    CHECK(child >= 0);
    if (child == 0) {
        cgloo_device *dev;
        cgloo_context *ctx = connect_alone(dir, 1, &dev);
        void *buf = malloc(len);
        cgloo_request *r;
        if (!buf || cgloo_irecv(ctx, buf, len, 0, 1, &r) != CGLOO_OK)
            _exit(1);
        cgloo_wait(r, 20, NULL); /* times out with the transfer under way */
        test_sleep_ms(300);      /* reading nothing: the sender fills the socket and waits */
        _exit(0);
    }
    cgloo_device *dev;
    cgloo_context *ctx = connect_alone(dir, 0, &dev);
    void *buf = calloc(1, len);
    CHECK(buf);
    int rc = cgloo_send(ctx, buf, len, 1, 1, 20000);
    CHECK(rc != CGLOO_OK); /* and this process is still here to say so */
    int status;
    CHECK(waitpid(child, &status, 0) == child && WIFEXITED(status) && WEXITSTATUS(status) == 0);
    free(buf);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
}

/* ---- the TCP store over TLS ------------------------------------------------------------- */

static void set_tls_env(const char *name)
{
    char pem[64], key[64];
    snprintf(pem, sizeof pem, "%s.pem", name);
    snprintf(key, sizeof key, "%s.key", name);
    setenv("CGLOO_TLS_CERT", cert_path(pem), 1);
    setenv("CGLOO_TLS_KEY", cert_path(key), 1);
    setenv("CGLOO_TLS_CA", cert_path("ca.pem"), 1);
    setenv("CGLOO_TLS_VERIFY_HOST", "1", 1);
}

static void unset_tls_env(void)
{
    unsetenv("CGLOO_TLS_CERT");
    unsetenv("CGLOO_TLS_KEY");
    unsetenv("CGLOO_TLS_CA");
    unsetenv("CGLOO_TLS_VERIFY_HOST");
}

static void store_roundtrip(int port)
{
    cgloo_store *st;
    CHECK_OK(cgloo_store_tcp_connect("127.0.0.1", port, 5000, &st));
    CHECK_OK(cgloo_store_set(st, "k", "v1", 2));
    void *v = NULL;
    size_t n = 0;
    CHECK_OK(cgloo_store_get(st, "k", 5000, &v, &n));
    CHECK(n == 2 && memcmp(v, "v1", 2) == 0);
    cgloo_free(v);
    cgloo_store_destroy(st);
}

static void test_store(void)
{
    set_tls_env("good");
    cgloo_store_server *srv;
    CHECK_OK(cgloo_store_server_start("127.0.0.1", 0, &srv));
    int port = cgloo_store_server_port(srv);
    /* A client that connects and never says anything must not hold up the others. */
    int mute = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(connect(mute, (struct sockaddr *)&a, sizeof a) == 0);
    store_roundtrip(port);
    /* A client with a certificate from another CA is refused. */
    set_tls_env("stranger");
    cgloo_store *st = NULL;
    char detail[512];
    CHECK(cgloo_store_tcp_connect("127.0.0.1", port, 2000, &st) != CGLOO_OK);
    /* So is one without TLS. */
    unset_tls_env();
    CHECK(cgloo_store_tcp_connect("127.0.0.1", port, 2000, &st) != CGLOO_OK);
    set_tls_env("good");
    store_roundtrip(port); /* the server is still fine */
    close(mute);
    cgloo_store_server_stop(srv);
    /* A TLS client meeting a plaintext server says so, at once. */
    unset_tls_env();
    CHECK_OK(cgloo_store_server_start("127.0.0.1", 0, &srv));
    set_tls_env("good");
    long long t0 = test_now_ms();
    CHECK_STATUS(cgloo_store_tcp_connect("127.0.0.1", cgloo_store_server_port(srv), 10000, &st),
                 CGLOO_EPROTO);
    cgloo_last_error(detail, sizeof detail);
    CHECK(strstr(detail, "TLS handshake"));
    CHECK(test_now_ms() - t0 < 8000);
    cgloo_store_server_stop(srv);
}

static const test_case tests[] = {
    {"store", test_store, 60},
    {"peer_vanishes", test_peer_vanishes, 60},
    {"collectives", test_collectives, 240},
    {"bytes_encrypted", test_bytes_encrypted, 120},
    {"first_message_with_handshake", test_first_message_with_handshake, 120},
    {"plaintext_refused", test_plaintext_refused, 60},
    {"other_ca_refused", test_other_ca_refused, 60},
    {"expired_refused", test_expired_refused, 60},
    {"host_names", test_host_names, 60},
    {"bad_settings", test_bad_settings, 30},
};

/* skip_reason makes the certificates, or says why the tests cannot run here. */
static const char *skip_reason(void)
{
    cgloo__tls_config *cfg = NULL;
    cgloo__tls_files none = {.from = "test"};
    if (cgloo__tls_config_create(&none, &cfg) == CGLOO_ENOTSUP)
        return "skipped: install libssl-dev (and openssl)";
    if (system("openssl version >/dev/null 2>&1") != 0)
        return "skipped: install openssl (and libssl-dev)";
    snprintf(certs, sizeof certs, "%s", test_tmpdir());
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "%s '%s'", TLS_CERTS_SH, certs);
    if (system(cmd) != 0) {
        fprintf(stderr, "tls_certs.sh failed\n");
        exit(1);
    }
    return NULL;
}

int main(int argc, char **argv)
{
    const char *why = skip_reason();
    if (why) {
        printf("%s\n", why);
        return 77;
    }
    return harness_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
