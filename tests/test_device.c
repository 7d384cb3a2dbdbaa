/*
 * Devices: the address choice (IP, host name, interface name, IPv4 and IPv6), port ranges and
 * ephemeral ports, and contexts sharing one device. The default choice, lists, subnets and
 * advertised addresses are test_address.c's.
 */
#include "mesh.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <sys/socket.h>
#include <unistd.h>

static int have_ipv6_loopback(void)
{
    int fd = socket(AF_INET6, SOCK_STREAM, 0);
    if (fd < 0)
        return 0;
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
    close(fd);
    return ok;
}

static void test_address_choice(void)
{
    cgloo_device *d;
    char addr[128];
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &d));
    CHECK_OK(cgloo_device_address(d, addr, sizeof addr));
    CHECK(strncmp(addr, "127.0.0.1:", 10) == 0);
    cgloo_device_destroy(d);

    cgloo_tcp_attr by_name = {.hostname = "localhost", .family = 4};
    CHECK_OK(cgloo_device_tcp_create(&by_name, &d));
    CHECK_OK(cgloo_device_address(d, addr, sizeof addr));
    CHECK(strncmp(addr, "127.0.0.1:", 10) == 0);
    cgloo_device_destroy(d);

    cgloo_tcp_attr by_iface = {.iface = "lo", .family = 4};
    CHECK_OK(cgloo_device_tcp_create(&by_iface, &d));
    CHECK_OK(cgloo_device_address(d, addr, sizeof addr));
    CHECK(strncmp(addr, "127.0.0.1:", 10) == 0);
    cgloo_device_destroy(d);

    cgloo_tcp_attr no_iface = {.iface = "no-such-if0"};
    CHECK_STATUS(cgloo_device_tcp_create(&no_iface, &d), CGLOO_EADDR);
    cgloo_tcp_attr no_host = {.hostname = "no-such-host.invalid"};
    CHECK_STATUS(cgloo_device_tcp_create(&no_host, &d), CGLOO_EADDR);
    cgloo_tcp_attr bad_family = {.family = 5};
    CHECK_STATUS(cgloo_device_tcp_create(&bad_family, &d), CGLOO_EINVAL);
    char tiny[4];
    CHECK_OK(cgloo_device_tcp_create(NULL, &d));
    CHECK_STATUS(cgloo_device_address(d, tiny, sizeof tiny), CGLOO_EINVAL);
    cgloo_device_destroy(d);
}

/* A range of two ports: both binds succeed on distinct ports and a third finds none free. The
 * pair is sought below the kernel's ephemeral range, where other tests running at the same
 * time do not take ports, and the next pair is tried if a port is in use anyway. */
static void test_port_range(void)
{
    int found = 0;
    for (int tries = 0; tries < 200 && !found; tries++) {
        int port = 20000 + (int)((getpid() * 7 + tries * 2) % 10000);
        cgloo_tcp_attr range = {.port_min = port, .port_max = port + 1};
        cgloo_device *a = NULL, *b = NULL, *c = NULL;
        if (cgloo_device_tcp_create(&range, &a) != CGLOO_OK)
            continue;
        if (cgloo_device_tcp_create(&range, &b) != CGLOO_OK) {
            cgloo_device_destroy(a);
            continue;
        }
        char aa[128], bb[128];
        CHECK_OK(cgloo_device_address(a, aa, sizeof aa));
        CHECK_OK(cgloo_device_address(b, bb, sizeof bb));
        CHECK(strcmp(aa, bb) != 0);
        CHECK_STATUS(cgloo_device_tcp_create(&range, &c), CGLOO_EADDR); /* both taken */
        cgloo_device_destroy(a);
        cgloo_device_destroy(b);
        found = 1;
    }
    CHECK(found);
    cgloo_device *c;
    cgloo_tcp_attr bad = {.port_min = 70000};
    CHECK_STATUS(cgloo_device_tcp_create(&bad, &c), CGLOO_EINVAL);
}

static cgloo_store *store;

static void rank_ipv6(int rank, int size, void *arg)
{
    cgloo_device *d;
    cgloo_tcp_attr v6 = {.hostname = "::1", .family = 6};
    CHECK_OK(cgloo_device_tcp_create(&v6, &d));
    char addr[128];
    CHECK_OK(cgloo_device_address(d, addr, sizeof addr));
    CHECK(strncmp(addr, "[::1]:", 6) == 0);
    cgloo_context *ctx;
    CHECK_OK(cgloo_context_create(rank, size, NULL, &ctx));
    CHECK_OK(cgloo_context_connect(ctx, store, d));
    int v = rank, got = -1;
    CHECK_OK(cgloo_send(ctx, &v, sizeof v, (rank + 1) % size, 0, 0));
    CHECK_OK(cgloo_recv(ctx, &got, sizeof got, (rank + size - 1) % size, 0, 0, NULL));
    CHECK(got == (rank + size - 1) % size);
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(d);
}

static void test_ipv6(void)
{
    if (!have_ipv6_loopback()) {
        fprintf(stderr, "  skipped: no IPv6 loopback on this machine\n");
        return;
    }
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(3, rank_ipv6, NULL);
    cgloo_store_destroy(store);
}

/* Two communicators over one device per rank, told apart by their names. */
static void rank_shared_device(int rank, int size, void *arg)
{
    cgloo_device *d;
    CHECK_OK(cgloo_device_tcp_create(NULL, &d));
    cgloo_context *c1, *c2;
    cgloo_context_attr a1 = {.name = "first"}, a2 = {.name = "second"};
    CHECK_OK(cgloo_context_create(rank, size, &a1, &c1));
    CHECK_OK(cgloo_context_create(rank, size, &a2, &c2));
    CHECK_OK(cgloo_context_connect(c1, store, d));
    CHECK_OK(cgloo_context_connect(c2, store, d));
    int peer = 1 - rank, got = 0;
    int one = 1, two = 2;
    CHECK_OK(cgloo_send(c2, &two, sizeof two, peer, 0, 0));
    CHECK_OK(cgloo_send(c1, &one, sizeof one, peer, 0, 0));
    CHECK_OK(cgloo_recv(c1, &got, sizeof got, peer, 0, 0, NULL));
    CHECK(got == 1);
    CHECK_OK(cgloo_recv(c2, &got, sizeof got, peer, 0, 0, NULL));
    CHECK(got == 2);
    cgloo_context_destroy(c1);
    cgloo_context_destroy(c2);
    cgloo_device_destroy(d);
}

static void test_shared_device(void)
{
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(2, rank_shared_device, NULL);
    cgloo_store_destroy(store);
}

static const test_case tests[] = {
    {"address_choice", test_address_choice, 20},
    {"port_range", test_port_range, 20},
    {"ipv6", test_ipv6, 30},
    {"shared_device", test_shared_device, 30},
};
TEST_MAIN(tests)
