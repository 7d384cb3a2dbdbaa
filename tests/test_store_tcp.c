/* The TCP store: a server started in-process on an ephemeral port and clients talking to it.
 * Covers every op, timeouts, odd keys, empty and large values, many threads on many handles and
 * on one shared handle, atomic counters, IPv6, raw sockets sending bad bytes, a server that
 * stops under a blocked client, connecting where nothing listens, and store URLs. */
#define _GNU_SOURCE
#include "harness.h"
#include "store/tcp_store_proto.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static cgloo_store_server *server;
static int port;

static void start_server(void)
{
    CHECK_OK(cgloo_store_server_start(NULL, 0, &server));
    port = cgloo_store_server_port(server);
    CHECK(port > 0 && port < 65536);
}

static cgloo_store *client(void)
{
    cgloo_store *s = NULL;
    CHECK_OK(cgloo_store_tcp_connect("127.0.0.1", port, 5000, &s));
    return s;
}

/* expect_value gets key and compares it with want. */
static void expect_value(cgloo_store *s, const char *key, const void *want, size_t want_len)
{
    void *v = NULL;
    size_t n = 0;
    CHECK_OK(cgloo_store_get(s, key, 2000, &v, &n));
    CHECK(n == want_len);
    CHECK(want_len == 0 || memcmp(v, want, n) == 0);
    CHECK(((char *)v)[n] == '\0');
    cgloo_free(v);
}

static void test_ops(void)
{
    start_server();
    cgloo_store *s = client();
    CHECK_OK(cgloo_store_set(s, "a", "hello", 5));
    expect_value(s, "a", "hello", 5);
    CHECK_OK(cgloo_store_set(s, "a", "bye", 3));
    expect_value(s, "a", "bye", 3);

    const char *keys[] = {"a", "b"};
    int present = -1;
    CHECK_OK(cgloo_store_check(s, keys, 2, &present));
    CHECK(present == 0);
    CHECK_OK(cgloo_store_set(s, "b", "B", 1));
    CHECK_OK(cgloo_store_check(s, keys, 2, &present));
    CHECK(present == 1);
    CHECK_OK(cgloo_store_wait(s, keys, 2, 1000));

    void *vals[2] = {NULL, NULL};
    size_t lens[2] = {0, 0};
    CHECK_OK(cgloo_store_multi_get(s, keys, 2, 1000, vals, lens));
    CHECK(lens[0] == 3 && memcmp(vals[0], "bye", 3) == 0);
    CHECK(lens[1] == 1 && memcmp(vals[1], "B", 2) == 0);
    cgloo_free(vals[0]);
    cgloo_free(vals[1]);

    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "n", 5, &r));
    CHECK(r == 5);
    CHECK_OK(cgloo_store_add(s, "n", -7, &r));
    CHECK(r == -2);
    expect_value(s, "n", "-2", 2);
    CHECK_STATUS(cgloo_store_add(s, "a", 1, &r), CGLOO_ESTORE);
    CHECK_OK(cgloo_store_add(s, "n", INT64_MAX, &r));
    CHECK(r == INT64_MAX - 2);

    CHECK_OK(cgloo_store_delete(s, "a"));
    CHECK_OK(cgloo_store_delete(s, "a"));
    CHECK_OK(cgloo_store_check(s, keys, 1, &present));
    CHECK(present == 0);
    CHECK_OK(cgloo_store_add(s, "a", 1, &r));
    CHECK(r == 1);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

