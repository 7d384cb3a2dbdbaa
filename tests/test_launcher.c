/* cgloo-run and cgloo-store, run as real processes: the ranks' environment and store barrier,
 * output tagging, exit statuses of failing, killed and missing programs, the grace period, signal
 * forwarding, usage errors, and the standalone store server. */
#define _GNU_SOURCE
#include "harness.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef CGLOO_RUN_PATH
#error "CGLOO_RUN_PATH must name the cgloo-run binary"
#endif

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* What a run of a tool produced. */
typedef struct run_result {
    int code; /* exit code, or 128 + signal */
    char out[65536], err[65536];
    size_t out_len, err_len;
    int64_t ms;        /* from start to exit */
    int64_t signal_ms; /* from the signal we sent to exit (-1 if none) */
} run_result;

/* When stdout has shown `count` lines containing `text`, send `sig` to the tool. */
typedef struct run_trigger {
    const char *text;
    int count;
    int sig;
} run_trigger;

static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void append(char *buf, size_t *len, size_t cap, const char *p, size_t n)
{
    n = n < cap - 1 - *len ? n : cap - 1 - *len;
    memcpy(buf + *len, p, n);
    *len += n;
    buf[*len] = '\0';
}

/* pump reads both pipes until they close, sending the trigger's signal when it is due. */
static void pump(pid_t pid, int fds[2], const run_trigger *trig, run_result *res)
{
    int open = 2, sent = 0;
    int64_t start = now_ms(), signal_at = -1;
    while (open > 0 && now_ms() - start < 25000) {
        struct pollfd p[2] = {{.fd = fds[0], .events = POLLIN}, {.fd = fds[1], .events = POLLIN}};
        if (poll(p, 2, 100) < 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents || fds[i] < 0)
                continue;
            char buf[4096];
            ssize_t n = read(fds[i], buf, sizeof buf);
            if (n <= 0) {
                close(fds[i]);
                fds[i] = -1;
                open--;
            } else if (i == 0) {
                append(res->out, &res->out_len, sizeof res->out, buf, (size_t)n);
            } else {
                append(res->err, &res->err_len, sizeof res->err, buf, (size_t)n);
            }
        }
        if (trig && !sent && count_of(res->out, trig->text) >= trig->count) {
            kill(pid, trig->sig);
            signal_at = now_ms();
            sent = 1;
        }
    }
    res->signal_ms = signal_at;
}

/* run_tool runs path with args (NULL-terminated, without argv[0]) and collects its output. */
static void run_tool(const char *path, const char *const *args, const run_trigger *trig,
                     run_result *res)
{
    memset(res, 0, sizeof *res);
    int out[2], err[2];
    CHECK(pipe(out) == 0 && pipe(err) == 0);
    const char *argv[32] = {path};
    for (int i = 0; args[i]; i++)
        argv[i + 1] = args[i];
    int64_t t0 = now_ms();
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]);
        close(err[0]);
        execv(path, (char *const *)argv);
        _exit(99);
    }
    close(out[1]);
    close(err[1]);
    int fds[2] = {out[0], err[0]};
    pump(pid, fds, trig, res);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    res->ms = now_ms() - t0;
    if (res->signal_ms >= 0)
        res->signal_ms = now_ms() - res->signal_ms;
    res->code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (getenv("TEST_LAUNCHER_VERBOSE"))
        fprintf(stderr, "--- exit %d in %lld ms\n--- stdout\n%s--- stderr\n%s", res->code,
                (long long)res->ms, res->out, res->err);
}

static run_result res; /* large: keep it off the stack */

static void launch(const char *const *args)
{
    run_tool(CGLOO_RUN_PATH, args, NULL, &res);
}

