/* The prefix store (namespacing, nesting, key length limits) and the custom store (callbacks
 * wrapping a hash store: required and optional callbacks, NUL-terminated values, status
 * pass-through, destroy exactly once). */
#include "harness.h"

#include <string.h>

static void expect_value(cgloo_store *s, const char *key, const char *want)
{
    void *v = NULL;
    size_t n = 0;
    CHECK_OK(cgloo_store_get(s, key, 1000, &v, &n));
    CHECK(n == strlen(want) && memcmp(v, want, n) == 0 && ((char *)v)[n] == '\0');
    cgloo_free(v);
}

static int present(cgloo_store *s, const char *key)
{
    int all = -1;
    CHECK_OK(cgloo_store_check(s, &key, 1, &all));
    return all;
}

static void test_prefix_namespacing(void)
{
    cgloo_store *h, *p, *q;
    CHECK_OK(cgloo_store_hash_create(&h));
    CHECK_OK(cgloo_store_prefix_create(h, "p", &p));
    CHECK_OK(cgloo_store_prefix_create(h, "q", &q));
    CHECK_OK(cgloo_store_set(p, "key", "in-p", 4));
    expect_value(h, "p/key", "in-p");
    expect_value(p, "key", "in-p");
    CHECK(present(q, "key") == 0);
    CHECK(present(h, "key") == 0);
    void *v = NULL;
    size_t n = 0;
    CHECK_STATUS(cgloo_store_get(q, "key", 20, &v, &n), CGLOO_ETIMEDOUT);
    CHECK_OK(cgloo_store_set(q, "key", "in-q", 4));
    expect_value(p, "key", "in-p");
    expect_value(h, "q/key", "in-q");
    /* Keys set in the inner store under the prefix show through. */
    CHECK_OK(cgloo_store_set(h, "p/other", "o", 1));
    expect_value(p, "other", "o");
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(p, "ctr", 2, &r));
    CHECK_OK(cgloo_store_add(q, "ctr", 5, &r));
    CHECK(r == 5);
    expect_value(h, "p/ctr", "2");
    const char *keys[] = {"key", "other", "ctr"};
    CHECK_OK(cgloo_store_wait(p, keys, 3, 1000));
    CHECK_STATUS(cgloo_store_wait(q, keys, 3, 20), CGLOO_ETIMEDOUT);
    int all = -1;
    CHECK_OK(cgloo_store_check(p, keys, 3, &all));
    CHECK(all == 1);
    CHECK_OK(cgloo_store_check(q, keys, 3, &all));
    CHECK(all == 0);
    void *vals[3];
    size_t lens[3];
    CHECK_OK(cgloo_store_multi_get(p, keys, 3, 1000, vals, lens));
    CHECK(lens[0] == 4 && memcmp(vals[0], "in-p", 4) == 0);
    CHECK(lens[1] == 1 && memcmp(vals[1], "o", 1) == 0);
    CHECK(lens[2] == 1 && memcmp(vals[2], "2", 1) == 0);
    for (int i = 0; i < 3; i++)
        cgloo_free(vals[i]);
    CHECK_OK(cgloo_store_delete(p, "key"));
    CHECK(present(h, "p/key") == 0);
    CHECK(present(h, "q/key") == 1);
    /* Destroying a prefix store leaves the inner store usable. */
    cgloo_store_destroy(p);
    cgloo_store_destroy(q);
    expect_value(h, "q/key", "in-q");
    cgloo_store_destroy(h);
}

static void test_prefix_nesting(void)
{
    cgloo_store *h, *a, *ab, *abc;
    CHECK_OK(cgloo_store_hash_create(&h));
    CHECK_OK(cgloo_store_prefix_create(h, "a", &a));
    CHECK_OK(cgloo_store_prefix_create(a, "b", &ab));
    CHECK_OK(cgloo_store_prefix_create(ab, "c/d", &abc));
    CHECK_OK(cgloo_store_set(ab, "k", "1", 1));
    CHECK_OK(cgloo_store_set(abc, "k", "2", 1));
    expect_value(h, "a/b/k", "1");
    expect_value(a, "b/k", "1");
    expect_value(h, "a/b/c/d/k", "2");
    expect_value(a, "b/c/d/k", "2");
    CHECK(present(a, "k") == 0);
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(abc, "n", 3, &r));
    expect_value(h, "a/b/c/d/n", "3");
    cgloo_store_destroy(abc);
    cgloo_store_destroy(ab);
    cgloo_store_destroy(a);
    cgloo_store_destroy(h);
}

