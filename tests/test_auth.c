/*
 * Job-secret authentication with ranks as real processes: ranks that share the secret connect
 * and reduce; a rank with a wrong secret, or with none, makes every rank that talks to it fail
 * at once (long before the timeout) with an error that names it and says the secret is not
 * shared; a replayed hello with a captured proof is refused and nothing it sends is read; the
 * TCP store refuses clients without the secret, or with another, and keeps serving the others,
 * also while a client stalls in the middle of its handshake; cgloo-run makes a fresh secret
 * per run that its ranks and its store use. No error text and no log line ever holds the
 * secret. Exits 77 (skipped) when cgloo was built without OpenSSL.
 */
#include "mesh.h"
#include "core/auth.h"
#include "store/tcp_store_proto.h"
#include "transport/tcp/wire.h"

#ifdef CGLOO_HAVE_OPENSSL
#include <openssl/evp.h>
#include <openssl/hmac.h>
#endif

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define SECRET "good-secret-0123456789abcdef"
#define WRONG "WRONG-secret-fedcba9876543210"
#define MAX_RANKS 8
#define CONNECT_TIMEOUT_MS 20000
/* Far below the connect timeout: a secret that is not shared must not be found by timing out. */
#define QUICK_MS 10000
#define NEVER_EXPIRES "7fffffffffffffff"

typedef struct world {
    char dir[512];
    int size;
    int timeout_ms;                /* the ranks' connect timeout; 0: CONNECT_TIMEOUT_MS */
    const char *secret[MAX_RANKS]; /* each rank's; NULL: none */
    pid_t pid[MAX_RANKS];
} world;

/* ---- every log line of a rank process goes to a file, to look for the secret in ---- */

static FILE *log_file;

static void log_to_file(cgloo_log_level level, const char *line, void *user)
{
    if (log_file) {
        fprintf(log_file, "%s\n", line);
        fflush(log_file);
    }
}

static void log_everything(const char *dir, int rank)
{
    char path[600];
    snprintf(path, sizeof path, "%s/log.%d", dir, rank);
    log_file = fopen(path, "w");
    cgloo_log_set_sink(log_to_file, NULL);
    cgloo_log_set_level(CGLOO_LOG_TRACE);
}

static char *read_text(const char *path)
{
    static char buf[65536];
    buf[0] = '\0';
    FILE *f = fopen(path, "r");
    if (f) {
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        fclose(f);
    }
    return buf;
}

/* no_secret_in fails when text holds either secret. */
static void no_secret_in(const char *what, const char *text)
{
    if (strstr(text, SECRET) || strstr(text, WRONG))
        harness_fail(__FILE__, __LINE__, what, "holds the secret");
}

/* ---- the MAC: HMAC-SHA256 of label (with its NUL) and data, as libcrypto's HMAC() makes it ----
 */

static void test_mac_is_hmac_sha256(void)
{
#ifdef CGLOO_HAVE_OPENSSL
    static const size_t key_lens[] = {1, 32, 63, 64, 65, 200, CGLOO_SECRET_MAX};
    uint8_t data[300], msg[400], want[32], got[32];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (uint8_t)(i * 7 + 3);
    const char *label = "cgloo tcp v1 ack";
    size_t ll = strlen(label) + 1;
    memcpy(msg, label, ll);
    memcpy(msg + ll, data, sizeof data);
    for (size_t k = 0; k < sizeof key_lens / sizeof key_lens[0]; k++) {
        cgloo__secret s = {.len = key_lens[k]};
        for (size_t i = 0; i < s.len; i++)
            s.key[i] = (uint8_t)(i * 13 + k);
        unsigned int n = 0;
        CHECK(HMAC(EVP_sha256(), s.key, (int)s.len, msg, ll + sizeof data, want, &n) != NULL);
        CHECK_OK(cgloo__auth_mac(&s, label, data, sizeof data, got));
        CHECK(n == 32 && memcmp(want, got, 32) == 0);
        CHECK(cgloo__auth_check(&s, label, data, sizeof data, want));
        want[31] ^= 1;
        CHECK(!cgloo__auth_check(&s, label, data, sizeof data, want));
        CHECK(!cgloo__auth_check(&s, "cgloo tcp v1 proof", data, sizeof data, got));
    }
#endif
}

/* ---- a rank: connect with its secret, reduce, and write what happened ---- */