/* check_info parses the info lines of an n-rank run. */
static void check_info(int n, const char *store_prefix)
{
    char seen[64] = {0}, first_id[64] = "";
    const char *line = res.out;
    for (int i = 0; i < n; i++) {
        int rank, size, lrank, lsize, barrier;
        char run_id[64], store[128];
        CHECK(sscanf(line,
                     "rank=%d size=%d local_rank=%d local_size=%d run_id=%63s store=%127s "
                     "barrier=%d",
                     &rank, &size, &lrank, &lsize, run_id, store, &barrier) == 7);
        CHECK(rank >= 0 && rank < n && !seen[rank]);
        seen[rank] = 1;
        CHECK(size == n && lrank == rank && lsize == n && barrier == 1);
        CHECK(strncmp(store, store_prefix, strlen(store_prefix)) == 0);
        CHECK(strlen(run_id) == 32 && strspn(run_id, "0123456789abcdef") == 32);
        if (i == 0)
            strcpy(first_id, run_id);
        CHECK(strcmp(run_id, first_id) == 0);
        CHECK(strchr(line, '\n'));
        line = strchr(line, '\n') + 1;
    }
    CHECK(count_of(res.out, "\n") == n);
}

static void test_all_succeed(void)
{
    const int sizes[] = {1, 3, 4};
    for (int i = 0; i < 3; i++) {
        char n[8];
        snprintf(n, sizeof n, "%d", sizes[i]);
        launch((const char *[]){"-n", n, LAUNCHER_CHILD_PATH, "info", NULL});
        CHECK(res.code == 0);
        check_info(sizes[i], "tcp://127.0.0.1:");
    }
    /* The same run id never comes twice. */
    char id[40];
    CHECK(sscanf(strstr(res.out, "run_id=") + 7, "%32s", id) == 1);
    launch((const char *[]){"-n1", LAUNCHER_CHILD_PATH, "info", NULL});
    CHECK(res.code == 0 && !strstr(res.out, id));
}

static void test_ipv6_host(void)
{
    launch((const char *[]){"-n", "2", "--host", "::1", LAUNCHER_CHILD_PATH, "info", NULL});
    if (res.code == 1 && strstr(res.err, "cannot start the store")) {
        fprintf(stderr, "  skip: no IPv6 loopback on this machine\n");
        return;
    }
    CHECK(res.code == 0);
    check_info(2, "tcp://[::1]:");
}

static void test_tag(void)
{
    launch((const char *[]){"-n", "3", "--tag", LAUNCHER_CHILD_PATH, "lines", NULL});
    CHECK(res.code == 0);
    for (int r = 0; r < 3; r++) {
        char want[64];
        snprintf(want, sizeof want, "[%d] out %d a\n", r, r);
        CHECK(strstr(res.out, want));
        snprintf(want, sizeof want, "[%d] out %d b\n", r, r);
        CHECK(strstr(res.out, want));
        snprintf(want, sizeof want, "[%d] tail %d\n", r, r); /* partial line, flushed */
        CHECK(strstr(res.out, want));
        snprintf(want, sizeof want, "[%d] err %d\n", r, r);
        CHECK(strstr(res.err, want));
    }
    CHECK(count_of(res.out, "\n") == 9 && count_of(res.out, "] ") == 9);
    CHECK(count_of(res.err, "\n") == 3);

    launch((const char *[]){"-n", "2", LAUNCHER_CHILD_PATH, "lines", NULL});
    CHECK(res.code == 0);
    CHECK(strstr(res.out, "out 1 a\n") && !strstr(res.out, "[1]"));
    CHECK(strstr(res.err, "err 0\n") && !strstr(res.err, "[0]"));
}

/* cpus_of returns the Cpus_allowed_list that rank r printed (static buffer), or NULL. */
static const char *cpus_of(int r)
{
    static char list[128];
    char want[48];
    snprintf(want, sizeof want, "[%d] Cpus_allowed_list:", r);
    const char *at = strstr(res.out, want);
    if (!at || sscanf(at + strlen(want), "%127s", list) != 1)
        return NULL;
    return list;
}

static void test_bind(void)
{
    const char *show = "grep Cpus_allowed_list /proc/self/status";
    launch((const char *[]){"-n", "2", "--tag", "--bind", "core", "/bin/sh", "-c", show, NULL});
    CHECK(res.code == 0);
    for (int r = 0; r < 2; r++) {
        const char *list = cpus_of(r);
        CHECK(list && strspn(list, "0123456789") == strlen(list)); /* one CPU */
    }
    launch((const char *[]){"-n", "2", "--tag", "--bind", "none", "/bin/sh", "-c", show, NULL});
    CHECK(res.code == 0);
    char ours[256] = "";
    FILE *f = fopen("/proc/self/status", "r");
    CHECK(f);
    while (fgets(ours, sizeof ours, f) && strncmp(ours, "Cpus_allowed_list:", 18) != 0) {
    }
    fclose(f);
    char mine[128];
    CHECK(sscanf(ours + 18, "%127s", mine) == 1);
    CHECK(cpus_of(0) && strcmp(cpus_of(0), mine) == 0 && strcmp(cpus_of(1), mine) == 0);
    launch((const char *[]){"-n", "2", "--bind", "sometimes", "/bin/true", NULL});
    CHECK(res.code == 2);
}

