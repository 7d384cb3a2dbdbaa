/*
 * The in-process store: the stores' key/value table (kvtable.h) under one mutex, with a
 * condition variable that wakes waiters whenever a key is set. For ranks that are threads of
 * one process.
 */
#include "store/store.h"
#include "store/kvtable.h"

#include <pthread.h>

typedef struct hash_store {
    cgloo_store base;
    pthread_mutex_t lock; /* guards table */
    pthread_cond_t changed;
    cgloo__kvtable table;
} hash_store;

static int hash_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    hash_store *h = (hash_store *)s;
    /* Copied before taking the lock, so a large value does not hold up the other ranks. */
    void *copy = cgloo__memdup_z(value, len);
    if (!copy)
        return CGLOO_ENOMEM;
    pthread_mutex_lock(&h->lock);
    int rc = cgloo__kvtable_set(&h->table, key, strlen(key), copy, len);
    if (rc == CGLOO_OK)
        pthread_cond_broadcast(&h->changed);
    pthread_mutex_unlock(&h->lock);
    if (rc != CGLOO_OK)
        free(copy);
    return rc;
}

static int hash_all_present(hash_store *h, const char *const *keys, size_t nkeys)
{
    for (size_t i = 0; i < nkeys; i++)
        if (!cgloo__kvtable_has(&h->table, keys[i], strlen(keys[i])))
            return 0;
    return 1;
}

/* hash_wait_locked waits on the condition variable until all keys exist or the deadline. */
static int hash_wait_locked(hash_store *h, const char *const *keys, size_t nkeys, int timeout_ms)
{
    struct timespec until = cgloo__timespec_after_ms(timeout_ms);
    while (!hash_all_present(h, keys, nkeys))
        if (pthread_cond_timedwait(&h->changed, &h->lock, &until) == ETIMEDOUT)
            return hash_all_present(h, keys, nkeys) ? CGLOO_OK : CGLOO_ETIMEDOUT;
    return CGLOO_OK;
}

static int hash_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->lock);
    int rc = hash_wait_locked(h, &key, 1, timeout_ms);
    if (rc == CGLOO_OK) {
        const void *v;
        size_t n;
        cgloo__kvtable_get(&h->table, key, strlen(key), &v, &n);
        void *copy = cgloo__memdup_z(v, n);
        if (copy) {
            *value = copy;
            *len = n;
        } else {
            rc = CGLOO_ENOMEM;
        }
    }
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static int hash_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->lock);
    int rc = hash_wait_locked(h, keys, nkeys, timeout_ms);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static int hash_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->lock);
    *all_present = hash_all_present(h, keys, nkeys);
    pthread_mutex_unlock(&h->lock);
    return CGLOO_OK;
}

static int hash_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->lock);
    int rc = cgloo__kvtable_add(&h->table, key, strlen(key), delta, result);
    if (rc == CGLOO_OK)
        pthread_cond_broadcast(&h->changed);
    pthread_mutex_unlock(&h->lock);
    return rc;
}

static int hash_del(cgloo_store *s, const char *key)
{
    hash_store *h = (hash_store *)s;
    pthread_mutex_lock(&h->lock);
    cgloo__kvtable_delete(&h->table, key, strlen(key));
    pthread_mutex_unlock(&h->lock);
    return CGLOO_OK;
}

static void hash_destroy(cgloo_store *s)
{
    hash_store *h = (hash_store *)s;
    cgloo__kvtable_fini(&h->table);
    pthread_cond_destroy(&h->changed);
    pthread_mutex_destroy(&h->lock);
    free(h);
}

static const cgloo_store_ops hash_ops = {
    .name = "hash",
    .set = hash_set,
    .get = hash_get,
    .wait = hash_wait,
    .check = hash_check,
    .add = hash_add,
    .del = hash_del,
    .multi_get = NULL,
    .destroy = hash_destroy,
};

int cgloo_store_hash_create(cgloo_store **out)
{
    if (!out)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    hash_store *h = calloc(1, sizeof *h);
    if (!h)
        return CGLOO_ENOMEM;
    if (cgloo__cond_init_monotonic(&h->changed) != CGLOO_OK) {
        free(h);
        return CGLOO_ENOMEM;
    }
    pthread_mutex_init(&h->lock, NULL);
    cgloo__kvtable_init(&h->table);
    h->base.ops = &hash_ops;
    *out = &h->base;
    return CGLOO_OK;
}