static void rank_main(world *w, int rank)
{
    unsetenv("CGLOO_SECRET");
    unsetenv("CGLOO_SECRET_FILE");
    log_everything(w->dir, rank);
    cgloo_store *s;
    CHECK_OK(cgloo_store_file_create(w->dir, "auth", &s));
    cgloo_device *dev;
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &dev));
    cgloo_context_attr attr = {.timeout_ms = w->timeout_ms ? w->timeout_ms : CONNECT_TIMEOUT_MS,
                               .name = "test",
                               .secret = w->secret[rank]};
    cgloo_context *ctx;
    CHECK_OK(cgloo_context_create(rank, w->size, &attr, &ctx));
    int rc = cgloo_context_connect(ctx, s, dev);
    char detail[CGLOO_ERROR_MAX] = "";
    if (rc == CGLOO_OK) {
        int32_t x = rank + 1, sum = 0;
        rc = cgloo_allreduce(ctx, &x, &sum, 1, CGLOO_INT32, CGLOO_SUM, NULL);
        if (rc == CGLOO_OK && sum != w->size * (w->size + 1) / 2)
            rc = CGLOO_EPROTO;
    }
    if (rc != CGLOO_OK)
        cgloo_context_last_error(ctx, detail, sizeof detail);
    char path[600];
    snprintf(path, sizeof path, "%s/result.%d", w->dir, rank);
    FILE *f = fopen(path, "w");
    fprintf(f, "%s %s", cgloo_status_name(rc), detail);
    fclose(f);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(s);
}

static void world_start(world *w, int size)
{
    snprintf(w->dir, sizeof w->dir, "%s", test_tmpdir());
    w->size = size;
    for (int r = 0; r < size; r++)
        w->secret[r] = SECRET;
}

static void spawn(world *w, int rank)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        rank_main(w, rank);
        fflush(NULL);
        _exit(0);
    }
    w->pid[rank] = pid;
}

/* world_run starts every rank and waits for all; returns the time it took (ms). */
static long long world_run(world *w)
{
    long long t0 = test_now_ms();
    for (int r = 0; r < w->size; r++)
        spawn(w, r);
    for (int r = 0; r < w->size; r++) {
        int status;
        CHECK(waitpid(w->pid[r], &status, 0) == w->pid[r]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    return test_now_ms() - t0;
}

/* result gives rank's "STATUS detail" line; checks that neither it nor the log has a secret. */
static const char *result(world *w, int rank)
{
    char path[600];
    snprintf(path, sizeof path, "%s/log.%d", w->dir, rank);
    no_secret_in("a log line", read_text(path));
    snprintf(path, sizeof path, "%s/result.%d", w->dir, rank);
    const char *text = read_text(path);
    no_secret_in("an error", text);
    return text;
}

/* expect_fails checks that rank failed with EPROTO and that its detail holds both phrases. */
static void expect_fails(world *w, int rank, const char *a, const char *b)
{
    const char *text = result(w, rank);
    if (strncmp(text, "EPROTO ", 7) != 0 || !strstr(text, a) || (b && !strstr(text, b))) {
        fprintf(stderr, "  rank %d: %s\n", rank, text);
        harness_fail(__FILE__, __LINE__, "the error names the peer and the secret", a);
    }
}

static void test_same_secret(void)
{
    world w = {0};
    world_start(&w, 4);
    world_run(&w);
    for (int r = 0; r < w.size; r++) {
        const char *text = result(&w, r);
        if (strncmp(text, "OK", 2) != 0)
            harness_fail(__FILE__, __LINE__, "a rank with the shared secret failed", text);
    }
}

static void test_wrong_secret(void)
{
    world w = {0};
    world_start(&w, 4);
    w.secret[2] = WRONG;
    long long took = world_run(&w);
    CHECK(took < QUICK_MS);
    /* Rank 2 dials 0 and 1 (it finds their MAC wrong); rank 3 dials 2 (it finds 2's wrong). */
    expect_fails(&w, 0, "rank 2", "secret may differ");
    expect_fails(&w, 1, "rank 2", "secret may differ");
    expect_fails(&w, 3, "rank 2", "the secret differs between rank 3 and rank 2");
    /* Rank 2's first failure is whichever peer it heard from first. */
    expect_fails(&w, 2, "job secret", "do all ranks share CGLOO_SECRET?");
}

static void test_missing_secret(void)
{
    world w = {0};
    world_start(&w, 3);
    w.secret[1] = NULL;
    long long took = world_run(&w);
    CHECK(took < QUICK_MS);
    expect_fails(&w, 0,
                 "rank 0: rank 1 did not prove the job secret (its hello is unauthenticated): do "
                 "all ranks share CGLOO_SECRET?",
                 NULL);
    expect_fails(&w, 2, "rank 2: rank 1 did not prove the job secret", NULL);
    expect_fails(&w, 1, "this rank has none", NULL);
}

/* ---- a replayed hello ---- */

static int dial_port(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) == 0);
    return fd;
}

