/*
 * Job-secret authentication helpers (see auth.h). HMAC-SHA256 and CRYPTO_memcmp come from
 * OpenSSL's libcrypto when CGLOO_HAVE_OPENSSL is defined; without it no secret can be loaded.
 */
#include "core/auth.h"

#include <fcntl.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#ifdef CGLOO_HAVE_OPENSSL
/* SHA256_Init and friends are deprecated in OpenSSL 3 in favour of EVP, but EVP's first use
 * costs each process about 1 ms of provider set-up (EVP_MAC_fetch, measured here 2026-12-01),
 * which 64 ranks on 2 cores pay in turn: the low-level digest needs none (8 us first, 0.15 us
 * after). HMAC over it is RFC 2104's few lines, checked against libcrypto's HMAC() by
 * tests/test_auth.c. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/crypto.h>
#include <openssl/sha.h>
#endif

int cgloo_secret_supported(void)
{
#ifdef CGLOO_HAVE_OPENSSL
    return 1;
#else
    return 0;
#endif
}

void cgloo__secret_wipe(cgloo__secret *s)
{
#ifdef CGLOO_HAVE_OPENSSL
    OPENSSL_cleanse(s, sizeof *s);
#else
    explicit_bzero(s, sizeof *s);
#endif
}

/* secret_set copies len bytes of text into out; the caller names the source in errors. */
static int secret_set(const char *text, size_t len, const char *who, const char *source,
                      cgloo__secret *out)
{
    if (len == 0 || len > CGLOO_SECRET_MAX)
        return cgloo__error_set(CGLOO_EINVAL, "%s: the job secret from %s is %s (1..%d bytes)", who,
                                source, len ? "too long" : "empty", CGLOO_SECRET_MAX);
    memcpy(out->key, text, len);
    out->len = len;
    return CGLOO_OK;
}

/* secret_read_file reads the file's bytes, without a trailing newline. A file its group or
 * others may read is refused: the secret would not be secret on a shared host. */
static int secret_read_file(const char *path, const char *who, cgloo__secret *out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        int err = errno;
        if (fd >= 0)
            close(fd);
        return cgloo__error_set(CGLOO_EINVAL, "%s: cannot read CGLOO_SECRET_FILE '%s': %s", who,
                                path, strerror(err));
    }
    if (st.st_mode & (S_IRWXG | S_IRWXO)) {
        close(fd);
        return cgloo__error_set(CGLOO_EINVAL,
                                "%s: CGLOO_SECRET_FILE '%s' is open to its group or others "
                                "(mode %03o): chmod 600 it",
                                who, path, (unsigned)(st.st_mode & 0777));
    }
    char buf[CGLOO_SECRET_MAX + 2];
    ssize_t n = read(fd, buf, sizeof buf);
    close(fd);
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    int rc = n < 0 ? cgloo__error_set(CGLOO_EINVAL, "%s: cannot read CGLOO_SECRET_FILE '%s': %s",
                                      who, path, strerror(errno))
                   : secret_set(buf, (size_t)n, who, "CGLOO_SECRET_FILE", out);
    explicit_bzero(buf, sizeof buf);
    return rc;
}

int cgloo__secret_load(const char *given, const char *who, cgloo__secret *out)
{
    out->len = 0;
    const char *env = getenv("CGLOO_SECRET"), *file = getenv("CGLOO_SECRET_FILE");
    env = env && *env ? env : NULL;
    file = file && *file ? file : NULL;
    if (!given && !env && !file)
        return CGLOO_OK;
    if (!cgloo_secret_supported())
        return cgloo__error_set(CGLOO_ENOTSUP,
                                "%s: a job secret is set (%s) but this cgloo was built without "
                                "OpenSSL: install libssl-dev and rebuild",
                                who,
                                given ? "by the caller"
                                : env ? "CGLOO_SECRET"
                                      : "CGLOO_SECRET_FILE");
    if (given)
        return secret_set(given, strlen(given), who, "the caller", out);
    if (env && file)
        return cgloo__error_set(
            CGLOO_EINVAL, "%s: both CGLOO_SECRET and CGLOO_SECRET_FILE are set: set one", who);
    if (env)
        return secret_set(env, strlen(env), who, "CGLOO_SECRET", out);
    return secret_read_file(file, who, out);
}

/* Nonces come from the kernel (getrandom): as unpredictable as OpenSSL's generator, and without
 * the 1.6 ms its first use costs each process (64 ranks on 2 cores pay that 64 times). */
int cgloo__auth_nonce(uint8_t *out)
{
    size_t got = 0;
    while (got < CGLOO_AUTH_NONCE_LEN) {
        ssize_t n = getrandom(out + got, CGLOO_AUTH_NONCE_LEN - got, 0);
        if (n < 0 && errno != EINTR)
            return CGLOO_EIO;
        got += n > 0 ? (size_t)n : 0;
    }
    return CGLOO_OK;
}

#ifdef CGLOO_HAVE_OPENSSL

#define SHA256_BLOCK 64

int cgloo__auth_mac(const cgloo__secret *s, const char *label, const uint8_t *data, size_t len,
                    uint8_t *out)
{
    uint8_t key[SHA256_BLOCK] = {0}, pad[SHA256_BLOCK], inner[SHA256_DIGEST_LENGTH];
    if (s->len > SHA256_BLOCK)
        SHA256(s->key, s->len, key); /* a long key is replaced by its digest (RFC 2104) */
    else
        memcpy(key, s->key, s->len);
    SHA256_CTX c;
    for (int i = 0; i < SHA256_BLOCK; i++)
        pad[i] = key[i] ^ 0x36;
    SHA256_Init(&c);
    SHA256_Update(&c, pad, sizeof pad);
    /* The label goes in with its NUL, so that no label is another's prefix. */
    SHA256_Update(&c, label, strlen(label) + 1);
    SHA256_Update(&c, data, len);
    SHA256_Final(inner, &c);
    for (int i = 0; i < SHA256_BLOCK; i++)
        pad[i] = key[i] ^ 0x5c;
    SHA256_Init(&c);
    SHA256_Update(&c, pad, sizeof pad);
    SHA256_Update(&c, inner, sizeof inner);
    SHA256_Final(out, &c);
    OPENSSL_cleanse(key, sizeof key);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(&c, sizeof c);
    return CGLOO_OK;
}

bool cgloo__auth_check(const cgloo__secret *s, const char *label, const uint8_t *data, size_t len,
                       const uint8_t *got)
{
    uint8_t want[CGLOO_AUTH_MAC_LEN];
    if (cgloo__auth_mac(s, label, data, len, want) != CGLOO_OK)
        return false;
    return CRYPTO_memcmp(want, got, CGLOO_AUTH_MAC_LEN) == 0;
}

#else /* no OpenSSL: never reached, since no secret loads */

int cgloo__auth_mac(const cgloo__secret *s, const char *label, const uint8_t *data, size_t len,
                    uint8_t *out)
{
    return CGLOO_ENOTSUP;
}

bool cgloo__auth_check(const cgloo__secret *s, const char *label, const uint8_t *data, size_t len,
                       const uint8_t *got)
{
    return false;
}

#endif
