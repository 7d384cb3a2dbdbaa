/*
 * The Redis store: the keys in a Redis server (6.2 or later), reached through hiredis, for ranks
 * on many hosts that can all reach one Redis server.
 *
 * Names. A key's value lives under "<P>k:<key>" and its wake-up list under "<P>s:<key>", where
 * <P> is "cgloo:<n>:<run id>:" and n the run id's length in decimal ("cgloo:0::" without one):
 * the length keeps the map from (run id, key) to names one-to-one whatever bytes they hold.
 * Names and values go to the server as binary-safe %b arguments. Redis Cluster is not
 * supported: a key's value and its list sit in one transaction and may hash to other slots.
 *
 * Waits. set and add run "MULTI; SET (or INCRBY); DEL list; RPUSH list 1; EXEC", so a key and
 * its one-element wake-up list appear together, and delete removes both in one DEL. A waiter
 * looks for the key and, while it is missing, blocks in the server on "BLMOVE list list LEFT
 * LEFT t": that returns as soon as the list has its element, and moving the list onto itself
 * leaves the element where it was, so every waiter wakes, not only the first (BLPOP would take
 * the element from the others). The list lives as long as its key, so a set that lands between
 * the waiter's look and its BLMOVE is never missed. A wait thus costs the server one blocked
 * client and a few commands however long it lasts, instead of a poll loop. Keyspace
 * notifications would need the server's notify-keyspace-events setting (often locked on
 * managed servers) and a subscribed connection per waiter; the list needs neither. A list whose
 * key is gone anyway (deleted or expired behind the store's back) would wake its waiters at
 * once, again and again: after such an empty wake-up a waiter sleeps, backing off from 1 to
 * 100 ms, before it blocks again, so it polls gently instead of spinning.
 *
 * Connections. A handle keeps up to REDIS_IDLE_MAX idle connections, and a call takes one of
 * its own (dialing when none is idle), so threads sharing a handle never queue behind each
 * other: a thread blocked in get does not stop another from setting the key through the same
 * handle. An idle connection the server closed (a restart, an idle timeout) has something to
 * read; a zero-timeout poll finds it and it is dropped before use. A connection that failed or
 * timed out mid-call may be out of step with the server, so it is freed; the next call dials
 * again, once, and fails with EIO if nothing answers. As in the TCP store, no call waits for a
 * server to come back: a restarted server without persistence has lost the keys anyway.
 *
 * Timeouts. Every call has a deadline: its timeout, or CGLOO_DEFAULT_TIMEOUT_MS for calls that
 * do not wait. redisConnectWithTimeout bounds the connect, and before every write or read the
 * socket's timeout (redisSetTimeout) is cut to the time left, so no single system call outlives
 * the deadline. A BLMOVE asks the server to give up at the deadline; the commands of a waiting
 * call may take REDIS_MARGIN_MS longer, so that the server's answer to a BLMOVE that timed out
 * can still be read and the connection kept.
 *
 * Cleanup. With cleanup set, the handle remembers the keys it set or added, and destroy deletes
 * them and their lists, in one pipelined round trip bounded by REDIS_CLEANUP_MS. Only this
 * handle's keys: other ranks may still be reading theirs.
 *
 * Errors. Every failure writes "redis store redis://host:port[/db]: <operation>: <why>", with
 * hiredis's or the server's own words and never the password, into the handle's detail (for
 * cgloo_store_last_error) and logs it: refusals and timeouts, which callers retry, at DEBUG,
 * the rest at WARN.
 */
#include "store/kvtable.h"
#include "store/store.h"

#include <hiredis/hiredis.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/time.h>

#define REDIS_DEFAULT_PORT 6379
#define REDIS_IDLE_MAX 4
#define REDIS_MARGIN_MS 1000
/* Pauses between refused connects while opening (a server still starting). */
#define REDIS_DIAL_PAUSE_MIN_MS 10
#define REDIS_DIAL_PAUSE_MAX_MS 250
/* The backoff of a waiter woken for nothing (see "Waits"). */
#define REDIS_POLL_MIN_MS 1
#define REDIS_POLL_MAX_MS 100
#define REDIS_CLEANUP_MS 5000
/* EXISTS asked in one round trip while looking for the first missing key of a wait. */
#define REDIS_EXISTS_BATCH 64
#define REDIS_RUN_ID_MAX 256
#define REDIS_HOST_MAX 255
/* "cgloo:" + up to 3 digits + ':' + run id + ':' */
#define REDIS_PREFIX_MAX (16 + REDIS_RUN_ID_MAX)
#define REDIS_NAME_MAX (REDIS_PREFIX_MAX + 2 + CGLOO_STORE_KEY_MAX)
#define REDIS_URL_MAX (32 + REDIS_HOST_MAX)
#define REDIS_WHY_MAX 300
#define REDIS_DETAIL_MAX (REDIS_URL_MAX + REDIS_WHY_MAX + 16)

