/*
 * The stores' key/value table (see kvtable.h): separate chaining over a power-of-two bucket
 * array that doubles when the keys outnumber the buckets. Each entry keeps its key's hash, so
 * growing never hashes a key again and a lookup compares bytes only when the hashes agree.
 */
#include "store/kvtable.h"
#include "store/store.h"

#define KVTABLE_BUCKETS_MIN 64

/* One key/value pair. The key is kept with its length; the value is the caller's malloc'd
 * buffer, owned by the table. */
struct cgloo__kv_entry {
    cgloo__kv_entry *next;
    uint64_t hash;
    void *value;
    size_t vlen;
    size_t klen;
    uint8_t key[];
};

void cgloo__kvtable_init(cgloo__kvtable *t)
{
    *t = (cgloo__kvtable){0};
}

void cgloo__kvtable_fini(cgloo__kvtable *t)
{
    for (size_t b = 0; b < t->nbuckets; b++) {
        while (t->buckets[b]) {
            cgloo__kv_entry *e = t->buckets[b];
            t->buckets[b] = e->next;
            free(e->value);
            free(e);
        }
    }
    free(t->buckets);
    cgloo__kvtable_init(t);
}

/* kvtable_slot returns the link that points at key's entry, or the empty link at the end of its
 * chain where the key would go. The table has buckets. */
static cgloo__kv_entry **kvtable_slot(const cgloo__kvtable *t, const void *key, size_t klen,
                                      uint64_t hash)
{
    cgloo__kv_entry **pp = &t->buckets[hash & (t->nbuckets - 1)];
    while (*pp && !((*pp)->hash == hash && (*pp)->klen == klen && !memcmp((*pp)->key, key, klen)))
        pp = &(*pp)->next;
    return pp;
}

static cgloo__kv_entry *kvtable_find(const cgloo__kvtable *t, const void *key, size_t klen)
{
    if (t->nbuckets == 0)
        return NULL;
    return *kvtable_slot(t, key, klen, cgloo__hash64(key, klen));
}

/* kvtable_resize moves every entry into a fresh array of n buckets (a power of two). */
static int kvtable_resize(cgloo__kvtable *t, size_t n)
{
    cgloo__kv_entry **nb = calloc(n, sizeof *nb);
    if (!nb)
        return CGLOO_ENOMEM;
    for (size_t b = 0; b < t->nbuckets; b++) {
        while (t->buckets[b]) {
            cgloo__kv_entry *e = t->buckets[b];
            t->buckets[b] = e->next;
            e->next = nb[e->hash & (n - 1)];
            nb[e->hash & (n - 1)] = e;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->nbuckets = n;
    return CGLOO_OK;
}

/* kvtable_insert links a new entry for a key that is not in the table. */
static int kvtable_insert(cgloo__kvtable *t, const void *key, size_t klen, uint64_t hash,
                          void *value, size_t vlen)
{
    if (t->nbuckets == 0 && kvtable_resize(t, KVTABLE_BUCKETS_MIN) != CGLOO_OK)
        return CGLOO_ENOMEM;
    cgloo__kv_entry *e = malloc(sizeof *e + klen);
    if (!e)
        return CGLOO_ENOMEM;
    *e = (cgloo__kv_entry){.hash = hash, .value = value, .vlen = vlen, .klen = klen};
    memcpy(e->key, key, klen);
    cgloo__kv_entry **head = &t->buckets[hash & (t->nbuckets - 1)];
    e->next = *head;
    *head = e;
    /* A failed resize only leaves the chains longer: the entry is in either way. */
    if (++t->count > t->nbuckets)
        (void)kvtable_resize(t, t->nbuckets * 2);
    return CGLOO_OK;
}

int cgloo__kvtable_set(cgloo__kvtable *t, const void *key, size_t klen, void *value, size_t vlen)
{
    uint64_t hash = cgloo__hash64(key, klen);
    cgloo__kv_entry *e = t->nbuckets ? *kvtable_slot(t, key, klen, hash) : NULL;
    if (!e)
        return kvtable_insert(t, key, klen, hash, value, vlen);
    free(e->value);
    e->value = value;
    e->vlen = vlen;
    return CGLOO_OK;
}

bool cgloo__kvtable_get(const cgloo__kvtable *t, const void *key, size_t klen, const void **value,
                        size_t *vlen)
{
    const cgloo__kv_entry *e = kvtable_find(t, key, klen);
    if (e && value)
        *value = e->value;
    if (e && vlen)
        *vlen = e->vlen;
    return e != NULL;
}

bool cgloo__kvtable_has(const cgloo__kvtable *t, const void *key, size_t klen)
{
    return kvtable_find(t, key, klen) != NULL;
}

int cgloo__kvtable_add(cgloo__kvtable *t, const void *key, size_t klen, int64_t delta,
                       int64_t *result)
{
    const cgloo__kv_entry *e = kvtable_find(t, key, klen);
    int64_t v = 0;
    if (e && cgloo__store_counter_parse(e->value, e->vlen, &v) != CGLOO_OK)
        return CGLOO_ESTORE;
    v = (int64_t)((uint64_t)v + (uint64_t)delta); /* wraps, as in every backend */
    char text[24];
    size_t n = cgloo__store_counter_format(v, text);
    void *copy = cgloo__memdup_z(text, n);
    if (!copy)
        return CGLOO_ENOMEM;
    int rc = cgloo__kvtable_set(t, key, klen, copy, n);
    if (rc != CGLOO_OK) {
        free(copy);
        return rc;
    }
    *result = v;
    return CGLOO_OK;
}

void cgloo__kvtable_delete(cgloo__kvtable *t, const void *key, size_t klen)
{
    if (t->nbuckets == 0)
        return;
    cgloo__kv_entry **pp = kvtable_slot(t, key, klen, cgloo__hash64(key, klen));
    cgloo__kv_entry *e = *pp;
    if (!e)
        return;
    *pp = e->next;
    free(e->value);
    free(e);
    t->count--;
}

int cgloo__kvtable_foreach(const cgloo__kvtable *t,
                           int (*fn)(void *arg, const void *key, size_t klen, const void *value,
                                     size_t vlen),
                           void *arg)
{
    for (size_t b = 0; b < t->nbuckets; b++)
        for (const cgloo__kv_entry *e = t->buckets[b]; e; e = e->next) {
            int rc = fn(arg, e->key, e->klen, e->value, e->vlen);
            if (rc)
                return rc;
        }
    return 0;
}
