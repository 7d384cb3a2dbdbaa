/*
 * The store ops table. Every backend (hash, file, prefix, tcp, redis, custom) fills one `static
 * const` table and embeds `struct cgloo_store` first in its own state. The public functions in
 * store.c check arguments and resolve the default timeout, then call through the table, so
 * backends see only valid keys (1..CGLOO_STORE_KEY_MAX bytes, NUL-terminated), valid lengths
 * and a positive timeout.
 */
#ifndef CGLOO_STORE_H
#define CGLOO_STORE_H

#include "cgloo_impl.h"

typedef struct cgloo_store_ops {
    const char *name; /* "hash", "file", ... for messages */
    /* set: store a copy of value. May block on I/O (tcp: bounded by the connect timeout). */
    int (*set)(cgloo_store *s, const char *key, const void *value, size_t len);
    /* get: wait up to timeout_ms for key, then return a malloc'd copy with a NUL appended
     * (caller frees with free). ETIMEDOUT when it does not appear. */
    int (*get)(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len);
    /* wait: wait up to timeout_ms until all keys exist. ETIMEDOUT otherwise. */
    int (*wait)(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms);
    /* check: set *all_present without waiting. */
    int (*check)(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present);
    /* add: atomic counter add; ESTORE if the key holds a non-counter. */
    int (*add)(cgloo_store *s, const char *key, int64_t delta, int64_t *result);
    /* del: remove key; absent is fine. */
    int (*del)(cgloo_store *s, const char *key);
    /* multi_get: may be NULL; then store.c waits and gets key by key. */
    int (*multi_get)(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms,
                     void **values, size_t *lens);
    /* destroy: free everything the backend owns, including s itself. */
    void (*destroy)(cgloo_store *s);
    /* last_error: may be NULL (the backend keeps no detail). Copies the detail of the latest
     * failure on this handle into buf (len >= 1 bytes, NUL-terminated). Never blocks for long. */
    void (*last_error)(cgloo_store *s, char *buf, size_t len);
    /* host: the network host of the store's server as the caller named it, which the ranks
     * reach; NULL (or the op NULL) for stores without one. Never blocks. The rendezvous checks
     * with it that this rank publishes an address the store's host can reach. */
    const char *(*host)(const cgloo_store *s);
} cgloo_store_ops;

struct cgloo_store {
    const cgloo_store_ops *ops;
};

/* cgloo__store_redis_open is cgloo_store_redis_connect that writes why it failed into detail
 * (detail_len bytes; detail may be NULL). redis_store.c, or redis_store_none.c in a build
 * without hiredis, where it says ENOTSUP. */
int cgloo__store_redis_open(const cgloo_redis_attr *attr, int timeout_ms, char *detail,
                            size_t detail_len, cgloo_store **out);
/* cgloo__store_host is the store's host op, or NULL. */
static inline const char *cgloo__store_host(const cgloo_store *s)
{
    return s && s->ops->host ? s->ops->host(s) : NULL;
}

/* Counters are stored as decimal text so every backend and every language can read them. */
int cgloo__store_counter_parse(const void *value, size_t len, int64_t *out);
/* cgloo__store_counter_format writes the decimal text of v into buf (>= 24 bytes), returns len. */
size_t cgloo__store_counter_format(int64_t v, char *buf);

/* cgloo__tcp_store_dial connects to the TCP store server at host:port and completes the hello
 * (proving the environment's job secret, if any) as a client that will ask nothing; *fd is the
 * connected socket. Blocks up to timeout_ms. Errors: those of cgloo_store_tcp_connect. */
int cgloo__tcp_store_dial(const char *host, int port, int timeout_ms, int *fd);
/* cgloo__split_host_port splits "host:port" or "[v6]:port" (what follows a URL's "tcp://")
 * into host (copied into buf) and port. Errors: EINVAL. */
int cgloo__split_host_port(const char *s, char *buf, size_t size, int *port);

/* The longest URL taken apart in place (a redis:// URL is copied to split it). */
#define CGLOO__STORE_URL_MAX 4096

enum { STORE_URL_TCP, STORE_URL_TORCH, STORE_URL_FILE, STORE_URL_HASH, STORE_URL_REDIS };

/* A store URL taken apart, before anything is opened or resolved. */
typedef struct cgloo__store_url {
    int kind;       /* STORE_URL_* */
    char host[256]; /* tcp, torch, redis */
    int port;
    const char *path;       /* file: the directory, inside the URL */
    cgloo_redis_attr redis; /* redis: host, user and password point into this struct */
    char buf[CGLOO__STORE_URL_MAX];
} cgloo__store_url;

/* cgloo__store_url_parse takes url apart into *u without touching the network or the file
 * system (cgloo_store_open is this, then the open). Errors: EINVAL, with *what ("not a store
 * URL" or "malformed store URL") and *why set to static text. The caller wipes u->buf (it may
 * hold a decoded password). */
int cgloo__store_url_parse(const char *url, cgloo__store_url *u, const char **what,
                           const char **why);

#endif /* CGLOO_STORE_H */