typedef struct redis_store {
    cgloo_store base;
    pthread_mutex_t lock; /* guards idle, nidle, tracked and detail */
    redisContext *idle[REDIS_IDLE_MAX];
    int nidle;
    char *host, *user, *password;
    int port, db;
    bool cleanup;
    cgloo__kvtable tracked;  /* the keys set or added through this handle, when cleanup */
    char url[REDIS_URL_MAX]; /* "redis://host:port[/db]" for messages: never the password */
    size_t plen;
    char prefix[REDIS_PREFIX_MAX];
    char detail[REDIS_DETAIL_MAX];
} redis_store;

/* One connection in use by one call. */
typedef struct redis_conn {
    redisContext *c;
    bool broken; /* failed or timed out mid-exchange: out of step, to be freed */
} redis_conn;

/* A server-side name: "<prefix>k:<key>" or "<prefix>s:<key>". */
typedef struct redis_name {
    size_t len;
    char buf[REDIS_NAME_MAX];
} redis_name;

/* What a waiting call remembers between wake-ups (see "Waits"). */
typedef struct redis_waiter {
    size_t key;   /* the key it last blocked on */
    bool woke;    /* that BLMOVE found the list full */
    int pause_ms; /* the next sleep after a wake-up for nothing */
} redis_waiter;

static void name_make(const redis_store *r, char kind, const void *key, size_t klen, redis_name *n)
{
    memcpy(n->buf, r->prefix, r->plen);
    n->buf[r->plen] = kind;
    n->buf[r->plen + 1] = ':';
    memcpy(n->buf + r->plen + 2, key, klen);
    n->len = r->plen + 2 + klen;
}

static void name_of(const redis_store *r, char kind, const char *key, redis_name *n)
{
    name_make(r, kind, key, strlen(key), n);
}