static void test_timeouts(void)
{
    start_server();
    cgloo_store *s = client();
    void *v = NULL;
    size_t n = 0;
    int64_t t0 = now_ms();
    CHECK_STATUS(cgloo_store_get(s, "missing", 300, &v, &n), CGLOO_ETIMEDOUT);
    int64_t took = now_ms() - t0;
    CHECK(took >= 280 && took < 2500);
    CHECK(v == NULL);

    CHECK_OK(cgloo_store_set(s, "x", "1", 1));
    const char *keys[] = {"x", "y"};
    t0 = now_ms();
    CHECK_STATUS(cgloo_store_wait(s, keys, 2, 200), CGLOO_ETIMEDOUT);
    took = now_ms() - t0;
    CHECK(took >= 180 && took < 2500);
    void *vals[2] = {NULL, NULL};
    size_t lens[2];
    CHECK_STATUS(cgloo_store_multi_get(s, keys, 2, 100, vals, lens), CGLOO_ETIMEDOUT);
    CHECK(vals[0] == NULL && vals[1] == NULL);
    /* The connection is still in step after a server-side timeout. */
    expect_value(s, "x", "1", 1);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

static void *set_later(void *arg)
{
    cgloo_store *s = client();
    usleep(200 * 1000);
    CHECK_OK(cgloo_store_set(s, (const char *)arg, "late", 4));
    cgloo_store_destroy(s);
    return NULL;
}

static void test_get_waits(void)
{
    start_server();
    cgloo_store *s = client();
    pthread_t th;
    pthread_create(&th, NULL, set_later, "later");
    int64_t t0 = now_ms();
    expect_value(s, "later", "late", 4);
    int64_t took = now_ms() - t0;
    CHECK(took >= 150 && took < 2500);
    pthread_join(th, NULL);

    pthread_create(&th, NULL, set_later, "later2");
    const char *keys[] = {"later", "later2"};
    void *vals[2];
    size_t lens[2];
    CHECK_OK(cgloo_store_multi_get(s, keys, 2, 3000, vals, lens));
    CHECK(lens[0] == 4 && lens[1] == 4 && memcmp(vals[1], "late", 4) == 0);
    cgloo_free(vals[0]);
    cgloo_free(vals[1]);
    pthread_join(th, NULL);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

static void test_odd_keys(void)
{
    start_server();
    cgloo_store *s = client();
    char big[CGLOO_STORE_KEY_MAX + 2];
    memset(big, 'k', sizeof big - 1);
    big[CGLOO_STORE_KEY_MAX] = '\0'; /* exactly the longest key */
    big[0] = (char)0xff;
    big[CGLOO_STORE_KEY_MAX - 1] = (char)0xfe;
    const char *keys[] = {"a/b/c", "/", "with space", " ", "\xff\xfe\x01", big, "%00"};
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char val[16];
        snprintf(val, sizeof val, "v%zu", i);
        CHECK_OK(cgloo_store_set(s, keys[i], val, strlen(val)));
    }
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) {
        char val[16];
        snprintf(val, sizeof val, "v%zu", i);
        expect_value(s, keys[i], val, strlen(val));
    }
    int present = 0;
    CHECK_OK(cgloo_store_check(s, keys, sizeof keys / sizeof keys[0], &present));
    CHECK(present == 1);
    /* Keys that differ only in their last byte are different keys. */
    big[CGLOO_STORE_KEY_MAX - 1] = 'x';
    CHECK_OK(cgloo_store_check(s, (const char *const[]){big}, 1, &present));
    CHECK(present == 0);
    big[CGLOO_STORE_KEY_MAX] = 'k'; /* one byte too long */
    CHECK_STATUS(cgloo_store_set(s, big, "x", 1), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_set(s, "", "x", 1), CGLOO_EINVAL);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

static void fill_pattern(uint8_t *p, size_t n, uint32_t seed)
{
    for (size_t i = 0; i < n; i++) {
        seed = seed * 1103515245u + 12345u;
        p[i] = (uint8_t)(seed >> 16);
    }
}

static void test_values(void)
{
    start_server();
    cgloo_store *s = client();
    CHECK_OK(cgloo_store_set(s, "empty", NULL, 0));
    expect_value(s, "empty", "", 0);
    CHECK_OK(cgloo_store_set(s, "nul", "\0\0\0", 3));
    expect_value(s, "nul", "\0\0\0", 3);

    size_t big = 6u * 1024 * 1024 + 7;
    uint8_t *data = malloc(big);
    CHECK(data != NULL);
    fill_pattern(data, big, 42);
    CHECK_OK(cgloo_store_set(s, "big", data, big));
    expect_value(s, "big", data, big);
    CHECK_OK(cgloo_store_set(s, "big2", data, big / 2));
    const char *keys[] = {"big", "empty", "big2"};
    void *vals[3];
    size_t lens[3];
    CHECK_OK(cgloo_store_multi_get(s, keys, 3, 5000, vals, lens));
    CHECK(lens[0] == big && memcmp(vals[0], data, big) == 0);
    CHECK(lens[1] == 0 && lens[2] == big / 2 && memcmp(vals[2], data, big / 2) == 0);
    for (int i = 0; i < 3; i++)
        cgloo_free(vals[i]);
    free(data);
    CHECK_STATUS(cgloo_store_set(s, "huge", "x", (size_t)CGLOO_STORE_VALUE_MAX + 1), CGLOO_EINVAL);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

/* Each rank has its own handle: publish a key, then read every other rank's. */
static void rank_exchange(int rank, int size, void *arg)
{
    cgloo_store *s = arg ? arg : client();
    char key[32], val[32];
    snprintf(key, sizeof key, "rank/%d", rank);
    snprintf(val, sizeof val, "value-%d", rank);
    CHECK_OK(cgloo_store_set(s, key, val, strlen(val)));
    int64_t r;
    CHECK_OK(cgloo_store_add(s, "arrived", 1, &r));
    for (int p = 0; p < size; p++) {
        snprintf(key, sizeof key, "rank/%d", (rank + p) % size);
        snprintf(val, sizeof val, "value-%d", (rank + p) % size);
        expect_value(s, key, val, strlen(val));
    }
    if (!arg)
        cgloo_store_destroy(s);
}

static void test_waiters_own_handles(void)
{
    start_server();
    run_ranks(16, rank_exchange, NULL);
    cgloo_store *s = client();
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "arrived", 0, &r));
    CHECK(r == 16);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

/* Threads sharing one handle take turns (one request at a time), so the keys they wait on are
 * set through another handle. */
static void shared_waiter(int rank, int size, void *arg)
{
    cgloo_store *s = arg;
    char key[32], val[32];
    snprintf(key, sizeof key, "go/%d", rank);
    snprintf(val, sizeof val, "go-%d", rank);
    expect_value(s, key, val, strlen(val));
    int64_t r;
    CHECK_OK(cgloo_store_add(s, "done", 1, &r));
}

static void *release_waiters(void *arg)
{
    cgloo_store *s = client();
    usleep(200 * 1000); /* let the waiters line up, one of them parked on the server */
    for (int i = 15; i >= 0; i--) {
        char key[32], val[32];
        snprintf(key, sizeof key, "go/%d", i);
        snprintf(val, sizeof val, "go-%d", i);
        CHECK_OK(cgloo_store_set(s, key, val, strlen(val)));
    }
    cgloo_store_destroy(s);
    return arg;
}

static void test_waiters_shared_handle(void)
{
    start_server();
    cgloo_store *shared = client();
    pthread_t th;
    pthread_create(&th, NULL, release_waiters, NULL);
    run_ranks(16, shared_waiter, shared);
    pthread_join(th, NULL);
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(shared, "done", 0, &r));
    CHECK(r == 16);
    cgloo_store_destroy(shared);
    cgloo_store_server_stop(server);
}

