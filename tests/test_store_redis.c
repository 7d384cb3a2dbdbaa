/* The Redis store against a real redis-server, started on a free loopback port in a temporary
 * directory without persistence for each test: every op, timeouts, waits that block in the
 * server instead of polling it, threads sharing a handle, binary keys and a 1 MiB value,
 * passwords right and wrong, a server that is down, killed or restarted mid-rendezvous, run-id
 * scoping and cleanup, and rendezvous plus collectives of several ranks as threads and as
 * processes through redis:// URLs. Skips (exit 77) when cgloo was built without hiredis or
 * redis-server is not installed. */
#define _GNU_SOURCE
#include "harness.h"
#include "mesh.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

typedef struct redis_server {
    pid_t pid;
    int port;
    char dir[512];
    const char *password; /* NULL: none */
} redis_server;

static redis_server server;

/* ---- the server ---- */

static bool on_path(const char *name)
{
    const char *path = getenv("PATH");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", path ? path : "/usr/bin:/bin");
    for (char *save = NULL, *dir = strtok_r(buf, ":", &save); dir;
         dir = strtok_r(NULL, ":", &save)) {
        char file[4200];
        snprintf(file, sizeof file, "%s/%s", dir, name);
        if (access(file, X_OK) == 0)
            return true;
    }
    return false;
}

/* free_port asks the kernel for a port nobody listens on (another process could take it before
 * the server does; server_start tries again then). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&a, &len) == 0);
    close(fd);
    return ntohs(a.sin_port);
}

/* spawn runs redis-server in the foreground, killed with this process (PR_SET_PDEATHSIG) so
 * that a test killed on its timeout leaves no server behind. */
static pid_t spawn(const redis_server *s)
{
    char port[16], log[600];
    snprintf(port, sizeof port, "%d", s->port);
    snprintf(log, sizeof log, "%s/redis.log", s->dir);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid > 0)
        return pid;
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
        _exit(126);
    const char *argv[] = {
        "redis-server", "--port", port,    "--bind", "127.0.0.1",     "--save",    "",
        "--appendonly", "no",     "--dir", s->dir,   "--requirepass", s->password, NULL};
    if (!s->password)
        argv[11] = NULL;
    execvp("redis-server", (char **)argv);
    _exit(127);
}

/* listening tells whether something accepts connections on the port. */
static bool listening(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

/* server_run starts the server on s->port and waits until it listens; false if it died. */
static bool server_run(redis_server *s)
{
    s->pid = spawn(s);
    for (int i = 0; i < 500; i++) {
        if (listening(s->port))
            return true;
        if (waitpid(s->pid, NULL, WNOHANG) == s->pid)
            return false;
        test_sleep_ms(10);
    }
    return false;
}

static void server_start(const char *password)
{
    snprintf(server.dir, sizeof server.dir, "%s", test_tmpdir());
    server.password = password;
    for (int attempt = 0; attempt < 5; attempt++) {
        server.port = free_port();
        if (server_run(&server))
            return;
    }
    harness_fail(__FILE__, __LINE__, "redis-server did not start", server.dir);
}

static void server_kill(void)
{
    if (server.pid > 0) {
        kill(server.pid, SIGKILL);
        waitpid(server.pid, NULL, 0);
        server.pid = 0;
    }
}

static void server_stop(void)
{
    server_kill();
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", server.dir);
    CHECK(system(cmd) == 0);
}

/* cli runs redis-cli against the server and gives its first line of output. */
static void cli(const char *args, char *out, size_t len)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "redis-cli -p %d %s%s%s %s 2>/dev/null", server.port,
             server.password ? "--no-auth-warning -a '" : "",
             server.password ? server.password : "", server.password ? "'" : "", args);
    FILE *f = popen(cmd, "r");
    CHECK(f != NULL);
    out[0] = '\0';
    if (!fgets(out, (int)len, f))
        out[0] = '\0';
    pclose(f);
    out[strcspn(out, "\r\n")] = '\0';
}