static void test_prefix_limits(void)
{
    cgloo_store *h, *p = NULL;
    CHECK_OK(cgloo_store_hash_create(&h));
    CHECK_STATUS(cgloo_store_prefix_create(NULL, "p", &p), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_prefix_create(h, NULL, &p), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_prefix_create(h, "", &p), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_prefix_create(h, "p", NULL), CGLOO_EINVAL);
    static char prefix[CGLOO_STORE_KEY_MAX + 8];
    memset(prefix, 'P', CGLOO_STORE_KEY_MAX - 1); /* no room for "/" and a key */
    CHECK_STATUS(cgloo_store_prefix_create(h, prefix, &p), CGLOO_EINVAL);
    memset(prefix, 'P', sizeof prefix - 1);
    CHECK_STATUS(cgloo_store_prefix_create(h, prefix, &p), CGLOO_EINVAL);
    CHECK(p == NULL);
    /* A 1000-byte prefix plus "/" leaves 23 bytes for the key. */
    prefix[1000] = '\0';
    CHECK_OK(cgloo_store_prefix_create(h, prefix, &p));
    char fits[24], too_long[25];
    memset(fits, 'k', 23);
    fits[23] = '\0';
    memset(too_long, 'k', 24);
    too_long[24] = '\0';
    CHECK_OK(cgloo_store_set(p, fits, "v", 1));
    expect_value(p, fits, "v");
    void *v = NULL;
    size_t n = 0;
    int all = -1;
    int64_t r = 0;
    CHECK_STATUS(cgloo_store_set(p, too_long, "v", 1), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_get(p, too_long, 10, &v, &n), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_add(p, too_long, 1, &r), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_delete(p, too_long), CGLOO_EINVAL);
    const char *keys[] = {fits, too_long};
    CHECK_STATUS(cgloo_store_wait(p, keys, 2, 10), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_check(p, keys, 2, &all), CGLOO_EINVAL);
    void *vals[2];
    size_t lens[2];
    CHECK_STATUS(cgloo_store_multi_get(p, keys, 2, 10, vals, lens), CGLOO_EINVAL);
    CHECK(v == NULL && all == -1);
    cgloo_store_destroy(p);
    cgloo_store_destroy(h);
}

static void test_prefix_over_file(void)
{
    cgloo_store *f, *p;
    CHECK_OK(cgloo_store_file_create(test_tmpdir(), "prefix", &f));
    CHECK_OK(cgloo_store_prefix_create(f, "group/0", &p));
    CHECK_OK(cgloo_store_set(p, "rank/1", "addr", 4));
    expect_value(f, "group/0/rank/1", "addr");
    CHECK(present(f, "rank/1") == 0);
    cgloo_store_destroy(p);
    cgloo_store_destroy(f);
}

/* ---- a tiny custom backend: a hash store behind callbacks, with a call log ---- */

typedef struct backend {
    cgloo_store *inner;
    int destroyed;
    int calls;
    int get_status; /* when nonzero, get fails with it */
} backend;

static int cb_set(void *user, const char *key, const void *value, size_t len)
{
    backend *b = user;
    b->calls++;
    return cgloo_store_set(b->inner, key, value, len);
}

/* cb_get returns a malloc'd value with 'X' bytes (not a NUL) after it, as a binding might: the
 * library must still hand back a NUL-terminated copy. An empty value comes back as NULL. */
static int cb_get(void *user, const char *key, int timeout_ms, void **value, size_t *len)
{
    backend *b = user;
    b->calls++;
    CHECK(timeout_ms > 0);
    if (b->get_status)
        return b->get_status;
    void *v;
    size_t n;
    int rc = cgloo_store_get(b->inner, key, timeout_ms, &v, &n);
    if (rc != CGLOO_OK)
        return rc;
    char *copy = NULL;
    if (n) {
        copy = malloc(n + 16);
        CHECK(copy != NULL);
        memset(copy + n, 'X', 16);
        memcpy(copy, v, n);
    }
    cgloo_free(v);
    *value = copy;
    *len = n;
    return CGLOO_OK;
}

