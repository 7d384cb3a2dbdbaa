/*
 * The prefix store: a view of another store in which every key gets "<prefix>/" in front, so
 * that several users (communicators, subgroups) can share one store without their keys
 * meeting. It owns nothing but its prefix; the inner store must outlive it. Prefix stores nest:
 * a prefix store over a prefix store yields "<outer>/<inner>/<key>" in the innermost store.
 */
#include "store/store.h"

typedef struct prefix_store {
    cgloo_store base;
    cgloo_store *inner;
    size_t plen;   /* strlen(prefix), including the '/' */
    char prefix[]; /* "<prefix>/" */
} prefix_store;

/* prefix_key writes "<prefix>/<key>" into buf (CGLOO_STORE_KEY_MAX + 1 bytes), or says EINVAL
 * when the result would be longer than a key may be. */
static int prefix_key(const prefix_store *p, const char *key, char *buf)
{
    size_t klen = strlen(key);
    if (p->plen + klen > CGLOO_STORE_KEY_MAX)
        return CGLOO_EINVAL;
    memcpy(buf, p->prefix, p->plen);
    memcpy(buf + p->plen, key, klen + 1);
    return CGLOO_OK;
}

/* prefix_keys makes the prefixed form of every key in one allocation (the pointer array, then
 * the strings); the caller frees *out. */
static int prefix_keys(const prefix_store *p, const char *const *keys, size_t nkeys,
                       const char ***out)
{
    size_t bytes = nkeys * sizeof(char *);
    for (size_t i = 0; i < nkeys; i++) {
        size_t klen = strlen(keys[i]);
        if (p->plen + klen > CGLOO_STORE_KEY_MAX)
            return CGLOO_EINVAL;
        bytes += p->plen + klen + 1;
    }
    const char **list = malloc(bytes);
    if (!list)
        return CGLOO_ENOMEM;
    char *at = (char *)(list + nkeys);
    for (size_t i = 0; i < nkeys; i++) {
        size_t klen = strlen(keys[i]);
        list[i] = at;
        memcpy(at, p->prefix, p->plen);
        memcpy(at + p->plen, keys[i], klen + 1);
        at += p->plen + klen + 1;
    }
    *out = list;
    return CGLOO_OK;
}

static int prefix_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    prefix_store *p = (prefix_store *)s;
    char full[CGLOO_STORE_KEY_MAX + 1];
    int rc = prefix_key(p, key, full);
    return rc ? rc : cgloo_store_set(p->inner, full, value, len);
}

static int prefix_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    prefix_store *p = (prefix_store *)s;
    char full[CGLOO_STORE_KEY_MAX + 1];
    int rc = prefix_key(p, key, full);
    return rc ? rc : cgloo_store_get(p->inner, full, timeout_ms, value, len);
}

static int prefix_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    prefix_store *p = (prefix_store *)s;
    const char **full;
    int rc = prefix_keys(p, keys, nkeys, &full);
    if (rc != CGLOO_OK)
        return rc;
    rc = cgloo_store_wait(p->inner, full, nkeys, timeout_ms);
    free(full);
    return rc;
}

static int prefix_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    prefix_store *p = (prefix_store *)s;
    const char **full;
    int rc = prefix_keys(p, keys, nkeys, &full);
    if (rc != CGLOO_OK)
        return rc;
    rc = cgloo_store_check(p->inner, full, nkeys, all_present);
    free(full);
    return rc;
}

static int prefix_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    prefix_store *p = (prefix_store *)s;
    char full[CGLOO_STORE_KEY_MAX + 1];
    int rc = prefix_key(p, key, full);
    return rc ? rc : cgloo_store_add(p->inner, full, delta, result);
}

static int prefix_del(cgloo_store *s, const char *key)
{
    prefix_store *p = (prefix_store *)s;
    char full[CGLOO_STORE_KEY_MAX + 1];
    int rc = prefix_key(p, key, full);
    return rc ? rc : cgloo_store_delete(p->inner, full);
}

/* prefix_multi_get passes the whole batch down, so an inner store with a batched get (tcp)
 * keeps its single round trip. */
static int prefix_multi_get(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms,
                            void **values, size_t *lens)
{
    prefix_store *p = (prefix_store *)s;
    const char **full;
    int rc = prefix_keys(p, keys, nkeys, &full);
    if (rc != CGLOO_OK)
        return rc;
    rc = cgloo_store_multi_get(p->inner, full, nkeys, timeout_ms, values, lens);
    free(full);
    return rc;
}

static void prefix_destroy(cgloo_store *s)
{
    free(s); /* the inner store is not ours */
}

/* prefix_last_error passes on the inner store's detail: its failures are this view's. */
static void prefix_last_error(cgloo_store *s, char *buf, size_t len)
{
    cgloo_store_last_error(((prefix_store *)s)->inner, buf, len);
}

static const char *prefix_host(const cgloo_store *s)
{
    return cgloo__store_host(((const prefix_store *)s)->inner);
}

static const cgloo_store_ops prefix_ops = {
    .name = "prefix",
    .set = prefix_set,
    .get = prefix_get,
    .wait = prefix_wait,
    .check = prefix_check,
    .add = prefix_add,
    .del = prefix_del,
    .multi_get = prefix_multi_get,
    .destroy = prefix_destroy,
    .last_error = prefix_last_error,
    .host = prefix_host,
};

int cgloo_store_prefix_create(cgloo_store *inner, const char *prefix, cgloo_store **out)
{
    if (!inner || !prefix || !out)
        return CGLOO_EINVAL;
    /* The prefix, its '/' and a one-byte key must fit in a key. */
    size_t n = strnlen(prefix, CGLOO_STORE_KEY_MAX);
    if (n == 0 || n + 2 > CGLOO_STORE_KEY_MAX)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    prefix_store *p = malloc(sizeof *p + n + 2);
    if (!p)
        return CGLOO_ENOMEM;
    p->base.ops = &prefix_ops;
    p->inner = inner;
    p->plen = n + 1;
    memcpy(p->prefix, prefix, n);
    p->prefix[n] = '/';
    p->prefix[n + 1] = '\0';
    *out = &p->base;
    return CGLOO_OK;
}