static long cli_number(const char *args)
{
    char out[256];
    cli(args, out, sizeof out);
    return strtol(out, NULL, 10);
}

/* commands_processed is the server's count of commands run so far (redis-cli's own INFO is
 * one of them). */
static long commands_processed(void)
{
    char out[256];
    cli("INFO stats | grep total_commands_processed | cut -d: -f2", out, sizeof out);
    return strtol(out, NULL, 10);
}

/* ---- stores ---- */

/* url writes "redis://[:password@]127.0.0.1:port<tail>". */
static const char *url(char *buf, size_t len, const char *password, const char *tail)
{
    snprintf(buf, len, "redis://%s%s%s127.0.0.1:%d%s", password ? ":" : "",
             password ? password : "", password ? "@" : "", server.port, tail ? tail : "");
    return buf;
}

static cgloo_store *open_url(const char *u)
{
    cgloo_store *s = NULL;
    char detail[512];
    int rc = cgloo_store_open_detail(u, 5000, detail, sizeof detail, &s);
    if (rc != CGLOO_OK)
        harness_fail(__FILE__, __LINE__, "cgloo_store_open_detail", detail);
    return s;
}

static cgloo_store *client(void)
{
    char u[256];
    return open_url(url(u, sizeof u, server.password, NULL));
}

static void expect_value(cgloo_store *s, const char *key, const void *want, size_t want_len)
{
    void *v = NULL;
    size_t n = 0;
    CHECK_OK(cgloo_store_get(s, key, 2000, &v, &n));
    CHECK(n == want_len && (n == 0 || memcmp(v, want, n) == 0) && ((char *)v)[n] == '\0');
    cgloo_free(v);
}

static void expect_detail(cgloo_store *s, const char *part)
{
    char d[512];
    CHECK_OK(cgloo_store_last_error(s, d, sizeof d));
    if (!strstr(d, part))
        harness_fail(__FILE__, __LINE__, part, d);
}

/* ---- tests ---- */

static void test_ops(void)
{
    server_start(NULL);
    cgloo_store *s = client();
    CHECK_OK(cgloo_store_set(s, "a", "hello", 5));
    expect_value(s, "a", "hello", 5);
    CHECK_OK(cgloo_store_set(s, "a", "bye", 3));
    expect_value(s, "a", "bye", 3);
    CHECK_OK(cgloo_store_set(s, "empty", "", 0));
    expect_value(s, "empty", "", 0);

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
    CHECK(lens[0] == 3 && memcmp(vals[0], "bye", 4) == 0);
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
    expect_detail(s, "INCRBY");
    expect_detail(s, "not an integer");
    CHECK_OK(cgloo_store_delete(s, "a"));
    CHECK_OK(cgloo_store_delete(s, "a"));
    CHECK_OK(cgloo_store_check(s, keys, 1, &present));
    CHECK(present == 0);
    CHECK_OK(cgloo_store_add(s, "a", 1, &r));
    CHECK(r == 1);
    cgloo_store_destroy(s);
    server_stop();
}

static void test_timeouts(void)
{
    server_start(NULL);
    cgloo_store *s = client();
    void *v = NULL;
    size_t n = 0;
    long long t0 = test_now_ms();
    CHECK_STATUS(cgloo_store_get(s, "missing", 300, &v, &n), CGLOO_ETIMEDOUT);
    long long took = test_now_ms() - t0;
    CHECK(took >= 280 && took < 2500 && v == NULL);
    CHECK_OK(cgloo_store_set(s, "x", "1", 1));
    const char *keys[] = {"x", "y"};
    t0 = test_now_ms();
    CHECK_STATUS(cgloo_store_wait(s, keys, 2, 200), CGLOO_ETIMEDOUT);
    took = test_now_ms() - t0;
    CHECK(took >= 180 && took < 2500);
    void *vals[2] = {NULL, NULL};
    size_t lens[2];
    CHECK_STATUS(cgloo_store_multi_get(s, keys, 2, 100, vals, lens), CGLOO_ETIMEDOUT);
    CHECK(vals[0] == NULL && vals[1] == NULL);
    cgloo_store_destroy(s);
    server_stop();
}

