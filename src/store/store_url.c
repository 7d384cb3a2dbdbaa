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

/* ---- taking a URL apart ---- */

#define TCP_EXPECTED                                                                               \
    "expected tcp://HOST:PORT (an IPv6 address in brackets, a port from 1 to 65535)"
#define TORCH_EXPECTED                                                                             \
    "expected torch://HOST:PORT (an IPv6 address in brackets, a port from 1 to 65535)"

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

/* parse_redis reads "[[user]:password@]host:port[/db][?cleanup=1]" into u->redis. */
static int parse_redis(const char *rest, cgloo__store_url *u, const char **why)
{
    size_t n = strnlen(rest, sizeof u->buf);
    if (n == sizeof u->buf) {
        *why = "longer than 4096 bytes";
        return CGLOO_EINVAL;
    }
    memcpy(u->buf, rest, n + 1);
    char *hostpart = u->buf, *at = strrchr(u->buf, '@');
    if (at) {
        *at = '\0';
        hostpart = at + 1;
        if (redis_userinfo(u->buf, &u->redis, why) != CGLOO_OK)
            return CGLOO_EINVAL;
    }
    return redis_hostpart(hostpart, &u->redis, u->host, why);
}

/* parse_tcp reads "HOST:PORT" for tcp:// and torch:// URLs. */
static int parse_tcp(const char *rest, cgloo__store_url *u, const char **why)
{
    if (cgloo__split_host_port(rest, u->host, sizeof u->host, &u->port) == CGLOO_OK)
        return CGLOO_OK;
    *why = u->kind == STORE_URL_TORCH ? TORCH_EXPECTED : TCP_EXPECTED;
    return CGLOO_EINVAL;
}

/* parse_file takes "/absolute/dir" ("file://" is followed by an empty host). */
static int parse_file(const char *rest, cgloo__store_url *u, const char **why)
{
    if (rest[0] != '/' || rest[1] == '\0') {
        *why = "expected file:///absolute/dir";
        return CGLOO_EINVAL;
    }
    u->path = rest;
    return CGLOO_OK;
}

int cgloo__store_url_parse(const char *url, cgloo__store_url *u, const char **what,
                           const char **why)
{
    const char *rest;
    memset(u, 0, offsetof(cgloo__store_url, buf));
    u->buf[0] = '\0';
    *what = "malformed store URL";
    if (has_scheme(url, "tcp://", &rest) || has_scheme(url, "torch://", &rest)) {
        u->kind = url[1] == 'c' || url[1] == 'C' ? STORE_URL_TCP : STORE_URL_TORCH;
        return parse_tcp(rest, u, why);
    }
    if (has_scheme(url, "file://", &rest)) {
        u->kind = STORE_URL_FILE;
        return parse_file(rest, u, why);
    }
    if (has_scheme(url, "redis://", &rest)) {
        u->kind = STORE_URL_REDIS;
        return parse_redis(rest, u, why);
    }
    if (has_scheme(url, "hash:", &rest) && (*rest == '\0' || strcmp(rest, "//") == 0)) {
        u->kind = STORE_URL_HASH;
        return CGLOO_OK;
    }
    *what = "not a store URL";
    *why = "expected tcp://host:port, torch://host:port, file:///dir, hash: or redis://host:port";
    return CGLOO_EINVAL;
}

/* ---- opening what a URL names ---- */

static int open_tcp(const char *url, const cgloo__store_url *u, int timeout_ms, char *detail,
                    size_t dlen, cgloo_store **out)
{
    int torch = u->kind == STORE_URL_TORCH;
    int rc = torch ? cgloo_store_torch_connect(u->host, u->port, timeout_ms, out)
                   : cgloo_store_tcp_connect(u->host, u->port, timeout_ms, out);
    if (rc != CGLOO_OK)
        fail_detail(rc, detail, dlen, torch ? "no PyTorch store at" : "no TCP store at", url,
                    inner_why(rc));
    return rc;
}

static int open_file(const char *url, const cgloo__store_url *u, char *detail, size_t dlen,
                     cgloo_store **out)
{
    int rc = cgloo_store_file_create(u->path, NULL, out);
    if (rc != CGLOO_OK)
        fail_detail(rc, detail, dlen, "cannot open the file store", url, inner_why(rc));
    return rc;
}

static int open_parsed(const char *url, const cgloo__store_url *u, int timeout_ms, char *detail,
                       size_t detail_len, cgloo_store **out)
{
    switch (u->kind) {
    case STORE_URL_TCP:
    case STORE_URL_TORCH:
        return open_tcp(url, u, timeout_ms, detail, detail_len, out);
    case STORE_URL_FILE:
        return open_file(url, u, detail, detail_len, out);
    case STORE_URL_REDIS:
        return cgloo__store_redis_open(&u->redis, timeout_ms, detail, detail_len, out);
    default:
        return cgloo_store_hash_create(out);
    }
}

static int open_any(const char *url, int timeout_ms, char *detail, size_t detail_len,
                    cgloo_store **out)
{
    const char *what, *why;
    cgloo__store_url *u = malloc(sizeof *u);
    if (!u)
        return CGLOO_ENOMEM;
    int rc = cgloo__store_url_parse(url, u, &what, &why);
    if (rc != CGLOO_OK)
        fail_detail(rc, detail, detail_len, what, url, why);
    else
        rc = open_parsed(url, u, timeout_ms, detail, detail_len, out);
    explicit_bzero(u, sizeof *u); /* a decoded password */
    free(u);
    return rc;
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
