/*
 * The TCP wire protocol (version 1). All fields are fixed-width little-endian.
 *
 * Every connection opens with a hello from the dialling rank (the higher one) and an
 * acknowledgement from the accepting rank, both HELLO_LEN bytes:
 *   0 magic u32 "CGLO"   4 version u8   5 type u8 (1 hello, 2 ack)   6 flags u16
 *   8 context id u64 (hash of the context name)
 *  16 sender rank u32   20 receiver rank u32   24 world size u32
 *  28 eager max u32: largest eager message the sender of this hello accepts
 *  32 sender nonce u64  40 receiver nonce u64 (both from the store records of this run)
 *  48 eager budget u32: eager bytes the sender may hold unclaimed for its peer   52 zero u32
 *
 * Flags: bit 0 (WIRE_FLAG_AUTH) says the sender has a job secret; every other bit is zero. With
 * it the exchange grows by a challenge-response (docs/ARCHITECTURE.md, "Authentication"):
 *   hello  then the dialler's fresh nonce (AUTH_NONCE_LEN bytes)
 *   ack    then the listener's fresh nonce and MAC(ack)
 *   proof  the dialler's MAC(proof), AUTH_MAC_LEN bytes, before any message; a dialler that
 *          finds MAC(ack) wrong sends AUTH_MAC_LEN zero bytes instead (a refusal: the secrets
 *          differ) and closes
 * where MAC(x) = HMAC-SHA256(secret, label_x || hello || dialler nonce || ack || listener nonce)
 * over the bytes as sent, with different labels for the two directions. Without the flag the
 * layout is the same as before it existed, so the version stays 1; a peer whose flag differs
 * from this side's is refused by both sides with an error saying which side has no secret.
 *
 * Then messages, each a MSG_HDR_LEN header and, for EAGER and DATA, `len` payload bytes:
 *   0 type u8   1..3 zero   4 send id u32   8 recv id u32   12 zero u32   16 tag u64   24 len u64
 * EAGER  tag, len, payload: a small message sent at once, within the receiver's credit.
 * RTS    tag, len, send id: "ready to send" for a large message; no payload.
 * READY  send id, recv id: the receiver has a buffer; the sender answers with DATA.
 * DATA   recv id, len, payload: the large message, landing straight in the receive buffer.
 * CREDIT len: eager bytes the receiver has handed to the application and returns as credit.
 * BYE    the sender is closing its context normally: its close is a departure, not a crash.
 */
#ifndef CGLOO_TCP_WIRE_H
#define CGLOO_TCP_WIRE_H

#include "cgloo_impl.h"

#define WIRE_MAGIC 0x4f4c4743u /* "CGLO" read as little-endian bytes */
#define WIRE_VERSION 1
#define HELLO_LEN 56
#define MSG_HDR_LEN 32
#define WIRE_FLAG_AUTH 1u
#define AUTH_NONCE_LEN 32
#define AUTH_MAC_LEN 32
#define HELLO_AUTH_LEN (HELLO_LEN + AUTH_NONCE_LEN)              /* hello and dialler nonce */
#define ACK_AUTH_LEN (HELLO_LEN + AUTH_NONCE_LEN + AUTH_MAC_LEN) /* ack, nonce and MAC */
#define AUTH_TRANSCRIPT_LEN (2 * HELLO_LEN + 2 * AUTH_NONCE_LEN)
#define AUTH_LABEL_ACK "cgloo tcp v1 ack"
#define AUTH_LABEL_PROOF "cgloo tcp v1 proof"

enum { HELLO_TYPE_HELLO = 1, HELLO_TYPE_ACK = 2 };

enum {
    MSG_EAGER = 1,
    MSG_RTS = 2,
    MSG_READY = 3,
    MSG_DATA = 4,
    MSG_CREDIT = 5,
    MSG_BYE = 6,
};

typedef struct wire_hello {
    uint8_t type;
    uint16_t flags;
    uint64_t ctx_id;
    uint32_t src_rank, dst_rank, size;
    uint32_t eager_max, eager_budget;
    uint64_t src_nonce, dst_nonce;
} wire_hello;

typedef struct wire_msg {
    uint8_t type;
    uint32_t send_id, recv_id;
    uint64_t tag, len;
} wire_msg;

static inline void wire_hello_encode(const wire_hello *h, uint8_t *p)
{
    memset(p, 0, HELLO_LEN);
    cgloo__put_u32(p, WIRE_MAGIC);
    p[4] = WIRE_VERSION;
    p[5] = h->type;
    p[6] = (uint8_t)h->flags;
    p[7] = (uint8_t)(h->flags >> 8);
    cgloo__put_u64(p + 8, h->ctx_id);
    cgloo__put_u32(p + 16, h->src_rank);
    cgloo__put_u32(p + 20, h->dst_rank);
    cgloo__put_u32(p + 24, h->size);
    cgloo__put_u32(p + 28, h->eager_max);
    cgloo__put_u64(p + 32, h->src_nonce);
    cgloo__put_u64(p + 40, h->dst_nonce);
    cgloo__put_u32(p + 48, h->eager_budget);
}

/* wire_hello_decode checks magic, version and the zero fields; returns a static reason for a
 * rejection, NULL when the bytes are a well-formed hello. */
static inline const char *wire_hello_decode(const uint8_t *p, wire_hello *h)
{
    if (cgloo__get_u32(p) != WIRE_MAGIC)
        return "bad magic";
    if (p[4] != WIRE_VERSION)
        return "unsupported protocol version";
    if (p[5] != HELLO_TYPE_HELLO && p[5] != HELLO_TYPE_ACK)
        return "bad hello type";
    uint16_t flags = (uint16_t)(p[6] | p[7] << 8);
    if ((flags & ~WIRE_FLAG_AUTH) || cgloo__get_u32(p + 52))
        return "non-zero reserved field";
    h->type = p[5];
    h->flags = flags;
    h->ctx_id = cgloo__get_u64(p + 8);
    h->src_rank = cgloo__get_u32(p + 16);
    h->dst_rank = cgloo__get_u32(p + 20);
    h->size = cgloo__get_u32(p + 24);
    h->eager_max = cgloo__get_u32(p + 28);
    h->src_nonce = cgloo__get_u64(p + 32);
    h->dst_nonce = cgloo__get_u64(p + 40);
    h->eager_budget = cgloo__get_u32(p + 48);
    return NULL;
}

static inline void wire_msg_encode(const wire_msg *m, uint8_t *p)
{
    p[0] = m->type;
    p[1] = p[2] = p[3] = 0;
    cgloo__put_u32(p + 4, m->send_id);
    cgloo__put_u32(p + 8, m->recv_id);
    cgloo__put_u32(p + 12, 0);
    cgloo__put_u64(p + 16, m->tag);
    cgloo__put_u64(p + 24, m->len);
}

/* wire_msg_decode checks the type and the zero fields; lengths are checked by the caller,
 * which knows the limits. Returns a static reason for a rejection or NULL. */
static inline const char *wire_msg_decode(const uint8_t *p, wire_msg *m)
{
    if (p[0] < MSG_EAGER || p[0] > MSG_BYE)
        return "unknown message type";
    if (p[1] || p[2] || p[3] || cgloo__get_u32(p + 12))
        return "non-zero reserved field";
    m->type = p[0];
    m->send_id = cgloo__get_u32(p + 4);
    m->recv_id = cgloo__get_u32(p + 8);
    m->tag = cgloo__get_u64(p + 16);
    m->len = cgloo__get_u64(p + 24);
    return NULL;
}

#endif