typedef struct waiter_arg {
    cgloo_store *store;
    const char *key;
    int rc;
    long long woke_ms;
} waiter_arg;

static void *waiter_main(void *p)
{
    waiter_arg *w = p;
    void *v = NULL;
    size_t n = 0;
    w->rc = cgloo_store_get(w->store, w->key, 10000, &v, &n);
    w->woke_ms = test_now_ms();
    if (w->rc == CGLOO_OK && (n != 2 || memcmp(v, "up", 2) != 0))
        w->rc = CGLOO_EPROTO;
    cgloo_free(v);
    return NULL;
}

/* Several threads block on one key through the handle that then sets it: each wakes at once
 * (every waiter, not only the first: the wake-up list is not consumed). */
static void test_waiters_wake(void)
{
    server_start(NULL);
    cgloo_store *s = client();
    enum { N = 4 };
    pthread_t t[N];
    waiter_arg w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (waiter_arg){.store = s, .key = "go"};
        CHECK(pthread_create(&t[i], NULL, waiter_main, &w[i]) == 0);
    }
    test_sleep_ms(300);
    long long set_at = test_now_ms();
    CHECK_OK(cgloo_store_set(s, "go", "up", 2));
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        CHECK_OK(w[i].rc);
        CHECK(w[i].woke_ms - set_at < 1000);
    }
    cgloo_store_destroy(s);
    server_stop();
}

/* A wait that blocks in the server sends a handful of commands however long it lasts; so does
 * one whose wake-up list outlived its key (the waiter backs off to 100 ms between looks). */
static void test_no_hammering(void)
{
    server_start(NULL);
    cgloo_store *s = client();
    void *v = NULL;
    size_t n;
    long before = commands_processed();
    CHECK_STATUS(cgloo_store_get(s, "never", 1500, &v, &n), CGLOO_ETIMEDOUT);
    const char *keys[] = {"never", "nor"};
    CHECK_STATUS(cgloo_store_wait(s, keys, 2, 1000), CGLOO_ETIMEDOUT);
    long spent = commands_processed() - before;
    CHECK(spent > 0 && spent < 20);

    CHECK_OK(cgloo_store_set(s, "stale", "x", 1));
    char out[256];
    cli("DEL cgloo:0::k:stale", out, sizeof out); /* behind the store's back: the list stays */
    before = commands_processed();
    CHECK_STATUS(cgloo_store_get(s, "stale", 1500, &v, &n), CGLOO_ETIMEDOUT);
    spent = commands_processed() - before;
    CHECK(spent > 2 && spent < 80);
    cgloo_store_destroy(s);
    server_stop();
}

typedef struct shared_arg {
    cgloo_store *store;
    int n;
} shared_arg;

/* shared_rank sets its own key, then reads every rank's through the same handle. */
static void shared_rank(int rank, int size, void *p)
{
    shared_arg *a = p;
    char key[32], val[32];
    snprintf(key, sizeof key, "rank/%d", rank);
    snprintf(val, sizeof val, "value %d", rank);
    test_sleep_ms(rank * 20);
    CHECK_OK(cgloo_store_set(a->store, key, val, strlen(val)));
    char names[16][32];
    const char *keys[16];
    void *vals[16];
    size_t lens[16];
    for (int r = 0; r < size; r++) {
        snprintf(names[r], sizeof names[r], "rank/%d", r);
        keys[r] = names[r];
    }
    CHECK_OK(cgloo_store_multi_get(a->store, keys, (size_t)size, 5000, vals, lens));
    for (int r = 0; r < size; r++) {
        snprintf(val, sizeof val, "value %d", r);
        CHECK(lens[r] == strlen(val) && memcmp(vals[r], val, lens[r]) == 0);
        cgloo_free(vals[r]);
    }
}

