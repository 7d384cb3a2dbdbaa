/*
 * The TCP transport's internals, shared by its files: the device (device.c: one listening
 * socket and the routing of arriving hellos), the pair (pair.c: one connection to one peer)
 * and the handshake (handshake.c: the connect op). Nothing outside src/transport/tcp/ includes
 * this; the core sees TCP only through cgloo__tcp_transport (tcp.c).
 */
#ifndef CGLOO_TCP_H
#define CGLOO_TCP_H

#include "core/context.h"
#include "net/net.h"
#include "transport/tcp/wire.h"
#include "transport/tls/tls.h"
#include "transport/transport.h"

#include <poll.h>

/* ---- device ---- */

/* How a device's address was chosen (device_addr.c). */
typedef struct tcp_addr_choice {
    cgloo__addr bind; /* what it listens on; the port once bound */
    int port_min, port_max;
    cgloo__addr reach;                        /* what peers dial: the advertised address, or bind */
    char advertise[CGLOO_TRANSPORT_ADDR_MAX]; /* the advertised host, "" when none */
    int advertise_port;                       /* its port; 0: the bound port */
    char why[320];                            /* why bind was chosen, for logs and errors */
    char reach_why[400];                      /* why reach: the advertising setting, or why */
    const char *named_by; /* the setting that named reach (static text), or NULL: the default */
} tcp_addr_choice;

/* cgloo__tcp_choose_address fills c from attr (may be NULL) and the environment; the listen is
 * the caller's. Blocks in the resolver. Errors (with the thread's last error): EINVAL (a
 * malformed setting), EADDR (nothing matches, a name that does not resolve), ENOMEM. */
int cgloo__tcp_choose_address(const cgloo_tcp_attr *attr, tcp_addr_choice *c);
/* cgloo__tcp_publish_text writes what peers dial, "host:port", once c->bind has its port. */
int cgloo__tcp_publish_text(const tcp_addr_choice *c, char *buf, size_t len);
/* cgloo__tcp_check_store_reach fails with EADDR (and the context's detail) when the published
 * address is loopback while the store's host is another host, whose ranks could not reach it. */
int cgloo__tcp_check_store_reach(const tcp_addr_choice *c, const char *published,
                                 cgloo_context *ctx, const char *store_host);
/* cgloo__tcp_check_peer_reach is the same check against a peer's published address. */
int cgloo__tcp_check_peer_reach(const tcp_addr_choice *c, const char *published, cgloo_context *ctx,
                                int peer, const cgloo__addr *addr, const char *text);

/* An accepted connection, while its hello arrives and until a context claims it. */
typedef struct device_inbound {
    struct device_inbound *next;
    int fd;
    cgloo__tls *tls; /* its TLS session (a device with TLS), NULL otherwise */
    bool tls_done;   /* the TLS handshake finished: the hello is read through the session */
    bool ready;      /* the latest poll saw it readable, or did not look at it: worth a read */
    uint8_t hello[HELLO_AUTH_LEN]; /* the hello, and the dialler's nonce when it has one */
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
    /* A lazy context: hellos come from any rank (not only higher ones), for the context's
     * life, and filing one writes notify_fd (an eventfd in the context's poller), since the
     * thread that filed it may be another context's. */
    bool lazy;
    int notify_fd;
} device_reg;

/* cgloo__tcp_device_choice gives how dev's address was chosen and the published text. */
const tcp_addr_choice *cgloo__tcp_device_choice(const cgloo_device *dev, const char **published);
/* cgloo__tcp_device_tls is the device's TLS configuration, NULL without TLS. */
cgloo__tls_config *cgloo__tcp_device_tls(const cgloo_device *dev);
/* cgloo__tcp_device_fds_out is EMFILE or ENFILE once the listener could not accept for want of
 * a file descriptor, else 0. */
int cgloo__tcp_device_fds_out(cgloo_device *dev);
/* cgloo__tcp_device_last_reject copies why the device last refused a connection ("" if none). */
void cgloo__tcp_device_last_reject(cgloo_device *dev, char *buf, size_t len);
/* cgloo__tcp_device_note_reject records why a connection from addr was refused after the
 * device handed it over (a context's own checks). */
void cgloo__tcp_device_note_reject(cgloo_device *dev, const char *addr, const char *why);
/* cgloo__tcp_device_address is the device_address op: "host:port". */
int cgloo__tcp_device_address(const cgloo_device *dev, char *buf, size_t len);
/* cgloo__tcp_device_destroy is the device_destroy op. */
void cgloo__tcp_device_destroy(cgloo_device *dev);
/* cgloo__tcp_device_register files reg with dev, so that hellos for it are kept. */
void cgloo__tcp_device_register(cgloo_device *dev, device_reg *reg);
/* cgloo__tcp_device_unregister removes reg and closes connections it never claimed. */
void cgloo__tcp_device_unregister(cgloo_device *dev, device_reg *reg);
/* cgloo__tcp_device_take hands over the arrivals filed under reg (the caller owns them). */
device_inbound *cgloo__tcp_device_take(cgloo_device *dev, device_reg *reg);
/* cgloo__tcp_device_events_fd is an epoll descriptor that is readable while the device's
 * listener or an unfinished hello has something to read (for a lazy context's poller, which
 * then serves the device with cgloo__tcp_device_poll and a zero timeout). */
int cgloo__tcp_device_events_fd(cgloo_device *dev);
/* cgloo__tcp_device_poll polls the caller's descriptors together with the device's listener
 * and unfinished hellos (when no other thread is serving the device) for up to timeout_ms,
 * then accepts and files what arrived. The caller reads its own revents afterwards. */
