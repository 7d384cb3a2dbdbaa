/*
 * The TCP device: one listening socket shared by any number of contexts. Connections arrive
 * with a hello naming the context and rank they are for; the device reads it and files the
 * socket under the matching registration, which the connecting context then claims. There is
 * no device thread: whichever connecting thread polls the device serves everyone's arrivals.
 */
#ifndef CGLOO_TCP_DEVICE_H
#define CGLOO_TCP_DEVICE_H

#include "net/net.h"
#include "transport/tcp/wire.h"

#include <poll.h>

/* An accepted connection, while its hello arrives and until a context claims it. */
typedef struct device_inbound {
    struct device_inbound *next;
    int fd;
    uint8_t hello[HELLO_LEN];
    size_t got;
    int64_t accepted_ms;
    wire_hello decoded;
    char addr[CGLOO_ADDR_TEXT_MAX];
} device_inbound;

/* A context that is connecting and expects hellos: (ctx_id, rank, size, nonce). */
typedef struct device_reg {
    struct device_reg *next;
    uint64_t ctx_id, nonce;
    uint32_t rank, size;
    device_inbound *arrived; /* hellos addressed to it, checked against the fields above */
} device_reg;

/* The address peers dial, as "host:port". */
const char *cgloo__device_address_text(const cgloo_device *dev);
void cgloo__device_register(cgloo_device *dev, device_reg *reg);
/* cgloo__device_unregister removes reg and closes connections it never claimed. */
void cgloo__device_unregister(cgloo_device *dev, device_reg *reg);
/* cgloo__device_take hands over the arrivals filed under reg (the caller owns them). */
device_inbound *cgloo__device_take(cgloo_device *dev, device_reg *reg);
/* cgloo__device_poll polls the caller's descriptors together with the device's listener and
 * unfinished hellos (when no other thread is serving the device) for up to timeout_ms, then
 * accepts and files what arrived. The caller reads its own revents afterwards. */
void cgloo__device_poll(cgloo_device *dev, struct pollfd *fds, int nfds, int timeout_ms);

#endif
