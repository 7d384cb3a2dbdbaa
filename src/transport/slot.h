/*
 * Slots: a small area per pair of ranks and direction that collectives write and read
 * directly, without a message, where the two ranks share memory (the shared-memory
 * transport's segment holds them; see docs/ARCHITECTURE.md, "Shared memory", and the
 * collectives' `shm` algorithms).
 *
 * Each direction has CGLOO_SLOT_CHANNELS channels, one per caller tag below that number:
 * collectives of one tag run one at a time in issue order on every rank (several tags may run
 * at once on several threads), so a channel has one writer and one reader at a time. Every
 * collective that uses a pair's channel counts as one operation on it on both ranks (the op
 * number, from 1). Operation n writes buffer n % 2 of the writer's direction and publishes
 * n in that buffer's seq with a release store (a lined payload also in each of its lines'); the
 * reader waits for seq == n (acquire; and each line's), reads, and stores n in its `done`.
 * The header's seq alone publishes: the writer stores it last, so a reader that has read n
 * there sees every line, and len. A line's seq only says when to fetch the line (a reader must
 * not take a payload on its lines' seq alone, as LL128 does: its header and len could be
 * stale). The
 * writer may write buffer n % 2 again for op n + 2 once the reader is done with op n: it knows so
 * without reading `done` when the reader has published op n + 1 to it (a rank finishes an operation
 * before it starts the next).
 *
 * The transport that has slots wakes a sleeping reader (cgloo__slot_link.notify) and, while a
 * collective waits on a link (want), does not let its context sleep once that buffer is
 * published (its spinner's arm looks at it). The link is the transport's, per peer; the
 * collectives own the op counters and want fields, under the context lock where the comments
 * say so.
 */
#ifndef CGLOO_SLOT_H
#define CGLOO_SLOT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

/* Caller tags 0 to CGLOO_SLOT_CHANNELS - 1 have a channel; collectives of other tags use
 * messages. */
#define CGLOO_SLOT_CHANNELS 4
/* Bytes of one buffer, its 16-byte header included: 8 KiB per channel and direction, 64 KiB of
 * the pair's segment in all. */
#define CGLOO_SLOT_BYTES 4096u
#define CGLOO_SLOT_HEADER 16u
/* Payload bytes of one buffer. The first 48 share a cache line with seq, so that a small
 * vector and its publication reach the reader in one cache-line transfer. */
#define CGLOO_SLOT_DATA (CGLOO_SLOT_BYTES - CGLOO_SLOT_HEADER)
#define CGLOO_SLOT_HEAD_DATA 48u
/* A payload longer than the header line's and at most CGLOO_SLOT_LINED_MAX bytes is "lined":
 * after the header line's 48 bytes, each further line holds 56 bytes and its own copy of seq in
 * its last 8 (cgloo__slot_line), as NCCL's LL128 protocol does. The reader waits for every
 * line's seq at once, so the lines travel together, in about one cache-line transfer, where a
 * reader that waited for the header's seq alone fetched the rest after it: one transfer more
 * (2 ranks, 64 to 256 bytes: docs/ARCHITECTURE.md, "Shared memory"). Longer payloads are
 * contiguous after the header, published by seq alone. */
#define CGLOO_SLOT_LINE_DATA 56u
#define CGLOO_SLOT_LINES 4u
#define CGLOO_SLOT_LINED_MAX (CGLOO_SLOT_HEAD_DATA + CGLOO_SLOT_LINES * CGLOO_SLOT_LINE_DATA)

typedef struct cgloo__slot_line {
    uint8_t data[CGLOO_SLOT_LINE_DATA];
    _Atomic uint64_t seq; /* as the buffer's seq, for this line's data */
} cgloo__slot_line;

typedef struct cgloo__slot_buf {
    _Alignas(64) _Atomic uint64_t seq; /* the op whose payload this holds (0: none yet) */
    uint64_t len;                      /* its bytes, so that a disagreement shows */
    union {
        _Alignas(16) uint8_t data[CGLOO_SLOT_DATA]; /* a payload that is not lined */
        struct {
            uint8_t head[CGLOO_SLOT_HEAD_DATA];
            cgloo__slot_line line[CGLOO_SLOT_LINES];
        } lined;
    };
} cgloo__slot_buf;

_Static_assert(sizeof(cgloo__slot_buf) == CGLOO_SLOT_BYTES, "a slot buffer is 4 KiB");
_Static_assert(offsetof(cgloo__slot_buf, lined.line) == 64, "the lines follow the header line");

/* cgloo__slot_lined: a payload of len bytes goes in lines with a seq each. */
static inline int cgloo__slot_lined(uint64_t len)
{
    return len > CGLOO_SLOT_HEAD_DATA && len <= CGLOO_SLOT_LINED_MAX;
}
/* cgloo__slot_lines: the lines after the header that a lined payload of len bytes fills. */
static inline unsigned cgloo__slot_lines(uint64_t len)
{
    return (unsigned)((len - CGLOO_SLOT_HEAD_DATA + CGLOO_SLOT_LINE_DATA - 1) /
                      CGLOO_SLOT_LINE_DATA);
}

typedef struct cgloo__slot_chan {
    cgloo__slot_buf buf[2];
    _Alignas(64) _Atomic uint64_t done; /* the reader: the last op it finished reading */
    /* The writer's gate (coll/slots.h, cgloo__slots_gate_open): while it holds an op number,
     * the reader may write into the writer's memory that op's round announced; the reader
     * adds CGLOO_SLOT_GATE_WRITING while it writes. */
    _Alignas(64) _Atomic uint64_t gate;
} cgloo__slot_chan;
#define CGLOO_SLOT_GATE_WRITING (1ull << 63)

/* One peer's slots, as a transport hands them to the collectives. */
typedef struct cgloo__slot_link {
    cgloo__slot_chan *tx; /* CGLOO_SLOT_CHANNELS channels this rank writes */
    cgloo__slot_chan *rx; /* and the peer's, which this rank reads */
    /* notify wakes the peer if it sleeps waiting on this link. Call it after a publication and
     * a seq_cst fence (one fence serves any number of links), without the context lock;
     * thread-safe. */
    void (*notify)(struct cgloo__slot_link *l);
    /* Private to this rank; the collective running on channel ch uses op[ch] and known[ch]
     * alone. */
    uint64_t op[CGLOO_SLOT_CHANNELS];    /* operations started on each channel */
    uint64_t known[CGLOO_SLOT_CHANNELS]; /* an op the peer is known to have finished */
    /* Per channel, the buffer a waiting collective wants and the op it wants in it (NULL:
     * none); set and read under the context lock. */
    const _Atomic uint64_t *want[CGLOO_SLOT_CHANNELS];
    uint64_t want_seq[CGLOO_SLOT_CHANNELS];
} cgloo__slot_link;

#endif
