/*
 * Socket helpers: address resolution (host name, IP or interface name; IPv4 and IPv6), this
 * host's own addresses and routes (local_addr.c), address formatting and parsing, non-blocking
 * listen and connect, and socket options.
 */
#ifndef CGLOO_NET_H
#define CGLOO_NET_H

#include "cgloo_impl.h"

#include <sys/socket.h>
#include <sys/uio.h>

typedef struct cgloo__addr {
    struct sockaddr_storage ss;
    socklen_t len;
} cgloo__addr;

/* The longest "host:port" text: "[" + IPv6 text + "]:" + port. */
#define CGLOO_ADDR_TEXT_MAX 64

/* How many addresses of one name a caller that tries them in turn keeps. */
#define CGLOO_ADDRS_MAX 8

/* cgloo__addr_resolve fills addr from a numeric IP or a host name (family 0, 4 or 6), port 0:
 * the resolver's first choice. Errors: EADDR (unknown, or none of that family), ENOMEM. */
int cgloo__addr_resolve(const char *host, int family, cgloo__addr *addr);
/* cgloo__addr_resolve_all is cgloo__addr_resolve for every address of host, in the resolver's
 * order, for a caller that tries each until one works (a name such as "localhost" may give
 * ::1 before 127.0.0.1). Fills addrs[0..*n_out) with at most max addresses, each with `port`.
 * Blocks in the resolver. Errors: EADDR, ENOMEM. */
int cgloo__addr_resolve_all(const char *host, int family, int port, cgloo__addr *addrs, size_t max,
                            size_t *n_out);
/* cgloo__addr_from_iface takes the first address of `family` (0: IPv4 first) on interface. */
int cgloo__addr_from_iface(const char *iface, int family, cgloo__addr *addr);
/* cgloo__addr_parse parses "host:port" or "[v6]:port" (host resolved as above). */
int cgloo__addr_parse(const char *text, cgloo__addr *addr);
void cgloo__addr_set_port(cgloo__addr *addr, int port);
int cgloo__addr_port(const cgloo__addr *addr);
/* cgloo__addr_format writes "ip:port" or "[ip]:port" into buf. */
void cgloo__addr_format(const cgloo__addr *addr, char *buf, size_t len);

/* cgloo__url_host copies the host of a URL with an authority ("tcp://host:port",
 * "redis://user@[v6]:port/0") into buf, without brackets. EADDR when it has none ("file:///d",
 * "hash:") or it does not fit. */
int cgloo__url_host(const char *url, char *buf, size_t len);

/* ---- this host's addresses (local_addr.c) ---- */

/* cgloo__addr_is_loopback: 127.0.0.0/8, ::1 or an IPv4-mapped 127.x address. */
bool cgloo__addr_is_loopback(const cgloo__addr *addr);
/* cgloo__addr_same_ip: the same family and IP address (ports are not compared). */
bool cgloo__addr_same_ip(const cgloo__addr *a, const cgloo__addr *b);
/* cgloo__addr_is_local sets *local when addr is loopback or an address of one of this host's
 * interfaces. Errors: those of getifaddrs. */
int cgloo__addr_is_local(const cgloo__addr *addr, bool *local);
/* cgloo__addr_route_source gives the local address (port 0) that the route to dst leaves from:
 * the source the kernel picks for a UDP socket connected to dst, which sends nothing. EPEER
 * (errno set) when there is no route. */
int cgloo__addr_route_source(const cgloo__addr *dst, cgloo__addr *src);
/* cgloo__addr_format_ip writes the IP address alone, without brackets or port. */
void cgloo__addr_format_ip(const cgloo__addr *addr, char *buf, size_t len);
/* cgloo__addr_select chooses one of this host's addresses by spec, a comma list of interface
 * names ("eth0", or "eth*" for every name so begun), IP addresses and subnets ("10.1.0.0/16",
 * "fd00::/8"); a '^' before the first entry makes them all exclusions ("^lo,docker0"). Only
 * interfaces that are up count, IPv6 link-local addresses never (they cannot be published
 * without a zone), and only `family` (4, 6; 0 both) is taken. Among the allowed addresses
 * `prefer` (may be NULL) wins; else the earliest entry's, with exclusions any non-loopback one
 * first; IPv4 before IPv6. On success *out has port 0 and why says which address of which
 * interface; on failure why says what was wrong. Errors: EINVAL (a malformed spec), EADDR
 * (nothing matches), ENOMEM. */
int cgloo__addr_select(const char *spec, int family, const cgloo__addr *prefer, cgloo__addr *out,
                       char *why, size_t why_len);
/* cgloo__iface_summary lists this host's interfaces and addresses of family (0: both) as
 * "lo 127.0.0.1, eth0 10.0.0.2", for error messages (cut to len). */
void cgloo__iface_summary(int family, char *buf, size_t len);

int cgloo__sock_nonblock(int fd);
/* cgloo__sock_tune sets TCP_NODELAY on a connected stream socket (the kernel's buffer
 * autotuning is left alone). */
void cgloo__sock_tune(int fd);
/* cgloo__sock_keepalive makes the kernel give up on a connected stream socket whose peer has
 * not answered for about detect_ms (at least 1 s): keepalive probes while it is idle, and
 * TCP_USER_TIMEOUT for data left unacknowledged. A peer whose host is cut off then fails the
 * connection (ETIMEDOUT from the socket) on every rank connected to it, even on ranks that
 * wait on someone else. Failures are ignored: they cost only the early detection. */
void cgloo__sock_keepalive(int fd, int detect_ms);
/* cgloo__listen binds a non-blocking listener to addr on the first free port of [lo, hi]
 * (0..0: ephemeral). On success addr holds the bound port. A port in use or not ours to bind
 * is EADDR (the next port is tried); other errors stop at once. On failure errno holds the
 * system's reason, for the caller's error detail. */
int cgloo__listen(cgloo__addr *addr, int port_lo, int port_hi, int *fd_out);
/* cgloo__connect_start begins a non-blocking connect; *fd_out is set even while in progress.
 * On failure errno holds the system's reason. */
int cgloo__connect_start(const cgloo__addr *addr, int *fd_out);
/* cgloo__connect_result reads the outcome of a connect once the socket polls writable. */
int cgloo__connect_result(int fd, int *err_out);
/* cgloo__connect connects to addr, blocking in poll until the connection is made or the
 * deadline (monotonic ms) passes. On success *fd_out is a connected non-blocking socket the
 * caller owns; on failure nothing is left open and errno holds the system's reason (ETIMEDOUT
 * when the deadline passed). Errors: ETIMEDOUT, ECONNREFUSED, EPEER, EADDR, ENOMEM, EIO. */
int cgloo__connect(const cgloo__addr *addr, int64_t deadline_ms, int *fd_out);

/* cgloo__write_full writes len bytes to a non-blocking socket, polling until deadline. */
int cgloo__write_full(int fd, const void *buf, size_t len, int64_t deadline_ms);
/* cgloo__writev_full is cgloo__write_full for the iovcnt pieces of iov, sent without copying
 * them together; it advances iov (the caller's array) as bytes go out. */
int cgloo__writev_full(int fd, struct iovec *iov, int iovcnt, int64_t deadline_ms);
/* cgloo__read_full reads exactly len bytes, polling until deadline. EOF gives CGLOO_EPEER. */
int cgloo__read_full(int fd, void *buf, size_t len, int64_t deadline_ms);

#endif
