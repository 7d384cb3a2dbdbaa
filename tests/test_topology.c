/*
 * The host topology (src/core/topology.h) from host identities, rendezvous addresses and a
 * split's members: hosts, local ranks, leaders and columns. No I/O: the hierarchical
 * collectives over real hosts are in test_hier_netns.sh.
 */
#include "core/topology.h"
#include "harness.h"

#include <string.h>

static bool same(const int *got, const int *want, int n)
{
    return memcmp(got, want, (size_t)n * sizeof *got) == 0;
}

/* check_column: column i of t is want[0..n). */
static void check_column(const cgloo__topology *t, int i, const int *want, int n)
{
    int got_n;
    const int *got = cgloo__topology_column(t, i, &got_n);
    CHECK(got_n == n && same(got, want, n));
}

static void test_block(void)
{
    uint64_t ids[] = {7, 7, 9, 9, 3, 3};
    bool known[] = {1, 1, 1, 1, 1, 1};
    cgloo__topology *t;
    CHECK_OK(cgloo__topology_build(6, ids, known, &t));
    CHECK(t->n_hosts == 3 && t->max_local == 2 && t->uniform && t->contiguous);
    CHECK(same(t->host_of, (int[]){0, 0, 1, 1, 2, 2}, 6));
    CHECK(same(t->local_rank, (int[]){0, 1, 0, 1, 0, 1}, 6));
    check_column(t, 0, (int[]){0, 2, 4}, 3);
    check_column(t, 1, (int[]){1, 3, 5}, 3);
    int n;
    const int *h = cgloo__topology_host(t, 1, &n);
    CHECK(n == 2 && h[0] == 2 && h[1] == 3);
    cgloo__topology_free(t);
}

/* Ranks of a host need not be adjacent; a rank with no identity is a host of its own. */
static void test_alternating_and_unknown(void)
{
    uint64_t ids[] = {1, 2, 1, 1, 2};
    bool known[] = {1, 1, 1, 0, 1};
    cgloo__topology *t;
    CHECK_OK(cgloo__topology_build(5, ids, known, &t));
    CHECK(t->n_hosts == 3 && t->max_local == 2 && !t->uniform && !t->contiguous);
    CHECK(same(t->host_of, (int[]){0, 1, 0, 2, 1}, 5));
    CHECK(same(t->local_rank, (int[]){0, 0, 1, 0, 1}, 5));
    check_column(t, 0, (int[]){0, 1, 3}, 3);
    check_column(t, 1, (int[]){2, 4}, 2);
    cgloo__topology_free(t);
}

static void test_all_unknown(void)
{
    uint64_t ids[4] = {0};
    bool known[4] = {0};
    cgloo__topology *t;
    CHECK_OK(cgloo__topology_build(4, ids, known, &t));
    CHECK(t->n_hosts == 4 && t->max_local == 1 && t->uniform);
    check_column(t, 0, (int[]){0, 1, 2, 3}, 4);
    cgloo__topology_free(t);
}

/* The identities as the rendezvous publishes them; this rank's own comes apart. */
static void test_from_addresses(void)
{
    const char *addrs[] = {"10.0.0.1:5|host=00000000000000aa", "ignored: self",
                           "10.0.0.2:7|host=00000000000000bb", "10.0.0.2:8",
                           "10.0.0.2:9|host=00000000000000bb"};
    cgloo__topology *t;
    CHECK_OK(cgloo__topology_from_addresses(5, 1, addrs, "|host=00000000000000aa", &t));
    CHECK(t->n_hosts == 3);
    CHECK(same(t->host_of, (int[]){0, 0, 1, 2, 1}, 5));
    cgloo__topology_free(t);
    CHECK_OK(cgloo__topology_from_addresses(5, 1, addrs, "", &t));
    CHECK(t->n_hosts == 4 && t->host_of[1] == 1 && t->host_of[2] == 2 && t->host_of[4] == 2);
    cgloo__topology_free(t);
}

/* A split child's topology is its parent's, in the child's rank order. */
static void test_sub(void)
{
    uint64_t ids[] = {7, 7, 9, 9, 3, 3};
    bool known[] = {1, 1, 1, 1, 1, 1};
    cgloo__topology *parent, *child;
    CHECK_OK(cgloo__topology_build(6, ids, known, &parent));
    CHECK_OK(cgloo__topology_sub(parent, (int[]){4, 1, 5, 0}, 4, &child));
    CHECK(child->n_hosts == 2 && child->uniform && child->max_local == 2);
    CHECK(same(child->host_of, (int[]){0, 1, 0, 1}, 4));
    check_column(child, 0, (int[]){0, 1}, 2);
    cgloo__topology_free(child);
    CHECK_OK(cgloo__topology_sub(NULL, (int[]){0, 1}, 2, &child));
    CHECK(child->n_hosts == 2);
    cgloo__topology_free(child);
    cgloo__topology_free(parent);
}

static const test_case tests[] = {
    {"block", test_block, 10},
    {"alternating_and_unknown", test_alternating_and_unknown, 10},
    {"all_unknown", test_all_unknown, 10},
    {"from_addresses", test_from_addresses, 10},
    {"sub", test_sub, 10},
};
TEST_MAIN(tests)
