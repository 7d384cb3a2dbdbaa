/* The PyTorch TCPStore client (torch://) against real servers: Debian's python3-torch's own
 * TCPStore (the legacy protocol of 1.13), and our reimplementation of the newer protocol in its
 * three server behaviours (tests/torch_store_server.py), each in a helper Python process. Every
 * op, a wait that times out (the connection is dropped and dialled again), keys set by PyTorch
 * read here and the reverse, and a server that goes away. */
#define _GNU_SOURCE
#include "harness.h"

#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef TORCH_SERVER_PY
#error "TORCH_SERVER_PY must name tests/torch_store_server.py"
#endif
#define PYTHON "/usr/bin/python3"

typedef struct helper {
    pid_t pid;
    int to, from; /* its stdin (closing it ends the server) and stdout */
    int port;
} helper;

/* read_line reads one line of the helper's stdout (without the newline); 0 at end of file. */
static int read_line(int fd, char *buf, size_t size)
{
    size_t n = 0;
    while (n + 1 < size) {
        ssize_t r = read(fd, buf + n, 1);
        if (r <= 0)
            break;
        if (buf[n] == '\n')
            break;
        n++;
    }
    buf[n] = '\0';
    return n > 0;
}

/* start_helper runs the server of `kind`; returns 0 when it could not start: the helper then
 * exits 77 (torch missing) or 76 (no /usr/bin/python3). */
static int start_helper(const char *kind, helper *h)
{
    int in[2], out[2];
    CHECK(pipe(in) == 0 && pipe(out) == 0);
    h->pid = fork();
    CHECK(h->pid >= 0);
    if (h->pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        execl(PYTHON, PYTHON, TORCH_SERVER_PY, kind, (char *)NULL);
        _exit(76); /* no Python to run it */
    }
    close(in[0]);
    close(out[1]);
    h->to = in[1];
    h->from = out[0];
    char line[64];
    if (!read_line(h->from, line, sizeof line))
        return 0;
    h->port = atoi(line);
    CHECK(h->port > 0);
    return 1;
}