static void read_exact(int fd, void *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        ssize_t n = recv(fd, (uint8_t *)buf + got, len - got, 0);
        CHECK(n > 0);
        got += (size_t)n;
    }
}

/* read_record waits for rank's record in the file store and gives its port and nonce. */
static void read_record(cgloo_store *s, int rank, int *port, uint64_t *nonce)
{
    char key[32], host[64];
    snprintf(key, sizeof key, "test/addr/%d", rank);
    void *v;
    size_t len;
    CHECK_OK(cgloo_store_get(s, key, 10000, &v, &len));
    char text[256];
    snprintf(text, sizeof text, "%.*s", (int)len, (char *)v);
    cgloo_free(v);
    unsigned long long n;
    CHECK(sscanf(text, "cgloo2 %63[^:]:%d %llx", host, port, &n) == 3);
    *nonce = n;
}

/* The test plays rank 1 of 2: it knows what an honest rank 1 sent on an earlier connection
 * (its hello and its proof, made here for a challenge that connection got) and replays both.
 * Rank 0 challenges with a fresh nonce, so the old proof fails: rank 0 refuses the connection,
 * reads nothing after the proof, and its connect fails naming rank 1. */
static void test_replayed_hello(void)
{
    world w = {0};
    world_start(&w, 2);
    cgloo_store *s;
    CHECK_OK(cgloo_store_file_create(w.dir, "auth", &s));
    uint64_t fake_nonce = 0x1234567890abcdefull;
    char rec[128];
    int n = snprintf(rec, sizeof rec, "cgloo2 127.0.0.1:9 %016llx " NEVER_EXPIRES,
                     (unsigned long long)fake_nonce);
    CHECK_OK(cgloo_store_set(s, "test/addr/1", rec, (size_t)n));
    spawn(&w, 0);
    int port;
    uint64_t nonce0;
    read_record(s, 0, &port, &nonce0);

    /* What rank 1 sent before: a hello with its nonce, and the proof for the ack it got. */
    cgloo__secret key = {.len = strlen(SECRET)};
    memcpy(key.key, SECRET, key.len);
    uint8_t t[AUTH_TRANSCRIPT_LEN], proof[AUTH_MAC_LEN];
    wire_hello h = {.type = HELLO_TYPE_HELLO,
                    .flags = WIRE_FLAG_AUTH,
                    .ctx_id = cgloo__hash64("test", 4),
                    .src_rank = 1,
                    .dst_rank = 0,
                    .size = 2,
                    .eager_max = 65536,
                    .eager_budget = 1 << 20,
                    .src_nonce = fake_nonce,
                    .dst_nonce = nonce0};
    wire_hello_encode(&h, t);
    CHECK_OK(cgloo__auth_nonce(t + HELLO_LEN));
    wire_hello ack = h;
    ack.type = HELLO_TYPE_ACK, ack.src_rank = 0, ack.dst_rank = 1;
    ack.src_nonce = nonce0, ack.dst_nonce = fake_nonce;
    wire_hello_encode(&ack, t + HELLO_AUTH_LEN);
    CHECK_OK(cgloo__auth_nonce(t + HELLO_AUTH_LEN + HELLO_LEN)); /* that connection's challenge */
    CHECK_OK(cgloo__auth_mac(&key, AUTH_LABEL_PROOF, t, sizeof t, proof));

    /* The replay. */
    int fd = dial_port(port);
    CHECK(send(fd, t, HELLO_AUTH_LEN, 0) == HELLO_AUTH_LEN);
    uint8_t got[ACK_AUTH_LEN];
    read_exact(fd, got, sizeof got);
    CHECK(memcmp(got + HELLO_LEN, t + HELLO_AUTH_LEN + HELLO_LEN, AUTH_NONCE_LEN) != 0);
    CHECK(send(fd, proof, sizeof proof, 0) == sizeof proof);
    uint8_t msg[MSG_HDR_LEN + 8] = {MSG_EAGER};
    msg[24] = 8; /* an eager message of 8 bytes, which must never be read */
    (void)send(fd, msg, sizeof msg, MSG_NOSIGNAL);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK(poll(&p, 1, QUICK_MS) == 1);
    uint8_t b;
    CHECK(recv(fd, &b, 1, 0) <= 0); /* closed (or reset), and nothing more was said */
    close(fd);
    int status;
    CHECK(waitpid(w.pid[0], &status, 0) == w.pid[0]);
    expect_fails(&w, 0, "rank 1", "sent a proof that does not match this rank's job secret");
    cgloo__secret_wipe(&key);
    cgloo_store_destroy(s);
}

