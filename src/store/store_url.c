/*
 * cgloo_store_open: a store from a URL, so that one environment variable (CGLOO_STORE) can name
 * any backend.
 *   tcp://host:port      host is a name, an IPv4 address or a bracketed IPv6 address "[::1]"
 *   file:///abs/dir      a directory shared by the ranks (no host part: only local paths)
 *   hash:                a fresh in-process store
 * A failure's detail names the URL without its userinfo, so that no password reaches a log.
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

/* split_host_port splits "host:port" or "[v6]:port" into host (copied into buf) and port. */
static int split_host_port(const char *s, char *buf, size_t size, int *port)
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

/* fail_detail writes "<what> '<url without userinfo>': <why>" into detail and returns status. */
static int fail_detail(int status, char *detail, size_t len, const char *what, const char *url,
                       const char *why)
{
    if (!detail || len == 0)
        return status;
    /* Userinfo ends at the last '@' (as a redis:// URL is read); a file:// URL has none, so an
     * '@' there is part of the path. */
    const char *sep = strstr(url, "://"), *path;
    const char *at = sep && !has_scheme(url, "file://", &path) ? strrchr(sep + 3, '@') : NULL;
    if (at) /* keep the scheme, drop "user:password@" */
        snprintf(detail, len, "%s '%.*s%s': %s", what, (int)(sep + 3 - url), url, at + 1, why);
    else
        snprintf(detail, len, "%s '%s': %s", what, url, why);
    return status;
}

static int open_tcp(const char *url, const char *rest, int timeout_ms, char *detail, size_t dlen,
                    cgloo_store **out)
{
    char host[256];
    int port;
    if (split_host_port(rest, host, sizeof host, &port) != CGLOO_OK)
        return fail_detail(CGLOO_EINVAL, detail, dlen, "malformed store URL", url,
                           "expected tcp://host:port");
    int rc = cgloo_store_tcp_connect(host, port, timeout_ms, out);
    if (rc != CGLOO_OK)
        fail_detail(rc, detail, dlen, "no TCP store at", url, cgloo_strerror(rc));
    return rc;
}

static int open_file(const char *url, const char *rest, char *detail, size_t dlen,
                     cgloo_store **out)
{
    /* "file://" is followed by an empty host, so the path starts with its own '/'. */
    if (rest[0] != '/' || rest[1] == '\0')
        return fail_detail(CGLOO_EINVAL, detail, dlen, "malformed store URL", url,
                           "expected file:///absolute/dir");
    int rc = cgloo_store_file_create(rest, NULL, out);
    if (rc != CGLOO_OK)
        fail_detail(rc, detail, dlen, "cannot open the file store", url, cgloo_strerror(rc));
    return rc;
}

/* ---- the public calls ---- */

static int open_any(const char *url, int timeout_ms, char *detail, size_t detail_len,
                    cgloo_store **out)
{
    const char *rest;
    if (has_scheme(url, "tcp://", &rest))
        return open_tcp(url, rest, timeout_ms, detail, detail_len, out);
    if (has_scheme(url, "file://", &rest))
        return open_file(url, rest, detail, detail_len, out);
    if (has_scheme(url, "hash:", &rest) && (*rest == '\0' || strcmp(rest, "//") == 0))
        return cgloo_store_hash_create(out);
    return fail_detail(CGLOO_EINVAL, detail, detail_len, "not a store URL", url,
                       "expected tcp://host:port, file:///dir or hash:");
}

int cgloo_store_open_detail(const char *url, int timeout_ms, char *detail, size_t detail_len,
                            cgloo_store **out)
{
    if (detail && detail_len)
        detail[0] = '\0';
    if (!url || !out || timeout_ms < 0) {
        if (detail && detail_len)
            snprintf(detail, detail_len, "cgloo_store_open: %s", !url ? "no URL" : "bad arguments");
        return CGLOO_EINVAL;
    }
    int rc = open_any(url, timeout_ms, detail, detail_len, out);
    if (rc != CGLOO_OK && detail && detail_len && !detail[0])
        fail_detail(rc, detail, detail_len, "cannot open the store", url, cgloo_strerror(rc));
    return rc;
}

int cgloo_store_open(const char *url, int timeout_ms, cgloo_store **out)
{
    return cgloo_store_open_detail(url, timeout_ms, NULL, 0, out);
}
