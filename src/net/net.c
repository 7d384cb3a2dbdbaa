/* Socket helpers. Every errno is translated here, where the system call is. */
#include "net/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <unistd.h>

static int family_to_af(int family)
{
    return family == 4 ? AF_INET : family == 6 ? AF_INET6 : AF_UNSPEC;
}

int cgloo__addr_resolve_all(const char *host, int family, int port, cgloo__addr *addrs, size_t max,
                            size_t *n_out)
{
    struct addrinfo hints = {.ai_family = family_to_af(family), .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    if (!host || !*host || max == 0)
        return CGLOO_EADDR;
    int gai = getaddrinfo(host, NULL, &hints, &res);
    if (gai != 0 || !res)
        return gai == EAI_MEMORY ? CGLOO_ENOMEM : CGLOO_EADDR;
    size_t n = 0;
    for (const struct addrinfo *ai = res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof addrs[n].ss)
            continue;
        memset(&addrs[n], 0, sizeof addrs[n]);
        memcpy(&addrs[n].ss, ai->ai_addr, ai->ai_addrlen);
        addrs[n].len = ai->ai_addrlen;
        cgloo__addr_set_port(&addrs[n++], port);
    }
    freeaddrinfo(res);
    *n_out = n;
    return n ? CGLOO_OK : CGLOO_EADDR;
}

int cgloo__addr_resolve(const char *host, int family, cgloo__addr *addr)
{
    size_t n;
    return cgloo__addr_resolve_all(host, family, 0, addr, 1, &n);
}

static int iface_pick(struct ifaddrs *list, const char *iface, int af, cgloo__addr *addr)
{
    for (struct ifaddrs *i = list; i; i = i->ifa_next) {
        if (!i->ifa_addr || strcmp(i->ifa_name, iface) != 0 || i->ifa_addr->sa_family != af)
            continue;
        memset(addr, 0, sizeof *addr);
        addr->len = af == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
        memcpy(&addr->ss, i->ifa_addr, addr->len);
        return CGLOO_OK;
    }
    return CGLOO_EADDR;
}

int cgloo__addr_from_iface(const char *iface, int family, cgloo__addr *addr)
{
    struct ifaddrs *list = NULL;
    if (getifaddrs(&list) != 0)
        return cgloo__status_from_errno(errno);
    int rc = CGLOO_EADDR;
    if (family != 6)
        rc = iface_pick(list, iface, AF_INET, addr);
    if (rc != CGLOO_OK && family != 4)
        rc = iface_pick(list, iface, AF_INET6, addr);
    freeifaddrs(list);
    return rc;
}

int cgloo__addr_parse(const char *text, cgloo__addr *addr)
{
    char host[256]; /* a name, where an address was advertised by name */
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (!colon || (size_t)(colon - text) >= sizeof host)
        return CGLOO_EADDR;
    size_t hl = (size_t)(colon - text);
    memcpy(host, text, hl);
    host[hl] = '\0';
    char *h = host;
    if (hl >= 2 && host[0] == '[' && host[hl - 1] == ']') {
        host[hl - 1] = '\0';
        h = host + 1;
    }
    long port;
    if (cgloo__parse_int(colon + 1, 1, 65535, &port) != CGLOO_OK)
        return CGLOO_EADDR;
    int rc = cgloo__addr_resolve(h, 0, addr);
    if (rc == CGLOO_OK)
        cgloo__addr_set_port(addr, (int)port);
    return rc;
}

int cgloo__url_host(const char *url, char *buf, size_t len)
{
    const char *p = url ? strstr(url, "://") : NULL;
    if (!p)
        return CGLOO_EADDR;
    p += 3;
    size_t auth = strcspn(p, "/?#");
    const char *at = memchr(p, '@', auth);
    if (at) {
        auth -= (size_t)(at + 1 - p);
        p = at + 1;
    }
    size_t n;
    if (*p == '[') {
        const char *close = memchr(p, ']', auth);
        if (!close)
            return CGLOO_EADDR;
        p++;
        n = (size_t)(close - p);
    } else {
        const char *colon = memchr(p, ':', auth);
        n = colon ? (size_t)(colon - p) : auth;
    }
    if (n == 0 || n >= len)
        return CGLOO_EADDR;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return CGLOO_OK;
}

void cgloo__addr_set_port(cgloo__addr *addr, int port)
{
    if (addr->ss.ss_family == AF_INET)
        ((struct sockaddr_in *)&addr->ss)->sin_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in6 *)&addr->ss)->sin6_port = htons((uint16_t)port);
}

int cgloo__addr_port(const cgloo__addr *addr)
{
    if (addr->ss.ss_family == AF_INET)
        return ntohs(((const struct sockaddr_in *)&addr->ss)->sin_port);
    return ntohs(((const struct sockaddr_in6 *)&addr->ss)->sin6_port);
}

void cgloo__addr_format(const cgloo__addr *addr, char *buf, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (addr->ss.ss_family == AF_INET) {
        inet_ntop(AF_INET, &((const struct sockaddr_in *)&addr->ss)->sin_addr, ip, sizeof ip);
        snprintf(buf, len, "%s:%d", ip, cgloo__addr_port(addr));
    } else {
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)&addr->ss)->sin6_addr, ip, sizeof ip);
        snprintf(buf, len, "[%s]:%d", ip, cgloo__addr_port(addr));
    }
}

int cgloo__sock_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return cgloo__status_from_errno(errno);
    return CGLOO_OK;
}