static int cb_wait(void *user, const char *const *keys, size_t nkeys, int timeout_ms)
{
    backend *b = user;
    b->calls++;
    return cgloo_store_wait(b->inner, keys, nkeys, timeout_ms);
}

static int cb_add(void *user, const char *key, int64_t delta, int64_t *result)
{
    backend *b = user;
    b->calls++;
    return cgloo_store_add(b->inner, key, delta, result);
}

static int cb_check(void *user, const char *const *keys, size_t nkeys, int *all_present)
{
    backend *b = user;
    b->calls++;
    int rc = cgloo_store_check(b->inner, keys, nkeys, all_present);
    if (rc == CGLOO_OK && *all_present)
        *all_present = 7; /* any nonzero means yes */
    return rc;
}

static int cb_del(void *user, const char *key)
{
    backend *b = user;
    b->calls++;
    return cgloo_store_delete(b->inner, key);
}

static void cb_destroy(void *user)
{
    backend *b = user;
    b->destroyed++;
}

static const cgloo_store_callbacks full_callbacks = {
    .set = cb_set,
    .get = cb_get,
    .wait = cb_wait,
    .add = cb_add,
    .check = cb_check,
    .del = cb_del,
    .destroy = cb_destroy,
};

static void test_custom_basic(void)
{
    backend b = {0};
    CHECK_OK(cgloo_store_hash_create(&b.inner));
    cgloo_store_callbacks cbs = full_callbacks;
    cgloo_store *s;
    CHECK_OK(cgloo_store_custom_create(&cbs, &b, &s));
    /* The callbacks were copied: changing the caller's struct changes nothing. */
    memset(&cbs, 0, sizeof cbs);
    CHECK_OK(cgloo_store_set(s, "k", "value", 5));
    expect_value(b.inner, "k", "value");
    expect_value(s, "k", "value");
    CHECK_OK(cgloo_store_set(s, "empty", "", 0));
    expect_value(s, "empty", "");
    const char *keys[] = {"k", "empty"};
    CHECK_OK(cgloo_store_wait(s, keys, 2, 1000));
    int all = -1;
    CHECK_OK(cgloo_store_check(s, keys, 2, &all));
    CHECK(all == 1);
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "n", 4, &r));
    CHECK(r == 4);
    CHECK_STATUS(cgloo_store_add(s, "k", 1, &r), CGLOO_ESTORE);
    void *vals[2];
    size_t lens[2];
    CHECK_OK(cgloo_store_multi_get(s, keys, 2, 1000, vals, lens));
    CHECK(lens[0] == 5 && memcmp(vals[0], "value", 6) == 0 && lens[1] == 0);
    CHECK(((char *)vals[1])[0] == '\0');
    cgloo_free(vals[0]);
    cgloo_free(vals[1]);
    CHECK_OK(cgloo_store_delete(s, "k"));
    CHECK_OK(cgloo_store_check(s, keys, 2, &all));
    CHECK(all == 0);
    CHECK(b.calls >= 12);
    CHECK(b.destroyed == 0);
    cgloo_store_destroy(s);
    CHECK(b.destroyed == 1);
    cgloo_store_destroy(b.inner);
}

static void test_custom_missing_callbacks(void)
{
    backend b = {0};
    cgloo_store *s = NULL;
    CHECK_STATUS(cgloo_store_custom_create(NULL, &b, &s), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_custom_create(&full_callbacks, &b, NULL), CGLOO_EINVAL);
    for (int missing = 0; missing < 4; missing++) {
        cgloo_store_callbacks cbs = full_callbacks;
        if (missing == 0)
            cbs.set = NULL;
        if (missing == 1)
            cbs.get = NULL;
        if (missing == 2)
            cbs.wait = NULL;
        if (missing == 3)
            cbs.add = NULL;
        CHECK_STATUS(cgloo_store_custom_create(&cbs, &b, &s), CGLOO_EINVAL);
        CHECK(s == NULL);
    }
    /* A failed create never calls destroy. */
    CHECK(b.destroyed == 0 && b.calls == 0);
    /* check, del and destroy are optional; without them check and delete are not supported. */
    CHECK_OK(cgloo_store_hash_create(&b.inner));
    cgloo_store_callbacks cbs = full_callbacks;
    cbs.check = NULL;
    cbs.del = NULL;
    cbs.destroy = NULL;
    CHECK_OK(cgloo_store_custom_create(&cbs, &b, &s));
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    const char *key = "k";
    int all = -1;
    CHECK_STATUS(cgloo_store_check(s, &key, 1, &all), CGLOO_ENOTSUP);
    CHECK(all == -1);
    CHECK_STATUS(cgloo_store_delete(s, "k"), CGLOO_ENOTSUP);
    expect_value(s, "k", "v");
    cgloo_store_destroy(s);
    CHECK(b.destroyed == 0);
    cgloo_store_destroy(b.inner);
}

