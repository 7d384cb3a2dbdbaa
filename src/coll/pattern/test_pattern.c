/*
 * The rank arithmetic of src/coll/pattern/, with no sockets: the non-power-of-two fold
 * (fold.h), the halving and doubling ranges (halving.h), ring neighbours and blocks (ring.h),
 * binomial trees (tree.h) and block offset tables (blocks.h), for every world size from 1 to
 * MAX_P. Besides each plan's own invariants, the fold and the halving are run as the recursive
 * algorithms run them, on sets of contributions instead of data, to check that every block is
 * reduced from every rank exactly once and that every rank ends with every block.
 */
#include "harness.h"

#include "coll/pattern/blocks.h"
#include "coll/pattern/fold.h"
#include "coll/pattern/halving.h"
#include "coll/pattern/ring.h"
#include "coll/pattern/tree.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define MAX_P 130
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* CHECK_AT: CHECK, naming the world size and rank where it failed. */
#define CHECK_AT(cond, p, r)                                                                       \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            char at_[64];                                                                          \
            snprintf(at_, sizeof at_, "P=%d rank/index %d", (p), (r));                             \
            harness_fail(__FILE__, __LINE__, #cond, at_);                                          \
        }                                                                                          \
    } while (0)

/* ---- fold.h ------------------------------------------------------------------------------- */

static void test_fold_sizes(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        fold_plan f = fold_plan_make(0, p);
        CHECK_AT(f.size == p && f.p2 >= 1 && (f.p2 & (f.p2 - 1)) == 0, p, 0);
        CHECK_AT(f.p2 <= p && p < 2 * f.p2, p, 0);
        CHECK_AT(f.rem == p - f.p2 && f.rem < f.p2, p, 0);
        CHECK_AT(1 << f.steps == f.p2 && pow2_log2(p) == f.steps, p, 0);
    }
}

/* Partners pair up both ways, exactly one rank of each pair folds away, and q ranks do. */
static void test_fold_partners(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        int away = 0;
        for (int r = 0; r < p; r++) {
            fold_plan f = fold_plan_make(r, p);
            CHECK_AT(f.rank == r && (f.vrank >= 0) == !fold_away(&f), p, r);
            away += fold_away(&f);
            if (f.partner < 0) {
                CHECK_AT(!fold_away(&f) && fold_pair_away(&f) == -1, p, r);
                continue;
            }
            CHECK_AT(f.partner >= 0 && f.partner < p && f.partner != r, p, r);
            fold_plan g = fold_plan_make(f.partner, p);
            CHECK_AT(g.partner == r, p, r);
            CHECK_AT(fold_away(&f) != fold_away(&g), p, r);
            CHECK_AT(fold_pair_away(&f) == (fold_away(&f) ? r : f.partner), p, r);
            CHECK_AT(fold_pair_away(&g) == fold_pair_away(&f), p, r);
            /* neighbours, the even one folding away */
            CHECK_AT((r ^ 1) == f.partner && fold_away(&f) == (r % 2 == 0), p, r);
        }
        CHECK_AT(away == p - fold_plan_make(0, p).p2, p, 0);
    }
}

/* Virtual ranks are a bijection from the survivors onto 0 .. P'-1, in rank order. */
static void test_fold_vranks(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        fold_plan f0 = fold_plan_make(0, p);
        int seen[MAX_P] = {0}, last = -1;
        for (int r = 0; r < p; r++) {
            fold_plan f = fold_plan_make(r, p);
            CHECK_AT(fold_vrank(&f0, r) == f.vrank, p, r);
            if (fold_away(&f))
                continue;
            CHECK_AT(f.vrank < f.p2 && f.vrank > last, p, r);
            last = f.vrank;
            seen[f.vrank]++;
            CHECK_AT(fold_real(&f0, f.vrank) == r, p, r);
        }
        for (int v = 0; v < f0.p2; v++) {
            CHECK_AT(seen[v] == 1, p, v);
            CHECK_AT(fold_vrank(&f0, fold_real(&f0, v)) == v, p, v);
        }
    }
}

/* Virtual rank v stands for the contiguous real ranks [fold_first(v), fold_first(v + 1)): its
 * survivor and the rank folded into it, and every real rank stands in exactly one. */
