/*
 * cgloo_launch_store_open: the store a launcher's environment names (launcher_env.c), opened
 * and, on the rank that hosts it, served; and the watch that ends ranks whose launcher's store
 * went away.
 *
 * What it returns is a store of its own kind, "launch", that forwards every op to the job's
 * view of the store (the prefix store, or the connection itself) and owns everything behind
 * it, so that whoever destroys it (a context made from the environment, a Python Store) stops
 * the server too.
 */
#include "rendezvous/launcher_env.h"
#include "store/store.h"
#include "net/net.h"

#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

typedef struct launch_store {
    cgloo_store base;
    cgloo_store *view;          /* where the ops go: the prefix store, or conn itself */
    cgloo_store *conn;          /* the connection to the store */
    cgloo_store_server *server; /* the server this rank hosts, or NULL */
} launch_store;

static cgloo_store *view_of(cgloo_store *s)
{
    return ((launch_store *)s)->view;
}

static int launch_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    return cgloo_store_set(view_of(s), key, value, len);
}

static int launch_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    return cgloo_store_get(view_of(s), key, timeout_ms, value, len);
}

static int launch_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    return cgloo_store_wait(view_of(s), keys, nkeys, timeout_ms);
}

static int launch_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    return cgloo_store_check(view_of(s), keys, nkeys, all_present);
}

static int launch_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    return cgloo_store_add(view_of(s), key, delta, result);
}

static int launch_del(cgloo_store *s, const char *key)
{
    return cgloo_store_delete(view_of(s), key);
}

static int launch_multi_get(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms,
                            void **values, size_t *lens)
{
    return cgloo_store_multi_get(view_of(s), keys, nkeys, timeout_ms, values, lens);
}

static const char *launch_host(const cgloo_store *s)
{
    return cgloo__store_host(((const launch_store *)s)->view);
}

static void launch_last_error(cgloo_store *s, char *buf, size_t len)
{
    cgloo_store_last_error(view_of(s), buf, len);
}

/* launch_destroy closes the connection before stopping the server, so that the server never
 * sees its own rank's connection break. */
static void launch_destroy(cgloo_store *s)
{
    launch_store *l = (launch_store *)s;
    if (l->view != l->conn)
        cgloo_store_destroy(l->view);
    cgloo_store_destroy(l->conn);
    cgloo_store_server_stop(l->server);
    free(l);
}

static const cgloo_store_ops launch_ops = {
    .name = "launch",
    .set = launch_set,
    .get = launch_get,
    .wait = launch_wait,
    .check = launch_check,
    .add = launch_add,
    .del = launch_del,
    .multi_get = launch_multi_get,
    .destroy = launch_destroy,
    .last_error = launch_last_error,
    .host = launch_host,
};

/* connect_url is the URL this rank connects to: its own server by the loopback when it serves
 * on every interface. */
static void connect_url(const cgloo_launch_info *info, char *buf, size_t size)
{
    if (info->serve_port > 0 && strcmp(info->serve_host, "0.0.0.0") == 0)
        snprintf(buf, size, "tcp://127.0.0.1:%d", info->serve_port);
    else
        snprintf(buf, size, "%s", info->store);
}

static int open_parts(const cgloo_launch_info *info, int timeout_ms, launch_store *l)
{
    char url[sizeof info->store];
    int rc = CGLOO_OK;
    if (info->serve_port > 0 && (rc = cgloo_store_server_start(info->serve_host, info->serve_port,
                                                               &l->server)) != CGLOO_OK) {
        CGLOO_LOG(CGLOO_LOG_ERROR, info->rank, info->size,
                  "cannot serve the store on %s port %d: %s (another job's? set "
                  "CGLOO_STORE_PORT)",
                  info->serve_host, info->serve_port, cgloo_strerror(rc));
        return rc;
    }
    connect_url(info, url, sizeof url);
    if ((rc = cgloo_store_open(url, timeout_ms, &l->conn)) != CGLOO_OK)
        return rc;
    l->view = l->conn;
    if (info->prefix[0])
        rc = cgloo_store_prefix_create(l->conn, info->prefix, &l->view);
    return rc;
}

int cgloo_launch_store_open(const cgloo_launch_info *info, int timeout_ms, cgloo_store **out)
{
    if (!info || !out || timeout_ms < 0 || !info->store[0])
        return CGLOO_EINVAL;
    launch_store *l = calloc(1, sizeof *l);
    if (!l)
        return CGLOO_ENOMEM;
    l->base.ops = &launch_ops;
    int rc = open_parts(info, timeout_ms, l);
    if (rc == CGLOO_OK && info->watch_store)
        rc = cgloo__store_watch_start(info->store, timeout_ms);
    if (rc != CGLOO_OK) {
        if (!l->view)
            l->view = l->conn;
        launch_destroy(&l->base);
        return rc;
    }
    cgloo__launch_log(info, CGLOO_LOG_INFO);
    *out = &l->base;
    return CGLOO_OK;
}

/* ---- the store watch ---- */

typedef struct store_watch {
    int fd;
    char url[512];
} store_watch;

/* watch_connect dials the server and exchanges hellos (through TLS when the CGLOO_TLS_*
 * variables ask for it, proving the job secret, if any), as a client that never asks anything. */
static int watch_connect(const char *host, int port, int timeout_ms, int *out)
{
    return cgloo__tcp_store_dial(host, port, timeout_ms, out);
}

/* watch_main waits for the server to close the connection (it never writes to a client that
 * asks nothing), then ends the process: the launcher that served the store is gone, and with
 * it whatever would have ended this rank. */
static void *watch_main(void *arg)
{
    store_watch *w = arg;
    for (;;) {
        struct pollfd p = {.fd = w->fd, .events = POLLIN};
        char b[64];
        if (poll(&p, 1, -1) < 0)
            continue;
        ssize_t n = recv(w->fd, b, sizeof b, 0);
        if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN))
            break;
    }
    CGLOO_ERROR("the launcher's store %s closed: the launcher is gone, so this rank ends "
                "(CGLOO_WATCH_STORE=1)",
                w->url);
    kill(getpid(), SIGTERM);
    sleep(2);
    kill(getpid(), SIGKILL);
    return NULL;
}

/* watch_spawn starts the watch thread, detached, with every signal blocked. */
static int watch_spawn(store_watch *w)
{
    pthread_t t;
    pthread_attr_t attr;
    sigset_t all, old;
    sigfillset(&all);
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&t, &attr, watch_main, w);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    pthread_attr_destroy(&attr);
    return err == 0 ? CGLOO_OK : CGLOO_EIO;
}

int cgloo__store_watch_start(const char *url, int timeout_ms)
{
    static pthread_mutex_t once = PTHREAD_MUTEX_INITIALIZER;
    static int started;
    char host[256];
    int port, rc = CGLOO_OK;
    if (strncmp(url, "tcp://", 6) != 0 ||
        cgloo__split_host_port(url + 6, host, sizeof host, &port) != CGLOO_OK)
        return CGLOO_EINVAL;
    pthread_mutex_lock(&once);
    if (!started) {
        store_watch *w = calloc(1, sizeof *w);
        rc = w ? watch_connect(host, port, timeout_ms, &w->fd) : CGLOO_ENOMEM;
        if (rc == CGLOO_OK) {
            snprintf(w->url, sizeof w->url, "%s", url);
            if ((rc = watch_spawn(w)) != CGLOO_OK)
                close(w->fd);
        }
        if (rc == CGLOO_OK)
            started = 1;
        else
            free(w);
    }
    pthread_mutex_unlock(&once);
    return rc;
}
