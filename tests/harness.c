/* The test harness: a child process and a timeout per test, and the closing tally line. */
#define _GNU_SOURCE
#include "harness.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *current_test = "";

void harness_fail(const char *file, int line, const char *what, const char *detail)
{
    fprintf(stderr, "  FAIL %s: %s:%d: %s%s%s\n", current_test, file, line, what,
            detail ? " -> " : "", detail ? detail : "");
    fflush(stderr);
    _exit(1);
}

/* wait_child waits for pid up to timeout_s; kills it on expiry. Returns its wait status. */
static int wait_child(pid_t pid, int timeout_s, int *timed_out)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec >= timeout_s) {
            *timed_out = 1;
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return status;
        }
        usleep(2000);
    }
}

static int run_one(const test_case *t, int nofork)
{
    current_test = t->name;
    fprintf(stderr, "RUN  %s\n", t->name);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int ok = 0, timed_out = 0;
    if (nofork) {
        t->fn();
        ok = 1;
    } else {
        fflush(NULL);
        pid_t pid = fork();
        if (pid == 0) {
            t->fn();
            fflush(NULL);
            _exit(0);
        }
        int status = wait_child(pid, t->timeout_s, &timed_out);
        ok = !timed_out && WIFEXITED(status) && WEXITSTATUS(status) == 0;
        if (WIFSIGNALED(status) && !timed_out)
            fprintf(stderr, "  FAIL %s: killed by signal %d\n", t->name, WTERMSIG(status));
        if (timed_out)
            fprintf(stderr, "  FAIL %s: timed out after %d s\n", t->name, t->timeout_s);
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    double ms = (b.tv_sec - a.tv_sec) * 1e3 + (b.tv_nsec - a.tv_nsec) / 1e6;
    fprintf(stderr, "%s %s (%.0f ms)\n", ok ? "ok  " : "FAIL", t->name, ms);
    return ok;
}

static int selected(int argc, char **argv, const char *name)
{
    if (argc <= 1)
        return 1;
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], name) == 0)
            return 1;
    return 0;
}

int harness_main(int argc, char **argv, const test_case *tests, size_t ntests)
{
    signal(SIGPIPE, SIG_IGN);
    const char *nf = getenv("HARNESS_NOFORK");
    int nofork = nf && *nf == '1';
    int passed = 0, failed = 0;
    for (size_t i = 0; i < ntests; i++) {
        if (!selected(argc, argv, tests[i].name))
            continue;
        if (run_one(&tests[i], nofork))
            passed++;
        else
            failed++;
    }
    fflush(stderr);
    printf("%d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}

typedef struct rank_thread {
    pthread_t thread;
    int rank, size;
    void (*fn)(int, int, void *);
    void *arg;
} rank_thread;

static void *rank_main(void *p)
{
    rank_thread *t = p;
    t->fn(t->rank, t->size, t->arg);
    return NULL;
}

void run_ranks(int n, void (*fn)(int rank, int size, void *arg), void *arg)
{
    rank_thread *ts = calloc((size_t)n, sizeof *ts);
    if (!ts)
        harness_fail(__FILE__, __LINE__, "calloc", NULL);
    for (int r = 0; r < n; r++) {
        ts[r] = (rank_thread){.rank = r, .size = n, .fn = fn, .arg = arg};
        if (pthread_create(&ts[r].thread, NULL, rank_main, &ts[r]) != 0)
            harness_fail(__FILE__, __LINE__, "pthread_create", NULL);
    }
    for (int r = 0; r < n; r++)
        pthread_join(ts[r].thread, NULL);
    free(ts);
}

const char *test_tmpdir(void)
{
    static char path[512];
    const char *base = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/cgloo-test-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(path))
        harness_fail(__FILE__, __LINE__, "mkdtemp", NULL);
    return path;
}

long long test_now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

void test_sleep_ms(int ms)
{
    usleep((useconds_t)ms * 1000);
}
