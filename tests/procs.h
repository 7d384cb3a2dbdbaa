/*
 * Ranks as real processes, for the tests that need them (a rank killed with SIGKILL, memory
 * read across processes, descriptors counted per process): one forked child per rank, which
 * dies with the test (PR_SET_PDEATHSIG), meeting the others through a file store in a fresh
 * directory; the parent reaps them with a deadline, so that a hung rank fails the test instead
 * of hanging it.
 *
 *   procs w;
 *   procs_init(&w, 3, "mytest");
 *   for (int r = 0; r < 3; r++)
 *       procs_spawn(&w, r, rank_body, arg);   // rank_body(&w, r, arg) in the child
 *   procs_expect_ok(&w, 3, 20000);            // every rank exited with 0 within 20 s
 */
#ifndef CGLOO_TESTS_PROCS_H
#define CGLOO_TESTS_PROCS_H

#include "harness.h"

#include <cgloo/cgloo.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#define PROCS_MAX 16

typedef struct procs {
    char dir[512];      /* the file store's directory, fresh for each world */
    const char *run_id; /* the file store's run id */
    int size;
    pid_t pid[PROCS_MAX]; /* 0 once reaped */
} procs;

typedef void (*procs_fn)(procs *w, int rank, void *arg);

static inline void procs_init(procs *w, int size, const char *run_id)
{
    memset(w, 0, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "%s", test_tmpdir());
    w->run_id = run_id;
    w->size = size;
}

/* procs_store opens the world's file store (each process its own). */
static inline cgloo_store *procs_store(const procs *w)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_file_create(w->dir, w->run_id, &s));
    return s;
}

/* procs_spawn runs fn(w, rank, arg) in a child process that dies with its parent and exits
 * with 0 when fn returns (a failed CHECK exits with 1). */
static inline void procs_spawn(procs *w, int rank, procs_fn fn, void *arg)
{
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        fn(w, rank, arg);
        fflush(NULL);
        _exit(0);
    }
    w->pid[rank] = pid;
}

/* procs_kill_all ends every rank not reaped yet (a stopped one too). */
static inline void procs_kill_all(procs *w)
{
    for (int r = 0; r < w->size; r++)
        if (w->pid[r] > 0) {
            kill(w->pid[r], SIGKILL);
            kill(w->pid[r], SIGCONT);
            waitpid(w->pid[r], NULL, 0);
            w->pid[r] = 0;
        }
}

/* procs_reap waits up to ms for rank's process and returns its wait status; a rank still
 * running then fails the test (after every rank is killed). */
static inline int procs_reap(procs *w, int rank, int ms)
{
    long long until = test_now_ms() + ms;
    int status = 0;
    for (;;) {
        pid_t got = waitpid(w->pid[rank], &status, WNOHANG);
        if (got == w->pid[rank]) {
            w->pid[rank] = 0;
            return status;
        }
        if (test_now_ms() > until) {
            char what[64];
            snprintf(what, sizeof what, "rank %d still running after %d ms", rank, ms);
            procs_kill_all(w);
            harness_fail(__FILE__, __LINE__, what, NULL);
        }
        test_sleep_ms(5);
    }
}

/* procs_expect_ok reaps ranks 0..n-1 within ms in all and fails, naming each, unless every one
 * exited with 0. */
static inline void procs_expect_ok(procs *w, int n, int ms)
{
    long long until = test_now_ms() + ms;
    int bad = 0;
    for (int r = 0; r < n; r++) {
        long long left = until - test_now_ms();
        int status = procs_reap(w, r, left > 0 ? (int)left : 1);
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
            continue;
        bad++;
        if (WIFSIGNALED(status))
            fprintf(stderr, "  rank %d killed by signal %d\n", r, WTERMSIG(status));
        else
            fprintf(stderr, "  rank %d exited with %d\n", r, WEXITSTATUS(status));
    }
    if (bad) {
        procs_kill_all(w);
        harness_fail(__FILE__, __LINE__, "some rank failed", NULL);
    }
}

#endif