/* Threads sharing one handle block and set at once: no thread waits for another's turn. */
static void test_shared_handle(void)
{
    server_start(NULL);
    shared_arg a = {.store = client()};
    long long t0 = test_now_ms();
    run_ranks(12, shared_rank, &a);
    CHECK(test_now_ms() - t0 < 3000);
    cgloo_store_destroy(a.store);
    server_stop();
}

/* Keys of every byte but NUL, the longest key, and values of every byte up to 1 MiB. */
static void test_binary(void)
{
    server_start(NULL);
    cgloo_store *s = client();
    char key[256], longest[CGLOO_STORE_KEY_MAX + 2];
    for (int i = 1; i < 256; i++)
        key[i - 1] = (char)i;
    key[255] = '\0';
    memset(longest, 'k', sizeof longest);
    longest[CGLOO_STORE_KEY_MAX] = '\0';
    size_t big_len = 1u << 20;
    unsigned char *big = malloc(big_len);
    CHECK(big != NULL);
    fill_pattern(big, big_len, 7);
    big[0] = 0;
    CHECK_OK(cgloo_store_set(s, key, big, big_len));
    CHECK_OK(cgloo_store_set(s, longest, "\0\r\n", 3));
    CHECK_OK(cgloo_store_set(s, "with space\r\n%b %s", "v", 1));
    expect_value(s, key, big, big_len);
    expect_value(s, longest, "\0\r\n", 3);
    expect_value(s, "with space\r\n%b %s", "v", 1);
    const char *keys[] = {key, longest};
    void *vals[2];
    size_t lens[2];
    CHECK_OK(cgloo_store_multi_get(s, keys, 2, 2000, vals, lens));
    CHECK(lens[0] == big_len && memcmp(vals[0], big, big_len) == 0 && lens[1] == 3);
    cgloo_free(vals[0]);
    cgloo_free(vals[1]);
    longest[CGLOO_STORE_KEY_MAX] = 'k';
    CHECK_STATUS(cgloo_store_set(s, longest, "v", 1), CGLOO_EINVAL);
    free(big);
    cgloo_store_destroy(s);
    server_stop();
}

/* open_fails opens u, expects rc within max_ms, and checks that the detail names the server,
 * holds `part` and never the password. */
static void open_fails(const char *u, int timeout_ms, int rc, int max_ms, const char *part)
{
    cgloo_store *s = NULL;
    char detail[512], where[64];
    long long t0 = test_now_ms();
    int got = cgloo_store_open_detail(u, timeout_ms, detail, sizeof detail, &s);
    long long took = test_now_ms() - t0;
    if (got != rc)
        harness_fail(__FILE__, __LINE__, cgloo_status_name(got), detail);
    CHECK(s == NULL && took < max_ms);
    snprintf(where, sizeof where, "redis://127.0.0.1:%d", server.port);
    if (!strstr(detail, where) || !strstr(detail, part) || strstr(detail, "sekrit"))
        harness_fail(__FILE__, __LINE__, part, detail);
}

static void test_password(void)
{
    server_start("sekrit@/?%");
    char u[256];
    cgloo_store *s = open_url(url(u, sizeof u, "sekrit%40%2F%3F%25", NULL));
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    expect_value(s, "k", "v", 1);
    cgloo_store_destroy(s);
    char out[256];
    cli("CONFIG SET requirepass 'sekrit@/?'", out, sizeof out);
    CHECK(strcmp(out, "OK") == 0);
    server.password = "sekrit@/?";
    s = open_url(url(u, sizeof u, "sekrit@/?", NULL)); /* raw: the userinfo ends at the last @ */
    expect_value(s, "k", "v", 1);
    cgloo_store_destroy(s);
    snprintf(u, sizeof u, "redis://default:sekrit%%40/?@127.0.0.1:%d", server.port);
    s = open_url(u); /* AUTH user password */
    expect_value(s, "k", "v", 1);
    cgloo_store_destroy(s);
    open_fails(url(u, sizeof u, "sekrit-wrong", NULL), 5000, CGLOO_ESTORE, 2000, "WRONGPASS");
    open_fails(url(u, sizeof u, NULL, NULL), 5000, CGLOO_ESTORE, 2000, "NOAUTH");
    server_stop();
}

