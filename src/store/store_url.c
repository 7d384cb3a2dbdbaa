/*
 * cgloo_store_open: a store from a URL, so that one environment variable (CGLOO_STORE) can name
 * any backend.
 *   tcp://host:port      host is a name, an IPv4 address or a bracketed IPv6 address "[::1]"
 *   torch://host:port    a PyTorch TCPStore server (torchrun's), host as for tcp://
 *   file:///abs/dir      a directory shared by the ranks (no host part: only local paths)
 *   hash:                a fresh in-process store
 */
#include "store/store.h"

#include <stdio.h>
#include <strings.h>

/* has_scheme tells whether url starts with scheme (case-insensitive) and sets *rest past it. */
static int has_scheme(const char *url, const char *scheme, const char **rest)
{
    size_t n = strlen(scheme);
    if (strncasecmp(url, scheme, n) != 0)
        return 0;
    *rest = url + n;
    return 1;
}

int cgloo__split_host_port(const char *s, char *buf, size_t size, int *port)
{
    const char *host = s, *colon;
    size_t hlen;
    if (*s == '[') {
        const char *close = strchr(s, ']');
        if (!close || close[1] != ':')
            return CGLOO_EINVAL;
        host = s + 1;
        hlen = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(s, ':');
        if (!colon || memchr(s, ':', (size_t)(colon - s)))
            return CGLOO_EINVAL; /* no port, or an IPv6 address without brackets */
        hlen = (size_t)(colon - s);
    }
    if (hlen == 0 || hlen >= size || memchr(host, '/', hlen))
        return CGLOO_EINVAL;
    long p;
    if (cgloo__parse_int(colon + 1, 1, 65535, &p) != CGLOO_OK)
        return CGLOO_EINVAL;
    memcpy(buf, host, hlen);
    buf[hlen] = '\0';
    *port = (int)p;
    return CGLOO_OK;
}

static int open_tcp(const char *rest, int torch, int timeout_ms, cgloo_store **out)
{
    char host[256];
    int port;
    if (cgloo__split_host_port(rest, host, sizeof host, &port) != CGLOO_OK)
        return CGLOO_EINVAL;
    if (torch)
        return cgloo_store_torch_connect(host, port, timeout_ms, out);
    return cgloo_store_tcp_connect(host, port, timeout_ms, out);
}

static int open_file(const char *rest, cgloo_store **out)
{
    /* "file://" is followed by an empty host, so the path starts with its own '/'. */
    if (rest[0] != '/' || rest[1] == '\0')
        return CGLOO_EINVAL;
    return cgloo_store_file_create(rest, NULL, out);
}

int cgloo_store_open(const char *url, int timeout_ms, cgloo_store **out)
{
    if (!url || !out || timeout_ms < 0)
        return CGLOO_EINVAL;
    const char *rest;
    if (has_scheme(url, "tcp://", &rest))
        return open_tcp(rest, 0, timeout_ms, out);
    if (has_scheme(url, "torch://", &rest))
        return open_tcp(rest, 1, timeout_ms, out);
    if (has_scheme(url, "file://", &rest))
        return open_file(rest, out);
    if (has_scheme(url, "hash:", &rest) && (*rest == '\0' || strcmp(rest, "//") == 0))
        return cgloo_store_hash_create(out);
    return CGLOO_EINVAL;
}
