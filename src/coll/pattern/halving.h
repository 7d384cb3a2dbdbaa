/*
 * Recursive halving and recursive doubling over P' virtual ranks (a power of two; see fold.h
 * for how P ranks become P') and P' blocks or groups, with no I/O.
 *
 * Halving step s (s = 0 .. log2 P' - 1) pairs virtual rank v with v ^ bit, bit = P' >> (s + 1):
 * the highest bit first. Before the step v holds the aligned range of 2 bit blocks that contains
 * v; it keeps the half that contains v (`lo`, `hi`) and sends the other half (`peer_lo`,
 * `peer_hi`, the half the peer keeps). Because the bits go from the highest down, the kept half
 * always holds block v, so after the last step v holds exactly block v: no reordering pass (Gloo
 * and MPICH pair at distance 1 first and end with the bit-reversed block).
 *
 * Doubling step s is the mirror, bit = 1 << s: v holds the aligned range of bit blocks that
 * contains v (`lo`, `hi`), sends it, and receives the peer's (`peer_lo`, `peer_hi`); afterwards
 * it holds both. Doubling step s exchanges the same ranges as halving step log2 P' - 1 - s, the
 * other way round, so a doubling undoes a halving step by step.
 *
 * Example, P' = 4, virtual rank 2:
 *
 *     halving  s = 0  bit 2  peer 0  keeps [2, 4)  sends [0, 2)
 *              s = 1  bit 1  peer 3  keeps [2, 3)  sends [3, 4)
 *     doubling s = 0  bit 1  peer 3  sends [2, 3)  receives [3, 4)
 *              s = 1  bit 2  peer 0  sends [2, 4)  receives [0, 2)
 */
#ifndef CGLOO_PATTERN_HALVING_H
#define CGLOO_PATTERN_HALVING_H

typedef struct halving_step {
    int peer;             /* the virtual rank exchanged with */
    int lo, hi;           /* this rank's blocks: kept (halving) or held and sent (doubling) */
    int peer_lo, peer_hi; /* the peer's: sent to it (halving) or received (doubling) */
} halving_step;

/* halving_pair: the exchange of virtual rank v with v ^ bit over aligned ranges of bit blocks,
 * which is what a halving and a doubling step both are. */
static inline halving_step halving_pair(int v, int bit)
{
    halving_step h = {.peer = v ^ bit};
    h.lo = v & ~(bit - 1);
    h.hi = h.lo + bit;
    h.peer_lo = h.peer & ~(bit - 1);
    h.peer_hi = h.peer_lo + bit;
    return h;
}

/* halving_step_at: halving step s of virtual rank v among p2 (0 <= s < log2 p2). */
static inline halving_step halving_step_at(int v, int p2, int s)
{
    return halving_pair(v, p2 >> (s + 1));
}

/* doubling_step_at: doubling step s of virtual rank v (0 <= s < log2 of the rank count). */
static inline halving_step doubling_step_at(int v, int s)
{
    return halving_pair(v, 1 << s);
}

#endif