static void test_failure_exit_code(void)
{
    /* Rank 1 exits 3; the others would sleep 20 s but are terminated after the grace. */
    launch((const char *[]){"-n", "3", "--grace-ms", "500", LAUNCHER_CHILD_PATH, "fail", "1", "3",
                            "20000", NULL});
    CHECK(res.code == 3);
    CHECK(res.ms >= 550 && res.ms < 4000);
    CHECK(strstr(res.err, "rank 1 exited with status 3"));
    CHECK(!strstr(res.out, "done"));

    /* With a longer grace, ranks that finish on their own are left to finish. */
    launch((const char *[]){"-n", "3", "--grace-ms", "5000", LAUNCHER_CHILD_PATH, "fail", "2", "4",
                            "600", NULL});
    CHECK(res.code == 4);
    CHECK(strstr(res.out, "done 0") && strstr(res.out, "done 1"));
    CHECK(res.ms >= 550 && res.ms < 4000);
}

static void test_sigkill_after_sigterm(void)
{
    /* The others ignore SIGTERM: grace, SIGTERM, a short delay, SIGKILL. */
    launch((const char *[]){"-n", "3", "--grace-ms", "200", LAUNCHER_CHILD_PATH, "stubborn", "0",
                            NULL});
    CHECK(res.code == 1);
    CHECK(res.ms >= 1000 && res.ms < 5000);
    CHECK(strstr(res.err, "ignored SIGTERM"));
}

static void test_killed(void)
{
    launch((const char *[]){"-n", "2", LAUNCHER_CHILD_PATH, "kill", "1", NULL});
    CHECK(res.code == 137);
    CHECK(strstr(res.err, "rank 1 was killed by signal 9"));
}

static void test_missing_program(void)
{
    launch((const char *[]){"-n", "2", "/nonexistent/cgloo-no-such-program", NULL});
    CHECK(res.code == 127);
    CHECK(strstr(res.err, "cannot run '/nonexistent/cgloo-no-such-program'"));
    CHECK(strstr(res.err, "No such file"));
    launch((const char *[]){"-n", "2", "--tag", "cgloo-no-such-program-on-path", NULL});
    CHECK(res.code == 127);
    CHECK(res.ms < 3000);
}