static struct timeval ms_tv(int ms)
{
    return (struct timeval){.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
}

/* ---- errors ---- */

static int rs_fail(redis_store *r, int status, const char *fmt, ...) CGLOO_PRINTF(3, 4);

/* rs_fail keeps "redis store <url>: <what happened>" as the handle's detail, logs it, and
 * returns status. */
static int rs_fail(redis_store *r, int status, const char *fmt, ...)
{
    char why[REDIS_WHY_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof why, fmt, ap);
    va_end(ap);
    pthread_mutex_lock(&r->lock);
    snprintf(r->detail, sizeof r->detail, "redis store %s: %s", r->url, why);
    pthread_mutex_unlock(&r->lock);
    if (status == CGLOO_ETIMEDOUT || status == CGLOO_ECONNREFUSED)
        CGLOO_DEBUG("redis store %s: %s", r->url, why);
    else
        CGLOO_WARN("redis store %s: %s", r->url, why);
    return status;
}

/* reply_error gives ESTORE, in the server's words, for an error reply. */
static int reply_error(redis_store *r, const redisReply *rep, const char *what)
{
    if (rep->type != REDIS_REPLY_ERROR)
        return CGLOO_OK;
    return rs_fail(r, CGLOO_ESTORE, "%s: %.*s", what, (int)CGLOO_MIN(rep->len, 200), rep->str);
}

/* reply_want checks that rep is of the type the command answers with. */
static int reply_want(redis_store *r, const redisReply *rep, int type, const char *what)
{
    int rc = reply_error(r, rep, what);
    if (rc == CGLOO_OK && rep->type != type)
        rc = rs_fail(r, CGLOO_ESTORE, "%s: an unexpected reply (type %d)", what, rep->type);
    return rc;
}

/* ---- deadline-bounded exchanges ---- */

/* conn_budget cuts the socket's timeout to the time left before deadline. */
static int conn_budget(redisContext *c, int64_t deadline)
{
    int left = cgloo__remaining_ms(deadline);
    if (left == 0)
        return CGLOO_ETIMEDOUT;
    return redisSetTimeout(c, ms_tv(left)) == REDIS_OK ? CGLOO_OK : CGLOO_EIO;
}

/* conn_failed names the failure of a write or read on k (err: errno just after it). A socket
 * timeout is the deadline passing: the budget was the time left. */
static int conn_failed(redis_store *r, redis_conn *k, int rc, int err, const char *what)
{
    k->broken = true;
    redisContext *c = k->c;
    if (rc == CGLOO_ETIMEDOUT || (c->err == REDIS_ERR_IO && (err == EAGAIN || err == EWOULDBLOCK)))
        return rs_fail(r, CGLOO_ETIMEDOUT, "%s: timed out", what);
    if (c->err == REDIS_ERR_OOM)
        return rs_fail(r, CGLOO_ENOMEM, "%s: out of memory", what);
    return rs_fail(r, CGLOO_EIO, "%s: the connection failed: %s", what,
                   c->err ? c->errstr : "a socket option could not be set");
}

/* write_quietly is redisBufferWrite without SIGPIPE. hiredis writes with write(2), which raises
 * SIGPIPE on a connection the server has closed, and that would kill a process that never asked
 * for the signal to be ignored. The signal goes to the writing thread, so it is blocked here for
 * the write, and one the write raised is taken before it is unblocked (one already pending
 * belongs to someone else and stays). errno is kept for the caller. */
static int write_quietly(redisContext *c, int *done)
{
    sigset_t pipe_set, old, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
    sigpending(&pending);
    bool had = sigismember(&pending, SIGPIPE);
    int rc = redisBufferWrite(c, done);
    int err = errno;
    sigpending(&pending);
    if (!had && sigismember(&pending, SIGPIPE)) {
        struct timespec zero = {0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return rc;
}

/* conn_flush writes every command appended to k before deadline. */
static int conn_flush(redis_store *r, redis_conn *k, int64_t deadline, const char *what)
{
    int done = 0;
    while (!done) {
        int rc = conn_budget(k->c, deadline);
        if (rc == CGLOO_OK && write_quietly(k->c, &done) != REDIS_OK)
            rc = CGLOO_EIO;
        if (rc != CGLOO_OK)
            return conn_failed(r, k, rc, errno, what);
    }
    return CGLOO_OK;
}

/* conn_read reads one reply before deadline (*out: free with freeReplyObject). */
static int conn_read(redis_store *r, redis_conn *k, int64_t deadline, const char *what,
                     redisReply **out)
{
    for (;;) {
        void *reply = NULL;
        if (redisGetReplyFromReader(k->c, &reply) != REDIS_OK)
            return conn_failed(r, k, CGLOO_EIO, 0, what); /* a protocol error */
        if (reply) {
            *out = reply;
            return CGLOO_OK;
        }
        int rc = conn_budget(k->c, deadline);
        if (rc == CGLOO_OK && redisBufferRead(k->c) != REDIS_OK)
            rc = CGLOO_EIO;
        if (rc != CGLOO_OK)
            return conn_failed(r, k, rc, errno, what);
    }
}

/* conn_run sends the commands appended to k (or fails with ENOMEM when appending did) and reads
 * their n replies into rep before deadline. On failure rep holds nothing. */
static int conn_run(redis_store *r, redis_conn *k, bool appended, size_t n, int64_t deadline,
                    const char *what, redisReply **rep)
{
    if (!appended) {
        k->broken = true; /* part of a pipeline may sit in the output buffer */
        return rs_fail(r, CGLOO_ENOMEM, "%s: out of memory", what);
    }
    int rc = conn_flush(r, k, deadline, what);
    size_t got = 0;
    while (rc == CGLOO_OK && got < n)
        if ((rc = conn_read(r, k, deadline, what, &rep[got])) == CGLOO_OK)
            got++;
    while (rc != CGLOO_OK && got > 0)
        freeReplyObject(rep[--got]);
    return rc;
}

/* command runs one formatted command and gives its reply. */
static int command(redis_store *r, redis_conn *k, int64_t deadline, const char *what,
                   redisReply **rep, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    bool appended = redisvAppendCommand(k->c, fmt, ap) == REDIS_OK;
    va_end(ap);
    return conn_run(r, k, appended, 1, deadline, what, rep);
}

/* ---- connections ---- */

/* dial_status maps a failed connect to a status (err: errno just after it). */
static int dial_status(const redisContext *c, int err)
{
    if (c->err == REDIS_ERR_OOM)
        return CGLOO_ENOMEM;
    if (c->err == REDIS_ERR_OTHER)
        return CGLOO_EADDR; /* the host name did not resolve, or no address could be used */
    if (err == EINPROGRESS)
        return CGLOO_ETIMEDOUT;
    int rc = cgloo__status_from_errno(err);
    return rc == CGLOO_ECONNREFUSED || rc == CGLOO_ETIMEDOUT || rc == CGLOO_ENOMEM ? rc : CGLOO_EIO;
}

/* handshake authenticates, selects the database and pings, so that a wrong password, or a
 * server that wants one, fails the open with the server's words and not some later set. */
static int handshake(redis_store *r, redis_conn *k, int64_t deadline)
{
    const char *what[3];
    size_t n = 0;
    bool ok = true;
    if (r->password) {
        what[n++] = "AUTH";
        ok = (r->user ? redisAppendCommand(k->c, "AUTH %s %s", r->user, r->password)
                      : redisAppendCommand(k->c, "AUTH %s", r->password)) == REDIS_OK;
    }
    if (r->db > 0) {
        what[n++] = "SELECT";
        ok = ok && redisAppendCommand(k->c, "SELECT %d", r->db) == REDIS_OK;
    }
    what[n++] = "PING";
    ok = ok && redisAppendCommand(k->c, "PING") == REDIS_OK;
    redisReply *rep[3];
    int rc = conn_run(r, k, ok, n, deadline, "connecting", rep);
    if (rc != CGLOO_OK)
        return rc;
    for (size_t i = 0; i < n; i++) {
        if (rc == CGLOO_OK)
            rc = reply_error(r, rep[i], what[i]);
        freeReplyObject(rep[i]);
    }
    return rc;
}

/* dial_once connects and says hello to the server before deadline. */
static int dial_once(redis_store *r, int64_t deadline, redis_conn *k)
{
    int left = cgloo__remaining_ms(deadline);
    if (left == 0)
        return rs_fail(r, CGLOO_ETIMEDOUT, "connecting: timed out");
    errno = 0;
    redisContext *c = redisConnectWithTimeout(r->host, r->port, ms_tv(left));
    int err = errno;
    if (!c)
        return rs_fail(r, CGLOO_ENOMEM, "connecting: out of memory");
    if (c->err) {
        int rc = rs_fail(r, dial_status(c, err), "cannot connect: %s", c->errstr);
        redisFree(c);
        return rc;
    }
    *k = (redis_conn){.c = c};
    int rc = handshake(r, k, deadline);
    if (rc != CGLOO_OK) {
        redisFree(c);
        k->c = NULL;
    }
    return rc;
}

/* dial connects before deadline. With `retry`, refused connects are tried again after a
 * growing pause, for a server that is still starting. */
static int dial(redis_store *r, int64_t deadline, bool retry, redis_conn *k)
{
    int pause = REDIS_DIAL_PAUSE_MIN_MS;
    for (;;) {
        int rc = dial_once(r, deadline, k);
        if (rc != CGLOO_ECONNREFUSED || !retry)
            return rc;
        cgloo__sleep_ms(CGLOO_MIN(pause, cgloo__remaining_ms(deadline)));
        pause = CGLOO_MIN(pause * 2, REDIS_DIAL_PAUSE_MAX_MS);
        if (cgloo__remaining_ms(deadline) == 0)
            return rc; /* the refusal, not "timed out": it says what is wrong */
    }
}

static redisContext *pool_pop(redis_store *r)
{
    redisContext *c = NULL;
    pthread_mutex_lock(&r->lock);
    if (r->nidle > 0)
        c = r->idle[--r->nidle];
    pthread_mutex_unlock(&r->lock);
    return c;
}

/* idle_ok tells whether an idle connection is still usable: it must have nothing to read. */
static bool idle_ok(const redisContext *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    return poll(&p, 1, 0) == 0;
}

/* conn_take gives the call a connection of its own: an idle one still open, or a new one (a
 * server that is gone is EIO, as in the TCP store). */
static int conn_take(redis_store *r, int64_t deadline, redis_conn *k)
{
    redisContext *c;
    while ((c = pool_pop(r))) {
        if (idle_ok(c)) {
            *k = (redis_conn){.c = c};
            return CGLOO_OK;
        }
        redisFree(c);
    }
    int rc = dial(r, deadline, false, k);
    return rc == CGLOO_ECONNREFUSED || rc == CGLOO_EADDR ? CGLOO_EIO : rc;
}

/* conn_give keeps k's connection for the next call, unless it is out of step or enough are
 * idle already. */
static void conn_give(redis_store *r, redis_conn *k)
{
    redisContext *c = k->c;
    pthread_mutex_lock(&r->lock);
    if (!k->broken && !c->err && r->nidle < REDIS_IDLE_MAX) {
        r->idle[r->nidle++] = c;
        c = NULL;
    }
    pthread_mutex_unlock(&r->lock);
    if (c)
        redisFree(c);
}

/* ---- writes that wake waiters ---- */

/* exec_result checks the replies of MULTI, the write, DEL, RPUSH and EXEC, and gives the
 * write's integer reply in *integer when that is not NULL. */
static int exec_result(redis_store *r, redisReply **rep, const char *what, long long *integer)
{
    int rc = CGLOO_OK;
    for (int i = 0; i < 4 && rc == CGLOO_OK; i++)
        rc = reply_error(r, rep[i], what);
    if (rc == CGLOO_OK)
        rc = reply_want(r, rep[4], REDIS_REPLY_ARRAY, what);
    if (rc == CGLOO_OK && rep[4]->elements != 3)
        rc = rs_fail(r, CGLOO_ESTORE, "%s: the transaction gave %zu replies", what,
                     rep[4]->elements);
    if (rc == CGLOO_OK && integer)
        rc = reply_want(r, rep[4]->element[0], REDIS_REPLY_INTEGER, what);
    else if (rc == CGLOO_OK)
        rc = reply_error(r, rep[4]->element[0], what);
    if (rc == CGLOO_OK && integer)
        *integer = rep[4]->element[0]->integer;
    return rc;
}

static int signalled(redis_store *r, const char *key, const char *what, long long *integer,
                     const char *fmt, ...);

/* signalled runs a write of key's value (fmt) and refills key's wake-up list in one
 * transaction; *integer (may be NULL) gets the write's integer reply. */
static int signalled(redis_store *r, const char *key, const char *what, long long *integer,
                     const char *fmt, ...)
{
    redis_name sig;
    name_of(r, 's', key, &sig);
    int64_t deadline = cgloo__deadline(CGLOO_DEFAULT_TIMEOUT_MS, CGLOO_DEFAULT_TIMEOUT_MS);
    redis_conn k;
    int rc = conn_take(r, deadline, &k);
    if (rc != CGLOO_OK)
        return rc;
    va_list ap;
    va_start(ap, fmt);
    bool ok = redisAppendCommand(k.c, "MULTI") == REDIS_OK &&
              redisvAppendCommand(k.c, fmt, ap) == REDIS_OK &&
              redisAppendCommand(k.c, "DEL %b", sig.buf, sig.len) == REDIS_OK &&
              redisAppendCommand(k.c, "RPUSH %b 1", sig.buf, sig.len) == REDIS_OK &&
              redisAppendCommand(k.c, "EXEC") == REDIS_OK;
    va_end(ap);
    redisReply *rep[5];
    rc = conn_run(r, &k, ok, 5, deadline, what, rep);
    if (rc == CGLOO_OK) {
        rc = exec_result(r, rep, what, integer);
        for (int i = 0; i < 5; i++)
            freeReplyObject(rep[i]);
    }
    conn_give(r, &k);
    return rc;
}

/* track remembers key for the cleanup at destroy. Done before the write, so that a write never
 * succeeds untracked and a failed one leaves only a harmless extra delete. */
static int track(redis_store *r, const char *key)
{
    if (!r->cleanup)
        return CGLOO_OK;
    size_t klen = strlen(key);
    int rc = CGLOO_OK;
    pthread_mutex_lock(&r->lock);
    if (!cgloo__kvtable_has(&r->tracked, key, klen)) {
        void *mark = malloc(1);
        rc = mark ? cgloo__kvtable_set(&r->tracked, key, klen, mark, 0) : CGLOO_ENOMEM;
        if (rc != CGLOO_OK)
            free(mark);
    }
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static int redis_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    redis_store *r = (redis_store *)s;
    redis_name v;
    name_of(r, 'k', key, &v);
    int rc = track(r, key);
    if (rc == CGLOO_OK)
        rc = signalled(r, key, "SET", NULL, "SET %b %b", v.buf, v.len, value, len);
    return rc;
}

static int redis_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    redis_store *r = (redis_store *)s;
    redis_name v;
    name_of(r, 'k', key, &v);
    long long sum = 0;
    int rc = track(r, key);
    if (rc == CGLOO_OK)
        rc = signalled(r, key, "INCRBY", &sum, "INCRBY %b %lld", v.buf, v.len, (long long)delta);
    if (rc == CGLOO_OK)
        *result = (int64_t)sum;
    return rc;
}

/* ---- waiting ---- */

/* wait_signal blocks on key `index`'s wake-up list `sig` until it has its element or deadline
 * passes (ETIMEDOUT). Called when the key was just found missing: if the last wake-up was for
 * this same key, it was for nothing, so it sleeps the backoff first. */
static int wait_signal(redis_store *r, redis_conn *k, size_t index, const redis_name *sig,
                       int64_t deadline, redis_waiter *w)
{
    if (w->woke && w->key == index) {
        w->pause_ms = CGLOO_MIN(CGLOO_MAX(w->pause_ms * 2, REDIS_POLL_MIN_MS), REDIS_POLL_MAX_MS);
        cgloo__sleep_ms(CGLOO_MIN(w->pause_ms, cgloo__remaining_ms(deadline)));
    }
    w->key = index;
    int left = cgloo__remaining_ms(deadline);
    if (left == 0)
        return rs_fail(r, CGLOO_ETIMEDOUT, "a key did not appear within the timeout");
    char secs[24];
    snprintf(secs, sizeof secs, "%d.%03d", left / 1000, left % 1000);
    redisReply *rep;
    int rc = command(r, k, deadline + REDIS_MARGIN_MS, "BLMOVE", &rep, "BLMOVE %b %b LEFT LEFT %s",
                     sig->buf, sig->len, sig->buf, sig->len, secs);
    if (rc != CGLOO_OK)
        return rc;
    w->woke = rep->type == REDIS_REPLY_STRING;
    if (!w->woke)
        rc = reply_want(r, rep, REDIS_REPLY_NIL, "BLMOVE");
    freeReplyObject(rep);
    return rc;
}

/* exists_batch asks about keys[from..end) in one round trip and sets *missing to the first
 * that does not exist, or end. */
static int exists_batch(redis_store *r, redis_conn *k, const char *const *keys, size_t from,
                        size_t end, int64_t deadline, size_t *missing)
{
    redisReply *rep[REDIS_EXISTS_BATCH];
    bool ok = true;
    for (size_t i = from; i < end && ok; i++) {
        redis_name v;
        name_of(r, 'k', keys[i], &v);
        ok = redisAppendCommand(k->c, "EXISTS %b", v.buf, v.len) == REDIS_OK;
    }
    int rc = conn_run(r, k, ok, end - from, deadline, "EXISTS", rep);
    if (rc != CGLOO_OK)
        return rc;
    *missing = end;
    for (size_t i = 0; i < end - from; i++) {
        if (rc == CGLOO_OK)
            rc = reply_want(r, rep[i], REDIS_REPLY_INTEGER, "EXISTS");
        if (rc == CGLOO_OK && rep[i]->integer == 0 && *missing == end)
            *missing = from + i;
        freeReplyObject(rep[i]);
    }
    return rc;
}

/* first_missing sets *missing to the first key of keys[from..n) that does not exist, or n. */
static int first_missing(redis_store *r, redis_conn *k, const char *const *keys, size_t from,
                         size_t n, int64_t deadline, size_t *missing)
{
    *missing = n;
    for (size_t at = from; at < n && *missing == n; at += REDIS_EXISTS_BATCH) {
        int rc =
            exists_batch(r, k, keys, at, CGLOO_MIN(at + REDIS_EXISTS_BATCH, n), deadline, missing);
        if (rc != CGLOO_OK)
            return rc;
    }
    return CGLOO_OK;
}

/* wait_keys returns once every key exists, blocking on the first missing one each time. Keys
 * seen earlier are looked at again before it says yes: one may have been deleted meanwhile. */
static int wait_keys(redis_store *r, redis_conn *k, const char *const *keys, size_t n,
                     int64_t deadline, redis_waiter *w)
{
    size_t from = 0;
    for (;;) {
        size_t m;
        int rc = first_missing(r, k, keys, from, n, deadline + REDIS_MARGIN_MS, &m);
        if (rc != CGLOO_OK || (m == n && from == 0))
            return rc;
        if (m == n) {
            from = 0;
            continue;
        }
        redis_name sig;
        name_of(r, 's', keys[m], &sig);
        if ((rc = wait_signal(r, k, m, &sig, deadline, w)) != CGLOO_OK)
            return rc;
        from = m;
    }
}

static int redis_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    redis_store *r = (redis_store *)s;
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    redis_conn k;
    int rc = conn_take(r, deadline, &k);
    if (rc != CGLOO_OK)
        return rc;
    redis_waiter w = {0};
    rc = wait_keys(r, &k, keys, nkeys, deadline, &w);
    conn_give(r, &k);
    return rc;
}

/* get_once reads key's value: *found says whether it exists. */
static int get_once(redis_store *r, redis_conn *k, const redis_name *v, int64_t deadline,
                    bool *found, void **value, size_t *len)
{
    redisReply *rep;
    int rc = command(r, k, deadline, "GET", &rep, "GET %b", v->buf, v->len);
    if (rc != CGLOO_OK)
        return rc;
    *found = rep->type == REDIS_REPLY_STRING;
    if (!*found)
        rc = reply_want(r, rep, REDIS_REPLY_NIL, "GET");
    else if (!(*value = cgloo__memdup_z(rep->str, rep->len)))
        rc = CGLOO_ENOMEM;
    else
        *len = rep->len;
    freeReplyObject(rep);
    return rc;
}

static int redis_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    redis_store *r = (redis_store *)s;
    redis_name v, sig;
    name_of(r, 'k', key, &v);
    name_of(r, 's', key, &sig);
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    redis_conn k;
    int rc = conn_take(r, deadline, &k);
    if (rc != CGLOO_OK)
        return rc;
    redis_waiter w = {0};
    bool found = false;
    for (;;) {
        rc = get_once(r, &k, &v, deadline + REDIS_MARGIN_MS, &found, value, len);
        if (rc != CGLOO_OK || found)
            break;
        if ((rc = wait_signal(r, &k, 0, &sig, deadline, &w)) != CGLOO_OK)
            break;
    }
    conn_give(r, &k);
    return rc;
}