/* ---- the TCP store ---- */

static void store_refused(int port, const char *secret, const char *phrase)
{
    cgloo_store *c = NULL;
    long long t0 = test_now_ms();
    CHECK_STATUS(cgloo_store_tcp_connect_auth("127.0.0.1", port, secret, 5000, &c), CGLOO_EPROTO);
    CHECK(test_now_ms() - t0 < 4000); /* refused, not timed out */
    char detail[CGLOO_ERROR_MAX];
    cgloo_last_error(detail, sizeof detail);
    no_secret_in("the store's error", detail);
    if (!strstr(detail, phrase))
        harness_fail(__FILE__, __LINE__, "the store's error says why", detail);
}

static void store_works(int port, const char *secret)
{
    cgloo_store *c;
    CHECK_OK(cgloo_store_tcp_connect_auth("127.0.0.1", port, secret, 5000, &c));
    CHECK_OK(cgloo_store_set(c, "k", "v", 1));
    void *v;
    size_t len;
    CHECK_OK(cgloo_store_get(c, "k", 2000, &v, &len));
    CHECK(len == 1 && memcmp(v, "v", 1) == 0);
    cgloo_free(v);
    cgloo_store_destroy(c);
}

static void test_store(void)
{
    unsetenv("CGLOO_SECRET");
    unsetenv("CGLOO_SECRET_FILE");
    cgloo_store_server *srv;
    CHECK_OK(cgloo_store_server_start_auth("127.0.0.1", 0, SECRET, &srv));
    int port = cgloo_store_server_port(srv);
    store_works(port, SECRET);
    /* Clients stalled in the middle of the handshake: one silent, one with half a nonce. */
    int silent = dial_port(port), half = dial_port(port);
    uint8_t hello[TCP_STORE_HELLO_LEN + 16] = {0};
    tcp_store_hello_put(hello, 1);
    CHECK(send(half, hello, sizeof hello, 0) == (ssize_t)sizeof hello);
    store_refused(port, WRONG, "the secrets differ");
    store_refused(port, NULL, "the server requires a job secret and this process has none");
    store_works(port, SECRET);
    /* A client that says the old, unauthenticated hello gets the server's hello and a close. */
    int old = dial_port(port);
    tcp_store_hello_put(hello, 0);
    CHECK(send(old, hello, TCP_STORE_HELLO_LEN, 0) == TCP_STORE_HELLO_LEN);
    uint8_t reply[TCP_STORE_HELLO_LEN], b;
    read_exact(old, reply, sizeof reply);
    CHECK(tcp_store_hello_ok(reply) && tcp_store_hello_auth(reply));
    CHECK(recv(old, &b, 1, 0) <= 0);
    close(old);
    close(silent);
    close(half);
    cgloo_store_server_stop(srv);

    /* The other way round: a server without a secret. */
    CHECK_OK(cgloo_store_server_start_auth("127.0.0.1", 0, NULL, &srv));
    store_refused(cgloo_store_server_port(srv), SECRET,
                  "the server has no job secret and this process has one");
    cgloo_store_server_stop(srv);
}

/* ---- where the secret comes from ---- */