static void test_usage(void)
{
    const char *const *bad[] = {
        (const char *[]){NULL},
        (const char *[]){"-n", NULL},
        (const char *[]){"-n", "0", "true", NULL},
        (const char *[]){"-n", "x", "true", NULL},
        (const char *[]){"-n", "100000", "true", NULL},
        (const char *[]){"-n", "2", NULL},
        (const char *[]){"true", NULL},
        (const char *[]){"--bogus", "-n", "2", "true", NULL},
        (const char *[]){"-n", "2", "--grace-ms", "-1", "true", NULL},
        (const char *[]){"-n", "2", "--grace-ms", NULL},
        (const char *[]){"-n", "2", "--hostname", "x", "true", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        launch(bad[i]);
        CHECK(res.code == 2);
        CHECK(strstr(res.err, "usage:"));
    }
    launch((const char *[]){"--help", NULL});
    CHECK(res.code == 0 && strstr(res.out, "usage:"));
    /* Options after the program belong to the program; "--" ends ours. */
    launch((const char *[]){"-n", "1", "--", "/bin/sh", "-c", "echo \"$CGLOO_SIZE\" \"$@\"", "sh",
                            "-n", "5", NULL});
    CHECK(res.code == 0 && strcmp(res.out, "1 -n 5\n") == 0);
}

static void test_signal_forwarded(void)
{
    run_trigger trig = {"ready", 3, SIGTERM};
    run_tool(CGLOO_RUN_PATH,
             (const char *[]){"-n", "3", "--grace-ms", "10000", LAUNCHER_CHILD_PATH, "term", NULL},
             &trig, &res);
    CHECK(res.code == 128 + SIGTERM);
    CHECK(res.signal_ms >= 0 && res.signal_ms < 3000);
    for (int r = 0; r < 3; r++) {
        char want[32];
        snprintf(want, sizeof want, "got SIGTERM %d\n", r);
        CHECK(strstr(res.out, want));
    }
}

/* read_ready reads the tool's stdout until `n` "ready R PID" lines came; fills pids. */
static void read_ready(int fd, int n, pid_t *pids)
{
    char buf[4096] = "";
    size_t len = 0;
    int64_t start = now_ms();
    while (count_of(buf, "ready ") < n && now_ms() - start < 20000) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) <= 0)
            continue;
        ssize_t got = read(fd, buf + len, sizeof buf - 1 - len);
        CHECK(got > 0);
        len += (size_t)got;
        buf[len] = '\0';
    }
    CHECK(count_of(buf, "ready ") == n);
    const char *at = buf;
    for (int i = 0; i < n; i++) {
        int r, pid;
        at = strstr(at, "ready ");
        CHECK(sscanf(at, "ready %d %d", &r, &pid) == 2 && r >= 0 && r < n);
        pids[r] = pid;
        at += 6;
    }
}

/* all_gone reaps what comes to us (we are the ranks' subreaper once cgloo-run is gone) and
 * tells whether every pid has exited. */
static int all_gone(const pid_t *pids, int n)
{
    while (waitpid(-1, NULL, WNOHANG) > 0) {
    }
    for (int i = 0; i < n; i++)
        if (kill(pids[i], 0) == 0 || errno != ESRCH)
            return 0;
    return 1;
}

/* kill_launcher starts cgloo-run with args (ranks in mode hang), SIGKILLs it once every rank
 * is ready, and returns how long the ranks took to be gone (-1: still there after 10 s). */
static int64_t kill_launcher(const char *const *args, int n)
{
    CHECK(prctl(PR_SET_CHILD_SUBREAPER, 1) == 0);
    int out[2];
    CHECK(pipe(out) == 0);
    const char *argv[32] = {CGLOO_RUN_PATH};
    for (int i = 0; args[i]; i++)
        argv[i + 1] = args[i];
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execv(CGLOO_RUN_PATH, (char *const *)argv);
        _exit(99);
    }
    close(out[1]);
    pid_t pids[16];
    read_ready(out[0], n, pids);
    CHECK(kill(pid, SIGKILL) == 0);
    CHECK(waitpid(pid, NULL, 0) == pid);
    int64_t t0 = now_ms();
    while (!all_gone(pids, n) && now_ms() - t0 < 10000)
        test_sleep_ms(20);
    int64_t took = all_gone(pids, n) ? now_ms() - t0 : -1;
    for (int i = 0; took < 0 && i < n; i++)
        kill(pids[i], SIGKILL);
    close(out[0]);
    return took;
}

/* A SIGKILLed cgloo-run cannot pass anything on: its ranks die with it all the same. */
static void test_launcher_killed(void)
{
    int64_t took = kill_launcher((const char *[]){"-n", "3", LAUNCHER_CHILD_PATH, "hang", NULL}, 3);
    CHECK(took >= 0 && took < 2000);
}

/* Ranks a prefix keeps out of PR_SET_PDEATHSIG's reach (as ssh does) see the store close. */
static void test_store_watch(void)
{
    int64_t took = kill_launcher((const char *[]){"-n", "3", "--launcher", FORK_PREFIX_PATH,
                                                  LAUNCHER_CHILD_PATH, "hang", NULL},
                                 3);
    CHECK(took >= 0 && took < 2000);
}

/* --hosts: blocks of ranks per host, local ranks per host, {host} in the prefix, addresses
 * advertised through CGLOO_HOSTNAME; and what the options refuse. */