/* ---- many keys in one command ---- */

/* An argument vector: a command word and the names of keys, in one allocation. */
typedef struct redis_argv {
    const char **argv;
    size_t *lens;
} redis_argv;

static int argv_make(const redis_store *r, const char *cmd, const char *const *keys, size_t n,
                     redis_argv *a)
{
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++)
        bytes += r->plen + 2 + strlen(keys[i]);
    char *mem = malloc((n + 1) * (sizeof(char *) + sizeof(size_t)) + bytes);
    if (!mem)
        return CGLOO_ENOMEM;
    a->argv = (const char **)mem;
    a->lens = (size_t *)(mem + (n + 1) * sizeof(char *));
    char *at = (char *)(a->lens + n + 1);
    a->argv[0] = cmd;
    a->lens[0] = strlen(cmd);
    for (size_t i = 0; i < n; i++) {
        size_t klen = strlen(keys[i]);
        memcpy(at, r->prefix, r->plen);
        memcpy(at + r->plen, "k:", 2);
        memcpy(at + r->plen + 2, keys[i], klen);
        a->argv[i + 1] = at;
        a->lens[i + 1] = r->plen + 2 + klen;
        at += a->lens[i + 1];
    }
    return CGLOO_OK;
}

/* argv_command runs a command over the names of keys and gives its reply. */
static int argv_command(redis_store *r, redis_conn *k, const char *cmd, const char *const *keys,
                        size_t n, int64_t deadline, redisReply **rep)
{
    redis_argv a;
    if (argv_make(r, cmd, keys, n, &a) != CGLOO_OK)
        return rs_fail(r, CGLOO_ENOMEM, "%s: out of memory", cmd);
    bool ok = redisAppendCommandArgv(k->c, (int)n + 1, a.argv, a.lens) == REDIS_OK;
    free(a.argv);
    return conn_run(r, k, ok, 1, deadline, cmd, rep);
}