/* A thread that waits for its turn on a shared handle still honours its own timeout. */
static void *long_get(void *arg)
{
    void *v;
    size_t n;
    CHECK_STATUS(cgloo_store_get(arg, "never", 3000, &v, &n), CGLOO_ETIMEDOUT);
    return NULL;
}

static void test_turn_timeout(void)
{
    start_server();
    cgloo_store *s = client();
    pthread_t th;
    pthread_create(&th, NULL, long_get, s);
    usleep(100 * 1000);
    void *v;
    size_t n;
    int64_t t0 = now_ms();
    CHECK_STATUS(cgloo_store_get(s, "never2", 300, &v, &n), CGLOO_ETIMEDOUT);
    int64_t took = now_ms() - t0;
    CHECK(took >= 250 && took < 2000);
    pthread_join(th, NULL);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

#define ADD_ROUNDS 300
#define ADD_THREADS 8
static unsigned char seen[2 * ADD_THREADS * ADD_ROUNDS + 1];
static pthread_mutex_t seen_lock = PTHREAD_MUTEX_INITIALIZER;

static void adder(int rank, int size, void *arg)
{
    cgloo_store *s = arg ? arg : client();
    for (int i = 0; i < ADD_ROUNDS; i++) {
        int64_t r = 0;
        CHECK_OK(cgloo_store_add(s, "counter", 1, &r));
        CHECK(r >= 1 && r <= 2 * ADD_THREADS * ADD_ROUNDS);
        pthread_mutex_lock(&seen_lock);
        CHECK(!seen[r]);
        seen[r] = 1;
        pthread_mutex_unlock(&seen_lock);
    }
    if (!arg)
        cgloo_store_destroy(s);
}

static void test_atomic_add(void)
{
    start_server();
    run_ranks(ADD_THREADS, adder, NULL);
    cgloo_store *s = client();
    run_ranks(ADD_THREADS, adder, s);
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "counter", 0, &r));
    CHECK(r == 2 * ADD_THREADS * ADD_ROUNDS);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

