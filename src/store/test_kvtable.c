/* The stores' key/value table on its own: set, get, overwrite, delete, counters on missing,
 * existing and non-counter values, enough keys to grow the bucket array many times, and large
 * and empty values. */
#include "harness.h"
#include "store/kvtable.h"

#include <string.h>

/* set_copy stores a malloc'd copy of the text or bytes, as the stores do. */
static void set_copy(cgloo__kvtable *t, const void *key, size_t klen, const void *v, size_t n)
{
    void *copy = malloc(n ? n : 1);
    CHECK(copy != NULL);
    memcpy(copy, v, n);
    CHECK_OK(cgloo__kvtable_set(t, key, klen, copy, n));
}

static void set_str(cgloo__kvtable *t, const char *key, const char *v)
{
    set_copy(t, key, strlen(key), v, strlen(v));
}

/* expect_str checks that key holds exactly the bytes of want. */
static void expect_str(const cgloo__kvtable *t, const char *key, const char *want)
{
    const void *v = NULL;
    size_t n = SIZE_MAX;
    CHECK(cgloo__kvtable_get(t, key, strlen(key), &v, &n));
    CHECK(n == strlen(want) && memcmp(v, want, n) == 0);
}

static void test_set_get(void)
{
    cgloo__kvtable t;
    cgloo__kvtable_init(&t);
    CHECK(!cgloo__kvtable_has(&t, "a", 1)); /* an empty table has no buckets yet */
    CHECK(!cgloo__kvtable_get(&t, "a", 1, NULL, NULL));
    set_str(&t, "a", "hello");
    expect_str(&t, "a", "hello");
    CHECK(cgloo__kvtable_has(&t, "a", 1));
    CHECK(cgloo__kvtable_get(&t, "a", 1, NULL, NULL));
    /* Keys are bytes with a length: a prefix, a longer key and one with a NUL are all others. */
    set_str(&t, "ab", "two");
    set_copy(&t, "a\0b", 3, "nul", 3);
    expect_str(&t, "a", "hello");
    expect_str(&t, "ab", "two");
    CHECK(!cgloo__kvtable_has(&t, "abc", 3));
    CHECK(cgloo__kvtable_has(&t, "a\0b", 3));
    CHECK(t.count == 3);
    cgloo__kvtable_fini(&t);
    CHECK(t.count == 0 && !cgloo__kvtable_has(&t, "a", 1));
}

static void test_overwrite_delete(void)
{
    cgloo__kvtable t;
    cgloo__kvtable_init(&t);
    cgloo__kvtable_delete(&t, "k", 1); /* absent, on a table with no buckets */
    set_str(&t, "k", "first");
    set_str(&t, "k", "second, longer");
    expect_str(&t, "k", "second, longer");
    set_str(&t, "k", "");
    expect_str(&t, "k", "");
    CHECK(t.count == 1);
    set_str(&t, "other", "x");
    cgloo__kvtable_delete(&t, "k", 1);
    CHECK(!cgloo__kvtable_has(&t, "k", 1));
    cgloo__kvtable_delete(&t, "k", 1); /* absent again */
    expect_str(&t, "other", "x");
    CHECK(t.count == 1);
    set_str(&t, "k", "back");
    expect_str(&t, "k", "back");
    cgloo__kvtable_fini(&t);
    /* A finished table is empty and can be used again. */
    set_str(&t, "again", "yes");
    expect_str(&t, "again", "yes");
    cgloo__kvtable_fini(&t);
}

static void test_add(void)
{
    cgloo__kvtable t;
    cgloo__kvtable_init(&t);
    int64_t r = 0;
    CHECK_OK(cgloo__kvtable_add(&t, "n", 1, 5, &r)); /* missing counts as 0 */
    CHECK(r == 5);
    expect_str(&t, "n", "5");
    CHECK_OK(cgloo__kvtable_add(&t, "n", 1, -7, &r));
    CHECK(r == -2);
    expect_str(&t, "n", "-2");
    CHECK_OK(cgloo__kvtable_add(&t, "z", 1, 0, &r));
    CHECK(r == 0);
    expect_str(&t, "z", "0");
    set_str(&t, "text", "41"); /* a counter written by set */
    CHECK_OK(cgloo__kvtable_add(&t, "text", 4, 1, &r));
    CHECK(r == 42);
    expect_str(&t, "text", "42");
    /* The sum wraps modulo 2^64. */
    set_str(&t, "big", "9223372036854775807");
    CHECK_OK(cgloo__kvtable_add(&t, "big", 3, 1, &r));
    CHECK(r == INT64_MIN);
    expect_str(&t, "big", "-9223372036854775808");
    CHECK_OK(cgloo__kvtable_add(&t, "big", 3, -1, &r));
    CHECK(r == INT64_MAX);
    cgloo__kvtable_fini(&t);
}

