/*
 * The TCP store wire format, shared by the client (tcp_store.c) and the server
 * (tcp_store_server.c). Every integer is little-endian and fixed-width.
 *
 * Connection hello, 8 bytes each way: u32 magic "CGST" | u16 version | u16 flags. The client
 * sends its hello first; the server checks it and answers with its own. A wrong magic or
 * version closes the connection.
 *
 * Flags: bit 0 (TCP_STORE_FLAG_AUTH) says the sender has a job secret; the others are zero.
 * With a secret on both sides the hellos grow into a challenge-response before any request:
 *   client  hello | client nonce (32 bytes, fresh)
 *   server  hello | server nonce (32 bytes, fresh) | MAC(server)
 *   client  MAC(client)
 * MAC(x) = HMAC-SHA256(secret, label_x || client hello || client nonce || server hello ||
 * server nonce), the labels differing by direction. When only one side has a secret, the server
 * answers with its bare hello (its flag tells the client which side lacks the secret) and
 * closes; so it does after a wrong MAC.
 *
 * Then strictly one request, one response, in order:
 *   request  header: u32 body_len | u32 op      then body_len bytes of body
 *   response header: u32 body_len | u32 status  then body_len bytes of body
 * Keys travel as u32 klen | klen bytes (1..CGLOO_STORE_KEY_MAX, no NUL); key lists as
 * u32 nkeys (1..TCP_STORE_KEYS_MAX) followed by that many keys.
 *
 *   op         request body                          response body on TCP_STORE_ST_OK
 *   SET        key | value (the rest of the body)    empty
 *   GET        u32 timeout_ms | key                  the value (the whole body)
 *   WAIT       u32 timeout_ms | key list             empty
 *   CHECK      key list                              u32 all_present (0 or 1)
 *   ADD        u64 delta (two's complement) | key    u64 new value
 *   DELETE     key                                   empty
 *   MULTI_GET  u32 timeout_ms | key list             per key: u32 vlen | value
 *
 * GET, WAIT and MULTI_GET wait on the server up to timeout_ms, then answer TCP_STORE_ST_TIMEDOUT
 * with an empty body. A frame longer than TCP_STORE_FRAME_MAX, an unknown op, or a body that
 * does not parse exactly is a protocol violation: the server closes the connection.
 */
#ifndef CGLOO_TCP_STORE_PROTO_H
#define CGLOO_TCP_STORE_PROTO_H

#include "cgloo_impl.h"

#define TCP_STORE_MAGIC 0x54534743u /* the bytes "CGST" */
#define TCP_STORE_VERSION 1u
#define TCP_STORE_HELLO_LEN 8
#define TCP_STORE_HEADER_LEN 8
#define TCP_STORE_FLAG_AUTH 1u
#define TCP_STORE_NONCE_LEN 32
#define TCP_STORE_MAC_LEN 32
/* What the MACs cover: both hellos and both nonces, as sent. */
#define TCP_STORE_TRANSCRIPT_LEN (2 * (TCP_STORE_HELLO_LEN + TCP_STORE_NONCE_LEN))
#define TCP_STORE_LABEL_SERVER "cgloo store v1 server"
#define TCP_STORE_LABEL_CLIENT "cgloo store v1 client"

/* Bounds on everything a peer declares. The largest legal request (a SET of the largest value,
 * or a list of TCP_STORE_KEYS_MAX keys of the largest size) fits in TCP_STORE_FRAME_MAX. */
#define TCP_STORE_KEYS_MAX ((uint32_t)CGLOO_STORE_KEYS_MAX)
#define TCP_STORE_FRAME_MAX (CGLOO_STORE_VALUE_MAX + 1024u * 1024u)

enum tcp_store_op {
    TCP_STORE_OP_SET = 1,
    TCP_STORE_OP_GET = 2,
    TCP_STORE_OP_WAIT = 3,
    TCP_STORE_OP_CHECK = 4,
    TCP_STORE_OP_ADD = 5,
    TCP_STORE_OP_DELETE = 6,
    TCP_STORE_OP_MULTI_GET = 7,
};

enum tcp_store_status {
    TCP_STORE_ST_OK = 0,
    TCP_STORE_ST_TIMEDOUT = 1,
    TCP_STORE_ST_NOT_COUNTER = 2, /* ADD on a value that is not decimal counter text */
    TCP_STORE_ST_TOO_LARGE = 3,   /* the response would exceed TCP_STORE_FRAME_MAX */
    TCP_STORE_ST_NOMEM = 4,       /* the server ran out of memory for this request */
};

/* tcp_store_hello_put writes our hello into p (TCP_STORE_HELLO_LEN bytes); auth sets the
 * secret flag. */
static inline void tcp_store_hello_put(uint8_t *p, int auth)
{
    cgloo__put_u32(p, TCP_STORE_MAGIC);
    /* u16 version, u16 flags */
    cgloo__put_u32(p + 4, TCP_STORE_VERSION | (auth ? TCP_STORE_FLAG_AUTH << 16 : 0));
}

/* tcp_store_hello_ok tells whether p holds a hello of our magic and version, with no flag but
 * the secret flag. */
static inline int tcp_store_hello_ok(const uint8_t *p)
{
    return cgloo__get_u32(p) == TCP_STORE_MAGIC &&
           (cgloo__get_u32(p + 4) & ~(TCP_STORE_FLAG_AUTH << 16)) == TCP_STORE_VERSION;
}

/* tcp_store_hello_auth tells whether a well-formed hello has the secret flag. */
static inline int tcp_store_hello_auth(const uint8_t *p)
{
    return (cgloo__get_u32(p + 4) >> 16) & TCP_STORE_FLAG_AUTH;
}

/* A bounds-checked cursor over a received body. Every read fails (returns 0) rather than step
 * past the end, so a lying length can never make us read outside the buffer. */
typedef struct tcp_store_reader {
    const uint8_t *p;
    size_t left;
} tcp_store_reader;

static inline int tcp_store_read_u32(tcp_store_reader *r, uint32_t *v)
{
    if (r->left < 4)
        return 0;
    *v = cgloo__get_u32(r->p);
    r->p += 4;
    r->left -= 4;
    return 1;
}

static inline int tcp_store_read_u64(tcp_store_reader *r, uint64_t *v)
{
    if (r->left < 8)
        return 0;
    *v = cgloo__get_u64(r->p);
    r->p += 8;
    r->left -= 8;
    return 1;
}

static inline int tcp_store_read_bytes(tcp_store_reader *r, size_t n, const uint8_t **out)
{
    if (r->left < n)
        return 0;
    *out = r->p;
    r->p += n;
    r->left -= n;
    return 1;
}

/* tcp_store_read_key reads u32 klen | key and checks 1 <= klen <= CGLOO_STORE_KEY_MAX and that
 * the key holds no NUL (keys are C strings on both ends). */
static inline int tcp_store_read_key(tcp_store_reader *r, const uint8_t **key, size_t *klen)
{
    uint32_t n;
    if (!tcp_store_read_u32(r, &n) || n == 0 || n > CGLOO_STORE_KEY_MAX)
        return 0;
    if (!tcp_store_read_bytes(r, n, key) || memchr(*key, '\0', n))
        return 0;
    *klen = n;
    return 1;
}

#endif /* CGLOO_TCP_STORE_PROTO_H */