static void test_secret_sources(void)
{
    unsetenv("CGLOO_SECRET");
    cgloo_context *ctx;
    cgloo_context_attr empty = {.secret = ""};
    CHECK_STATUS(cgloo_context_create(0, 1, &empty, &ctx), CGLOO_EINVAL);
    char path[600], detail[CGLOO_ERROR_MAX];
    snprintf(path, sizeof path, "%s/secret", test_tmpdir());
    int fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
    CHECK(fd >= 0 && write(fd, SECRET "\n", sizeof SECRET) == (ssize_t)sizeof SECRET);
    CHECK(fchmod(fd, 0644) == 0);
    close(fd);
    setenv("CGLOO_SECRET_FILE", path, 1);
    CHECK_STATUS(cgloo_context_create(0, 1, NULL, &ctx), CGLOO_EINVAL);
    cgloo_last_error(detail, sizeof detail);
    CHECK(strstr(detail, "chmod 600") != NULL);
    no_secret_in("a refused file's error", detail);
    CHECK(chmod(path, 0600) == 0);
    CHECK_OK(cgloo_context_create(0, 1, NULL, &ctx));
    cgloo_context_destroy(ctx);
    /* The file and the variable give the same secret: a store serves a client of either. */
    cgloo_store_server *srv;
    CHECK_OK(cgloo_store_server_start("127.0.0.1", 0, &srv));
    unsetenv("CGLOO_SECRET_FILE");
    store_works(cgloo_store_server_port(srv), SECRET);
    setenv("CGLOO_SECRET", SECRET, 1);
    store_works(cgloo_store_server_port(srv), NULL);
    setenv("CGLOO_SECRET_FILE", path, 1);
    CHECK_STATUS(cgloo_context_create(0, 1, NULL, &ctx), CGLOO_EINVAL); /* both set */
    unsetenv("CGLOO_SECRET");
    unsetenv("CGLOO_SECRET_FILE");
    cgloo_store_server_stop(srv);
}

/* ---- cgloo-run ---- */