static void test_add_not_counter(void)
{
    cgloo__kvtable t;
    cgloo__kvtable_init(&t);
    const char *bad[] = {"abc", "", "12x", " 12x", "1.5", "99999999999999999999"};
    int64_t r = 12345;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        set_str(&t, "k", bad[i]);
        CHECK_STATUS(cgloo__kvtable_add(&t, "k", 1, 1, &r), CGLOO_ESTORE);
        expect_str(&t, "k", bad[i]); /* unchanged */
    }
    const unsigned char binary[] = {0xff, 0x00, 0x10};
    set_copy(&t, "b", 1, binary, sizeof binary);
    CHECK_STATUS(cgloo__kvtable_add(&t, "b", 1, 1, &r), CGLOO_ESTORE);
    CHECK(r == 12345);
    const void *v;
    size_t n;
    CHECK(cgloo__kvtable_get(&t, "b", 1, &v, &n) && n == 3 && memcmp(v, binary, 3) == 0);
    cgloo__kvtable_fini(&t);
}

#define MANY 20000

static void many_key(int i, char *buf, size_t len)
{
    snprintf(buf, len, "rank/%d/addr", i);
}

static void test_many_keys(void)
{
    cgloo__kvtable t;
    cgloo__kvtable_init(&t);
    char key[32], val[32];
    for (int i = 0; i < MANY; i++) {
        many_key(i, key, sizeof key);
        snprintf(val, sizeof val, "value %d", i);
        set_str(&t, key, val);
    }
    CHECK(t.count == MANY);
    CHECK(t.nbuckets >= MANY); /* grew from 64, doubling */
    CHECK((t.nbuckets & (t.nbuckets - 1)) == 0);
    for (int i = 0; i < MANY; i += 2) {
        many_key(i, key, sizeof key);
        cgloo__kvtable_delete(&t, key, strlen(key));
    }
    CHECK(t.count == MANY / 2);
    for (int i = 0; i < MANY; i++) {
        many_key(i, key, sizeof key);
        snprintf(val, sizeof val, "value %d", i);
        if (i % 2)
            expect_str(&t, key, val);
        else
            CHECK(!cgloo__kvtable_has(&t, key, strlen(key)));
    }
    cgloo__kvtable_fini(&t);
}

static void test_large_values(void)
{
    cgloo__kvtable t;
    cgloo__kvtable_init(&t);
    size_t n = (size_t)CGLOO_STORE_VALUE_MAX;
    uint8_t *big = malloc(n);
    CHECK(big != NULL);
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 131 + (i >> 13));
    CHECK_OK(cgloo__kvtable_set(&t, "big", 3, big, n)); /* the table owns big now */
    const void *v;
    size_t got;
    CHECK(cgloo__kvtable_get(&t, "big", 3, &v, &got) && got == n && v == big);
    uint8_t *bigger = malloc(n);
    CHECK(bigger != NULL);
    memset(bigger, 0xab, n);
    CHECK_OK(cgloo__kvtable_set(&t, "big", 3, bigger, n)); /* frees the first */
    CHECK(cgloo__kvtable_get(&t, "big", 3, &v, &got) && got == n);
    CHECK(((const uint8_t *)v)[0] == 0xab && ((const uint8_t *)v)[n - 1] == 0xab);
    set_str(&t, "big", "small");
    expect_str(&t, "big", "small");
    cgloo__kvtable_fini(&t);
}

/* count_entry counts the entries foreach shows and checks each value against its key; it stops
 * the walk at the entry whose key is "stop" when asked to. */
typedef struct walk {
    int seen, stop_at_stop;
} walk;

static int count_entry(void *arg, const void *key, size_t klen, const void *value, size_t vlen)
{
    walk *w = arg;
    w->seen++;
    CHECK(vlen == klen + 1 && memcmp(value, "v", 1) == 0 &&
          memcmp((const char *)value + 1, key, klen) == 0);
    return w->stop_at_stop && klen == 4 && memcmp(key, "stop", 4) == 0 ? 7 : 0;
}

static void test_foreach(void)
{
    cgloo__kvtable t;
    cgloo__kvtable_init(&t);
    walk w = {0};
    CHECK(cgloo__kvtable_foreach(&t, count_entry, &w) == 0 && w.seen == 0);
    char key[32], val[40];
    for (int i = 0; i < MANY; i++) {
        many_key(i, key, sizeof key);
        snprintf(val, sizeof val, "v%s", key);
        set_str(&t, key, val);
    }
    set_str(&t, "stop", "vstop");
    CHECK(cgloo__kvtable_foreach(&t, count_entry, &w) == 0 && w.seen == MANY + 1);
    w = (walk){.stop_at_stop = 1};
    CHECK(cgloo__kvtable_foreach(&t, count_entry, &w) == 7 && w.seen >= 1 && w.seen <= MANY + 1);
    cgloo__kvtable_fini(&t);
}

static const test_case tests[] = {
    {"foreach", test_foreach, 10},
    {"set_get", test_set_get, 10},
    {"overwrite_delete", test_overwrite_delete, 10},
    {"add", test_add, 10},
    {"add_not_counter", test_add_not_counter, 10},
    {"many_keys", test_many_keys, 30},
    {"large_values", test_large_values, 30},
};
TEST_MAIN(tests)