static void test_ipv6(void)
{
    int rc = cgloo_store_server_start("::1", 0, &server);
    if (rc == CGLOO_EADDR) {
        fprintf(stderr, "  skip: no IPv6 loopback on this machine\n");
        return;
    }
    CHECK_OK(rc);
    cgloo_store *s = NULL;
    CHECK_OK(cgloo_store_tcp_connect("::1", cgloo_store_server_port(server), 2000, &s));
    CHECK_OK(cgloo_store_set(s, "six", "v6", 2));
    cgloo_store_destroy(s);
    char url[64];
    snprintf(url, sizeof url, "tcp://[::1]:%d", cgloo_store_server_port(server));
    CHECK_OK(cgloo_store_open(url, 2000, &s));
    expect_value(s, "six", "v6", 2);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

static void test_names(void)
{
    start_server();
    cgloo_store *s = NULL;
    CHECK_OK(cgloo_store_tcp_connect("localhost", port, 2000, &s));
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    cgloo_store_destroy(s);
    CHECK_OK(cgloo_store_tcp_connect(NULL, port, 2000, &s));
    expect_value(s, "k", "v", 1);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

/* ---- robustness against bad bytes ---- */

static int warnings;
static pthread_mutex_t warn_lock = PTHREAD_MUTEX_INITIALIZER;

static void count_warnings(cgloo_log_level level, const char *line, void *user)
{
    pthread_mutex_lock(&warn_lock);
    if (level == CGLOO_LOG_WARN)
        warnings++;
    pthread_mutex_unlock(&warn_lock);
}

static int warning_count(void)
{
    pthread_mutex_lock(&warn_lock);
    int n = warnings;
    pthread_mutex_unlock(&warn_lock);
    return n;
}

static int raw_connect(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    struct timeval tv = {.tv_sec = 3};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

static void raw_send(int fd, const void *p, size_t n)
{
    CHECK(send(fd, p, n, MSG_NOSIGNAL) == (ssize_t)n);
}

static void raw_hello(int fd)
{
    uint8_t h[TCP_STORE_HELLO_LEN];
    tcp_store_hello_put(h, 0);
    raw_send(fd, h, sizeof h);
    CHECK(recv(fd, h, sizeof h, MSG_WAITALL) == (ssize_t)sizeof h);
    CHECK(tcp_store_hello_ok(h));
}

static void raw_header(int fd, uint32_t len, uint32_t op)
{
    uint8_t h[TCP_STORE_HEADER_LEN];
    cgloo__put_u32(h, len);
    cgloo__put_u32(h + 4, op);
    raw_send(fd, h, sizeof h);
}

/* raw_frame sends a request header and its body in one piece. */
static void raw_frame(int fd, uint32_t len, uint32_t op, const void *body, size_t blen)
{
    uint8_t buf[64];
    CHECK(blen <= sizeof buf - TCP_STORE_HEADER_LEN);
    cgloo__put_u32(buf, len);
    cgloo__put_u32(buf + 4, op);
    memcpy(buf + TCP_STORE_HEADER_LEN, body, blen);
    raw_send(fd, buf, TCP_STORE_HEADER_LEN + blen);
}

/* expect_closed reads until the server closes the connection (fails after 3 s). */
static void expect_closed(int fd)
{
    char buf[256];
    ssize_t n;
    while ((n = recv(fd, buf, sizeof buf, 0)) > 0) {
    }
    CHECK(n == 0 || (n < 0 && errno == ECONNRESET));
    close(fd);
}

static void still_works(void)
{
    cgloo_store *s = client();
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "alive", 1, &r));
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    expect_value(s, "k", "v", 1);
    cgloo_store_destroy(s);
}

static void test_garbage(void)
{
    cgloo_log_set_sink(count_warnings, NULL);
    cgloo_log_set_level(CGLOO_LOG_WARN);
    start_server();
    cgloo_store *bystander = client(); /* connected throughout */
    int idle = raw_connect();          /* connected, silent */

    int fd = raw_connect();
    raw_send(fd, "GET / HTTP/1.1\r\nHost: x\r\n\r\n", 27);
    expect_closed(fd);

    fd = raw_connect(); /* wrong magic */
    uint8_t h[8];
    cgloo__put_u32(h, TCP_STORE_MAGIC ^ 1);
    cgloo__put_u32(h + 4, TCP_STORE_VERSION);
    raw_send(fd, h, 8);
    expect_closed(fd);

    fd = raw_connect(); /* right magic, wrong version */
    cgloo__put_u32(h, TCP_STORE_MAGIC);
    cgloo__put_u32(h + 4, TCP_STORE_VERSION + 1);
    raw_send(fd, h, 8);
    expect_closed(fd);

    fd = raw_connect(); /* a 4 GiB frame */
    raw_hello(fd);
    raw_header(fd, UINT32_MAX, TCP_STORE_OP_SET);
    expect_closed(fd);

    fd = raw_connect(); /* an unknown op */
    raw_hello(fd);
    raw_frame(fd, 4, 99, "abcd", 4);
    expect_closed(fd);

    fd = raw_connect(); /* a key length beyond the body */
    raw_hello(fd);
    uint8_t body[8];
    cgloo__put_u32(body, 5000);
    memcpy(body + 4, "kkkk", 4);
    raw_frame(fd, sizeof body, TCP_STORE_OP_SET, body, sizeof body);
    expect_closed(fd);

    fd = raw_connect(); /* a key count the body cannot hold */
    raw_hello(fd);
    cgloo__put_u32(body, 1000);
    cgloo__put_u32(body + 4, 0xffffffffu);
    raw_frame(fd, sizeof body, TCP_STORE_OP_WAIT, body, sizeof body);
    expect_closed(fd);

    fd = raw_connect(); /* a key with a NUL inside */
    raw_hello(fd);
    uint8_t del[7] = {3, 0, 0, 0, 'a', 0, 'b'};
    raw_frame(fd, sizeof del, TCP_STORE_OP_DELETE, del, sizeof del);
    expect_closed(fd);

    fd = raw_connect(); /* trailing bytes after a valid DELETE */
    raw_hello(fd);
    uint8_t del2[6] = {1, 0, 0, 0, 'a', 'z'};
    raw_frame(fd, sizeof del2, TCP_STORE_OP_DELETE, del2, sizeof del2);
    expect_closed(fd);

    fd = raw_connect(); /* a truncated frame, then close */
    raw_hello(fd);
    raw_frame(fd, 100, TCP_STORE_OP_SET, "\x01\x00\x00\x00k12345", 10);
    close(fd);

    still_works();
    CHECK_OK(cgloo_store_set(bystander, "by", "stander", 7));
    expect_value(bystander, "by", "stander", 7);
    usleep(100 * 1000); /* the server logs the truncated frame when it sees the close */
    CHECK(warning_count() >= 10);
    close(idle);
    cgloo_store_destroy(bystander);
    cgloo_store_server_stop(server);
}

/* raw_response reads one response and checks its status and body length. */
static void raw_response(int fd, uint32_t status, uint32_t body_len)
{
    uint8_t h[TCP_STORE_HEADER_LEN], body[256];
    CHECK(recv(fd, h, sizeof h, MSG_WAITALL) == (ssize_t)sizeof h);
    CHECK(cgloo__get_u32(h) == body_len && cgloo__get_u32(h + 4) == status);
    CHECK(body_len <= sizeof body);
    if (body_len)
        CHECK(recv(fd, body, body_len, MSG_WAITALL) == (ssize_t)body_len);
}

/* Requests sent back to back after a larger one (found by fuzz_store_request): the server
 * kept the larger body's buffer and read the next request into it, past the body, then past
 * the buffer. Each request must be read as its own frame and answered in order. */
static void test_pipelined(void)
{
    start_server();
    int fd = raw_connect();
    raw_hello(fd);
    uint8_t set[4 + 1 + 200] = {1, 0, 0, 0, 'k'};
    memset(set + 5, 'v', 200);
    raw_header(fd, sizeof set, TCP_STORE_OP_SET);
    raw_send(fd, set, sizeof set);
    raw_response(fd, TCP_STORE_ST_OK, 0);
    uint8_t two[2 * TCP_STORE_HEADER_LEN + 9 + 5] = {0};
    cgloo__put_u32(two, 9); /* GET, timeout 0, key "k" */
    cgloo__put_u32(two + 4, TCP_STORE_OP_GET);
    cgloo__put_u32(two + 12, 1);
    two[16] = 'k';
    cgloo__put_u32(two + 17, 5); /* DELETE "k" */
    cgloo__put_u32(two + 21, TCP_STORE_OP_DELETE);
    cgloo__put_u32(two + 25, 1);
    two[29] = 'k';
    raw_send(fd, two, sizeof two);
    raw_response(fd, TCP_STORE_ST_OK, 200);
    raw_response(fd, TCP_STORE_ST_OK, 0);
    close(fd);
    still_works();
    cgloo_store_server_stop(server);
}

/* A large declared length that is within bounds costs memory only as bytes arrive, and a slow
 * sender does not hold up the others. */
static void test_slow_sender(void)
{
    start_server();
    int fd = raw_connect();
    raw_hello(fd);
    raw_header(fd, 60u * 1024 * 1024, TCP_STORE_OP_SET);
    raw_send(fd, "\x01\x00\x00\x00k", 5);
    still_works();
    close(fd);
    still_works();
    cgloo_store_server_stop(server);
}

/* A raw client parks a GET and pipelines a SET behind it: the server answers the GET only when
 * the key appears, and reads the SET only after that. A parked client that leaves is freed. */
static void test_parked_raw(void)
{
    start_server();
    int fd = raw_connect();
    raw_hello(fd);
    uint8_t get[4 + 4 + 3];
    cgloo__put_u32(get, 5000);
    cgloo__put_u32(get + 4, 3);
    memcpy(get + 8, "key", 3);
    raw_frame(fd, sizeof get, TCP_STORE_OP_GET, get, sizeof get);
    uint8_t set[4 + 3 + 2] = {3, 0, 0, 0, 'p', 'i', 'p', 'O', 'K'};
    raw_frame(fd, sizeof set, TCP_STORE_OP_SET, set, sizeof set);
    usleep(100 * 1000);
    cgloo_store *s = client();
    int present = 1;
    CHECK_OK(cgloo_store_check(s, (const char *const[]){"pip"}, 1, &present));
    CHECK(present == 0); /* the pipelined SET is not read while the GET is parked */
    CHECK_OK(cgloo_store_set(s, "key", "val", 3));
    uint8_t resp[8 + 3 + 8];
    CHECK(recv(fd, resp, sizeof resp, MSG_WAITALL) == (ssize_t)sizeof resp);
    CHECK(cgloo__get_u32(resp) == 3 && cgloo__get_u32(resp + 4) == TCP_STORE_ST_OK);
    CHECK(memcmp(resp + 8, "val", 3) == 0);
    CHECK(cgloo__get_u32(resp + 11) == 0 && cgloo__get_u32(resp + 15) == TCP_STORE_ST_OK);
    expect_value(s, "pip", "OK", 2);

    /* Park again, then leave: setting the key afterwards must not touch the dead request. */
    memcpy(get + 8, "zzz", 3);
    raw_frame(fd, sizeof get, TCP_STORE_OP_GET, get, sizeof get);
    usleep(50 * 1000);
    close(fd);
    usleep(50 * 1000);
    CHECK_OK(cgloo_store_set(s, "zzz", "1", 1));
    expect_value(s, "zzz", "1", 1);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

/* ---- a server that goes away ---- */

static void *blocked_get(void *arg)
{
    void *v;
    size_t n;
    int64_t t0 = now_ms();
    CHECK_STATUS(cgloo_store_get(arg, "never", 10000, &v, &n), CGLOO_EIO);
    CHECK(now_ms() - t0 < 2000);
    return NULL;
}

static void test_server_stop(void)
{
    start_server();
    cgloo_store *s = client();
    cgloo_store *idle = client();
    pthread_t th;
    pthread_create(&th, NULL, blocked_get, s);
    usleep(200 * 1000);
    cgloo_store_server_stop(server);
    pthread_join(th, NULL);
    int64_t t0 = now_ms();
    CHECK_STATUS(cgloo_store_set(s, "k", "v", 1), CGLOO_EIO);
    CHECK_STATUS(cgloo_store_set(idle, "k", "v", 1), CGLOO_EIO);
    int64_t r;
    CHECK_STATUS(cgloo_store_add(idle, "k", 1, &r), CGLOO_EIO);
    CHECK(now_ms() - t0 < 2000);
    cgloo_store_destroy(s);
    cgloo_store_destroy(idle);
}

/* free_port finds a port nothing listens on (it could be taken again in between; unlikely). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    CHECK(bind(fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&sa, &len) == 0);
    close(fd);
    return ntohs(sa.sin_port);
}

/* After a server restarts on the same port, the first call fails and the next reconnects. */
static void test_reconnect(void)
{
    start_server();
    cgloo_store *s = client();
    CHECK_OK(cgloo_store_set(s, "k", "old", 3));
    cgloo_store_server_stop(server);
    CHECK_OK(cgloo_store_server_start(NULL, port, &server));
    CHECK_STATUS(cgloo_store_set(s, "k", "new", 3), CGLOO_EIO);
    CHECK_OK(cgloo_store_set(s, "k", "new", 3));
    expect_value(s, "k", "new", 3);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

static void test_connect_refused(void)
{
    int p = free_port();
    cgloo_store *s = NULL;
    int64_t t0 = now_ms();
    int rc = cgloo_store_tcp_connect("127.0.0.1", p, 500, &s);
    int64_t took = now_ms() - t0;
    CHECK(rc == CGLOO_ECONNREFUSED || rc == CGLOO_ETIMEDOUT);
    CHECK(s == NULL);
    CHECK(took >= 400 && took < 2500);
    CHECK_STATUS(cgloo_store_tcp_connect("127.0.0.1", 0, 500, &s), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_tcp_connect("127.0.0.1", 70000, 500, &s), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_tcp_connect("127.0.0.1", p, 500, NULL), CGLOO_EINVAL);
}

static void *start_late(void *arg)
{
    usleep(300 * 1000);
    CHECK_OK(cgloo_store_server_start(NULL, *(int *)arg, &server));
    return NULL;
}

/* A client that starts before the server keeps retrying until the server is up. */
static void test_connect_before_server(void)
{
    int p = free_port();
    pthread_t th;
    pthread_create(&th, NULL, start_late, &p);
    cgloo_store *s = NULL;
    CHECK_OK(cgloo_store_tcp_connect("127.0.0.1", p, 5000, &s));
    pthread_join(th, NULL);
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

/* ---- a server that misbehaves: the client must not hang or trust its lengths ---- */

typedef enum fake_mode { FAKE_SILENT, FAKE_BAD_HELLO, FAKE_HUGE_REPLY, FAKE_SHORT_REPLY } fake_mode;

typedef struct fake_server {
    int listen_fd;
    int port;
    fake_mode mode;
} fake_server;

static void *fake_main(void *arg)
{
    fake_server *f = arg;
    int fd = accept(f->listen_fd, NULL, NULL);
    uint8_t buf[64];
    if (fd < 0 || recv(fd, buf, TCP_STORE_HELLO_LEN, MSG_WAITALL) != TCP_STORE_HELLO_LEN)
        return NULL;
    if (f->mode == FAKE_BAD_HELLO) {
        memcpy(buf, "HTTP/1.0", 8);
        send(fd, buf, 8, MSG_NOSIGNAL);
    } else if (f->mode != FAKE_SILENT) {
        tcp_store_hello_put(buf, 0);
        send(fd, buf, TCP_STORE_HELLO_LEN, MSG_NOSIGNAL);
        recv(fd, buf, TCP_STORE_HEADER_LEN, MSG_WAITALL);
        /* HUGE: a 4 GiB reply; SHORT: promises 100 bytes, sends 3 and closes. */
        cgloo__put_u32(buf, f->mode == FAKE_HUGE_REPLY ? UINT32_MAX : 100);
        cgloo__put_u32(buf + 4, TCP_STORE_ST_OK);
        send(fd, buf, TCP_STORE_HEADER_LEN + 3, MSG_NOSIGNAL);
    }
    /* Hold the connection until the client gives up on it (SHORT closes at once). */
    struct timeval tv = {.tv_sec = 5};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    while (f->mode != FAKE_SHORT_REPLY && recv(fd, buf, sizeof buf, 0) > 0) {
    }
    close(fd);
    return NULL;
}

static void fake_start(fake_server *f, fake_mode mode, pthread_t *th)
{
    f->mode = mode;
    f->listen_fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    CHECK(bind(f->listen_fd, (struct sockaddr *)&sa, sizeof sa) == 0);
    CHECK(listen(f->listen_fd, 4) == 0);
    CHECK(getsockname(f->listen_fd, (struct sockaddr *)&sa, &len) == 0);
    f->port = ntohs(sa.sin_port);
    pthread_create(th, NULL, fake_main, f);
}

static void fake_stop(fake_server *f, pthread_t th)
{
    pthread_join(th, NULL);
    close(f->listen_fd);
}

static void test_bad_server(void)
{
    fake_server f;
    pthread_t th;
    cgloo_store *s = NULL;
    fake_start(&f, FAKE_SILENT, &th); /* accepts, never says hello */
    int64_t t0 = now_ms();
    CHECK_STATUS(cgloo_store_tcp_connect("127.0.0.1", f.port, 300, &s), CGLOO_ETIMEDOUT);
    CHECK(now_ms() - t0 < 2000);
    fake_stop(&f, th);

    fake_start(&f, FAKE_BAD_HELLO, &th);
    CHECK_STATUS(cgloo_store_tcp_connect("127.0.0.1", f.port, 1000, &s), CGLOO_EPROTO);
    fake_stop(&f, th);

    for (fake_mode m = FAKE_HUGE_REPLY; m <= FAKE_SHORT_REPLY; m++) {
        fake_start(&f, m, &th);
        CHECK_OK(cgloo_store_tcp_connect("127.0.0.1", f.port, 1000, &s));
        void *v = NULL;
        size_t n;
        t0 = now_ms();
        CHECK_STATUS(cgloo_store_get(s, "k", 5000, &v, &n), CGLOO_EIO);
        CHECK(v == NULL && now_ms() - t0 < 2000);
        cgloo_store_destroy(s);
        fake_stop(&f, th);
    }
}

static void test_server_errors(void)
{
    start_server();
    cgloo_store_server *other = NULL;
    CHECK_STATUS(cgloo_store_server_start(NULL, port, &other), CGLOO_EADDR);
    CHECK(other == NULL);
    CHECK_STATUS(cgloo_store_server_start(NULL, -1, &other), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_server_start(NULL, 0, NULL), CGLOO_EINVAL);
    CHECK(cgloo_store_server_port(NULL) < 0);
    cgloo_store_server_stop(NULL);
    cgloo_store_server_stop(server);
}

/* ---- store URLs ---- */

static void round_trip(const char *url)
{
    cgloo_store *s = NULL;
    CHECK_OK(cgloo_store_open(url, 2000, &s));
    CHECK_OK(cgloo_store_set(s, "url", url, strlen(url)));
    expect_value(s, "url", url, strlen(url));
    cgloo_store_destroy(s);
}

static void test_open(void)
{
    start_server();
    char url[600];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    round_trip(url);
    snprintf(url, sizeof url, "TCP://localhost:%d", port);
    round_trip(url);
    round_trip("hash:");
    round_trip("hash://");
    snprintf(url, sizeof url, "file://%s/store", test_tmpdir());
    round_trip(url);

    char nothing[64];
    snprintf(nothing, sizeof nothing, "tcp://127.0.0.1:%d", free_port());
    cgloo_store *s = NULL;
    int rc = cgloo_store_open(nothing, 300, &s);
    CHECK(rc == CGLOO_ECONNREFUSED || rc == CGLOO_ETIMEDOUT);

    const char *bad[] = {
        "",
        "tcp://",
        "tcp:",
        "tcp://127.0.0.1",
        "tcp://127.0.0.1:",
        "tcp://127.0.0.1:0",
        "tcp://127.0.0.1:65536",
        "tcp://127.0.0.1:12x",
        "tcp://127.0.0.1:-5",
        "tcp://:123",
        "tcp://::1:123",
        "tcp://[::1]123",
        "tcp://[::1",
        "tcp://[]:123",
        "tcp://a/b:123",
        "tcp://127.0.0.1:123/",
        "file://",
        "file://relative/dir",
        "file:///",
        "hash:x",
        "hash:/",
        "127.0.0.1:1234",
        "/tmp/dir",
        "tcp//127.0.0.1:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        s = NULL;
        rc = cgloo_store_open(bad[i], 300, &s);
        if (rc != CGLOO_EINVAL)
            fprintf(stderr, "  url '%s' gave %s\n", bad[i], cgloo_status_name(rc));
        CHECK(rc == CGLOO_EINVAL && s == NULL);
    }
    CHECK_STATUS(cgloo_store_open(NULL, 300, &s), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_open("hash:", 300, NULL), CGLOO_EINVAL);
    cgloo_store_server_stop(server);
}

/* cgloo_store_open_detail says why, naming the URL without the userinfo that may hold a
 * password; the TCP store keeps no detail of its own. */
static void test_open_detail(void)
{
    char detail[512], url[128];
    cgloo_store *s = NULL;
    CHECK_STATUS(cgloo_store_open_detail("foo://me:sekrit@h:1/x", 300, detail, sizeof detail, &s),
                 CGLOO_EINVAL);
    CHECK(strstr(detail, "'foo://h:1/x'") && !strstr(detail, "sekrit") && s == NULL);
    CHECK_STATUS(cgloo_store_open_detail("tcp://h", 300, detail, sizeof detail, &s), CGLOO_EINVAL);
    CHECK(strstr(detail, "tcp://HOST:PORT") != NULL);
    char tiny[8];
    CHECK_STATUS(cgloo_store_open_detail("nope", 300, tiny, sizeof tiny, &s), CGLOO_EINVAL);
    CHECK(strlen(tiny) == sizeof tiny - 1);
    CHECK_STATUS(cgloo_store_open_detail("nope", 300, NULL, 0, &s), CGLOO_EINVAL);

    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", free_port());
    int rc = cgloo_store_open_detail(url, 300, detail, sizeof detail, &s);
    CHECK(rc == CGLOO_ECONNREFUSED || rc == CGLOO_ETIMEDOUT);
    CHECK(strstr(detail, url) && strstr(detail, "no TCP store answered"));

    start_server();
    snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
    detail[0] = 'x';
    CHECK_OK(cgloo_store_open_detail(url, 300, detail, sizeof detail, &s));
    CHECK(detail[0] == '\0');
    CHECK_OK(cgloo_store_last_error(s, detail, sizeof detail));
    CHECK(detail[0] == '\0');
    CHECK_STATUS(cgloo_store_last_error(s, detail, 0), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_last_error(NULL, detail, sizeof detail), CGLOO_EINVAL);
    cgloo_store_destroy(s);
    cgloo_store_server_stop(server);
}

static const test_case tests[] = {
    {"ops", test_ops, 10},
    {"timeouts", test_timeouts, 10},
    {"get_waits", test_get_waits, 10},
    {"odd_keys", test_odd_keys, 10},
    {"values", test_values, 20},
    {"waiters_own_handles", test_waiters_own_handles, 20},
    {"waiters_shared_handle", test_waiters_shared_handle, 20},
    {"turn_timeout", test_turn_timeout, 10},
    {"atomic_add", test_atomic_add, 20},
    {"ipv6", test_ipv6, 10},
    {"names", test_names, 10},
    {"garbage", test_garbage, 20},
    {"pipelined", test_pipelined, 10},
    {"slow_sender", test_slow_sender, 10},
    {"parked_raw", test_parked_raw, 10},
    {"server_stop", test_server_stop, 10},
    {"reconnect", test_reconnect, 10},
    {"connect_refused", test_connect_refused, 10},
    {"open_detail", test_open_detail, 10},
    {"connect_before_server", test_connect_before_server, 10},
    {"bad_server", test_bad_server, 15},
    {"server_errors", test_server_errors, 10},
    {"open", test_open, 10},
};
TEST_MAIN(tests)
