/* Helpers for multi-rank tests: a connected context per rank, ranks as threads. */
#ifndef CGLOO_TESTS_MESH_H
#define CGLOO_TESTS_MESH_H

#include "harness.h"

#include <stdint.h>
#include <string.h>

typedef struct rank_env {
    cgloo_context *ctx;
    cgloo_device *dev;
} rank_env;

/* Ranks that are threads of one test reach each other on loopback, whatever the default
 * choice would take on this host. */
static const cgloo_tcp_attr mesh_loopback = {.hostname = "127.0.0.1"};

/* mesh_connect makes a device on 127.0.0.1 and a context of the given name, and connects it
 * through store (ranks of one test share the store). */
static inline rank_env mesh_connect(cgloo_store *store, int rank, int size, int timeout_ms)
{
    rank_env e = {0};
    if (size > 1)
        CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &e.dev));
    cgloo_context_attr attr = {.timeout_ms = timeout_ms, .name = "test"};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &e.ctx));
    int rc = cgloo_context_connect(e.ctx, store, e.dev);
    if (rc != CGLOO_OK) {
        char detail[512];
        cgloo_context_last_error(e.ctx, detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, "cgloo_context_connect", detail);
    }
    return e;
}

static inline void mesh_close(rank_env e)
{
    cgloo_context_destroy(e.ctx);
    cgloo_device_destroy(e.dev);
}

/* fill_pattern writes bytes that depend on (seed, index) so misplaced bytes are caught. */
static inline void fill_pattern(void *buf, size_t len, uint32_t seed)
{
    uint8_t *p = buf;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        p[i] = (uint8_t)(x >> 16);
    }
}

static inline int check_pattern(const void *buf, size_t len, uint32_t seed)
{
    const uint8_t *p = buf;
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < len; i++) {
        x = x * 1103515245u + 12345u;
        if (p[i] != (uint8_t)(x >> 16))
            return 0;
    }
    return 1;
}

#endif
