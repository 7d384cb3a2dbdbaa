/*
 * Job-secret authentication: the secret's sources (the API, CGLOO_SECRET, CGLOO_SECRET_FILE),
 * fresh nonces (getrandom), HMAC-SHA256 and a constant-time compare (OpenSSL's libcrypto). The TCP
 * transport's handshake and the TCP store's use these; docs/ARCHITECTURE.md "Authentication"
 * has the exchanges. Built without OpenSSL, loading a secret fails with ENOTSUP, so that a job
 * that asked for authentication never runs without it.
 */
#ifndef CGLOO_AUTH_H
#define CGLOO_AUTH_H

#include "cgloo_impl.h"

#define CGLOO_AUTH_NONCE_LEN 32 /* fresh random bytes per connection and side */
#define CGLOO_AUTH_MAC_LEN 32   /* HMAC-SHA256 */
#define CGLOO_SECRET_MAX 1024   /* bytes of secret text; longer is refused */

/* A job secret: its bytes (never logged, wiped when dropped). len 0: no secret. */
typedef struct cgloo__secret {
    size_t len;
    uint8_t key[CGLOO_SECRET_MAX];
} cgloo__secret;

/* cgloo__secret_load fills out from `given` (the API's secret; NULL: none given) or else from
 * CGLOO_SECRET or the file CGLOO_SECRET_FILE names; out->len stays 0 when none is set. `who`
 * names the caller in errors. Errors (with the thread's last error, which never quotes the
 * secret): EINVAL (empty or too long, both variables set, a file that cannot be read or that
 * its group or others may read), ENOTSUP (built without OpenSSL). */
int cgloo__secret_load(const char *given, const char *who, cgloo__secret *out);
/* cgloo__secret_wipe clears the secret's bytes. */
void cgloo__secret_wipe(cgloo__secret *s);

/* cgloo__auth_nonce fills out with CGLOO_AUTH_NONCE_LEN fresh random bytes. EIO when the
 * system has no randomness to give. */
int cgloo__auth_nonce(uint8_t *out);
/* cgloo__auth_mac computes HMAC-SHA256(secret, label || data) into out (CGLOO_AUTH_MAC_LEN).
 * The label keeps a MAC made for one step or direction from passing for another. */
int cgloo__auth_mac(const cgloo__secret *s, const char *label, const uint8_t *data, size_t len,
                    uint8_t *out);
/* cgloo__auth_check recomputes the MAC and compares it with `got` in constant time. */
bool cgloo__auth_check(const cgloo__secret *s, const char *label, const uint8_t *data, size_t len,
                       const uint8_t *got);

#endif