static int redis_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    redis_store *r = (redis_store *)s;
    int64_t deadline = cgloo__deadline(CGLOO_DEFAULT_TIMEOUT_MS, CGLOO_DEFAULT_TIMEOUT_MS);
    redis_conn k;
    int rc = conn_take(r, deadline, &k);
    if (rc != CGLOO_OK)
        return rc;
    redisReply *rep;
    rc = argv_command(r, &k, "EXISTS", keys, nkeys, deadline, &rep);
    if (rc == CGLOO_OK) {
        /* EXISTS counts a key named twice twice, so the count is nkeys exactly when all are. */
        if ((rc = reply_want(r, rep, REDIS_REPLY_INTEGER, "EXISTS")) == CGLOO_OK)
            *all_present = rep->integer == (long long)nkeys;
        freeReplyObject(rep);
    }
    conn_give(r, &k);
    return rc;
}

/* mget_copy copies every value of an MGET reply; *complete is false (and nothing is copied)
 * when a key had gone again. */
static int mget_copy(redis_store *r, const redisReply *rep, size_t n, void **values, size_t *lens,
                     bool *complete)
{
    int rc = reply_want(r, rep, REDIS_REPLY_ARRAY, "MGET");
    if (rc == CGLOO_OK && rep->elements != n)
        rc = rs_fail(r, CGLOO_ESTORE, "MGET: %zu values for %zu keys", rep->elements, n);
    *complete = rc == CGLOO_OK;
    for (size_t i = 0; i < n && *complete; i++)
        *complete = rep->element[i]->type == REDIS_REPLY_STRING;
    size_t done = 0;
    for (; *complete && done < n; done++) {
        if (!(values[done] = cgloo__memdup_z(rep->element[done]->str, rep->element[done]->len)))
            break;
        lens[done] = rep->element[done]->len;
    }
    if (*complete && done < n) {
        while (done > 0)
            free(values[--done]);
        rc = CGLOO_ENOMEM;
    }
    return rc;
}