/* stop_helper closes its stdin and returns what it printed last, and its exit code. */
static int stop_helper(helper *h, char *last, size_t size)
{
    close(h->to);
    last[0] = '\0';
    read_line(h->from, last, size);
    close(h->from);
    int status = 0;
    CHECK(waitpid(h->pid, &status, 0) == h->pid);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static cgloo_store *open_torch(int port)
{
    char url[64];
    snprintf(url, sizeof url, "torch://127.0.0.1:%d", port);
    cgloo_store *s = NULL;
    CHECK_OK(cgloo_store_open(url, 10000, &s));
    return s;
}

/* exercise runs every op; what it leaves ("c/value" = "abc", "c/count" = 3, no "c/deleted")
 * is what the real server's helper reads back through PyTorch's own client. */
static void exercise(cgloo_store *s)
{
    void *v = NULL;
    size_t n = 0;
    CHECK_OK(cgloo_store_get(s, "py/hello", 2000, &v, &n)); /* set by the server's side */
    CHECK(n == 5 && memcmp(v, "world", 5) == 0);
    cgloo_free(v);
    CHECK_OK(cgloo_store_set(s, "c/value", "abc", 3));
    CHECK_OK(cgloo_store_set(s, "c/empty", "", 0));
    CHECK_OK(cgloo_store_get(s, "c/empty", 2000, &v, &n));
    CHECK(n == 0);
    cgloo_free(v);
    int64_t count = 0;
    CHECK_OK(cgloo_store_add(s, "c/count", 5, &count));
    CHECK(count == 5);
    CHECK_OK(cgloo_store_add(s, "c/count", -2, &count));
    CHECK(count == 3);
    int present = -1;
    CHECK_OK(cgloo_store_set(s, "c/deleted", "x", 1));
    CHECK_OK(cgloo_store_check(s, (const char *const[]){"c/deleted", "c/value"}, 2, &present));
    CHECK(present == 1);
    CHECK_OK(cgloo_store_delete(s, "c/deleted"));
    CHECK_OK(cgloo_store_check(s, (const char *const[]){"c/deleted"}, 1, &present));
    CHECK(present == 0);
    CHECK_OK(cgloo_store_wait(s, (const char *const[]){"c/value", "py/hello"}, 2, 2000));
    void *vals[2] = {0};
    size_t lens[2] = {0};
    CHECK_OK(cgloo_store_multi_get(s, (const char *const[]){"c/value", "py/hello"}, 2, 2000, vals,
                                   lens));
    CHECK(lens[0] == 3 && lens[1] == 5 && memcmp(vals[1], "world", 5) == 0);
    cgloo_free(vals[0]);
    cgloo_free(vals[1]);
}

/* A wait that times out drops the connection; the next call dials again and works. */
static void timeout_then_again(cgloo_store *s)
{
    long long t0 = test_now_ms();
    void *v = NULL;
    size_t n = 0;
    CHECK_STATUS(cgloo_store_get(s, "never", 300, &v, &n), CGLOO_ETIMEDOUT);
    CHECK(test_now_ms() - t0 < 2000);
    CHECK_STATUS(cgloo_store_wait(s, (const char *const[]){"never"}, 1, 200), CGLOO_ETIMEDOUT);
    CHECK_OK(cgloo_store_get(s, "c/value", 2000, &v, &n));
    CHECK(n == 3 && memcmp(v, "abc", 3) == 0);
    cgloo_free(v);
}

/* A big value crosses intact. */
static void large_value(cgloo_store *s)
{
    size_t len = 3u << 20;
    char *big = malloc(len);
    for (size_t i = 0; i < len; i++)
        big[i] = (char)(i * 7);
    CHECK_OK(cgloo_store_set(s, "c/big", big, len));
    void *v = NULL;
    size_t n = 0;
    CHECK_OK(cgloo_store_get(s, "c/big", 5000, &v, &n));
    CHECK(n == len && memcmp(v, big, len) == 0);
    cgloo_free(v);
    free(big);
}

static void run_kind(const char *kind, int interop)
{
    helper h;
    if (!start_helper(kind, &h)) {
        char last[64];
        int code = stop_helper(&h, last, sizeof last);
        CHECK(code == 77 || code == 76);
        printf("  skip: %s is not installed (%s)\n", code == 77 ? "python3-torch" : "python3",
               kind);
        return;
    }
    cgloo_store *s = open_torch(h.port);
    exercise(s);
    timeout_then_again(s);
    large_value(s);
    char last[64];
    int code = stop_helper(&h, last, sizeof last);
    CHECK(code == 0);
    if (interop)
        CHECK(strcmp(last, "interop ok") == 0);
    /* The server is gone: calls fail with EIO rather than hang. */
    int present;
    CHECK_STATUS(cgloo_store_check(s, (const char *const[]){"c/value"}, 1, &present), CGLOO_EIO);
    cgloo_store_destroy(s);
}

static void test_torch_1_13(void)
{
    run_kind("torch", 1);
}

static void test_validated_ping(void)
{
    run_kind("validated-ping", 0);
}

static void test_validated(void)
{
    run_kind("validated", 0);
}

/* A first request that is not VALIDATE is ignored by this kind: the probe costs its wait. */
static void test_libuv(void)
{
    long long t0 = test_now_ms();
    run_kind("libuv", 0);
    CHECK(test_now_ms() - t0 < 8000);
}

static void test_nothing_listens(void)
{
    helper h;
    char last[64];
    if (!start_helper("validated-ping", &h)) {
        stop_helper(&h, last, sizeof last);
        return;
    }
    int port = h.port;
    stop_helper(&h, last, sizeof last);
    cgloo_store *s = NULL;
    char url[64];
    snprintf(url, sizeof url, "torch://127.0.0.1:%d", port);
    CHECK_STATUS(cgloo_store_open(url, 300, &s), CGLOO_ECONNREFUSED);
    CHECK_STATUS(cgloo_store_open("torch://127.0.0.1", 300, &s), CGLOO_EINVAL);
}

static const test_case tests[] = {
    {"torch_1_13", test_torch_1_13, 60},
    {"validated_ping", test_validated_ping, 30},
    {"validated", test_validated, 30},
    {"libuv", test_libuv, 30},
    {"nothing_listens", test_nothing_listens, 30},
};
TEST_MAIN(tests)
