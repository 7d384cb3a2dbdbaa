/*
 * The public store calls: argument checks, the default timeout, and dispatch through the
 * backend's ops table.
 */
#include "store/store.h"

#include <inttypes.h>
#include <stdio.h>

static int key_ok(const char *key)
{
    if (!key)
        return 0;
    size_t n = strnlen(key, CGLOO_STORE_KEY_MAX + 1);
    return n >= 1 && n <= CGLOO_STORE_KEY_MAX;
}

static int keys_ok(const char *const *keys, size_t nkeys)
{
    if ((nkeys && !keys) || nkeys > CGLOO_STORE_KEYS_MAX)
        return 0;
    for (size_t i = 0; i < nkeys; i++)
        if (!key_ok(keys[i]))
            return 0;
    return 1;
}

static int timeout_or_default(int timeout_ms)
{
    return timeout_ms > 0 ? timeout_ms : CGLOO_DEFAULT_TIMEOUT_MS;
}

int cgloo_store_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    if (!s || !key_ok(key) || (len && !value) || len > CGLOO_STORE_VALUE_MAX)
        return CGLOO_EINVAL;
    return s->ops->set(s, key, value, len);
}

int cgloo_store_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    if (!s || !key_ok(key) || !value || !len || timeout_ms < 0)
        return CGLOO_EINVAL;
    return s->ops->get(s, key, timeout_or_default(timeout_ms), value, len);
}

int cgloo_store_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    if (!s || !keys_ok(keys, nkeys) || timeout_ms < 0)
        return CGLOO_EINVAL;
    if (nkeys == 0)
        return CGLOO_OK;
    return s->ops->wait(s, keys, nkeys, timeout_or_default(timeout_ms));
}

int cgloo_store_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    if (!s || !keys_ok(keys, nkeys) || !all_present)
        return CGLOO_EINVAL;
    if (nkeys == 0) {
        *all_present = 1;
        return CGLOO_OK;
    }
    return s->ops->check(s, keys, nkeys, all_present);
}

int cgloo_store_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    if (!s || !key_ok(key))
        return CGLOO_EINVAL;
    int64_t ignored;
    return s->ops->add(s, key, delta, result ? result : &ignored);
}

int cgloo_store_delete(cgloo_store *s, const char *key)
{
    if (!s || !key_ok(key))
        return CGLOO_EINVAL;
    return s->ops->del(s, key);
}

/* Fallback multi-get: wait for all keys once, then fetch each (they exist, so no waiting). */
static int multi_get_each(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms,
                          void **values, size_t *lens)
{
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    int rc = s->ops->wait(s, keys, nkeys, timeout_ms);
    size_t got = 0;
    for (; rc == CGLOO_OK && got < nkeys; got++) {
        int left = CGLOO_MAX(cgloo__remaining_ms(deadline), 1);
        rc = s->ops->get(s, keys[got], left, &values[got], &lens[got]);
        if (rc != CGLOO_OK)
            break;
    }
    if (rc != CGLOO_OK) {
        for (size_t i = 0; i < got; i++) {
            free(values[i]);
            values[i] = NULL;
        }
    }
    return rc;
}

int cgloo_store_multi_get(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms,
                          void **values, size_t *lens)
{
    if (!s || !keys_ok(keys, nkeys) || (nkeys && (!values || !lens)) || timeout_ms < 0)
        return CGLOO_EINVAL;
    if (nkeys == 0)
        return CGLOO_OK;
    int t = timeout_or_default(timeout_ms);
    if (s->ops->multi_get)
        return s->ops->multi_get(s, keys, nkeys, t, values, lens);
    return multi_get_each(s, keys, nkeys, t, values, lens);
}

int cgloo_store_last_error(cgloo_store *s, char *buf, size_t len)
{
    if (!s || !buf || len == 0)
        return CGLOO_EINVAL;
    buf[0] = '\0';
    if (s->ops->last_error)
        s->ops->last_error(s, buf, len);
    return CGLOO_OK;
}

void cgloo_store_destroy(cgloo_store *s)
{
    if (s)
        s->ops->destroy(s);
}

int cgloo__store_counter_parse(const void *value, size_t len, int64_t *out)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return CGLOO_ESTORE;
    memcpy(buf, value, len);
    buf[len] = '\0';
    char *end = NULL;
    errno = 0;
    long long v = strtoll(buf, &end, 10);
    if (errno || *end != '\0')
        return CGLOO_ESTORE;
    *out = (int64_t)v;
    return CGLOO_OK;
}

size_t cgloo__store_counter_format(int64_t v, char *buf)
{
    return (size_t)snprintf(buf, 24, "%" PRId64, v);
}