static int cb_set_fails(void *user, const char *key, const void *value, size_t len)
{
    (void)user;
    (void)key;
    (void)value;
    (void)len;
    return CGLOO_EPEER;
}

static void test_custom_status_pass_through(void)
{
    backend b = {0};
    CHECK_OK(cgloo_store_hash_create(&b.inner));
    cgloo_store_callbacks cbs = full_callbacks;
    cbs.set = cb_set_fails;
    cgloo_store *s;
    CHECK_OK(cgloo_store_custom_create(&cbs, &b, &s));
    CHECK_STATUS(cgloo_store_set(s, "k", "v", 1), CGLOO_EPEER);
    void *v = NULL;
    size_t n = 99;
    /* The callback's own timeout comes back as it is. */
    CHECK_STATUS(cgloo_store_get(s, "k", 20, &v, &n), CGLOO_ETIMEDOUT);
    CHECK(v == NULL && n == 99);
    b.get_status = CGLOO_EIO;
    CHECK_STATUS(cgloo_store_get(s, "k", 20, &v, &n), CGLOO_EIO);
    b.get_status = CGLOO_ECONNREFUSED;
    CHECK_STATUS(cgloo_store_get(s, "k", 20, &v, &n), CGLOO_ECONNREFUSED);
    /* A positive return is no cgloo status: it becomes ESTORE. */
    b.get_status = 5;
    CHECK_STATUS(cgloo_store_get(s, "k", 20, &v, &n), CGLOO_ESTORE);
    CHECK(v == NULL && n == 99);
    const char *key = "k";
    CHECK_STATUS(cgloo_store_wait(s, &key, 1, 20), CGLOO_ETIMEDOUT);
    /* The default timeout is resolved before the callback sees it (cb_get checks > 0). */
    CHECK_OK(cgloo_store_set(b.inner, "k", "v", 1));
    b.get_status = 0;
    CHECK_OK(cgloo_store_get(s, "k", 0, &v, &n));
    CHECK(n == 1 && memcmp(v, "v", 2) == 0);
    cgloo_free(v);
    cgloo_store_destroy(s);
    CHECK(b.destroyed == 1);
    cgloo_store_destroy(b.inner);
}

/* A custom store works through a prefix store, and the prefix store does not destroy it. */
static void test_custom_under_prefix(void)
{
    backend b = {0};
    CHECK_OK(cgloo_store_hash_create(&b.inner));
    cgloo_store *s, *p;
    CHECK_OK(cgloo_store_custom_create(&full_callbacks, &b, &s));
    CHECK_OK(cgloo_store_prefix_create(s, "ns", &p));
    CHECK_OK(cgloo_store_set(p, "k", "v", 1));
    expect_value(b.inner, "ns/k", "v");
    cgloo_store_destroy(p);
    CHECK(b.destroyed == 0);
    cgloo_store_destroy(s);
    CHECK(b.destroyed == 1);
    cgloo_store_destroy(b.inner);
}

static const test_case tests[] = {
    {"prefix_namespacing", test_prefix_namespacing, 10},
    {"prefix_nesting", test_prefix_nesting, 10},
    {"prefix_limits", test_prefix_limits, 10},
    {"prefix_over_file", test_prefix_over_file, 10},
    {"custom_basic", test_custom_basic, 10},
    {"custom_missing_callbacks", test_custom_missing_callbacks, 10},
    {"custom_status_pass_through", test_custom_status_pass_through, 10},
    {"custom_under_prefix", test_custom_under_prefix, 10},
};
TEST_MAIN(tests)