static void test_fold_cover(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        fold_plan f = fold_plan_make(0, p);
        int covered[MAX_P] = {0};
        CHECK_AT(fold_first(&f, 0) == 0 && fold_first(&f, f.p2) == p, p, 0);
        for (int v = 0; v < f.p2; v++) {
            int lo = fold_first(&f, v), hi = fold_first(&f, v + 1), real = fold_real(&f, v);
            CHECK_AT(hi - lo == (v < f.rem ? 2 : 1), p, v);
            CHECK_AT(lo <= real && real < hi, p, v);
            fold_plan g = fold_plan_make(real, p);
            CHECK_AT(g.partner < 0 || (lo <= g.partner && g.partner < hi), p, v);
            for (int r = lo; r < hi; r++)
                covered[r]++;
        }
        for (int r = 0; r < p; r++)
            CHECK_AT(covered[r] == 1, p, r);
    }
}

/* ---- halving.h ---------------------------------------------------------------------------- */

static bool same_step(halving_step a, halving_step b)
{
    return a.peer == b.peer && a.lo == b.lo && a.hi == b.hi && a.peer_lo == b.peer_lo &&
           a.peer_hi == b.peer_hi;
}

/* check_halving_rank follows virtual rank v of p2 through every halving step: the kept and the
 * sent half split the range it held, the kept half holds block v, and the peer's view is the
 * mirror image. Returns the final range's low end. */
static int check_halving_rank(int p, int p2, int steps, int v)
{
    int lo = 0, hi = p2;
    for (int s = 0; s < steps; s++) {
        halving_step x = halving_step_at(v, p2, s), y = halving_step_at(x.peer, p2, s);
        CHECK_AT(x.peer >= 0 && x.peer < p2 && x.peer != v, p, v);
        CHECK_AT(y.peer == v && y.lo == x.peer_lo && y.hi == x.peer_hi, p, v);
        CHECK_AT(y.peer_lo == x.lo && y.peer_hi == x.hi, p, v);
        CHECK_AT(x.hi - x.lo == p2 >> (s + 1) && x.peer_hi - x.peer_lo == x.hi - x.lo, p, v);
        bool kept_low = x.lo == lo && x.hi == x.peer_lo && x.peer_hi == hi;
        bool kept_high = x.peer_lo == lo && x.peer_hi == x.lo && x.hi == hi;
        CHECK_AT(kept_low || kept_high, p, v);
        CHECK_AT(x.lo <= v && v < x.hi, p, v);
        lo = x.lo;
        hi = x.hi;
    }
    CHECK_AT(hi == lo + 1 && lo == v, p, v);
    return lo;
}

/* At each step the ranges the ranks keep tile 0 .. P'-1 (each block kept by as many ranks as
 * the range is wide), and after the last step each virtual rank owns one distinct block. */
static void test_halving_ranges(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        fold_plan f = fold_plan_make(0, p);
        int owner[MAX_P];
        memset(owner, -1, sizeof owner);
        for (int v = 0; v < f.p2; v++) {
            int b = check_halving_rank(p, f.p2, f.steps, v);
            CHECK_AT(owner[b] == -1, p, v);
            owner[b] = v;
        }
        for (int s = 0; s < f.steps; s++) {
            int kept_by[MAX_P] = {0};
            for (int v = 0; v < f.p2; v++) {
                halving_step x = halving_step_at(v, f.p2, s);
                for (int b = x.lo; b < x.hi; b++)
                    kept_by[b]++;
            }
            for (int b = 0; b < f.p2; b++)
                CHECK_AT(kept_by[b] == f.p2 >> (s + 1), p, b);
        }
    }
}

/* Doubling step s is halving step log2 P' - 1 - s, and the ranges it holds double each step from
 * its own block to all P' of them. */
static void test_doubling_mirror(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        fold_plan f = fold_plan_make(0, p);
        for (int v = 0; v < f.p2; v++) {
            int lo = v, hi = v + 1;
            for (int s = 0; s < f.steps; s++) {
                halving_step d = doubling_step_at(v, s);
                CHECK_AT(same_step(d, halving_step_at(v, f.p2, f.steps - 1 - s)), p, v);
                CHECK_AT(d.lo == lo && d.hi == hi, p, v);
                CHECK_AT(d.peer_hi == d.lo || d.peer_lo == d.hi, p, v);
                lo = d.lo < d.peer_lo ? d.lo : d.peer_lo;
                hi = lo + 2 * (d.hi - d.lo);
            }
            CHECK_AT(lo == 0 && hi == f.p2, p, v);
        }
    }
}

