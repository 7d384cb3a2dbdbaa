/*
 * A tiny test harness. Each test runs in its own child process with its own timeout (so a hang
 * or a crash fails that test only); the run ends with the line "N passed, N failed".
 *
 *   static void test_something(void) { CHECK_OK(cgloo_...); CHECK(x == 1); }
 *   static const test_case tests[] = {{"something", test_something, 10}};
 *   TEST_MAIN(tests)
 *
 * `prog NAME...` runs only the named tests; HARNESS_NOFORK=1 runs them in-process (debuggers).
 */
#ifndef CGLOO_TESTS_HARNESS_H
#define CGLOO_TESTS_HARNESS_H

#include <cgloo/cgloo.h>

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct test_case {
    const char *name;
    void (*fn)(void);
    int timeout_s;
} test_case;

int harness_main(int argc, char **argv, const test_case *tests, size_t ntests);
void harness_fail(const char *file, int line, const char *what, const char *detail);

#define TEST_MAIN(table)                                                                           \
    int main(int argc, char **argv)                                                                \
    {                                                                                              \
        return harness_main(argc, argv, table, sizeof(table) / sizeof((table)[0]));                \
    }

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond))                                                                               \
            harness_fail(__FILE__, __LINE__, #cond, NULL);                                         \
    } while (0)

/* CHECK_STATUS(expr, want): expr returns a cgloo status that must equal want. */
#define CHECK_STATUS(expr, want)                                                                   \
    do {                                                                                           \
        int check_rc_ = (expr);                                                                    \
        if (check_rc_ != (want))                                                                   \
            harness_fail(__FILE__, __LINE__, #expr, cgloo_status_name(check_rc_));                 \
    } while (0)
#define CHECK_OK(expr) CHECK_STATUS(expr, CGLOO_OK)

/* run_ranks starts n threads calling fn(rank, n, arg) and joins them all. */
void run_ranks(int n, void (*fn)(int rank, int size, void *arg), void *arg);

/* test_now_ms is a monotonic clock in milliseconds; test_sleep_ms sleeps. */
long long test_now_ms(void);
void test_sleep_ms(int ms);

/* test_tmpdir makes a fresh directory under $TMPDIR (or /tmp) and returns its path (static). */
const char *test_tmpdir(void);

#endif