void cgloo__sock_tune(int fd)
{
    int one = 1;
    /* Failures here only cost speed, never correctness, so they are ignored. */
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void cgloo__sock_keepalive(int fd, int detect_ms)
{
    /* An idle connection is probed after `step` seconds, then every `step`, and given up after
     * KEEPALIVE_PROBES unanswered probes: about detect_ms in all. */
    enum { KEEPALIVE_PROBES = 3 };
    int one = 1, probes = KEEPALIVE_PROBES;
    int step = CGLOO_MAX(1, detect_ms / 1000 / (KEEPALIVE_PROBES + 1));
    unsigned user_timeout = (unsigned)CGLOO_MAX(detect_ms, 1000);
    (void)setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &step, sizeof step);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &step, sizeof step);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &probes, sizeof probes);
    (void)setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout, sizeof user_timeout);
}

static int listen_on(cgloo__addr *addr, int port, int *fd_out)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cgloo__status_from_errno(errno);
    int one = 1;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    cgloo__addr_set_port(addr, port);
    if (bind(fd, (struct sockaddr *)&addr->ss, addr->len) != 0 || listen(fd, SOMAXCONN) != 0) {
        /* A port we may not bind (below 1024 without privilege) is an address we cannot have,
         * like one in use: another port of the range may do. */
        int err = errno;
        close(fd);
        errno = err; /* for the caller's error detail */
        return err == EACCES ? CGLOO_EADDR : cgloo__status_from_errno(err);
    }
    socklen_t len = sizeof addr->ss;
    getsockname(fd, (struct sockaddr *)&addr->ss, &len);
    *fd_out = fd;
    return CGLOO_OK;
}

int cgloo__listen(cgloo__addr *addr, int port_lo, int port_hi, int *fd_out)
{
    if (port_hi < port_lo)
        port_hi = port_lo;
    int rc = CGLOO_EADDR;
    for (int port = port_lo; port <= port_hi; port++) {
        rc = listen_on(addr, port, fd_out);
        if (rc != CGLOO_EADDR)
            return rc; /* success, or an error another port will not fix */
    }
    return rc;
}

int cgloo__connect_start(const cgloo__addr *addr, int *fd_out)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return cgloo__status_from_errno(errno);
    /* EINTR, like EINPROGRESS, leaves the connect going on in the background. */
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) != 0 && errno != EINPROGRESS &&
        errno != EINTR) {
        int err = errno;
        close(fd);
        errno = err; /* for the caller's error detail */
        return cgloo__status_from_errno(err);
    }
    *fd_out = fd;
    return CGLOO_OK;
}

int cgloo__connect_result(int fd, int *err_out)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    *err_out = err;
    return cgloo__status_from_errno(err);
}

static int poll_one(int fd, short events, int64_t deadline_ms)
{
    struct pollfd p = {.fd = fd, .events = events};
    for (;;) {
        int left = cgloo__remaining_ms(deadline_ms);
        if (left == 0)
            return CGLOO_ETIMEDOUT;
        int n = poll(&p, 1, left);
        if (n > 0)
            return CGLOO_OK;
        if (n < 0 && errno != EINTR)
            return cgloo__status_from_errno(errno);
    }
}

int cgloo__connect(const cgloo__addr *addr, int64_t deadline_ms, int *fd_out)
{
    int fd, err = 0;
    int rc = cgloo__connect_start(addr, &fd);
    if (rc != CGLOO_OK)
        return rc;
    rc = poll_one(fd, POLLOUT, deadline_ms);
    if (rc == CGLOO_OK)
        rc = cgloo__connect_result(fd, &err);
    if (rc != CGLOO_OK) {
        close(fd);
        errno = rc == CGLOO_ETIMEDOUT ? ETIMEDOUT : err ? err : EIO;
        return rc;
    }
    *fd_out = fd;
    return CGLOO_OK;
}

/* iov_advance steps *iov and *iovcnt past done bytes that went out. */
static void iov_advance(struct iovec **iov, int *iovcnt, size_t done)
{
    while (*iovcnt > 0 && done >= (*iov)->iov_len) {
        done -= (*iov)->iov_len;
        (*iov)++;
        (*iovcnt)--;
    }
    if (*iovcnt > 0) {
        (*iov)->iov_base = (uint8_t *)(*iov)->iov_base + done;
        (*iov)->iov_len -= done;
    }
}

int cgloo__writev_full(int fd, struct iovec *iov, int iovcnt, int64_t deadline_ms)
{
    iov_advance(&iov, &iovcnt, 0); /* empty pieces ahead of any data: nothing to send for them */
    while (iovcnt > 0) {
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
        ssize_t n = sendmsg(fd, &msg, MSG_NOSIGNAL);
        if (n >= 0) {
            iov_advance(&iov, &iovcnt, (size_t)n);
        } else if (errno == EAGAIN || errno == EINTR) {
            int rc = poll_one(fd, POLLOUT, deadline_ms);
            if (rc != CGLOO_OK)
                return rc;
        } else {
            return cgloo__status_from_errno(errno);
        }
    }
    return CGLOO_OK;
}

int cgloo__write_full(int fd, const void *buf, size_t len, int64_t deadline_ms)
{
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
    return cgloo__writev_full(fd, &iov, 1, deadline_ms);
}

int cgloo__read_full(int fd, void *buf, size_t len, int64_t deadline_ms)
{
    char *p = buf;
    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n == 0) {
            return CGLOO_EPEER;
        } else if (errno == EAGAIN || errno == EINTR) {
            int rc = poll_one(fd, POLLIN, deadline_ms);
            if (rc != CGLOO_OK)
                return rc;
        } else {
            return cgloo__status_from_errno(errno);
        }
    }
    return CGLOO_OK;
}
