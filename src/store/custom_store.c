/*
 * The custom store: caller-supplied callbacks (bindings, other key/value services) behind the
 * store ops table. The library has already checked keys and lengths and resolved the default
 * timeout, so the callbacks see only valid arguments. Their statuses pass through unchanged,
 * except a positive number, which is no cgloo status and becomes ESTORE.
 */
#include "store/store.h"

typedef struct custom_store {
    cgloo_store base;
    cgloo_store_callbacks cb; /* a copy: the caller's struct may go away */
    void *user;
} custom_store;

static int custom_status(int rc)
{
    return rc > 0 ? CGLOO_ESTORE : rc;
}

static int custom_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    custom_store *c = (custom_store *)s;
    return custom_status(c->cb.set(c->user, key, value, len));
}

/* custom_get hands back the callback's value with a NUL after it, as every backend does: the
 * callback's malloc'd buffer has no room for one, so it is grown by a byte. */
static int custom_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    custom_store *c = (custom_store *)s;
    void *v = NULL;
    size_t n = 0;
    int rc = custom_status(c->cb.get(c->user, key, timeout_ms, &v, &n));
    if (rc != CGLOO_OK)
        return rc;
    if (!v && n > 0) {
        CGLOO_WARN("custom store: get returned %zu bytes but no buffer", n);
        return CGLOO_ESTORE;
    }
    if (n > CGLOO_STORE_VALUE_MAX) {
        CGLOO_WARN("custom store: get returned %zu bytes, more than a value may hold", n);
        free(v);
        return CGLOO_ESTORE;
    }
    char *z = realloc(v, n + 1);
    if (!z) {
        free(v);
        return CGLOO_ENOMEM;
    }
    z[n] = '\0';
    *value = z;
    *len = n;
    return CGLOO_OK;
}

static int custom_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    custom_store *c = (custom_store *)s;
    return custom_status(c->cb.wait(c->user, keys, nkeys, timeout_ms));
}

static int custom_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    custom_store *c = (custom_store *)s;
    if (!c->cb.check)
        return CGLOO_ENOTSUP;
    int present = 0;
    int rc = custom_status(c->cb.check(c->user, keys, nkeys, &present));
    if (rc == CGLOO_OK)
        *all_present = present != 0;
    return rc;
}

static int custom_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    custom_store *c = (custom_store *)s;
    int64_t v = 0;
    int rc = custom_status(c->cb.add(c->user, key, delta, &v));
    if (rc == CGLOO_OK)
        *result = v;
    return rc;
}

static int custom_del(cgloo_store *s, const char *key)
{
    custom_store *c = (custom_store *)s;
    if (!c->cb.del)
        return CGLOO_ENOTSUP;
    return custom_status(c->cb.del(c->user, key));
}

static void custom_destroy(cgloo_store *s)
{
    custom_store *c = (custom_store *)s;
    if (c->cb.destroy)
        c->cb.destroy(c->user);
    free(c);
}

static const cgloo_store_ops custom_ops = {
    .name = "custom",
    .set = custom_set,
    .get = custom_get,
    .wait = custom_wait,
    .check = custom_check,
    .add = custom_add,
    .del = custom_del,
    .multi_get = NULL, /* store.c waits once, then gets key by key */
    .destroy = custom_destroy,
};

int cgloo_store_custom_create(const cgloo_store_callbacks *callbacks, void *user, cgloo_store **out)
{
    if (!callbacks || !out || !callbacks->set || !callbacks->get || !callbacks->wait ||
        !callbacks->add)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    custom_store *c = calloc(1, sizeof *c);
    if (!c)
        return CGLOO_ENOMEM;
    c->base.ops = &custom_ops;
    c->cb = *callbacks;
    c->user = user;
    *out = &c->base;
    return CGLOO_OK;
}
