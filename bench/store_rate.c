/*
 * cgloo-store-rate: how much the TCP store server serves when a job's ranks all talk to it at
 * once (docs/SCALING.md, "The store"). One process starts the server, as cgloo-run does, and
 * CLIENTS threads each open their own connection, then:
 *   1. rendezvous: every client sets one 64-byte record and multi-gets every client's record,
 *      as a rank's rendezvous does; printed: the time until the last client has them all;
 *   2. rate: every client sets and gets its own key in a loop for SECONDS; printed: requests
 *      served per second, all clients together.
 *   cgloo-store-rate CLIENTS [SECONDS]          e.g. cgloo-store-rate 1024 2
 */
#include <cgloo/cgloo.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define TIMEOUT_MS 120000
#define KEY_MAX 32

typedef struct bench {
    int port, clients;
    double seconds;
    char (*keys)[KEY_MAX];
    const char **key_list;
    pthread_barrier_t start, between;
    atomic_int failed;
    atomic_llong requests;
    int64_t rendezvous_done_us; /* the latest client's finish, under done_lock */
    pthread_mutex_t done_lock;
} bench;

typedef struct client {
    bench *b;
    int id;
} client;

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* rendezvous sets this client's record and reads everyone's, as a rank's rendezvous does. */
static int rendezvous(bench *b, cgloo_store *s, int id)
{
    char value[64];
    memset(value, 'a' + id % 26, sizeof value);
    int rc = cgloo_store_set(s, b->keys[id], value, sizeof value);
    void **values = calloc((size_t)b->clients, sizeof *values);
    size_t *lens = calloc((size_t)b->clients, sizeof *lens);
    if (rc == CGLOO_OK)
        rc = values && lens ? cgloo_store_multi_get(s, b->key_list, (size_t)b->clients, TIMEOUT_MS,
                                                    values, lens)
                            : CGLOO_ENOMEM;
    for (int i = 0; values && rc == CGLOO_OK && i < b->clients; i++)
        if (lens[i] != sizeof value || ((char *)values[i])[0] != 'a' + i % 26)
            rc = CGLOO_EPROTO;
    for (int i = 0; values && i < b->clients; i++)
        cgloo_free(values[i]);
    free(values);
    free(lens);
    return rc;
}

/* hammer sets and gets this client's own key until the time is up; returns requests made. */
static long long hammer(bench *b, cgloo_store *s, int id)
{
    long long n = 0;
    int64_t end = now_us() + (int64_t)(b->seconds * 1e6);
    uint64_t v = (uint64_t)id;
    while (now_us() < end) {
        void *got = NULL;
        size_t len = 0;
        v++;
        if (cgloo_store_set(s, b->keys[id], &v, sizeof v) != CGLOO_OK ||
            cgloo_store_get(s, b->keys[id], TIMEOUT_MS, &got, &len) != CGLOO_OK ||
            len != sizeof v || memcmp(got, &v, sizeof v) != 0) {
            cgloo_free(got);
            atomic_fetch_add(&b->failed, 1);
            break;
        }
        cgloo_free(got);
        n += 2;
    }
    return n;
}

static void *client_main(void *arg)
{
    client *c = arg;
    bench *b = c->b;
    cgloo_store *s = NULL;
    if (cgloo_store_tcp_connect("127.0.0.1", b->port, TIMEOUT_MS, &s) != CGLOO_OK)
        atomic_fetch_add(&b->failed, 1);
    pthread_barrier_wait(&b->start);
    if (s && rendezvous(b, s, c->id) != CGLOO_OK)
        atomic_fetch_add(&b->failed, 1);
    int64_t t = now_us();
    pthread_mutex_lock(&b->done_lock);
    if (t > b->rendezvous_done_us)
        b->rendezvous_done_us = t;
    pthread_mutex_unlock(&b->done_lock);
    pthread_barrier_wait(&b->between);
    if (s)
        atomic_fetch_add(&b->requests, hammer(b, s, c->id));
    cgloo_store_destroy(s);
    return NULL;
}

static int run(bench *b)
{
    pthread_t *th = calloc((size_t)b->clients, sizeof *th);
    client *cl = calloc((size_t)b->clients, sizeof *cl);
    if (!th || !cl)
        return 1;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_barrier_init(&b->start, NULL, (unsigned)b->clients + 1);
    pthread_barrier_init(&b->between, NULL, (unsigned)b->clients + 1);
    for (int i = 0; i < b->clients; i++) {
        cl[i] = (client){.b = b, .id = i};
        if (pthread_create(&th[i], &attr, client_main, &cl[i]) != 0) {
            fprintf(stderr, "cgloo-store-rate: cannot start client thread %d\n", i);
            exit(1);
        }
    }
    pthread_barrier_wait(&b->start);
    int64_t t0 = now_us();
    pthread_barrier_wait(&b->between);
    int64_t t1 = now_us();
    for (int i = 0; i < b->clients; i++)
        pthread_join(th[i], NULL);
    int64_t t2 = now_us();
    printf("clients %d rendezvous_ms %.1f requests_per_s %.0f failed %d\n", b->clients,
           (double)(b->rendezvous_done_us - t0) / 1000,
           (double)atomic_load(&b->requests) / ((double)(t2 - t1) / 1e6), atomic_load(&b->failed));
    free(th);
    free(cl);
    return atomic_load(&b->failed) ? 1 : 0;
}

int main(int argc, char **argv)
{
    bench b = {.clients = argc > 1 ? atoi(argv[1]) : 64, .seconds = argc > 2 ? atof(argv[2]) : 2};
    if (b.clients < 1 || b.seconds <= 0) {
        fprintf(stderr, "usage: cgloo-store-rate CLIENTS [SECONDS]\n");
        return 2;
    }
    cgloo_store_server *srv;
    int rc = cgloo_store_server_start("127.0.0.1", 0, &srv);
    if (rc != CGLOO_OK) {
        fprintf(stderr, "cgloo-store-rate: server: %s\n", cgloo_strerror(rc));
        return 1;
    }
    b.port = cgloo_store_server_port(srv);
    b.keys = calloc((size_t)b.clients, sizeof *b.keys);
    b.key_list = calloc((size_t)b.clients, sizeof *b.key_list);
    if (!b.keys || !b.key_list)
        return 1;
    for (int i = 0; i < b.clients; i++) {
        snprintf(b.keys[i], KEY_MAX, "rec/%d", i);
        b.key_list[i] = b.keys[i];
    }
    pthread_mutex_init(&b.done_lock, NULL);
    int status = run(&b);
    cgloo_store_server_stop(srv);
    free(b.keys);
    free(b.key_list);
    return status;
}
