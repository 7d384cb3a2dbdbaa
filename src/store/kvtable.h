/*
 * The key/value table behind the stores that keep their data in memory: the in-process store
 * (hash_store.c) and the TCP store server (tcp_store_server.c). A chained hash table that
 * doubles its bucket array as it fills, so lookups stay short however many ranks publish keys.
 *
 * Keys are byte strings with a length (the server's keys come off the wire with no NUL; the
 * hash store passes strlen); values are any bytes. The table checks no sizes: the callers
 * bound keys and values before they get here (store.c, tcp_store_proto.h).
 *
 * Nothing here blocks and nothing locks: a caller that shares a table between threads holds its
 * own mutex around every call, including the lifetime of a pointer that get hands out.
 */
#ifndef CGLOO_STORE_KVTABLE_H
#define CGLOO_STORE_KVTABLE_H

#include "cgloo_impl.h"

typedef struct cgloo__kv_entry cgloo__kv_entry;

/* Embedded by its owner. All zero is a valid empty table. */
typedef struct cgloo__kvtable {
    cgloo__kv_entry **buckets; /* NULL until the first key is stored */
    size_t nbuckets;           /* 0, or a power of two */
    size_t count;              /* keys stored */
} cgloo__kvtable;

/* cgloo__kvtable_init makes t an empty table. It allocates nothing, so it cannot fail. */
void cgloo__kvtable_init(cgloo__kvtable *t);

/* cgloo__kvtable_fini frees every key and value and leaves t empty (usable again). */
void cgloo__kvtable_fini(cgloo__kvtable *t);

/* cgloo__kvtable_set stores value under key, replacing (and freeing) any earlier value. value
 * must come from malloc and be non-NULL even when vlen is 0; on success the table owns it and
 * frees it when the key is replaced or deleted. The table copies the key. Errors: ENOMEM, in
 * which case the table is unchanged and the caller still owns value. */
int cgloo__kvtable_set(cgloo__kvtable *t, const void *key, size_t klen, void *value, size_t vlen);

/* cgloo__kvtable_get tells whether key is present and, if so, points *value at its bytes and
 * sets *vlen. The pointer is the table's: valid until the key is next set, added to or
 * deleted, or the table is finished. Either out-parameter may be NULL. */
bool cgloo__kvtable_get(const cgloo__kvtable *t, const void *key, size_t klen, const void **value,
                        size_t *vlen);

/* cgloo__kvtable_has tells whether key is present. */
bool cgloo__kvtable_has(const cgloo__kvtable *t, const void *key, size_t klen);

/* cgloo__kvtable_add treats the value under key as a counter (decimal text, see
 * cgloo__store_counter_parse; a missing key counts as 0), adds delta with wrap-around modulo
 * 2^64, stores the sum back as decimal text and returns it in *result. Errors: ESTORE when the
 * value is not a counter (binary or any other text), ENOMEM; either way the table is
 * unchanged. */
int cgloo__kvtable_add(cgloo__kvtable *t, const void *key, size_t klen, int64_t delta,
                       int64_t *result);

/* cgloo__kvtable_delete removes key and frees its value; an absent key is not an error. */
void cgloo__kvtable_delete(cgloo__kvtable *t, const void *key, size_t klen);

/* cgloo__kvtable_foreach calls fn(arg, key, klen, value, vlen) for every entry, in no set order,
 * and stops at the first nonzero return, which it passes on (0 when fn saw every entry). fn
 * must not change the table. */
int cgloo__kvtable_foreach(const cgloo__kvtable *t,
                           int (*fn)(void *arg, const void *key, size_t klen, const void *value,
                                     size_t vlen),
                           void *arg);

#endif /* CGLOO_STORE_KVTABLE_H */