void cgloo__tcp_device_poll(cgloo_device *dev, struct pollfd *fds, int nfds, int timeout_ms);

/* ---- pair ---- */

/* Where an outgoing message is on its way through the socket. */
enum tcp_send_phase {
    SEND_CONTROL,     /* a header-only message of the transport's own (READY, CREDIT, BYE) */
    SEND_EAGER,       /* header + payload queued */
    SEND_RTS,         /* ready-to-send header queued */
    SEND_AWAIT_READY, /* waiting for the receiver's READY */
    SEND_DATA,        /* DATA header + payload queued */
    RECV_AWAIT_DATA,  /* a matched large receive waiting for its DATA */
};

/* The transport's record of one outgoing message, or of one large receive waiting for its
 * DATA. A request the transport holds points at its record through req->tp, except a receive
 * whose payload is being read, which points at the tcp_pair (its rx_req). */
typedef struct tcp_op {
    cgloo__list link; /* in sendq, awaiting or large_recvs */
    cgloo_request
        *req; /* NULL: a control message, or a send cancelled after the peer heard of it */
    uint8_t phase;
    uint32_t id; /* send id, or receive id */
    size_t len;  /* payload length (sends), announced length (large receives) */
    uint8_t hdr[MSG_HDR_LEN];
    size_t hdr_off;
    const uint8_t *data; /* the payload: the caller's buffer, or `owned` */
    size_t data_len, data_off;
    void *owned; /* private copy of a cancelled send's payload */
} tcp_op;

enum tcp_rx_state { RX_HEADER, RX_PAYLOAD };

/* One connection to one peer: the private state of a cgloo_peer bound to TCP. */
typedef struct tcp_pair {
    cgloo_peer *peer;
    cgloo__pollable io;
    int fd;          /* -1 when not connected or closed */
    cgloo__tls *tls; /* the connection's TLS session, or NULL: bytes go straight to fd */
    bool want_out;   /* POLL_OUT registered */
    bool tls_unread; /* the session held records at attach: POLL_OUT stays on until a read */
    bool closing;    /* close_begin was called: BYE queued */
    bool shut;       /* our side is half-closed: what arrives now is drained unread */
    /* eager flow control */
    uint32_t peer_eager_max;
    int64_t credits;         /* eager bytes this side may still send */
    uint64_t eager_held;     /* eager bytes received and not yet returned as credit */
    uint64_t credit_owed;    /* of those, bytes already handed to the application */
    cgloo__list sendq;       /* tcp_op whose bytes are being written, in order */
    cgloo__list awaiting;    /* announced sends waiting for READY */
    cgloo__list large_recvs; /* receives waiting for DATA */
    cgloo__list spare;       /* freed records kept for reuse */
    int n_spare;
    uint32_t next_send_id, next_recv_id;
    /* receive side: a staging buffer, and the message being parsed */
    uint8_t *rbuf;
    size_t rcap, rstart, rend;
    int rx_state;
    wire_msg rx;
    uint8_t *rx_dst; /* where payload goes; NULL: discard */
    size_t rx_left;
    cgloo_request *rx_req;  /* receive the payload completes, or NULL */
    unexpected_msg *rx_msg; /* held message the payload fills, or NULL */
    bool rx_trunc;          /* the payload is too long for rx_req: complete with ETRUNC */
} tcp_pair;

static inline tcp_pair *tcp_pair_of(cgloo_peer *p)
{
    return p->tp;
}

/* cgloo__tcp_pair_attach adopts a connected socket (and its TLS session, or NULL) after a good
 * handshake: registers it with the context's poller and takes the peer's eager limit and
 * credit from its hello. On success the pair owns fd and tls. */
int cgloo__tcp_pair_attach(cgloo_peer *p, int fd, cgloo__tls *tls, const wire_hello *peer_hello,
                           const char *addr);
/* cgloo__tcp_host_of copies the host part of "host:port" or "[v6]:port". */
void cgloo__tcp_host_of(const char *hostport, char *buf, size_t len);
/* cgloo__tcp_pair_connected: p has a live connection. */
bool cgloo__tcp_pair_connected(cgloo_peer *p);

/* The pair ops (pair.c) and the connect ops (handshake.c), for the table in tcp.c. */
void cgloo__tcp_peer_init(cgloo_peer *p);
void cgloo__tcp_peer_fini(cgloo_peer *p);
void cgloo__tcp_post_send(cgloo_peer *p, cgloo_request *req);
void cgloo__tcp_start_large_recv(cgloo_peer *p, cgloo_request *req, uint64_t cookie, size_t len);
void cgloo__tcp_eager_released(cgloo_peer *p, size_t n);
void cgloo__tcp_cancel(cgloo_peer *p, cgloo_request *req);
void cgloo__tcp_fail(cgloo_peer *p, int status);
void cgloo__tcp_close_begin(cgloo_peer *p);
bool cgloo__tcp_close_step(cgloo_peer *p);
int cgloo__tcp_connect_begin(cgloo_device *dev, cgloo_context *ctx, const char *store_host,
                             cgloo__connector **out);
int cgloo__tcp_connect(cgloo__connector *conn, const cgloo__peer_record *peers,
                       int64_t deadline_ms);
void cgloo__tcp_connect_end(cgloo__connector *conn);
int cgloo__tcp_connect_lazy(cgloo__connector *conn, const cgloo__peer_record *peers);
void cgloo__tcp_peer_want(cgloo_peer *p);

#endif
