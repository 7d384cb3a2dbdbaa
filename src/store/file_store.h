/*
 * Internal knobs of the file store (src/store/file_store.c), for tests only: they let a test
 * force hash collisions between long keys and shorten the lock wait of `add`, which production
 * code never needs to do. Not part of the public API.
 */
#ifndef CGLOO_STORE_FILE_STORE_H
#define CGLOO_STORE_FILE_STORE_H

#include "store/store.h"

/* cgloo__file_store_set_name_hash replaces the hash that names long keys' files (default
 * cgloo__hash64). `s` must be a file store; call it before the store is shared. */
void cgloo__file_store_set_name_hash(cgloo_store *s, uint64_t (*hash)(const void *, size_t));

/* cgloo__file_store_set_lock_timeout sets how long add (and long-key set/delete) wait for the
 * key's lock before ETIMEDOUT (default CGLOO_DEFAULT_TIMEOUT_MS). `s` must be a file store. */
void cgloo__file_store_set_lock_timeout(cgloo_store *s, int timeout_ms);

#endif /* CGLOO_STORE_FILE_STORE_H */
