/*
 * A build without OpenSSL: asking for TLS fails, naming the package to install, and never
 * falls back to plaintext. No session can exist, so the session calls are never reached.
 */
#include "transport/tls/tls.h"

#include <errno.h>

bool cgloo__tls_files_from_env(cgloo__tls_files *f)
{
    *f = (cgloo__tls_files){.cert = getenv("CGLOO_TLS_CERT"),
                            .key = getenv("CGLOO_TLS_KEY"),
                            .ca = getenv("CGLOO_TLS_CA"),
                            .from = "CGLOO_TLS_CERT, CGLOO_TLS_KEY, CGLOO_TLS_CA"};
    return (f->cert && *f->cert) || (f->key && *f->key) || (f->ca && *f->ca);
}

int cgloo__tls_config_create(const cgloo__tls_files *f, cgloo__tls_config **out)
{
    *out = NULL;
    return cgloo__error_set(CGLOO_ENOTSUP,
                            "TLS was asked for (%s) but cgloo was built without OpenSSL: install "
                            "libssl-dev and rebuild with CGLOO_WITH_OPENSSL=ON",
                            f->from);
}

void cgloo__tls_config_destroy(cgloo__tls_config *cfg) {}
bool cgloo__tls_config_verify_host(const cgloo__tls_config *cfg)
{
    return false;
}
int cgloo__tls_new(cgloo__tls_config *cfg, int fd, bool client, const char *host, cgloo__tls **out)
{
    return CGLOO_ENOTSUP;
}
void cgloo__tls_free(cgloo__tls *s) {}
int cgloo__tls_handshake(cgloo__tls *s)
{
    return CGLOO_ENOTSUP;
}
int cgloo__tls_check_host(cgloo__tls *s, const char *host)
{
    return CGLOO_ENOTSUP;
}
short cgloo__tls_wants(const cgloo__tls *s)
{
    return 0;
}
const char *cgloo__tls_why(const cgloo__tls *s)
{
    return "built without OpenSSL";
}
ssize_t cgloo__tls_read(cgloo__tls *s, void *buf, size_t len)
{
    errno = ENOTSUP;
    return -1;
}
bool cgloo__tls_pending(const cgloo__tls *s)
{
    return false;
}
ssize_t cgloo__tls_writev(cgloo__tls *s, const struct iovec *iov, int iovcnt)
{
    errno = ENOTSUP;
    return -1;
}
int cgloo__tls_flush(cgloo__tls *s)
{
    return 0;
}
bool cgloo__tls_unflushed(const cgloo__tls *s)
{
    return false;
}
void cgloo__tls_close_notify(cgloo__tls *s) {}
int cgloo__tls_write_full(cgloo__tls *s, int fd, const void *buf, size_t len, int64_t deadline_ms)
{
    return CGLOO_ENOTSUP;
}
int cgloo__tls_read_full(cgloo__tls *s, int fd, void *buf, size_t len, int64_t deadline_ms)
{
    return CGLOO_ENOTSUP;
}
int cgloo__tls_handshake_full(cgloo__tls *s, int fd, int64_t deadline_ms)
{
    return CGLOO_ENOTSUP;
}