static void test_server_down(void)
{
    server.port = free_port();
    char u[256];
    long long t0 = test_now_ms();
    open_fails(url(u, sizeof u, "sekrit", NULL), 500, CGLOO_ECONNREFUSED, 3000, "refused");
    CHECK(test_now_ms() - t0 >= 400); /* refusals were retried until the timeout */
    open_fails(url(u, sizeof u, NULL, "/3"), 200, CGLOO_ECONNREFUSED, 3000, "/3: cannot connect");
}

static void test_bad_urls(void)
{
    const char *bad[] = {
        "redis://",
        "redis://127.0.0.1",
        "redis://:sekrit@",
        "redis://:sekrit@127.0.0.1",
        "redis://127.0.0.1:0",
        "redis://127.0.0.1:65536",
        "redis://127.0.0.1:6379/",
        "redis://127.0.0.1:6379/x",
        "redis://127.0.0.1:6379/-1",
        "redis://127.0.0.1:6379?cleanup=2",
        "redis://127.0.0.1:6379?other=1",
        "redis://sekrit@127.0.0.1:6379",
        "redis://:sekrit%zz@127.0.0.1:6379",
        "redis://:sekrit%00@127.0.0.1:6379",
        "redis://::1:6379",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cgloo_store *s = NULL;
        char detail[512];
        int rc = cgloo_store_open_detail(bad[i], 300, detail, sizeof detail, &s);
        if (rc != CGLOO_EINVAL || s || !*detail || strstr(detail, "sekrit"))
            harness_fail(__FILE__, __LINE__, bad[i], detail);
    }
    cgloo_redis_attr attr = {.port = 70000};
    cgloo_store *s = NULL;
    CHECK_STATUS(cgloo_store_redis_connect(&attr, 100, &s), CGLOO_EINVAL);
    char run[300];
    memset(run, 'r', sizeof run - 1);
    run[sizeof run - 1] = '\0';
    attr = (cgloo_redis_attr){.run_id = run};
    CHECK_STATUS(cgloo_store_redis_connect(&attr, 100, &s), CGLOO_EINVAL);
}

/* Run ids keep runs apart; cleanup deletes what its handle set and nothing else. */
static void test_scoping_cleanup(void)
{
    server_start(NULL);
    cgloo_redis_attr one = {.port = server.port, .run_id = "one", .cleanup = 1};
    cgloo_redis_attr two = {.port = server.port, .run_id = "two"};
    cgloo_store *a = NULL, *b = NULL;
    CHECK_OK(cgloo_store_redis_connect(&one, 2000, &a));
    CHECK_OK(cgloo_store_redis_connect(&two, 2000, &b));
    int64_t r;
    CHECK_OK(cgloo_store_set(a, "k", "from one", 8));
    CHECK_OK(cgloo_store_set(a, "k", "again", 5));
    CHECK_OK(cgloo_store_add(a, "count", 3, &r));
    CHECK_OK(cgloo_store_set(b, "k", "from two", 8));
    expect_value(a, "k", "again", 5);
    expect_value(b, "k", "from two", 8);
    CHECK(cli_number("DBSIZE") == 6); /* three keys, each with its wake-up list */
    cgloo_store_destroy(a);
    CHECK(cli_number("DBSIZE") == 2);
    expect_value(b, "k", "from two", 8);

    char u[256];
    cgloo_store *c = open_url(url(u, sizeof u, NULL, "?cleanup=1"));
    CHECK_OK(cgloo_store_set(c, "k", "none", 4));
    CHECK(cli_number("DBSIZE") == 4);
    cgloo_store_destroy(c);
    cgloo_store_destroy(b);
    CHECK(cli_number("DBSIZE") == 2);
    server_stop();
}