static int run(const char *cmd)
{
    fflush(NULL);
    int status = system(cmd);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static void test_launcher(void)
{
    unsetenv("CGLOO_SECRET");
    unsetenv("CGLOO_SECRET_FILE");
    char cmd[2048], out[600];
    snprintf(out, sizeof out, "%s/out", test_tmpdir());
    /* Ranks connect and reduce with the run's own secret, which is 64 hex digits. */
    snprintf(cmd, sizeof cmd, "%s -n 3 %s", CGLOO_RUN_PATH, RANK_PROGRAM_PATH);
    CHECK(run(cmd) == 0);
    snprintf(cmd, sizeof cmd, "%s -n 2 sh -c 'echo \"$CGLOO_SECRET\" | grep -Eqx \"[0-9a-f]{64}\"'",
             CGLOO_RUN_PATH);
    CHECK(run(cmd) == 0);
    /* Two runs get two secrets. */
    snprintf(cmd, sizeof cmd,
             "a=$(%s -n 1 sh -c 'echo $CGLOO_SECRET'); b=$(%s -n 1 sh -c 'echo $CGLOO_SECRET'); "
             "test -n \"$a\" && test \"$a\" != \"$b\"",
             CGLOO_RUN_PATH, CGLOO_RUN_PATH);
    CHECK(run(cmd) == 0);
    /* A rank without the run's secret cannot even reach the store; the error says why. */
    snprintf(cmd, sizeof cmd, "%s -n 2 env -u CGLOO_SECRET %s > %s 2>&1", CGLOO_RUN_PATH,
             RANK_PROGRAM_PATH, out);
    CHECK(run(cmd) != 0);
    if (!strstr(read_text(out), "requires a job secret"))
        harness_fail(__FILE__, __LINE__, "a rank without the secret is told", read_text(out));
    /* --no-secret runs without one; a secret already set is passed through. */
    snprintf(cmd, sizeof cmd, "%s -n 2 --no-secret sh -c 'test -z \"$CGLOO_SECRET\"'",
             CGLOO_RUN_PATH);
    CHECK(run(cmd) == 0);
    snprintf(cmd, sizeof cmd, "CGLOO_SECRET=" SECRET " %s -n 2 %s > %s 2>&1", CGLOO_RUN_PATH,
             RANK_PROGRAM_PATH, out);
    CHECK(run(cmd) == 0);
    no_secret_in("cgloo-run's output", read_text(out));
    /* With a launcher prefix (ssh) the secret would go on a command line: CGLOO_SECRET is
     * refused, CGLOO_SECRET_FILE is passed on ("env" stands in for ssh). */
    snprintf(cmd, sizeof cmd, "CGLOO_SECRET=" SECRET " %s -n 1 --launcher env true > %s 2>&1",
             CGLOO_RUN_PATH, out);
    CHECK(run(cmd) == 2);
    CHECK(strstr(read_text(out), "use CGLOO_SECRET_FILE") != NULL);
    no_secret_in("cgloo-run's refusal", read_text(out));
    char file[600];
    snprintf(file, sizeof file, "%s/secret", test_tmpdir());
    int fd = open(file, O_CREAT | O_WRONLY | O_TRUNC, 0600);
    CHECK(fd >= 0 && write(fd, SECRET, strlen(SECRET)) == (ssize_t)strlen(SECRET));
    close(fd);
    snprintf(cmd, sizeof cmd, "CGLOO_SECRET_FILE=%s %s -n 2 --launcher env %s", file,
             CGLOO_RUN_PATH, RANK_PROGRAM_PATH);
    CHECK(run(cmd) == 0);
}

/* The test plays a rank 1 that dials, takes rank 0's challenge and goes away without a proof,
 * as a rank whose own connect gave up does. That is no protocol violation and no sign of
 * another secret: rank 0 waits for a rank 1 that proves the secret until its timeout, and then
 * says how far rank 1 got. */
static void test_dialler_gives_up(void)
{
    world w = {0};
    world_start(&w, 2);
    w.timeout_ms = 2000;
    cgloo_store *s;
    CHECK_OK(cgloo_store_file_create(w.dir, "auth", &s));
    uint64_t fake_nonce = 0x1234567890abcdefull;
    char rec[128];
    int n = snprintf(rec, sizeof rec, "cgloo2 127.0.0.1:9 %016llx " NEVER_EXPIRES,
                     (unsigned long long)fake_nonce);
    CHECK_OK(cgloo_store_set(s, "test/addr/1", rec, (size_t)n));
    spawn(&w, 0);
    int port;
    uint64_t nonce0;
    read_record(s, 0, &port, &nonce0);
    uint8_t hello[HELLO_AUTH_LEN], ack[ACK_AUTH_LEN];
    wire_hello h = {.type = HELLO_TYPE_HELLO,
                    .flags = WIRE_FLAG_AUTH,
                    .ctx_id = cgloo__hash64("test", 4),
                    .src_rank = 1,
                    .dst_rank = 0,
                    .size = 2,
                    .eager_max = 65536,
                    .eager_budget = 1 << 20,
                    .src_nonce = fake_nonce,
                    .dst_nonce = nonce0};
    wire_hello_encode(&h, hello);
    CHECK_OK(cgloo__auth_nonce(hello + HELLO_LEN));
    int fd = dial_port(port);
    CHECK(send(fd, hello, sizeof hello, 0) == sizeof hello);
    read_exact(fd, ack, sizeof ack); /* the challenge */
    close(fd);
    int status;
    CHECK(waitpid(w.pid[0], &status, 0) == w.pid[0]);
    const char *text = result(&w, 0);
    if (strncmp(text, "ETIMEDOUT ", 10) != 0 ||
        !strstr(text, "waiting for rank 1 (closed before proving the job secret)"))
        harness_fail(__FILE__, __LINE__, "rank 0 says how far rank 1 got", text);
    cgloo_store_destroy(s);
}

static const test_case tests[] = {
    {"mac_is_hmac_sha256", test_mac_is_hmac_sha256, 10},
    {"same_secret", test_same_secret, 60},
    {"wrong_secret", test_wrong_secret, 60},
    {"missing_secret", test_missing_secret, 60},
    {"replayed_hello", test_replayed_hello, 60},
    {"dialler_gives_up", test_dialler_gives_up, 60},
    {"store", test_store, 60},
    {"secret_sources", test_secret_sources, 30},
    {"launcher", test_launcher, 120},
};

int main(int argc, char **argv)
{
    if (!cgloo_secret_supported()) {
        /* A secret must then be refused, never ignored. */
        cgloo_context_attr attr = {.secret = SECRET};
        cgloo_context *ctx;
        if (cgloo_context_create(0, 1, &attr, &ctx) != CGLOO_ENOTSUP) {
            puts("a secret was accepted without OpenSSL");
            return 1;
        }
        puts("skipped: install libssl-dev");
        return 77;
    }
    return harness_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
