/*
 * Reduce-scatter, ring.
 *
 * The buffer is cut into P blocks (any sizes, empty ones too). In step s (0 .. P-2) every rank
 * sends block (rank - s - 1) to the next rank and reduces block (rank - s - 2) with what the
 * previous rank sends. The block reduced in one step is the one sent in the next, so after
 * P-1 steps rank r holds block r reduced over all ranks.
 *
 * Segments: a block travels in segments of RING_SEGMENT_BYTES. The receive of segment k+1 is
 * posted before segment k is reduced, so the wire and the reduction overlap; at most two
 * segments are in flight each way.
 *
 * Preconditions: a commutative, associative op (every cgloo op; the caller's function must be).
 * Non-power-of-two P: nothing special, the ring works for any P.
 *
 * Cost, for a buffer of n bytes in P equal blocks: P-1 latency steps (plus one segment's
 * transfer time to fill the pipeline); every rank sends and receives (P-1)/P n bytes and
 * reduces as many: bandwidth-optimal. Memory: in place, two segments; out of place, two blocks
 * (the input is only read: partial results move between two block-sized buffers, and the last
 * step reduces straight into recvbuf).
 */
#include "coll/reduce_scatter/reduce_scatter.h"
#include "coll/pattern/ring.h"

#include <stdlib.h>

/* One segment per TCP turn (512 KiB, docs/ARCHITECTURE.md "Turns"). Measured at two ranks
 * against 1 MiB: 4 MiB allreduce 1.10-1.20 ms against 1.38-1.41, 16 MiB 5.0-5.7 ms against
 * 6.2-6.4, 64 MiB level; 2 MiB segments were 30% slower at 64 MiB. */
#define RING_SEGMENT_BYTES (512u * 1024)

/* One step: what goes to the next rank, what comes from the previous one and where it lands.
 * In place, received segments land in `scratch` (two slots) and are reduced into `target`.
 * Out of place, they land in `target` itself and are reduced with this rank's input `other`. */
typedef struct ring_xfer {
    const uint8_t *send;
    size_t scount;
    uint8_t *target;
    size_t rcount;
    const uint8_t *other;
    uint8_t *scratch;
    size_t seg; /* elements per segment */
} ring_xfer;

static size_t ring_nseg(size_t count, size_t seg)
{
    return (count + seg - 1) / seg;
}

static size_t ring_seg_count(size_t count, size_t seg, size_t k)
{
    return CGLOO_MIN(seg, count - k * seg);
}

static size_t ring_block_count(const size_t *offsets, int b)
{
    return offsets[b + 1] - offsets[b];
}

static uint8_t *ring_land(const coll *c, const ring_xfer *x, size_t k)
{
    if (x->scratch)
        return cgloo__elem(c, x->scratch, (k % 2) * x->seg);
    return cgloo__elem(c, x->target, k * x->seg);
}

static int ring_post_recv(coll *c, const ring_xfer *x, size_t k, unsigned step, cgloo_request **req)
{
    size_t n = ring_seg_count(x->rcount, x->seg, k);
    return cgloo__coll_irecv(c, ring_prev(c->rank, c->size), ring_land(c, x, k), n * c->esize, step,
                             req);
}

static void ring_reduce_segment(const coll *c, const ring_xfer *x, size_t k)
{
    uint8_t *dst = cgloo__elem(c, x->target, k * x->seg);
    size_t n = ring_seg_count(x->rcount, x->seg, k);
    if (x->scratch)
        cgloo__coll_reduce(c, dst, ring_land(c, x, k), n);
    else
        cgloo__coll_reduce(c, dst, cgloo__elem(c, x->other, k * x->seg), n);
}

static void ring_cancel(cgloo_request **reqs, int n)
{
    for (int i = 0; i < n; i++) {
        cgloo_cancel(reqs[i]);
        reqs[i] = NULL;
    }
}

/* ring_post_sends posts every segment of the step's send at once: the block is complete before
 * the step starts, and the peer takes the segments in order as it posts its receives, so the
 * next segment is already on its way while this rank reduces the current one. */
static int ring_post_sends(coll *c, const ring_xfer *x, size_t ns, unsigned step,
                           cgloo_request **sreq)
{
    int rc = CGLOO_OK;
    for (size_t k = 0; rc == CGLOO_OK && k < ns; k++) {
        size_t n = ring_seg_count(x->scount, x->seg, k);
        rc = cgloo__coll_isend(c, ring_next(c->rank, c->size), cgloo__elem(c, x->send, k * x->seg),
                               n * c->esize, step, &sreq[k]);
    }
    return rc;
}

/* ring_step runs one step: all sends posted, then segment by segment post receive k+1, wait
 * receive k, reduce k. The sends are waited for before returning, so the next step may reuse
 * every buffer. */
