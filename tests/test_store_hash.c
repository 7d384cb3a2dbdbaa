/* The in-process store: set/get, waits that time out, counters, deletes, bad arguments, and many
 * threads waiting on keys that other threads set. */
#include "harness.h"

#include <string.h>

static void test_set_get(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    CHECK_OK(cgloo_store_set(s, "a", "hello", 5));
    void *v;
    size_t n;
    CHECK_OK(cgloo_store_get(s, "a", 1000, &v, &n));
    CHECK(n == 5 && memcmp(v, "hello", 5) == 0 && ((char *)v)[5] == '\0');
    cgloo_free(v);
    CHECK_OK(cgloo_store_set(s, "a", "", 0));
    CHECK_OK(cgloo_store_get(s, "a", 1000, &v, &n));
    CHECK(n == 0);
    cgloo_free(v);
    cgloo_store_destroy(s);
}

static void test_timeout(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    void *v = NULL;
    size_t n = 0;
    CHECK_STATUS(cgloo_store_get(s, "missing", 50, &v, &n), CGLOO_ETIMEDOUT);
    CHECK(v == NULL);
    const char *keys[] = {"x", "y"};
    CHECK_OK(cgloo_store_set(s, "x", "1", 1));
    CHECK_STATUS(cgloo_store_wait(s, keys, 2, 50), CGLOO_ETIMEDOUT);
    int present = -1;
    CHECK_OK(cgloo_store_check(s, keys, 2, &present));
    CHECK(present == 0);
    CHECK_OK(cgloo_store_set(s, "y", "2", 1));
    CHECK_OK(cgloo_store_check(s, keys, 2, &present));
    CHECK(present == 1);
    cgloo_store_destroy(s);
}

static void test_add_delete(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "c", 5, &r));
    CHECK(r == 5);
    CHECK_OK(cgloo_store_add(s, "c", -7, &r));
    CHECK(r == -2);
    CHECK_OK(cgloo_store_set(s, "text", "abc", 3));
    CHECK_STATUS(cgloo_store_add(s, "text", 1, &r), CGLOO_ESTORE);
    CHECK_OK(cgloo_store_delete(s, "c"));
    CHECK_OK(cgloo_store_delete(s, "c"));
    CHECK_OK(cgloo_store_add(s, "c", 1, &r));
    CHECK(r == 1);
    cgloo_store_destroy(s);
}

static void test_bad_args(void)
{
    cgloo_store *s;
    CHECK_OK(cgloo_store_hash_create(&s));
    void *v;
    size_t n;
    CHECK_STATUS(cgloo_store_set(s, "", "x", 1), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_set(s, NULL, "x", 1), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_set(s, "k", NULL, 1), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_get(s, "k", 10, NULL, &n), CGLOO_EINVAL);
    char big[CGLOO_STORE_KEY_MAX + 2];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    CHECK_STATUS(cgloo_store_get(s, big, 10, &v, &n), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_set(NULL, "k", "x", 1), CGLOO_EINVAL);
    cgloo_store_destroy(s);
    cgloo_store_destroy(NULL);
}

static cgloo_store *shared_store;

/* Each rank publishes its key, then reads every other rank's: waits resolve as keys appear. */
static void rank_exchange(int rank, int size, void *arg)
{
    char key[32], val[32];
    snprintf(key, sizeof key, "rank/%d", rank);
    snprintf(val, sizeof val, "value-%d", rank);
    CHECK_OK(cgloo_store_set(shared_store, key, val, strlen(val)));
    int64_t r;
    CHECK_OK(cgloo_store_add(shared_store, "arrived", 1, &r));
    for (int p = 0; p < size; p++) {
        void *v;
        size_t n;
        snprintf(key, sizeof key, "rank/%d", p);
        snprintf(val, sizeof val, "value-%d", p);
        CHECK_OK(cgloo_store_get(shared_store, key, 5000, &v, &n));
        CHECK(n == strlen(val) && memcmp(v, val, n) == 0);
        cgloo_free(v);
    }
}

static void test_concurrent_waiters(void)
{
    CHECK_OK(cgloo_store_hash_create(&shared_store));
    run_ranks(16, rank_exchange, NULL);
    int64_t r;
    CHECK_OK(cgloo_store_add(shared_store, "arrived", 0, &r));
    CHECK(r == 16);
    const char *keys[] = {"rank/0", "rank/15"};
    void *vals[2];
    size_t lens[2];
    CHECK_OK(cgloo_store_multi_get(shared_store, keys, 2, 1000, vals, lens));
    CHECK(lens[0] == 7 && memcmp(vals[1], "value-15", 8) == 0);
    cgloo_free(vals[0]);
    cgloo_free(vals[1]);
    cgloo_store_destroy(shared_store);
}

static const test_case tests[] = {
    {"set_get", test_set_get, 10},
    {"timeout", test_timeout, 10},
    {"add_delete", test_add_delete, 10},
    {"bad_args", test_bad_args, 10},
    {"concurrent_waiters", test_concurrent_waiters, 20},
};
TEST_MAIN(tests)
