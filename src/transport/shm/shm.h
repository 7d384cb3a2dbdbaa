/*
 * The shared-memory transport's internals, shared by its files: the segment layout (two
 * single-producer single-consumer rings per pair of ranks), the pair (pair.c: moving messages
 * through them) and the connect ops (connect.c: an abstract Unix socket per rank, over which the
 * rank that dials hands the other its pair's segment as a memfd: the higher rank of each pair in
 * the full mesh, the first to send in a lazy context). Nothing outside
 * src/transport/shm/ includes this; the core sees shared memory only through
 * cgloo__shm_transport (shm.c).
 */
#ifndef CGLOO_SHM_H
#define CGLOO_SHM_H

#include "core/context.h"
#include "transport/slot.h"
#include "transport/transport.h"

#include <stdatomic.h>

/* Bytes of each direction's ring. 256 KiB holds four eager messages of the default 64 KiB
 * limit, and a 64 KiB chunk of a pipelined large message never waits for more than a quarter
 * of it. */
#define SHM_RING_BYTES (256u * 1024)
#define SHM_CHUNK (64u * 1024)
/* Large messages announced with their address that may be in flight at once per direction; more
 * go through the ring. */
#define SHM_CLAIMS 64
#define SHM_READING (1ull << 63)
/* Names the segment's layout: a peer of a build with another layout (the slot channels' gate
 * word moved the rings) refuses the segment instead of misreading it. */
#define SHM_MAGIC 0x63676c6f6f736832ULL /* "cgloosh2" */

/* One direction's control words, each on its own cache line: the producer writes tail, the
 * consumer head; a side about to sleep sets its flag, and the other side, seeing it after its
 * own write, clears it and writes a byte to the pair's socket, which is in the sleeper's
 * poller. */
typedef struct shm_dir {
    _Alignas(64) _Atomic uint64_t tail;
    _Alignas(64) _Atomic uint64_t head;
    _Alignas(64) _Atomic uint32_t reader_asleep; /* the consumer waits for records */
    _Atomic uint32_t writer_asleep;              /* the producer waits for room */
    /* Claims on the large messages announced with their address, slot cookie % SHM_CLAIMS:
     * the sender sets the cookie, the receiver swaps it for cookie | SHM_READING while it
     * reads and clears it after; a sender that cancels swaps the cookie for 0 (the receiver
     * then asks for the message through the ring, which carries a private copy), or waits
     * while the receiver reads. So no read of the caller's buffer outlives a cancel. */
    _Alignas(64) _Atomic uint64_t claim[SHM_CLAIMS];
} shm_dir;

/* The segment of one pair: dir[0], slot[0] and ring[0] carry the messages of the rank that
 * dialled (and made the segment) to the other. */
typedef struct shm_segment {
    uint64_t magic;
    uint32_t ring_bytes;
    shm_dir dir[2];
    cgloo__slot_chan slot[2][CGLOO_SLOT_CHANNELS]; /* transport/slot.h */
    _Alignas(64) uint8_t ring[2][SHM_RING_BYTES];
} shm_segment;

/* Record types in a ring. */
enum shm_rec_type {
    REC_WRAP = 1, /* the rest of the ring is skipped: the next record is at its start */
    REC_EAGER,    /* tag, len, payload */
    REC_RTS,      /* a large message: tag, len, cookie, addr (its address in the sender, or 0) */
    REC_READY,    /* the receiver wants the message `cookie` through the ring */
    REC_DATA,     /* a chunk of `cookie`: len bytes at offset addr */
    REC_DONE,     /* the receiver has message `cookie` (it read it, or dropped it) */
    REC_CREDIT,   /* len more eager bytes may be sent */
    REC_BYE,      /* the sender closes its context normally */
};

typedef struct shm_rec {
    uint32_t type, pad;
    uint64_t len, tag, cookie, addr;
} shm_rec;

/* How large messages move (CGLOO_SHM_LARGE): auto tries process_vm_readv and falls back to
 * copies through the ring; vm insists on it (a peer it fails for is failed); copy never tries. */
enum shm_large_mode { LARGE_AUTO, LARGE_VM, LARGE_COPY };

/* The transport's record of a send (queued, announced or streaming), of a control record
 * waiting for room, or of a large receive filling through the ring. */
typedef struct shm_op {
    cgloo__list link;
    cgloo_request *req; /* NULL: control, a cancelled send, or a cancelled receive */
    shm_rec rec;        /* what goes into the ring (sends and control) */
    const uint8_t *data;
    size_t len, off; /* payload; bytes of it streamed (sends) or arrived (receives) */
    bool announced;  /* an RTS in the ring: the peer knows of it */
    bool streaming;  /* the peer asked for it through the ring */
    void *owned;     /* private copy of a cancelled send's payload */
} shm_op;