/* ---- the fold and the halving run together, on sets of contributions ---------------------- */

/* A set of ranks (contributions), one bit each. */
typedef struct rset {
    uint64_t w[(MAX_P + 63) / 64];
} rset;

static bool rset_disjoint(const rset *a, const rset *b)
{
    for (size_t i = 0; i < ARRAY_LEN(a->w); i++)
        if (a->w[i] & b->w[i])
            return false;
    return true;
}

static void rset_add(rset *a, const rset *b)
{
    for (size_t i = 0; i < ARRAY_LEN(a->w); i++)
        a->w[i] |= b->w[i];
}

static bool rset_full(const rset *a, int p)
{
    for (int r = 0; r < p; r++)
        if (!(a->w[r / 64] >> (r % 64) & 1))
            return false;
    return true;
}

/* reduce_into: what a rank's reduction does to block b; a contribution must never come twice. */
static void reduce_into(rset *dst, const rset *src, int p, int b)
{
    CHECK_AT(rset_disjoint(dst, src), p, b);
    rset_add(dst, src);
}

/* The world of a simulated reduce-scatter: have[r][b] is what rank r's block b sums. */
static rset have[MAX_P][MAX_P], sent[MAX_P][MAX_P];

static void sim_start(int p)
{
    memset(have, 0, sizeof have);
    for (int r = 0; r < p; r++)
        for (int b = 0; b < p; b++)
            have[r][b].w[r / 64] = (uint64_t)1 << (r % 64);
}

/* sim_halving_step: halving step s as reduce_scatter_halving_doubling runs it, every survivor
 * sending the real blocks of the peer's half before any reduces, as over the wire. */
static void sim_halving_step(int p, int s)
{
    fold_plan f = fold_plan_make(0, p);
    memcpy(sent, have, sizeof sent);
    for (int v = 0; v < f.p2; v++) {
        halving_step x = halving_step_at(v, f.p2, s);
        int me = fold_real(&f, v), peer = fold_real(&f, x.peer);
        for (int b = fold_first(&f, x.lo); b < fold_first(&f, x.hi); b++)
            reduce_into(&have[me][b], &sent[peer][b], p, b);
    }
}

/* Fold, halve and unfold: rank r must end with block r reduced over every rank, once each. */
static void test_sim_reduce_scatter(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        fold_plan f = fold_plan_make(0, p);
        sim_start(p);
        for (int r = 1; r < 2 * f.rem; r += 2) /* the fold: 2i hands every block to 2i+1 */
            for (int b = 0; b < p; b++)
                reduce_into(&have[r][b], &have[r - 1][b], p, b);
        for (int s = 0; s < f.steps; s++)
            sim_halving_step(p, s);
        for (int r = 1; r < 2 * f.rem; r += 2) /* the unfold: 2i+1 returns block 2i */
            have[r - 1][r - 1] = have[r][r - 1];
        for (int r = 0; r < p; r++)
            CHECK_AT(rset_full(&have[r][r], p), p, r);
    }
}

/* Recursive doubling of whole vectors (allreduce): the two sides of each exchange must hold
 * disjoint contributions, and every rank ends with all of them. Block 0 stands for the vector. */
static void test_sim_recursive_doubling(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        fold_plan f = fold_plan_make(0, p);
        sim_start(p);
        for (int r = 1; r < 2 * f.rem; r += 2)
            reduce_into(&have[r][0], &have[r - 1][0], p, r);
        for (int s = 0; s < f.steps; s++) {
            memcpy(sent, have, sizeof sent);
            for (int v = 0; v < f.p2; v++) {
                int me = fold_real(&f, v), peer = fold_real(&f, doubling_step_at(v, s).peer);
                reduce_into(&have[me][0], &sent[peer][0], p, me);
            }
        }
        for (int r = 1; r < 2 * f.rem; r += 2)
            have[r - 1][0] = have[r][0];
        for (int r = 0; r < p; r++)
            CHECK_AT(rset_full(&have[r][0], p), p, r);
    }
}

/* Allgather by recursive doubling over real blocks: a block arrives only where it is missing,
 * and every rank ends with every block. known[r] is the set of blocks rank r holds. */
