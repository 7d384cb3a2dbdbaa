/*
 * TLS sessions over OpenSSL (libssl): the configuration (one SSL_CTX per device: TLS 1.3 only,
 * mutual certificates checked against one CA, no session tickets), the non-blocking handshake,
 * and reads and writes that behave like recv and sendmsg.
 *
 * Writes: OpenSSL encrypts from the caller's buffer, and once a record is encrypted its bytes
 * are on their way even if the socket takes none of them (SSL_write then says WANT_WRITE and
 * must be called again with the same bytes). So that what the caller believes sent and what the
 * session has committed never differ, small pieces (headers, small payloads) are copied into a
 * buffer of one record and count as taken at once; the buffer is sent before anything else.
 * Large pieces are encrypted in place, with partial writes on, and count as taken when written.
 */
#include "transport/tls/tls.h"

#include <errno.h>
#include <limits.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/socket.h>

/* One TLS record's worth of plaintext: a buffer this size becomes one record. */
#define WBUF_SIZE 16384
/* The session's read buffer with read-ahead on. */
#define TLS_READ_BUFFER (64 * 1024)

struct cgloo__tls_config {
    SSL_CTX *ctx;
    bool verify_host;
};

struct cgloo__tls {
    SSL *ssl;
    short wants;
    char why[256];
    size_t woff, wlen; /* buffered bytes: sent up to woff */
    uint8_t wbuf[WBUF_SIZE];
};

