/*
 * TLS sessions for the TCP transport (and the TCP store): a TLS 1.3 session on a connected,
 * non-blocking socket, with mutual certificates checked against one CA.
 *
 * The TCP code keeps its sockets, its poller and its turns; where a connection has a session,
 * its byte I/O goes through the calls below instead of recv/sendmsg. They behave like those
 * system calls (a count, 0 for end of stream, -1 with errno), so the callers change only in
 * whom they call. errno EAGAIN means "wait for the events cgloo__tls_wants names": a read may
 * need the socket writable and a write may need it readable.
 *
 * Built with OpenSSL (tls.c) when CGLOO_WITH_OPENSSL is on; otherwise tls_none.c, whose
 * cgloo__tls_config_create fails with ENOTSUP (no session is then ever made).
 */
#ifndef CGLOO_TLS_H
#define CGLOO_TLS_H

#include "cgloo_impl.h"

#include <sys/types.h>
#include <sys/uio.h>

typedef struct cgloo__tls_config cgloo__tls_config; /* certificates, CA, options: one per device */
typedef struct cgloo__tls cgloo__tls;               /* one session on one socket */

/* The files and options, as the caller or the environment named them. */
typedef struct cgloo__tls_files {
    const char *cert, *key, *ca;
    bool verify_host;
    const char *from; /* where they came from, for errors: an attribute or "CGLOO_TLS_*" */
} cgloo__tls_files;

/* cgloo__tls_files_from_env fills f from CGLOO_TLS_CERT, CGLOO_TLS_KEY, CGLOO_TLS_CA and
 * CGLOO_TLS_VERIFY_HOST. Returns false when none of the first three is set (TLS is off). */
bool cgloo__tls_files_from_env(cgloo__tls_files *f);

/* cgloo__tls_config_create loads the certificate, key and CA (TLS 1.3 only, mutual
 * authentication). Errors, with the thread's last error naming the file and the reason:
 * EINVAL (a file missing from the set, unreadable, or a key that does not match), ENOTSUP
 * (built without OpenSSL), ENOMEM. */
int cgloo__tls_config_create(const cgloo__tls_files *f, cgloo__tls_config **out);
void cgloo__tls_config_destroy(cgloo__tls_config *cfg);
/* cgloo__tls_config_verify_host: the peer's certificate must name the peer's host. */
bool cgloo__tls_config_verify_host(const cgloo__tls_config *cfg);

/* cgloo__tls_new starts a session on fd (which the caller keeps owning) as the client (the
 * side that dialled) or the server. host, when not NULL and the configuration checks hosts, is
 * the name or IP the peer's certificate must carry. Errors: ENOMEM. */
int cgloo__tls_new(cgloo__tls_config *cfg, int fd, bool client, const char *host, cgloo__tls **out);
/* cgloo__tls_free frees the session (not the socket). NULL is allowed. */
void cgloo__tls_free(cgloo__tls *s);

/* Returned by cgloo__tls_handshake while it waits for the socket (no status is positive). */
#define CGLOO__TLS_AGAIN 1
/* cgloo__tls_handshake takes the handshake as far as the socket allows: CGLOO_OK when done,
 * CGLOO__TLS_AGAIN to wait for cgloo__tls_wants, else EPROTO (refused: certificate, protocol),
 * EPEER (the peer closed) or an I/O status, with the reason in cgloo__tls_why. */
int cgloo__tls_handshake(cgloo__tls *s);
/* cgloo__tls_check_host fails with EPROTO unless the peer's certificate names host (an IP
 * address or a DNS name); used where the peer's host is known only after the handshake. */
int cgloo__tls_check_host(cgloo__tls *s, const char *host);
/* cgloo__tls_wants is the poll events (POLLIN/POLLOUT) the last EAGAIN waits for. */
short cgloo__tls_wants(const cgloo__tls *s);
/* cgloo__tls_why is the reason of the last failure ("" when none). */
const char *cgloo__tls_why(const cgloo__tls *s);

/* cgloo__tls_read reads up to len bytes (at most one record, 16 KiB): like recv. A failure of
 * the session itself sets errno EPROTO. */
ssize_t cgloo__tls_read(cgloo__tls *s, void *buf, size_t len);
/* cgloo__tls_pending: decrypted bytes wait in the session that the socket no longer signals;
 * a reader that stops with this true must come back without waiting for the poller. */
bool cgloo__tls_pending(const cgloo__tls *s);
/* cgloo__tls_writev takes bytes from iov like sendmsg and returns how many it took. Small
 * pieces are copied into the session's buffer so that a header and its payload go in one
 * record; bytes taken are committed: they are sent by later calls (or cgloo__tls_flush) even if
 * this one could not finish. Large pieces are encrypted from the caller's memory: after EAGAIN
 * the caller must offer the same bytes again (it does, since it took none of them). */
ssize_t cgloo__tls_writev(cgloo__tls *s, const struct iovec *iov, int iovcnt);
/* cgloo__tls_flush sends buffered bytes: 0 when none are left, -1 with errno otherwise. */
int cgloo__tls_flush(cgloo__tls *s);
/* cgloo__tls_unflushed: bytes taken by cgloo__tls_writev are still buffered. */
bool cgloo__tls_unflushed(const cgloo__tls *s);
/* cgloo__tls_close_notify sends the TLS close alert, without waiting. */
void cgloo__tls_close_notify(cgloo__tls *s);

/* cgloo__tls_write_full writes len bytes, polling until deadline (a handshake message).
 * cgloo__tls_read_full reads exactly len bytes the same way. Return a status. */
int cgloo__tls_write_full(cgloo__tls *s, int fd, const void *buf, size_t len, int64_t deadline_ms);
int cgloo__tls_read_full(cgloo__tls *s, int fd, void *buf, size_t len, int64_t deadline_ms);
/* cgloo__tls_handshake_full runs the handshake, polling until deadline. Returns a status. */
int cgloo__tls_handshake_full(cgloo__tls *s, int fd, int64_t deadline_ms);

#endif