static void test_sim_allgather(void)
{
    static rset known[MAX_P], before[MAX_P];
    for (int p = 1; p <= MAX_P; p++) {
        fold_plan f = fold_plan_make(0, p);
        memset(known, 0, sizeof known);
        for (int r = 0; r < p; r++)
            known[r].w[r / 64] = (uint64_t)1 << (r % 64);
        for (int r = 1; r < 2 * f.rem; r += 2)
            reduce_into(&known[r], &known[r - 1], p, r);
        for (int s = 0; s < f.steps; s++) {
            memcpy(before, known, sizeof before);
            for (int v = 0; v < f.p2; v++) {
                halving_step x = doubling_step_at(v, s);
                int me = fold_real(&f, v), peer = fold_real(&f, x.peer);
                rset range = {{0}};
                for (int b = fold_first(&f, x.peer_lo); b < fold_first(&f, x.peer_hi); b++)
                    range.w[b / 64] |= (uint64_t)1 << (b % 64);
                /* the peer sends exactly the range it holds */
                CHECK_AT(memcmp(&range, &before[peer], sizeof range) == 0, p, v);
                reduce_into(&known[me], &range, p, me);
            }
        }
        for (int r = 1; r < 2 * f.rem; r += 2)
            known[r - 1] = known[r];
        for (int r = 0; r < p; r++)
            CHECK_AT(rset_full(&known[r], p), p, r);
    }
}

/* ---- ring.h ------------------------------------------------------------------------------- */

static void test_ring_neighbours(void)
{
    for (int p = 1; p <= MAX_P; p++)
        for (int r = 0; r < p; r++) {
            int n = ring_next(r, p), q = ring_prev(r, p);
            CHECK_AT(n >= 0 && n < p && q >= 0 && q < p, p, r);
            CHECK_AT(ring_prev(n, p) == r && ring_next(q, p) == r, p, r);
            CHECK_AT(p == 1 || n == (r + 1) % p, p, r);
        }
}

/* Reduce-scatter: what rank r receives at step s is what its predecessor sends; a rank sends
 * every block but its own once, forwarding the block it received the step before, and last
 * receives its own block. */
static void test_ring_reduce_scatter(void)
{
    for (int p = 2; p <= MAX_P; p++)
        for (int r = 0; r < p; r++) {
            int sends[MAX_P] = {0};
            for (int s = 0; s < p - 1; s++) {
                int b = ring_rs_send_block(r, p, s);
                CHECK_AT(b >= 0 && b < p && b != r, p, r);
                sends[b]++;
                CHECK_AT(ring_rs_recv_block(r, p, s) == ring_rs_send_block(ring_prev(r, p), p, s),
                         p, r);
                CHECK_AT(s == 0 || b == ring_rs_recv_block(r, p, s - 1), p, r);
            }
            CHECK_AT(ring_rs_recv_block(r, p, p - 2) == r, p, r);
            for (int b = 0; b < p; b++)
                CHECK_AT(sends[b] == (b != r), p, b);
        }
}

/* Allgather: a rank sends its own block first, then forwards what it received; it receives
 * every other block exactly once. */
static void test_ring_allgather(void)
{
    for (int p = 2; p <= MAX_P; p++)
        for (int r = 0; r < p; r++) {
            int recvs[MAX_P] = {0};
            CHECK_AT(ring_ag_send_block(r, p, 0) == r, p, r);
            for (int s = 0; s < p - 1; s++) {
                int b = ring_ag_recv_block(r, p, s);
                CHECK_AT(b >= 0 && b < p, p, r);
                recvs[b]++;
                CHECK_AT(b == ring_ag_send_block(ring_prev(r, p), p, s), p, r);
                CHECK_AT(s == 0 || ring_ag_send_block(r, p, s) == ring_ag_recv_block(r, p, s - 1),
                         p, r);
            }
            for (int b = 0; b < p; b++)
                CHECK_AT(recvs[b] == (b != r), p, b);
        }
}

/* block_offset and block_count split a count into parts differing by at most one element, the
 * larger first, covering it exactly. */
static void test_ring_blocks(void)
{
    for (int parts = 1; parts <= MAX_P; parts++)
        for (size_t count = 0; count <= 3 * MAX_P; count += 1 + count / 16) {
            size_t base = count / (size_t)parts;
            CHECK_AT(block_offset(count, parts, 0) == 0, parts, (int)count);
            CHECK_AT(block_offset(count, parts, parts) == count, parts, (int)count);
            for (int i = 0; i < parts; i++) {
                size_t n = block_count(count, parts, i);
                CHECK_AT(n == base || n == base + 1, parts, i);
                CHECK_AT(i == 0 || n <= block_count(count, parts, i - 1), parts, i);
            }
        }
}