static void test_hosts(void)
{
    const char *show = "echo \"$CGLOO_RANK $TEST_HOST $CGLOO_LOCAL_RANK $CGLOO_LOCAL_SIZE "
                       "${CGLOO_HOSTNAME:--} $CGLOO_WATCH_STORE\"";
    launch((const char *[]){"-n", "5", "--host", "127.0.0.1", "--launcher", "env TEST_HOST={host}",
                            "--hosts", "a=127.0.0.2,b", "/bin/sh", "-c", show, NULL});
    CHECK(res.code == 0);
    const char *want[] = {"0 a 0 3 127.0.0.2 1\n", "1 a 1 3 127.0.0.2 1\n", "2 a 2 3 127.0.0.2 1\n",
                          "3 b 0 2 - 1\n", "4 b 1 2 - 1\n"};
    for (int i = 0; i < 5; i++)
        CHECK(strstr(res.out, want[i]));
    char path[256];
    snprintf(path, sizeof path, "%s/hosts", test_tmpdir());
    FILE *f = fopen(path, "w");
    CHECK(f);
    fputs("# two hosts\nx=127.0.0.3\n\ny  # the second\n", f);
    fclose(f);
    launch((const char *[]){"-n", "2", "--host", "127.0.0.1", "--launcher", "env TEST_HOST={host}",
                            "--hostfile", path, "/bin/sh", "-c", show, NULL});
    CHECK(res.code == 0);
    CHECK(strstr(res.out, "0 x 0 1 127.0.0.3 1\n") && strstr(res.out, "1 y 0 1 - 1\n"));
    const char *const *bad[] = {
        (const char *[]){"-n", "2", "--hosts", "a,b", "true", NULL},
        (const char *[]){"-n", "2", "--launcher", "env {host}", "--hosts", "a", "true", NULL},
        (const char *[]){"-n", "2", "--host", "::1", "--launcher", "env", "--hosts", "a", "true",
                         NULL},
        (const char *[]){"-n", "2", "--host", "::1", "--launcher", "e{host}", "--hosts", ",",
                         "true", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        launch(bad[i]);
        CHECK(res.code == 2);
    }
}

/* cgloo-store prints its address, serves, and exits 0 on SIGTERM. */
static void test_store_tool(void)
{
    int out[2];
    CHECK(pipe(out) == 0);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        dup2(out[1], 1);
        close(out[0]);
        execl(CGLOO_STORE_PATH, CGLOO_STORE_PATH, "--port", "0", (char *)NULL);
        _exit(99);
    }
    close(out[1]);
    char line[256] = "";
    size_t len = 0;
    while (len < sizeof line - 1 && !strchr(line, '\n')) {
        ssize_t n = read(out[0], line + len, sizeof line - 1 - len);
        CHECK(n > 0);
        len += (size_t)n;
        line[len] = '\0';
    }
    int port = 0;
    CHECK(sscanf(line, "cgloo-store listening on 127.0.0.1:%d", &port) == 1 && port > 0);
    cgloo_store *s = NULL;
    CHECK_OK(cgloo_store_tcp_connect("127.0.0.1", port, 2000, &s));
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    int present = 0;
    CHECK_OK(cgloo_store_check(s, (const char *const[]){"k"}, 1, &present));
    CHECK(present == 1);
    CHECK(kill(pid, SIGTERM) == 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_STATUS(cgloo_store_set(s, "k", "v", 1), CGLOO_EIO);
    cgloo_store_destroy(s);
    close(out[0]);

    run_tool(CGLOO_STORE_PATH, (const char *[]){"--port", "70000", NULL}, NULL, &res);
    CHECK(res.code == 2);
}

static const test_case tests[] = {
    {"all_succeed", test_all_succeed, 20},
    {"ipv6_host", test_ipv6_host, 10},
    {"tag", test_tag, 10},
    {"bind", test_bind, 10},
    {"failure_exit_code", test_failure_exit_code, 15},
    {"sigkill_after_sigterm", test_sigkill_after_sigterm, 10},
    {"killed", test_killed, 10},
    {"missing_program", test_missing_program, 10},
    {"usage", test_usage, 15},
    {"signal_forwarded", test_signal_forwarded, 30},
    {"store_tool", test_store_tool, 10},
    {"launcher_killed", test_launcher_killed, 30},
    {"store_watch", test_store_watch, 30},
    {"hosts", test_hosts, 20},
};
TEST_MAIN(tests)