static int redis_multi_get(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms,
                           void **values, size_t *lens)
{
    redis_store *r = (redis_store *)s;
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    redis_conn k;
    int rc = conn_take(r, deadline, &k);
    if (rc != CGLOO_OK)
        return rc;
    redis_waiter w = {0};
    bool complete = false;
    int pause = REDIS_POLL_MIN_MS;
    while (rc == CGLOO_OK) {
        rc = wait_keys(r, &k, keys, nkeys, deadline, &w);
        redisReply *rep = NULL;
        if (rc == CGLOO_OK)
            rc = argv_command(r, &k, "MGET", keys, nkeys, deadline + REDIS_MARGIN_MS, &rep);
        if (rc == CGLOO_OK) {
            rc = mget_copy(r, rep, nkeys, values, lens, &complete);
            freeReplyObject(rep);
        }
        if (rc != CGLOO_OK || complete)
            break;
        /* A key went between the wait and MGET, or holds no string (MGET says nil for both,
         * EXISTS yes for the second): back off rather than ask again at once. */
        cgloo__sleep_ms(CGLOO_MIN(pause, cgloo__remaining_ms(deadline)));
        pause = CGLOO_MIN(pause * 2, REDIS_POLL_MAX_MS);
        if (cgloo__remaining_ms(deadline) == 0)
            rc = rs_fail(r, CGLOO_ETIMEDOUT, "MGET: the keys were not all there in time");
    }
    conn_give(r, &k);
    return rc;
}