/* A large message the peer announced that the engine has not matched yet. */
typedef struct shm_announce {
    cgloo__list link;
    uint64_t cookie, addr;
} shm_announce;

typedef struct shm_pair {
    cgloo_peer *peer;
    cgloo__pollable io; /* the socket: wake-ups and the peer's death */
    cgloo__spinner spin;
    int fd;             /* the pair's Unix socket, -1 once closed */
    bool registered;    /* fd in the poller, spin in the context's list */
    shm_segment *seg;   /* mapped, NULL until connected */
    shm_dir *tx, *rx;   /* the direction this rank writes, and the one it reads */
    uint8_t *txr, *rxr; /* their rings */
    uint64_t tx_tail;   /* this side's copy of tx->tail */
    uint64_t rx_head;   /* this side's copy of rx->head */
    bool armed;         /* asleep flags set */
    bool failed, bye_sent, bye_seen;
    int pid;                 /* the peer's process, for process_vm_readv */
    uint8_t large_mode;      /* enum shm_large_mode */
    bool vm_ok;              /* process_vm_readv has not failed for this peer */
    bool told_vm, told_ring; /* the path large messages took was logged (once each) */
    uint32_t peer_eager_max;
    int64_t credits;      /* eager bytes this side may still send */
    uint64_t eager_held;  /* eager bytes received, not yet returned */
    uint64_t credit_owed; /* of those, taken by the application */
    uint64_t next_cookie;
    cgloo__list unconnected; /* shm_op of sends posted before a lazy pair connected */
    cgloo__list sendq;       /* shm_op waiting for room, in order */
    cgloo__list awaiting;    /* announced sends waiting for READY or DONE */
    cgloo__list receiving;   /* large receives filling through the ring */
    cgloo__list announced;   /* shm_announce not yet matched */
    cgloo__slot_link slot;   /* the collectives' slots with this peer (transport/slot.h) */
} shm_pair;

static inline shm_pair *shm_pair_of(cgloo_peer *p)
{
    return p->tp;
}

/* ---- pair.c: the ops that move bytes ---- */
void cgloo__shm_peer_init(cgloo_peer *p);
void cgloo__shm_peer_fini(cgloo_peer *p);
void cgloo__shm_post_send(cgloo_peer *p, cgloo_request *req);
void cgloo__shm_start_large_recv(cgloo_peer *p, cgloo_request *req, uint64_t cookie, size_t len);
void cgloo__shm_eager_released(cgloo_peer *p, size_t n);
void cgloo__shm_cancel(cgloo_peer *p, cgloo_request *req);
void cgloo__shm_fail(cgloo_peer *p, int status);
void cgloo__shm_close_begin(cgloo_peer *p);
cgloo__slot_link *cgloo__shm_slots(cgloo_peer *p);
bool cgloo__shm_close_step(cgloo_peer *p);
int cgloo__shm_read_memory(cgloo_peer *p, void *dst, uint64_t addr, size_t len);
int cgloo__shm_write_memory(cgloo_peer *p, const void *src, uint64_t addr, size_t len);
/* cgloo__shm_pair_attach adopts a connected pair: the socket fd, the mapped segment, which
 * direction is this rank's (0: it dialled), the peer's pid and its eager limit and budget.
 * Registers with the poller and the context's spinners, then posts the sends that waited for
 * the connection (lock held). Status on failure, with fd and seg left to the caller. */
int cgloo__shm_pair_attach(cgloo_peer *p, int fd, shm_segment *seg, int dir, int pid,
                           uint32_t eager_max, uint32_t eager_budget);

/* ---- connect.c ---- */
int cgloo__shm_connect_begin(cgloo_device *dev, cgloo_context *ctx, const char *store_host,
                             cgloo__connector **out);
int cgloo__shm_connect(cgloo__connector *conn, const cgloo__peer_record *peers,
                       int64_t deadline_ms);
void cgloo__shm_connect_end(cgloo__connector *conn);
int cgloo__shm_connect_lazy(cgloo__connector *conn, const cgloo__peer_record *peers);
void cgloo__shm_peer_want(cgloo_peer *p);
/* cgloo__shm_lazy_forget drops what a lazy context's connector holds for p (its dial), when
 * p fails (lock held). */
void cgloo__shm_lazy_forget(cgloo_peer *p);
/* cgloo__shm_segment_possible: this process can make a segment (it made one and let it go):
 * what a rank publishes, so that both ranks of a pair know before connecting whether sharing
 * can work (rendezvous/local_peers.c). */
bool cgloo__shm_segment_possible(void);
/* cgloo__shm_connected: p has a live pair (cgloo_context_connections). Lock held. */
bool cgloo__shm_connected(cgloo_peer *p);

#endif