static int ring_step(coll *c, const ring_xfer *x, unsigned step)
{
    size_t ns = ring_nseg(x->scount, x->seg), nr = ring_nseg(x->rcount, x->seg);
    cgloo_request **sreq = calloc(ns ? ns : 1, sizeof *sreq), *rreq[2] = {NULL, NULL};
    if (!sreq)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu requests", ns);
    int rc = ring_post_sends(c, x, ns, step, sreq);
    if (rc == CGLOO_OK && nr > 0)
        rc = ring_post_recv(c, x, 0, step, &rreq[0]);
    for (size_t k = 0; rc == CGLOO_OK && k < nr; k++) {
        if (k + 1 < nr)
            rc = ring_post_recv(c, x, k + 1, step, &rreq[(k + 1) % 2]);
        if (rc == CGLOO_OK)
            rc = cgloo__coll_wait(c, &rreq[k % 2]);
        if (rc == CGLOO_OK)
            ring_reduce_segment(c, x, k);
    }
    rc = cgloo__coll_finish(c, sreq, (int)ns, rc);
    ring_cancel(rreq, 2);
    free(sreq);
    return rc;
}

static size_t ring_segment_elems(const coll *c)
{
    return RING_SEGMENT_BYTES / c->esize;
}

static size_t ring_max_block(const size_t *offsets, int size)
{
    size_t max = 0;
    for (int b = 0; b < size; b++)
        max = CGLOO_MAX(max, ring_block_count(offsets, b));
    return max;
}

int cgloo__reduce_scatter_ring_inplace(coll *c, void *buf, const size_t *offsets,
                                       unsigned step_base)
{
    if (c->size == 1)
        return CGLOO_OK;
    size_t seg = CGLOO_MIN(ring_segment_elems(c), ring_max_block(offsets, c->size));
    uint8_t *scratch = malloc(CGLOO_MAX(2 * seg * c->esize, 1));
    if (!scratch)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu bytes of scratch",
                                 2 * seg * c->esize);
    int rc = CGLOO_OK;
    for (int s = 0; rc == CGLOO_OK && s < c->size - 1; s++) {
        int sb = ring_rs_send_block(c->rank, c->size, s);
        int rb = ring_rs_recv_block(c->rank, c->size, s);
        ring_xfer x = {.send = cgloo__elem(c, buf, offsets[sb]),
                       .scount = ring_block_count(offsets, sb),
                       .target = cgloo__elem(c, buf, offsets[rb]),
                       .rcount = ring_block_count(offsets, rb),
                       .scratch = scratch,
                       .seg = CGLOO_MAX(seg, 1)};
        rc = ring_step(c, &x, step_base + (unsigned)s);
    }
    free(scratch);
    return rc;
}

/* ring_outofplace: step s reduces into tmp[s % 2] (recvbuf in the last step) what it receives
 * with this rank's own input, and sends what step s-1 reduced (its own input in step 0). */
static int ring_outofplace(coll *c, const uint8_t *sendbuf, uint8_t *recvbuf, uint8_t *tmp[2],
                           const size_t *offsets, unsigned step_base)
{
    int rc = CGLOO_OK;
    uint8_t *prev_target = NULL;
    for (int s = 0; rc == CGLOO_OK && s < c->size - 1; s++) {
        int sb = ring_rs_send_block(c->rank, c->size, s);
        int rb = ring_rs_recv_block(c->rank, c->size, s);
        uint8_t *target = s == c->size - 2 ? recvbuf : tmp[s % 2];
        ring_xfer x = {.send = s == 0 ? cgloo__elem(c, sendbuf, offsets[sb]) : prev_target,
                       .scount = ring_block_count(offsets, sb),
                       .target = target,
                       .rcount = ring_block_count(offsets, rb),
                       .other = cgloo__elem(c, sendbuf, offsets[rb]),
                       .seg = ring_segment_elems(c)};
        rc = ring_step(c, &x, step_base + (unsigned)s);
        prev_target = target;
    }
    return rc;
}

int cgloo__reduce_scatter_ring(coll *c, const void *sendbuf, void *recvbuf, const size_t *offsets,
                               unsigned step_base)
{
    const uint8_t *mine = cgloo__elem(c, sendbuf, offsets[c->rank]);
    size_t mine_bytes = ring_block_count(offsets, c->rank) * c->esize;
    if (recvbuf == mine)
        return cgloo__reduce_scatter_ring_inplace(c, (void *)sendbuf, offsets, step_base);
    if (c->size == 1) {
        if (mine_bytes)
            memcpy(recvbuf, mine, mine_bytes);
        return CGLOO_OK;
    }
    int ntmp = CGLOO_MIN(2, c->size - 2);
    size_t block_bytes = ring_max_block(offsets, c->size) * c->esize;
    uint8_t *tmp = malloc(CGLOO_MAX(block_bytes * (size_t)ntmp, 1));
    if (!tmp)
        return cgloo__coll_error(c, CGLOO_ENOMEM, "no memory for %zu bytes of scratch",
                                 block_bytes * (size_t)ntmp);
    uint8_t *slots[2] = {tmp, tmp + (ntmp > 1 ? block_bytes : 0)};
    int rc = ring_outofplace(c, sendbuf, recvbuf, slots, offsets, step_base);
    free(tmp);
    return rc;
}