/* A database number in the URL selects that database. */
static void test_database(void)
{
    server_start(NULL);
    char u[256];
    cgloo_store *s = open_url(url(u, sizeof u, NULL, "/2"));
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    CHECK(cli_number("DBSIZE") == 0 && cli_number("-n 2 DBSIZE") == 2);
    cgloo_store_destroy(s);
    open_fails(url(u, sizeof u, NULL, "/100000"), 2000, CGLOO_ESTORE, 2000, "SELECT");
    server_stop();
}

/* A handle whose server went away fails at once with EIO, then works again when one is back. */
static void test_reconnect(void)
{
    server_start(NULL);
    cgloo_store *s = client();
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    server_kill();
    long long t0 = test_now_ms();
    CHECK_STATUS(cgloo_store_set(s, "k", "v", 1), CGLOO_EIO);
    void *v = NULL;
    size_t n;
    CHECK_STATUS(cgloo_store_get(s, "k", 5000, &v, &n), CGLOO_EIO);
    CHECK(test_now_ms() - t0 < 2000);
    expect_detail(s, "cannot connect");
    CHECK(server_run(&server));
    CHECK_OK(cgloo_store_set(s, "k", "back", 4));
    expect_value(s, "k", "back", 4);
    cgloo_store_destroy(s);
    server_stop();
}

typedef struct writer_arg {
    cgloo_store *store;
    void *big;
    int rc;
} writer_arg;

static void *writer_main(void *p)
{
    writer_arg *w = p;
    for (int i = 0; i < 1000 && w->rc == CGLOO_OK; i++)
        w->rc = cgloo_store_set(w->store, "big", w->big, CGLOO_STORE_VALUE_MAX);
    return NULL;
}

/* The server is killed while the largest values stream to it: the set fails with EIO, and the
 * process, which here does not ignore SIGPIPE, lives on. */
static void test_killed_mid_write(void)
{
    signal(SIGPIPE, SIG_DFL);
    server_start(NULL);
    writer_arg w = {.store = client(), .big = calloc(1, CGLOO_STORE_VALUE_MAX)};
    CHECK(w.big != NULL);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, writer_main, &w) == 0);
    test_sleep_ms(300);
    server_kill();
    pthread_join(t, NULL);
    CHECK_STATUS(w.rc, CGLOO_EIO);
    expect_detail(w.store, "SET");
    free(w.big);
    cgloo_store_destroy(w.store);
    server_stop();
}

/* ---- ranks ---- */

typedef struct ranks_arg {
    const char *url;
    int failures; /* ranks whose connect failed, for the restart test */
    char detail[512];
    pthread_mutex_t lock;
} ranks_arg;

/* check_collectives runs allreduce, broadcast, allgather and a barrier against serial answers. */
static void check_collectives(cgloo_context *ctx, int rank, int size)
{
    enum { COUNT = 1000 };
    static __thread int64_t buf[COUNT], all[COUNT * 8];
    for (int i = 0; i < COUNT; i++)
        buf[i] = rank * 1000 + i;
    CHECK_OK(cgloo_allreduce(ctx, buf, buf, COUNT, CGLOO_INT64, CGLOO_SUM, NULL));
    for (int i = 0; i < COUNT; i++)
        CHECK(buf[i] == 1000LL * size * (size - 1) / 2 + (int64_t)i * size);
    for (int i = 0; i < COUNT; i++)
        buf[i] = rank == size - 1 ? 7 * i : -1;
    CHECK_OK(cgloo_broadcast(ctx, buf, COUNT, CGLOO_INT64, size - 1, NULL));
    for (int i = 0; i < COUNT; i++)
        CHECK(buf[i] == 7 * i);
    int64_t mine = rank * 11;
    CHECK_OK(cgloo_allgather(ctx, &mine, all, 1, CGLOO_INT64, NULL));
    for (int r = 0; r < size; r++)
        CHECK(all[r] == r * 11);
    CHECK_OK(cgloo_barrier(ctx, NULL));
}