static int redis_del(cgloo_store *s, const char *key)
{
    redis_store *r = (redis_store *)s;
    redis_name v, sig;
    name_of(r, 'k', key, &v);
    name_of(r, 's', key, &sig);
    int64_t deadline = cgloo__deadline(CGLOO_DEFAULT_TIMEOUT_MS, CGLOO_DEFAULT_TIMEOUT_MS);
    redis_conn k;
    int rc = conn_take(r, deadline, &k);
    if (rc != CGLOO_OK)
        return rc;
    redisReply *rep;
    /* One DEL removes the key and its list together: a list without its key wakes for nothing. */
    rc = command(r, &k, deadline, "DEL", &rep, "DEL %b %b", v.buf, v.len, sig.buf, sig.len);
    if (rc == CGLOO_OK) {
        rc = reply_want(r, rep, REDIS_REPLY_INTEGER, "DEL");
        freeReplyObject(rep);
    }
    conn_give(r, &k);
    return rc;
}

/* ---- cleanup and lifetime ---- */

typedef struct redis_sweep {
    redis_store *r;
    redisContext *c;
    size_t sent;
} redis_sweep;

/* sweep_one appends the DEL of one tracked key and its list. */
static int sweep_one(void *arg, const void *key, size_t klen, const void *value, size_t vlen)
{
    redis_sweep *sw = arg;
    redis_name v, sig;
    name_make(sw->r, 'k', key, klen, &v);
    name_make(sw->r, 's', key, klen, &sig);
    if (redisAppendCommand(sw->c, "DEL %b %b", v.buf, v.len, sig.buf, sig.len) != REDIS_OK)
        return 1;
    sw->sent++;
    return 0;
}

/* cleanup deletes the keys set or added through this handle, in one pipelined round trip. */
static void cleanup(redis_store *r)
{
    if (r->tracked.count == 0)
        return;
    int64_t deadline = cgloo__deadline(REDIS_CLEANUP_MS, REDIS_CLEANUP_MS);
    redis_conn k;
    if (conn_take(r, deadline, &k) != CGLOO_OK)
        return; /* logged; the keys stay, under their run id */
    redis_sweep sw = {.r = r, .c = k.c};
    bool ok = cgloo__kvtable_foreach(&r->tracked, sweep_one, &sw) == 0;
    int rc = ok ? conn_flush(r, &k, deadline, "DEL") : rs_fail(r, CGLOO_ENOMEM, "DEL: no memory");
    for (size_t i = 0; i < sw.sent && rc == CGLOO_OK; i++) {
        redisReply *rep;
        if ((rc = conn_read(r, &k, deadline, "DEL", &rep)) == CGLOO_OK) {
            rc = reply_error(r, rep, "DEL");
            freeReplyObject(rep);
        }
    }
    k.broken = k.broken || !ok;
    conn_give(r, &k);
}

