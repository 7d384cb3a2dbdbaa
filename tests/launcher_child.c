/* A rank program for test_launcher: it reads what cgloo-run put in its environment and behaves
 * as the first argument says.
 *   info                   store barrier (a counter every rank bumps, then waits to reach
 *                          CGLOO_SIZE), then print this rank's environment on one line
 *   lines                  write two lines to stdout, one to stderr, and a last partial line
 *   fail R CODE SLEEP_MS   rank R exits CODE after 100 ms; the others sleep, print "done R"
 *   kill R                 rank R dies of SIGKILL; the others exit 0
 *   stubborn R             rank R exits 1; the others ignore SIGTERM and sleep
 *   term                   print "ready R", then wait; on SIGTERM print "got SIGTERM R"
 *   hang                   connect a context from the environment, print "ready R PID", and
 *                          wait for good (the launcher's death must end it)
 */
#define _GNU_SOURCE
#include <cgloo/cgloo.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int rank;

static int env_int(const char *name)
{
    const char *v = getenv(name);
    return v ? atoi(v) : -1;
}

static const char *env_str(const char *name)
{
    const char *v = getenv(name);
    return v ? v : "";
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int die(const char *what, int rc)
{
    fprintf(stderr, "launcher_child rank %d: %s: %s\n", rank, what, cgloo_strerror(rc));
    return 10;
}

/* info: the barrier proves every rank reached the same store; the run ids published in it
 * show every rank got the same CGLOO_RUN_ID. */
static int run_info(void)
{
    int size = env_int("CGLOO_SIZE");
    const char *run_id = env_str("CGLOO_RUN_ID");
    cgloo_store *s = NULL;
    int rc = cgloo_store_open(env_str("CGLOO_STORE"), 10000, &s);
    if (rc != CGLOO_OK)
        return die("cgloo_store_open", rc);
    char key[32];
    snprintf(key, sizeof key, "run_id/%d", rank);
    int64_t count = 0;
    if ((rc = cgloo_store_set(s, key, run_id, strlen(run_id))) != CGLOO_OK ||
        (rc = cgloo_store_add(s, "arrived", 1, &count)) != CGLOO_OK)
        return die("set/add", rc);
    for (int i = 0; count < size && i < 2000; i++) {
        sleep_ms(5);
        if ((rc = cgloo_store_add(s, "arrived", 0, &count)) != CGLOO_OK)
            return die("add", rc);
    }
    int match = count == size;
    for (int r = 0; r < size && match; r++) {
        void *v = NULL;
        size_t n = 0;
        snprintf(key, sizeof key, "run_id/%d", r);
        match = cgloo_store_get(s, key, 5000, &v, &n) == CGLOO_OK && strcmp(v, run_id) == 0;
        cgloo_free(v);
    }
    printf("rank=%d size=%d local_rank=%d local_size=%d run_id=%s store=%s barrier=%d\n", rank,
           size, env_int("CGLOO_LOCAL_RANK"), env_int("CGLOO_LOCAL_SIZE"), run_id,
           env_str("CGLOO_STORE"), match);
    cgloo_store_destroy(s);
    return 0;
}

static int run_lines(void)
{
    printf("out %d a\n", rank);
    fflush(stdout);
    fprintf(stderr, "err %d\n", rank);
    printf("out %d b\ntail %d", rank, rank);
    return 0;
}

/* await_term waits up to 20 s for SIGTERM, taken synchronously (blocked before "ready", then
 * sigtimedwait): a handler would not do under ThreadSanitizer, which runs it at the sleep's end
 * when the signal lands between its sleep wrapper's start and the system call, 20 s late. */
static int await_term(void)
{
    sigset_t term;
    sigemptyset(&term);
    sigaddset(&term, SIGTERM);
    sigprocmask(SIG_BLOCK, &term, NULL);
    printf("ready %d\n", rank);
    fflush(stdout);
    struct timespec wait = {.tv_sec = 20};
    if (sigtimedwait(&term, NULL, &wait) != SIGTERM)
        return 0;
    printf("got SIGTERM %d\n", rank);
    fflush(stdout);
    return 0;
}

/* hang: only what the launcher does about its ranks can end this one. */
static int run_hang(void)
{
    cgloo_context *ctx = NULL;
    int rc = cgloo_context_create_from_env(&ctx);
    if (rc != CGLOO_OK)
        return die("cgloo_context_create_from_env", rc);
    printf("ready %d %d\n", rank, (int)getpid());
    fflush(stdout);
    for (;;)
        pause();
}

int main(int argc, char **argv)
{
    rank = env_int("CGLOO_RANK");
    const char *mode = argc > 1 ? argv[1] : "info";
    int who = argc > 2 ? atoi(argv[2]) : -1;
    if (strcmp(mode, "info") == 0)
        return run_info();
    if (strcmp(mode, "lines") == 0)
        return run_lines();
    if (strcmp(mode, "hang") == 0)
        return run_hang();
    if (strcmp(mode, "fail") == 0 && argc > 4) {
        if (rank == who) {
            sleep_ms(100);
            return atoi(argv[3]);
        }
        sleep_ms(atoi(argv[4]));
        printf("done %d\n", rank);
        return 0;
    }
    if (strcmp(mode, "kill") == 0) {
        if (rank == who)
            raise(SIGKILL);
        return 0;
    }
    if (strcmp(mode, "stubborn") == 0) {
        if (rank == who)
            return 1;
        signal(SIGTERM, SIG_IGN);
        sleep_ms(20000);
        return 0;
    }
    if (strcmp(mode, "term") == 0)
        return await_term();
    fprintf(stderr, "launcher_child: unknown mode '%s'\n", mode);
    return 20;
}
