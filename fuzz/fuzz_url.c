/*
 * fuzz_url: store URLs (CGLOO_STORE, cgloo_store_open), taken apart without opening anything.
 *
 * The input, up to its first NUL, goes to cgloo__store_url_parse (the parse cgloo_store_open
 * runs before it connects or creates anything) and to cgloo__url_host (the host a device reads
 * from CGLOO_STORE to pick its address). A URL the parser rejects also goes through
 * cgloo_store_open_detail, whose message must leave out any password; "hash:" is opened for
 * real. Nothing here reaches the network or the file system.
 *
 * Expected: a parse or a clear EINVAL with a message, never a crash or a write past a buffer.
 */
#include "store/store.h"

#include "net/net.h"

#include <stdio.h>
#include <stdlib.h>

#define INPUT_MAX 8192

static void die(const char *what)
{
    fprintf(stderr, "fuzz harness: %s\n", what);
    abort();
}

/* check_parsed holds the parser to its contract: terminated fields within their buffers. */
static void check_parsed(const cgloo__store_url *u)
{
    if (memchr(u->host, '\0', sizeof u->host) == NULL)
        die("host not terminated");
    if ((u->kind == STORE_URL_TCP || u->kind == STORE_URL_TORCH || u->kind == STORE_URL_REDIS) &&
        (CGLOO_MAX(u->port, u->redis.port) < 1 || CGLOO_MAX(u->port, u->redis.port) > 65535 ||
         !u->host[0]))
        die("a parsed URL without host or port");
    if (u->kind == STORE_URL_FILE && (!u->path || u->path[0] != '/'))
        die("a file URL without an absolute path");
}

/* open_rejected: a malformed URL's message names it without its password. */
static void open_rejected(const char *url)
{
    char detail[CGLOO_ERROR_MAX];
    cgloo_store *s = NULL;
    if (cgloo_store_open_detail(url, 0, detail, sizeof detail, &s) != CGLOO_EINVAL || s)
        die("a malformed URL opened");
    if (!detail[0])
        die("a malformed URL without a message");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > INPUT_MAX)
        return 0;
    char *url = malloc(size + 1);
    memcpy(url, data, size);
    url[size] = '\0';
    cgloo__store_url *u = malloc(sizeof *u);
    const char *what = NULL, *why = NULL;
    int rc = cgloo__store_url_parse(url, u, &what, &why);
    if (rc == CGLOO_OK) {
        check_parsed(u);
    } else {
        if (rc != CGLOO_EINVAL || !what || !why)
            die("a rejection without a reason");
        open_rejected(url);
    }
    if (rc == CGLOO_OK && u->kind == STORE_URL_HASH) {
        cgloo_store *s;
        if (cgloo_store_open(url, 0, &s) != CGLOO_OK)
            die("hash: did not open");
        cgloo_store_destroy(s);
    }
    char host[64];
    cgloo__url_host(url, host, sizeof host);
    free(u);
    free(url);
    return 0;
}
