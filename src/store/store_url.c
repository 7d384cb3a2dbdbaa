/*
 * cgloo_store_open: a store from a URL, so that one environment variable (CGLOO_STORE) can name
 * any backend.
 *   tcp://host:port      host is a name, an IPv4 address or a bracketed IPv6 address "[::1]"
 *   torch://host:port    a PyTorch TCPStore server (torchrun's agent serves one)
 *   file:///abs/dir      a directory shared by the ranks (no host part: only local paths)
 *   hash:                a fresh in-process store
 *   redis://[[user]:password@]host:port[/db][?cleanup=1]
 *                        a Redis server; user and password may hold %XX escapes (the userinfo
 *                        ends at the last '@', so a raw '/' or '?' in a password also works)
 * A failure's detail names the URL without its userinfo, so that no password reaches a log.
 */
#include "store/store.h"

#include <stdio.h>
#include <strings.h>

/* The longest URL taken apart in place (a redis:// URL is copied to split it). */
#define URL_MAX 4096

/* has_scheme tells whether url starts with scheme (case-insensitive) and sets *rest past it. */
static int has_scheme(const char *url, const char *scheme, const char **rest)
{
    size_t n = strlen(scheme);
    if (strncasecmp(url, scheme, n) != 0)
        return 0;
    *rest = url + n;
    return 1;
}

/* cgloo__split_host_port (store.h) splits "host:port" or "[v6]:port" into host (copied into buf)
 * and port. */
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

/* inner_why: the detail the failed inner call left for this thread, else the status's text. */
static const char *inner_why(int rc)
{
    const char *d = cgloo__error_detail();
    return d[0] ? d : cgloo_strerror(rc);
}

/* open_tcp opens tcp://HOST:PORT, or with torch set PyTorch's TCPStore at torch://HOST:PORT. */
static int open_tcp(const char *url, const char *rest, int torch, int timeout_ms, char *detail,
                    size_t dlen, cgloo_store **out)
{
    char host[256];
    int port;
    if (cgloo__split_host_port(rest, host, sizeof host, &port) != CGLOO_OK)
        return fail_detail(CGLOO_EINVAL, detail, dlen, "malformed store URL", url,
                           torch ? "expected torch://HOST:PORT (an IPv6 address in brackets, a "
                                   "port from 1 to 65535)"
                                 : "expected tcp://HOST:PORT (an IPv6 address in brackets, a "
                                   "port from 1 to 65535)");
    int rc = torch ? cgloo_store_torch_connect(host, port, timeout_ms, out)
                   : cgloo_store_tcp_connect(host, port, timeout_ms, out);
    if (rc != CGLOO_OK)
        fail_detail(rc, detail, dlen, torch ? "no PyTorch store at" : "no TCP store at", url,
                    inner_why(rc));
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
        fail_detail(rc, detail, dlen, "cannot open the file store", url, inner_why(rc));
    return rc;
}

/* ---- redis:// ---- */