static void rank_main(int rank, int size, void *p)
{
    ranks_arg *a = p;
    cgloo_store *s = open_url(a->url);
    rank_env e = mesh_connect(s, rank, size, 10000);
    check_collectives(e.ctx, rank, size);
    mesh_close(e);
    cgloo_store_destroy(s);
}

/* Rendezvous and collectives of 1, 2, 3 and 5 thread ranks, each with its own handle (run ids
 * keep the sizes' keys apart), and of 3 ranks sharing one handle behind a password. */
static void test_rendezvous(void)
{
    server_start("sekrit");
    char u[256], id[32];
    ranks_arg a = {.url = url(u, sizeof u, "sekrit", "?cleanup=1")};
    const int sizes[] = {1, 2, 3, 5};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(id, sizeof id, "threads-%d", sizes[i]);
        CHECK(setenv("CGLOO_RUN_ID", id, 1) == 0);
        run_ranks(sizes[i], rank_main, &a);
    }
    CHECK(cli_number("DBSIZE") == 0); /* every handle cleaned up after itself */
    server_stop();
}

static void rank_on_shared(int rank, int size, void *p)
{
    rank_env e = mesh_connect((cgloo_store *)p, rank, size, 10000);
    check_collectives(e.ctx, rank, size);
    mesh_close(e);
}

static void test_rendezvous_shared_handle(void)
{
    server_start(NULL);
    cgloo_store *s = client();
    run_ranks(4, rank_on_shared, s);
    cgloo_store_destroy(s);
    server_stop();
}

/* Consecutive runs on one namespace, no run id, no cleanup: each run removes its own
 * rendezvous records once connected, so no run reads the one before's. */
static void test_consecutive_runs(void)
{
    server_start(NULL);
    CHECK(unsetenv("CGLOO_RUN_ID") == 0);
    char u[256];
    ranks_arg a = {.url = url(u, sizeof u, NULL, "")};
    for (int run = 0; run < 10; run++)
        run_ranks(3, rank_main, &a);
    server_stop();
}

/* process_rank is one rank as a process: the context from CGLOO_STORE and friends. */
static int process_rank(void)
{
    cgloo_context *ctx = NULL;
    if (cgloo_context_create_from_env(&ctx) != CGLOO_OK)
        return 2;
    check_collectives(ctx, cgloo_context_rank(ctx), cgloo_context_size(ctx));
    cgloo_context_destroy(ctx);
    return 0;
}