static void rs_free(redis_store *r)
{
    for (int i = 0; i < r->nidle; i++)
        redisFree(r->idle[i]);
    cgloo__kvtable_fini(&r->tracked);
    pthread_mutex_destroy(&r->lock);
    if (r->password)
        explicit_bzero(r->password, strlen(r->password));
    free(r->password);
    free(r->user);
    free(r->host);
    free(r);
}

static void redis_destroy(cgloo_store *s)
{
    redis_store *r = (redis_store *)s;
    if (r->cleanup)
        cleanup(r);
    rs_free(r);
}

static void redis_last_error(cgloo_store *s, char *buf, size_t len)
{
    redis_store *r = (redis_store *)s;
    pthread_mutex_lock(&r->lock);
    snprintf(buf, len, "%s", r->detail);
    pthread_mutex_unlock(&r->lock);
}

static const cgloo_store_ops redis_ops = {
    .name = "redis",
    .set = redis_set,
    .get = redis_get,
    .wait = redis_wait,
    .check = redis_check,
    .add = redis_add,
    .del = redis_del,
    .multi_get = redis_multi_get,
    .destroy = redis_destroy,
    .last_error = redis_last_error,
};

/* attr_check fills in defaults and the run id, or says what is wrong in *why. */
static int attr_check(cgloo_redis_attr *a, const char **why)
{
    if (!a->host || !*a->host)
        a->host = "127.0.0.1";
    if (a->port == 0)
        a->port = REDIS_DEFAULT_PORT;
    if (!a->run_id)
        a->run_id = getenv("CGLOO_RUN_ID");
    if (a->password && !*a->password)
        a->password = NULL;
    if (a->port < 0 || a->port > 65535)
        *why = "the port is not in 1..65535";
    else if (a->db < 0)
        *why = "the database number is negative";
    else if (strlen(a->host) > REDIS_HOST_MAX)
        *why = "the host name is longer than 255 bytes";
    else if (a->run_id && strlen(a->run_id) > REDIS_RUN_ID_MAX)
        *why = "the run id is longer than 256 bytes";
    else
        return CGLOO_OK;
    return CGLOO_EINVAL;
}

/* rs_new makes the handle: copies of the strings, the key prefix, the URL for messages. */
static redis_store *rs_new(const cgloo_redis_attr *a)
{
    redis_store *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    pthread_mutex_init(&r->lock, NULL);
    cgloo__kvtable_init(&r->tracked);
    r->base.ops = &redis_ops;
    r->host = cgloo__strdup(a->host);
    r->user = a->user && *a->user ? cgloo__strdup(a->user) : NULL;
    r->password = a->password ? cgloo__strdup(a->password) : NULL;
    r->port = a->port;
    r->db = a->db;
    r->cleanup = a->cleanup != 0;
    if (!r->host || (a->user && *a->user && !r->user) || (a->password && !r->password)) {
        rs_free(r);
        return NULL;
    }
    const char *run = a->run_id ? a->run_id : "";
    r->plen = (size_t)snprintf(r->prefix, sizeof r->prefix, "cgloo:%zu:%s:", strlen(run), run);
    bool v6 = strchr(a->host, ':') != NULL;
    int n = snprintf(r->url, sizeof r->url, "redis://%s%s%s:%d", v6 ? "[" : "", a->host,
                     v6 ? "]" : "", a->port);
    if (a->db > 0)
        snprintf(r->url + n, sizeof r->url - (size_t)n, "/%d", a->db);
    return r;
}

int cgloo__store_redis_open(const cgloo_redis_attr *attr, int timeout_ms, char *detail,
                            size_t detail_len, cgloo_store **out)
{
    if (detail && detail_len)
        detail[0] = '\0';
    if (!out || timeout_ms < 0)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    cgloo_redis_attr a = attr ? *attr : (cgloo_redis_attr){0};
    const char *why = NULL;
    if (attr_check(&a, &why) != CGLOO_OK) {
        CGLOO_WARN("redis store: %s", why);
        if (detail && detail_len)
            snprintf(detail, detail_len, "redis store: %s", why);
        return CGLOO_EINVAL;
    }
    redis_store *r = rs_new(&a);
    if (!r)
        return CGLOO_ENOMEM;
    redis_conn k;
    int rc = dial(r, cgloo__deadline(timeout_ms, CGLOO_DEFAULT_TIMEOUT_MS), true, &k);
    if (rc != CGLOO_OK) {
        if (rc == CGLOO_ECONNREFUSED || rc == CGLOO_ETIMEDOUT)
            CGLOO_WARN("%s", r->detail); /* the retries were logged at DEBUG only */
        if (detail && detail_len)
            snprintf(detail, detail_len, "%s", r->detail);
        rs_free(r);
        return rc;
    }
    conn_give(r, &k);
    *out = &r->base;
    return CGLOO_OK;
}

int cgloo_store_redis_connect(const cgloo_redis_attr *attr, int timeout_ms, cgloo_store **out)
{
    return cgloo__store_redis_open(attr, timeout_ms, NULL, 0, out);
}