static int hex_digit(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* percent_decode turns %XX escapes of s into bytes, in place. A bad escape or a NUL is EINVAL. */
static int percent_decode(char *s)
{
    char *out = s;
    for (const char *in = s; *in; in++) {
        if (*in != '%') {
            *out++ = *in;
            continue;
        }
        int hi = hex_digit(in[1]), lo = hi < 0 ? -1 : hex_digit(in[2]);
        if (lo < 0 || (hi | lo) == 0)
            return CGLOO_EINVAL;
        *out++ = (char)(hi * 16 + lo);
        in += 2;
    }
    *out = '\0';
    return CGLOO_OK;
}

/* redis_userinfo splits "user:password" (user may be empty) into attr, decoding both. */
static int redis_userinfo(char *info, cgloo_redis_attr *attr, const char **why)
{
    char *colon = strchr(info, ':');
    if (!colon) {
        *why = "the password must follow a ':' (redis://:password@host:port)";
        return CGLOO_EINVAL;
    }
    *colon = '\0';
    if (percent_decode(info) != CGLOO_OK || percent_decode(colon + 1) != CGLOO_OK) {
        *why = "a bad %-escape in the user or password";
        return CGLOO_EINVAL;
    }
    attr->user = *info ? info : NULL;
    attr->password = colon + 1;
    return CGLOO_OK;
}

/* redis_query reads "cleanup=0" or "cleanup=1", the one option there is. */
static int redis_query(const char *q, cgloo_redis_attr *attr, const char **why)
{
    if (strcmp(q, "cleanup=1") == 0 || strcmp(q, "cleanup=0") == 0) {
        attr->cleanup = q[8] == '1';
        return CGLOO_OK;
    }
    *why = "the only query is ?cleanup=0 or ?cleanup=1";
    return CGLOO_EINVAL;
}

/* redis_hostpart reads "host:port[/db][?query]" into attr (host copied into host[256]). */
static int redis_hostpart(char *s, cgloo_redis_attr *attr, char *host, const char **why)
{
    char *q = strchr(s, '?');
    if (q) {
        *q++ = '\0';
        if (redis_query(q, attr, why) != CGLOO_OK)
            return CGLOO_EINVAL;
    }
    char *slash = strchr(s, '/'); /* no host, not even an IPv6 one, holds a '/' */
    long db = 0;
    if (slash) {
        *slash = '\0';
        if (cgloo__parse_int(slash + 1, 0, INT32_MAX, &db) != CGLOO_OK) {
            *why = "the database after '/' must be a number";
            return CGLOO_EINVAL;
        }
    }
    attr->db = (int)db;
    if (cgloo__split_host_port(s, host, 256, &attr->port) != CGLOO_OK) {
        *why = "expected host:port (an IPv6 address in brackets)";
        return CGLOO_EINVAL;
    }
    attr->host = host;
    return CGLOO_OK;
}

static int open_redis(const char *url, const char *rest, int timeout_ms, char *detail, size_t dlen,
                      cgloo_store **out)
{
    char buf[URL_MAX], host[256];
    const char *why = "longer than 4096 bytes";
    cgloo_redis_attr attr = {0};
    size_t n = strnlen(rest, sizeof buf);
    int rc = n < sizeof buf ? CGLOO_OK : CGLOO_EINVAL;
    char *hostpart = buf;
    if (rc == CGLOO_OK) {
        memcpy(buf, rest, n + 1);
        char *at = strrchr(buf, '@');
        if (at) {
            *at = '\0';
            hostpart = at + 1;
            rc = redis_userinfo(buf, &attr, &why);
        }
    }
    if (rc == CGLOO_OK)
        rc = redis_hostpart(hostpart, &attr, host, &why);
    if (rc != CGLOO_OK)
        rc = fail_detail(rc, detail, dlen, "malformed store URL", url, why);
    else
        rc = cgloo__store_redis_open(&attr, timeout_ms, detail, dlen, out);
    explicit_bzero(buf, sizeof buf); /* the decoded password */
    return rc;
}

/* ---- the public calls ---- */

static int open_any(const char *url, int timeout_ms, char *detail, size_t detail_len,
                    cgloo_store **out)
{
    const char *rest;
    if (has_scheme(url, "tcp://", &rest))
        return open_tcp(url, rest, 0, timeout_ms, detail, detail_len, out);
    if (has_scheme(url, "torch://", &rest))
        return open_tcp(url, rest, 1, timeout_ms, detail, detail_len, out);
    if (has_scheme(url, "file://", &rest))
        return open_file(url, rest, detail, detail_len, out);
    if (has_scheme(url, "redis://", &rest))
        return open_redis(url, rest, timeout_ms, detail, detail_len, out);
    if (has_scheme(url, "hash:", &rest) && (*rest == '\0' || strcmp(rest, "//") == 0))
        return cgloo_store_hash_create(out);
    return fail_detail(CGLOO_EINVAL, detail, detail_len, "not a store URL", url,
                       "expected tcp://host:port, torch://host:port, file:///dir, hash: or "
                       "redis://host:port");
}

/* open_detail opens the store into *out or writes why not into why (CGLOO_ERROR_MAX bytes). */
static int open_detail(const char *url, int timeout_ms, char *why, cgloo_store **out)
{
    why[0] = '\0';
    if (!url || !out || timeout_ms < 0) {
        snprintf(why, CGLOO_ERROR_MAX, "cgloo_store_open: %s",
                 !url   ? "the URL is NULL"
                 : !out ? "out is NULL"
                        : "timeout < 0");
        return CGLOO_EINVAL;
    }
    int rc = open_any(url, timeout_ms, why, CGLOO_ERROR_MAX, out);
    if (rc != CGLOO_OK && !why[0])
        fail_detail(rc, why, CGLOO_ERROR_MAX, "cannot open the store", url, cgloo_strerror(rc));
    return rc;
}

/* Both opens record a failure's detail as the thread's last error (cgloo_last_error) too. */
int cgloo_store_open_detail(const char *url, int timeout_ms, char *detail, size_t detail_len,
                            cgloo_store **out)
{
    char why[CGLOO_ERROR_MAX];
    cgloo__error_clear();
    int rc = open_detail(url, timeout_ms, why, out);
    if (detail && detail_len)
        snprintf(detail, detail_len, "%s", rc == CGLOO_OK ? "" : why);
    return rc == CGLOO_OK ? rc : cgloo__error_copy(rc, why);
}

int cgloo_store_open(const char *url, int timeout_ms, cgloo_store **out)
{
    return cgloo_store_open_detail(url, timeout_ms, NULL, 0, out);
}
