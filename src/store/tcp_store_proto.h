/*
 * The TCP store wire format, shared by the client (tcp_store.c) and the server
 * (tcp_store_server.c). Every integer is little-endian and fixed-width.
 *
 * Connection hello, 8 bytes each way: u32 magic "CGST" | u16 version | u16 flags (0). The client
 * sends its hello first; the server checks it and answers with its own. A wrong magic or
 * version closes the connection.
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

/* tcp_store_hello_put writes our hello into p (TCP_STORE_HELLO_LEN bytes). */
static inline void tcp_store_hello_put(uint8_t *p)
{
    cgloo__put_u32(p, TCP_STORE_MAGIC);
    cgloo__put_u32(p + 4, TCP_STORE_VERSION); /* u16 version, u16 flags = 0 */
}

/* tcp_store_hello_ok tells whether p holds a hello of our magic and version. */
static inline int tcp_store_hello_ok(const uint8_t *p)
{
    return cgloo__get_u32(p) == TCP_STORE_MAGIC && cgloo__get_u32(p + 4) == TCP_STORE_VERSION;
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