/* Ranks as processes, through cgloo_context_create_from_env and a redis:// URL. */
static void test_processes(void)
{
    server_start("sekrit");
    char u[256], env[300];
    url(u, sizeof u, "sekrit", "?cleanup=1");
    enum { N = 3 };
    pid_t pids[N];
    for (int r = 0; r < N; r++) {
        fflush(NULL);
        CHECK((pids[r] = fork()) >= 0);
        if (pids[r] == 0) {
            snprintf(env, sizeof env, "%d", r);
            setenv("CGLOO_RANK", env, 1);
            setenv("CGLOO_SIZE", "3", 1);
            setenv("CGLOO_STORE", u, 1);
            setenv("CGLOO_RUN_ID", "processes", 1);
            setenv("CGLOO_TIMEOUT_MS", "10000", 1);
            _exit(process_rank());
        }
    }
    for (int r = 0; r < N; r++) {
        int status = 0;
        CHECK(waitpid(pids[r], &status, 0) == pids[r]);
        CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    CHECK(cli_number("DBSIZE") == 0);
    server_stop();
}

/* half_rank starts a rendezvous of 3 that only 2 ranks join, and records how it ended. */
static void half_rank(int rank, int size, void *p)
{
    ranks_arg *a = p;
    cgloo_store *s = open_url(a->url);
    cgloo_device *dev = NULL;
    cgloo_context *ctx = NULL;
    CHECK_OK(cgloo_device_tcp_create(NULL, &dev));
    cgloo_context_attr attr = {.timeout_ms = 4000, .name = "half"};
    CHECK_OK(cgloo_context_create(rank, 3, &attr, &ctx));
    int rc = cgloo_context_connect(ctx, s, dev);
    pthread_mutex_lock(&a->lock);
    if (rc != CGLOO_OK) {
        a->failures++;
        if (rc == CGLOO_EIO)
            cgloo_context_last_error(ctx, a->detail, sizeof a->detail);
    }
    pthread_mutex_unlock(&a->lock);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(dev);
    cgloo_store_destroy(s);
}

static void *half_ranks_main(void *p)
{
    run_ranks(2, half_rank, p);
    return NULL;
}

/* The server is killed while two ranks of three wait for the third, and restarted empty: both
 * fail at once (not at their timeout), the server named in their detail; then a new rendezvous
 * through the restarted server works. */
static void test_restart_mid_rendezvous(void)
{
    server_start(NULL);
    char u[256], where[64];
    ranks_arg a = {.url = url(u, sizeof u, NULL, NULL)};
    pthread_mutex_init(&a.lock, NULL);
    pthread_t t;
    long long t0 = test_now_ms();
    CHECK(pthread_create(&t, NULL, half_ranks_main, &a) == 0);
    test_sleep_ms(500);
    server_kill();
    test_sleep_ms(300);
    CHECK(server_run(&server));
    pthread_join(t, NULL);
    CHECK(a.failures == 2 && test_now_ms() - t0 < 3000);
    snprintf(where, sizeof where, "redis://127.0.0.1:%d", server.port);
    if (!strstr(a.detail, where) || !strstr(a.detail, "connection"))
        harness_fail(__FILE__, __LINE__, "the detail names the server", a.detail);
    CHECK(setenv("CGLOO_RUN_ID", "after-restart", 1) == 0);
    run_ranks(2, rank_main, &a);
    server_stop();
}

static const test_case tests[] = {
    {"ops", test_ops, 20},
    {"timeouts", test_timeouts, 20},
    {"waiters_wake", test_waiters_wake, 20},
    {"no_hammering", test_no_hammering, 30},
    {"shared_handle", test_shared_handle, 30},
    {"binary", test_binary, 30},
    {"password", test_password, 30},
    {"server_down", test_server_down, 20},
    {"bad_urls", test_bad_urls, 20},
    {"scoping_cleanup", test_scoping_cleanup, 20},
    {"database", test_database, 20},
    {"reconnect", test_reconnect, 30},
    {"killed_mid_write", test_killed_mid_write, 60},
    {"rendezvous", test_rendezvous, 120},
    {"rendezvous_shared_handle", test_rendezvous_shared_handle, 60},
    {"consecutive_runs", test_consecutive_runs, 60},
    {"processes", test_processes, 60},
    {"restart_mid_rendezvous", test_restart_mid_rendezvous, 60},
};

/* skip_reason says why the tests cannot run here, or NULL. A build without hiredis must say
 * ENOTSUP, naming the package to install. */
static const char *skip_reason(void)
{
    cgloo_store *s = NULL;
    char detail[512];
    int rc = cgloo_store_open_detail("redis://127.0.0.1:1", 1, detail, sizeof detail, &s);
    cgloo_store_destroy(s);
    if (rc == CGLOO_ENOTSUP && strstr(detail, "libhiredis-dev"))
        return "cgloo was built without hiredis: apt-get install libhiredis-dev, then rebuild";
    if (rc == CGLOO_ENOTSUP || rc == CGLOO_OK)
        return NULL; /* ENOTSUP without the hint fails the tests below */
    if (!on_path("redis-server") || !on_path("redis-cli"))
        return "redis-server not found: apt-get install redis-server";
    return NULL;
}

int main(int argc, char **argv)
{
    const char *why = skip_reason();
    if (why) {
        printf("SKIP: %s\n", why);
        return 77;
    }
    return harness_main(argc, argv, tests, sizeof tests / sizeof tests[0]);
}