static const char *env_nonempty(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

bool cgloo__tls_files_from_env(cgloo__tls_files *f)
{
    *f = (cgloo__tls_files){.cert = env_nonempty("CGLOO_TLS_CERT"),
                            .key = env_nonempty("CGLOO_TLS_KEY"),
                            .ca = env_nonempty("CGLOO_TLS_CA"),
                            .from = "CGLOO_TLS_CERT, CGLOO_TLS_KEY, CGLOO_TLS_CA"};
    const char *vh = env_nonempty("CGLOO_TLS_VERIFY_HOST");
    f->verify_host = vh && strcmp(vh, "0") != 0;
    return f->cert || f->key || f->ca;
}

/* openssl_why writes the oldest error OpenSSL queued (the cause, not its consequences). */
static void openssl_why(char *buf, size_t len)
{
    unsigned long e = ERR_get_error();
    if (e)
        ERR_error_string_n(e, buf, len);
    else
        snprintf(buf, len, "%s", "no detail from OpenSSL");
    ERR_clear_error();
}

static int config_fail(cgloo__tls_config *cfg, const char *what, const char *file)
{
    char why[256];
    openssl_why(why, sizeof why);
    cgloo__tls_config_destroy(cfg);
    return cgloo__error_set(CGLOO_EINVAL, "TLS: cannot %s '%s': %s", what, file, why);
}

int cgloo__tls_config_create(const cgloo__tls_files *f, cgloo__tls_config **out)
{
    if (!f->cert || !f->key || !f->ca)
        return cgloo__error_set(
            CGLOO_EINVAL, "TLS needs a certificate, its key and a CA (%s); missing: %s%s%s",
            f->from, f->cert ? "" : "certificate ", f->key ? "" : "key ", f->ca ? "" : "CA");
    cgloo__tls_config *cfg = calloc(1, sizeof *cfg);
    if (!cfg || !(cfg->ctx = SSL_CTX_new(TLS_method()))) {
        free(cfg);
        return cgloo__error_set(CGLOO_ENOMEM, "TLS: out of memory for the configuration");
    }
    cfg->verify_host = f->verify_host;
    SSL_CTX *c = cfg->ctx;
    SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
    SSL_CTX_set_mode(c, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    /* AES-128-GCM first (OpenSSL's default puts AES-256 first): 10 AES rounds a block instead
     * of 14 (`openssl speed -evp` on the 2-core build machine, 16 KiB records: 4.2 against
     * 3.5 GB/s); the others stay for peers that lack it. */
    SSL_CTX_set_ciphersuites(
        c, "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256");
    /* No resumption: every connection is a full, mutually authenticated handshake, and no
     * ticket arrives after it for a reader to stumble on. */
    SSL_CTX_set_num_tickets(c, 0);
    SSL_CTX_set_options(c, SSL_OP_NO_TICKET);
    /* A closed socket reads as the end of the stream; cgloo's own BYE says whether the peer
     * meant to leave, so a cut connection is still told apart from a departure. */
    SSL_CTX_set_options(c, SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Read ahead: one read() brings as many records as the socket holds, instead of two
     * per record (header, then body). Readers then look at cgloo__tls_pending. */
    SSL_CTX_set_read_ahead(c, 1);
    SSL_CTX_set_default_read_buffer_len(c, TLS_READ_BUFFER);
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    if (SSL_CTX_use_certificate_chain_file(c, f->cert) != 1)
        return config_fail(cfg, "load the certificate", f->cert);
    if (SSL_CTX_use_PrivateKey_file(c, f->key, SSL_FILETYPE_PEM) != 1)
        return config_fail(cfg, "load the private key", f->key);
    if (SSL_CTX_check_private_key(c) != 1)
        return config_fail(cfg, "use the key (it does not match the certificate)", f->key);
    if (SSL_CTX_load_verify_locations(c, f->ca, NULL) != 1)
        return config_fail(cfg, "load the CA certificates", f->ca);
    *out = cfg;
    return CGLOO_OK;
}

void cgloo__tls_config_destroy(cgloo__tls_config *cfg)
{
    if (!cfg)
        return;
    SSL_CTX_free(cfg->ctx);
    free(cfg);
}

bool cgloo__tls_config_verify_host(const cgloo__tls_config *cfg)
{
    return cfg->verify_host;
}

/* ---- the socket under a session ----------------------------------------------------------
 * OpenSSL's own socket BIO writes with write(2), which raises SIGPIPE on a connection the peer
 * has closed, and that would kill a process that never asked for it (the plain path sends with
 * MSG_NOSIGNAL). This BIO is the same with send(MSG_NOSIGNAL), and recv. */

static int sock_fd(BIO *b)
{
    return (int)(intptr_t)BIO_get_data(b);
}

static int sock_write(BIO *b, const char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = send(sock_fd(b), buf, (size_t)len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_write(b);
    return (int)n;
}

static int sock_read(BIO *b, char *buf, int len)
{
    BIO_clear_retry_flags(b);
    ssize_t n = recv(sock_fd(b), buf, (size_t)len, 0);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        BIO_set_retry_read(b);
    return (int)n;
}

static long sock_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    return cmd == BIO_CTRL_FLUSH ? 1 : 0; /* nothing is buffered here */
}

static int sock_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static BIO_METHOD *sock_method;
static pthread_once_t sock_once = PTHREAD_ONCE_INIT;

static void sock_method_make(void)
{
    BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cgloo socket");
    if (m && BIO_meth_set_write(m, sock_write) == 1 && BIO_meth_set_read(m, sock_read) == 1 &&
        BIO_meth_set_ctrl(m, sock_ctrl) == 1 && BIO_meth_set_create(m, sock_create) == 1)
        sock_method = m; /* made once, kept for the life of the process */
    else
        BIO_meth_free(m);
}

/* sock_bio wraps fd (which stays the caller's). NULL when out of memory. */
static BIO *sock_bio(int fd)
{
    pthread_once(&sock_once, sock_method_make);
    BIO *b = sock_method ? BIO_new(sock_method) : NULL;
    if (b)
        BIO_set_data(b, (void *)(intptr_t)fd);
    return b;
}

/* expect_host makes the handshake check that the peer's certificate names host. */
static int expect_host(SSL *ssl, const char *host)
{
    X509_VERIFY_PARAM *p = SSL_get0_param(ssl);
    X509_VERIFY_PARAM_set_hostflags(p, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (X509_VERIFY_PARAM_set1_ip_asc(p, host) == 1)
        return CGLOO_OK;
    return X509_VERIFY_PARAM_set1_host(p, host, 0) == 1 ? CGLOO_OK : CGLOO_ENOMEM;
}

int cgloo__tls_new(cgloo__tls_config *cfg, int fd, bool client, const char *host, cgloo__tls **out)
{
    cgloo__tls *s = calloc(1, sizeof *s);
    if (!s || !(s->ssl = SSL_new(cfg->ctx))) {
        free(s);
        return CGLOO_ENOMEM;
    }
    BIO *bio = sock_bio(fd);
    if (!bio) {
        cgloo__tls_free(s);
        return CGLOO_ENOMEM;
    }
    SSL_set_bio(s->ssl, bio, bio); /* the session owns the BIO now */
    if (host && cfg->verify_host && expect_host(s->ssl, host) != CGLOO_OK) {
        cgloo__tls_free(s);
        return CGLOO_ENOMEM;
    }
    if (client)
        SSL_set_connect_state(s->ssl);
    else
        SSL_set_accept_state(s->ssl);
    s->wants = POLLOUT;
    *out = s;
    return CGLOO_OK;
}

void cgloo__tls_free(cgloo__tls *s)
{
    if (!s)
        return;
    SSL_free(s->ssl);
    free(s);
}

short cgloo__tls_wants(const cgloo__tls *s)
{
    return s->wants;
}

const char *cgloo__tls_why(const cgloo__tls *s)
{
    return s->why;
}

/* session_error classifies what an SSL call that returned rc left: -1 with errno EAGAIN (and
 * s->wants) to wait, 0 for the end of the stream, -1 with errno for a failure (EPROTO for one
 * of the session's own, with the reason in s->why). */
static int session_error(cgloo__tls *s, int rc)
{
    int saved = errno;
    int e = SSL_get_error(s->ssl, rc);
    switch (e) {
    case SSL_ERROR_WANT_READ:
        s->wants = POLLIN;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        s->wants = POLLOUT;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN:
        return 0;
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (saved == 0 || saved == EAGAIN)
            return 0; /* the socket reached its end */
        snprintf(s->why, sizeof s->why, "%s", strerror(saved));
        errno = saved;
        return -1;
    default: {
        char why[200];
        openssl_why(why, sizeof why);
        long v = SSL_get_verify_result(s->ssl);
        if (v != X509_V_OK)
            snprintf(s->why, sizeof s->why, "certificate refused: %s (%s)",
                     X509_verify_cert_error_string(v), why);
        else
            snprintf(s->why, sizeof s->why, "%s", why);
        errno = EPROTO;
        return -1;
    }
    }
}

int cgloo__tls_handshake(cgloo__tls *s)
{
    ERR_clear_error();
    errno = 0;
    int rc = SSL_do_handshake(s->ssl);
    if (rc == 1) {
        s->wants = POLLIN; /* what a reader waits for from now on */
        return CGLOO_OK;
    }
    if (session_error(s, rc) == 0) {
        if (!s->why[0])
            snprintf(s->why, sizeof s->why, "%s",
                     "the peer closed the connection during the TLS handshake (is it running "
                     "without TLS, or did it refuse this certificate?)");
        return CGLOO_EPEER;
    }
    if (errno == EAGAIN)
        return CGLOO__TLS_AGAIN;
    return errno == EPROTO ? CGLOO_EPROTO : cgloo__status_from_errno(errno);
}

int cgloo__tls_check_host(cgloo__tls *s, const char *host)
{
    X509 *cert = SSL_get0_peer_certificate(s->ssl);
    if (!cert) {
        snprintf(s->why, sizeof s->why, "%s", "the peer presented no certificate");
        return CGLOO_EPROTO;
    }
    if (X509_check_ip_asc(cert, host, 0) == 1 ||
        X509_check_host(cert, host, 0, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS, NULL) == 1)
        return CGLOO_OK;
    snprintf(s->why, sizeof s->why, "the peer's certificate does not name its host %s", host);
    return CGLOO_EPROTO;
}

ssize_t cgloo__tls_read(cgloo__tls *s, void *buf, size_t len)
{
    size_t got = 0;
    ERR_clear_error();
    errno = 0;
    int rc = SSL_read_ex(s->ssl, buf, CGLOO_MIN(len, (size_t)INT_MAX), &got);
    if (rc == 1)
        return (ssize_t)got;
    return session_error(s, 0);
}

bool cgloo__tls_pending(const cgloo__tls *s)
{
    return SSL_has_pending(s->ssl) == 1;
}

/* session_write writes len bytes from p; returns what was written, or -1 (errno EAGAIN: call
 * again with the same bytes). */
static ssize_t session_write(cgloo__tls *s, const void *p, size_t len)
{
    size_t done = 0;
    ERR_clear_error();
    errno = 0;
    if (SSL_write_ex(s->ssl, p, len, &done) == 1)
        return (ssize_t)done;
    if (session_error(s, 0) == 0 && errno != EAGAIN)
        errno = EPIPE;
    return -1;
}

int cgloo__tls_flush(cgloo__tls *s)
{
    while (s->woff < s->wlen) {
        ssize_t n = session_write(s, s->wbuf + s->woff, s->wlen - s->woff);
        if (n < 0)
            return -1;
        s->woff += (size_t)n;
    }
    s->woff = s->wlen = 0;
    return 0;
}

bool cgloo__tls_unflushed(const cgloo__tls *s)
{
    return s->wlen > 0;
}

/* writev_piece takes what it can of one piece; returns false when the caller must stop (the
 * socket is full or failed; what was taken is in *took). */
static bool writev_piece(cgloo__tls *s, const uint8_t *p, size_t len, size_t *took)
{
    while (len > 0) {
        if (s->wlen == 0 && len >= WBUF_SIZE) {
            ssize_t n = session_write(s, p, len);
            if (n < 0)
                return false;
            *took += (size_t)n;
            p += n;
            len -= (size_t)n;
            continue;
        }
        size_t n = CGLOO_MIN(len, WBUF_SIZE - s->wlen);
        memcpy(s->wbuf + s->wlen, p, n);
        s->wlen += n;
        *took += n;
        p += n;
        len -= n;
        if (s->wlen == WBUF_SIZE && cgloo__tls_flush(s) != 0)
            return false;
    }
    return true;
}

ssize_t cgloo__tls_writev(cgloo__tls *s, const struct iovec *iov, int iovcnt)
{
    if (cgloo__tls_flush(s) != 0)
        return -1;
    size_t took = 0;
    for (int i = 0; i < iovcnt; i++)
        if (!writev_piece(s, iov[i].iov_base, iov[i].iov_len, &took))
            return took > 0 ? (ssize_t)took : -1; /* a failure sticks: the next call reports it */
    if (cgloo__tls_flush(s) != 0 && errno != EAGAIN && took == 0)
        return -1;
    return (ssize_t)took;
}

void cgloo__tls_close_notify(cgloo__tls *s)
{
    ERR_clear_error();
    SSL_shutdown(s->ssl);
    ERR_clear_error();
}

/* wait_for polls fd for what the session wants, until deadline; false when the time is up. */
static bool wait_for(const cgloo__tls *s, int fd, int64_t deadline_ms)
{
    int left = cgloo__remaining_ms(deadline_ms);
    if (left == 0)
        return false;
    struct pollfd p = {.fd = fd, .events = s->wants};
    return poll(&p, 1, left) >= 0 || errno == EINTR;
}

int cgloo__tls_handshake_full(cgloo__tls *s, int fd, int64_t deadline_ms)
{
    for (;;) {
        int rc = cgloo__tls_handshake(s);
        if (rc != CGLOO__TLS_AGAIN)
            return rc;
        if (!wait_for(s, fd, deadline_ms)) {
            snprintf(s->why, sizeof s->why, "%s", "the TLS handshake timed out");
            return CGLOO_ETIMEDOUT;
        }
    }
}

int cgloo__tls_write_full(cgloo__tls *s, int fd, const void *buf, size_t len, int64_t deadline_ms)
{
    struct iovec iov = {(void *)buf, len};
    size_t done = 0;
    while (done < len || cgloo__tls_unflushed(s)) {
        ssize_t n = done < len ? cgloo__tls_writev(s, &iov, 1) : cgloo__tls_flush(s);
        if (n > 0 && done < len) {
            done += (size_t)n;
            iov = (struct iovec){(uint8_t *)buf + done, len - done};
        } else if (n < 0 && errno != EAGAIN) {
            return errno == EPROTO ? CGLOO_EPROTO : cgloo__status_from_errno(errno);
        } else if (n < 0 && !wait_for(s, fd, deadline_ms)) {
            return CGLOO_ETIMEDOUT;
        }
    }
    return CGLOO_OK;
}

int cgloo__tls_read_full(cgloo__tls *s, int fd, void *buf, size_t len, int64_t deadline_ms)
{
    size_t done = 0;
    while (done < len) {
        ssize_t n = cgloo__tls_read(s, (uint8_t *)buf + done, len - done);
        if (n > 0)
            done += (size_t)n;
        else if (n == 0)
            return CGLOO_EPEER;
        else if (errno != EAGAIN)
            return errno == EPROTO ? CGLOO_EPROTO : cgloo__status_from_errno(errno);
        else if (!wait_for(s, fd, deadline_ms))
            return CGLOO_ETIMEDOUT;
    }
    return CGLOO_OK;
}