/* ---- tree.h ------------------------------------------------------------------------------- */

static void test_tree_relative(void)
{
    for (int p = 1; p <= MAX_P; p++)
        for (int root = 0; root < p; root++)
            for (int r = 0; r < p; r++) {
                int v = rel_rank(r, root, p);
                CHECK_AT(v >= 0 && v < p && abs_rank(v, root, p) == r, p, r);
                CHECK_AT((v == 0) == (r == root), p, r);
            }
}

/* The children of v (v + m for the powers of two m below v's lowest set bit, any m for the
 * root, while v + m < size) have v as parent, and their subtrees and v itself tile v's
 * subtree [v, v + span). */
static void test_tree_subtrees(void)
{
    for (int p = 1; p <= MAX_P; p++) {
        CHECK_AT(binomial_span(0, p) == p, p, 0);
        for (int v = 0; v < p; v++) {
            int span = binomial_span(v, p), next = v + 1;
            CHECK_AT(span >= 1 && v + span <= p, p, v);
            CHECK_AT(v == 0 || (binomial_parent(v) < v && binomial_parent(v) >= 0), p, v);
            int limit = v == 0 ? p : (v & -v);
            for (int m = 1; m < limit && v + m < p; m *= 2) {
                int child = v + m;
                CHECK_AT(binomial_parent(child) == v, p, child);
                /* children in order of m: each subtree starts where the last one ended */
                CHECK_AT(child == next, p, child);
                next = child + binomial_span(child, p);
            }
            CHECK_AT(next == v + span, p, v);
        }
    }
}

/* ---- blocks.h ----------------------------------------------------------------------------- */

static void test_blocks_table(void)
{
    size_t counts[MAX_P], off[MAX_P + 1];
    for (int p = 1; p <= MAX_P; p++) {
        for (int r = 0; r < p; r++)
            counts[r] = (size_t)((r * 7) % 5); /* uneven, with zeros */
        CHECK_AT(blocks_fill(off, p, counts, 0, 4), p, 0);
        for (int r = 0; r < p; r++)
            CHECK_AT(blocks_bytes(off, r) == counts[r] * 4, p, r);
        for (int root = 0; root < p; root++) {
            size_t sum = 0;
            for (int j = 0; j <= p; j++) {
                CHECK_AT(blocks_rel_off(off, p, root, j) == sum, p, j);
                if (j < p)
                    sum += blocks_bytes(off, (root + j) % p);
            }
        }
        CHECK_AT(blocks_fill(off, p, NULL, 3, 8), p, 0);
        CHECK_AT(off[p] == (size_t)p * 24 && blocks_bytes(off, p - 1) == 24, p, 0);
    }
}

static void test_blocks_overflow(void)
{
    size_t off[4], counts[3] = {0, SIZE_MAX / 16, 1};
    CHECK(!blocks_fill(off, 3, counts, 0, 16));
    CHECK(blocks_fill(off, 2, counts, 0, 16));
    CHECK(!blocks_fill(off, 1, NULL, SIZE_MAX / 2 + 1, 2));
}

static const test_case tests[] = {
    {"fold_sizes", test_fold_sizes, 10},
    {"fold_partners", test_fold_partners, 10},
    {"fold_vranks", test_fold_vranks, 10},
    {"fold_cover", test_fold_cover, 10},
    {"halving_ranges", test_halving_ranges, 10},
    {"doubling_mirror", test_doubling_mirror, 10},
    {"sim_reduce_scatter", test_sim_reduce_scatter, 30},
    {"sim_recursive_doubling", test_sim_recursive_doubling, 30},
    {"sim_allgather", test_sim_allgather, 30},
    {"ring_neighbours", test_ring_neighbours, 10},
    {"ring_reduce_scatter", test_ring_reduce_scatter, 10},
    {"ring_allgather", test_ring_allgather, 10},
    {"ring_blocks", test_ring_blocks, 10},
    {"tree_relative", test_tree_relative, 10},
    {"tree_subtrees", test_tree_subtrees, 10},
    {"blocks_table", test_blocks_table, 10},
    {"blocks_overflow", test_blocks_overflow, 10},
};

TEST_MAIN(tests)
