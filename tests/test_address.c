/*
 * Which address a TCP device takes, and what the errors before a context exists say: the
 * default choice (the route to the store's host, the host name, loopback), CGLOO_IFACE's
 * interface lists, exclusions, addresses and subnets, CGLOO_ADVERTISE_ADDR, CGLOO_PORT, the
 * loopback check against a peer on another host, the connect timeout's detail, and
 * cgloo_last_error for stores, devices and contexts. Several hosts for real are
 * test_hosts.sh's.
 */
#include "mesh.h"
#include "net/net.h"

#include <stdio.h>
#include <unistd.h>

/* A documentation address (TEST-NET-3): never this host's, and never answers. */
#define ELSEWHERE "203.0.113.9"

static void clear_env(void)
{
    const char *vars[] = {"CGLOO_HOSTNAME", "CGLOO_IFACE", "CGLOO_STORE", "CGLOO_ADVERTISE_ADDR",
                          "CGLOO_PORT"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

/* address_of makes a device from attr and gives its published address (EADDR etc. fail). */
static void address_of(const cgloo_tcp_attr *attr, char *addr, size_t len)
{
    cgloo_device *d;
    int rc = cgloo_device_tcp_create(attr, &d);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_last_error(detail, sizeof detail);
        harness_fail(__FILE__, __LINE__, "cgloo_device_tcp_create", detail);
    }
    CHECK_OK(cgloo_device_address(d, addr, len));
    cgloo_device_destroy(d);
}

/* expect_detail checks the thread's last error: status want, and text in its detail. */
static void expect_detail(int line, int rc, int want, const char *text)
{
    char detail[CGLOO_ERROR_MAX];
    int last = cgloo_last_error(detail, sizeof detail);
    if (rc != want || last != want || !strstr(detail, text))
        harness_fail(__FILE__, line, text, detail);
}
#define EXPECT_DETAIL(rc, want, text) expect_detail(__LINE__, (rc), (want), (text))

/* expect_create_fails: creating a device from attr fails with want, the detail saying text. */
static void expect_create_fails(int line, const cgloo_tcp_attr *attr, int want, const char *text)
{
    cgloo_device *d = NULL;
    expect_detail(line, cgloo_device_tcp_create(attr, &d), want, text);
    CHECK(d == NULL);
}
#define EXPECT_CREATE_FAILS(attr, want, text) expect_create_fails(__LINE__, (attr), (want), (text))

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ---- the default choice -------------------------------------------------------------------- */

static void test_default_choice(void)
{
    clear_env();
    char addr[CGLOO_ERROR_MAX];
    cgloo__addr a, dst, src;
    bool local;
    address_of(NULL, addr, sizeof addr);
    CHECK_OK(cgloo__addr_parse(addr, &a));
    CHECK_OK(cgloo__addr_is_local(&a, &local));
    CHECK(local); /* loopback, or an address the host name gives */

    /* With a store elsewhere, the address the route there leaves from, if there is a route. */
    CHECK_OK(cgloo__addr_resolve(ELSEWHERE, 4, &dst));
    if (cgloo__addr_route_source(&dst, &src) == CGLOO_OK && !cgloo__addr_is_loopback(&src)) {
        char ip[64], want[80];
        cgloo__addr_format_ip(&src, ip, sizeof ip);
        snprintf(want, sizeof want, "%s:", ip);
        cgloo_tcp_attr attr = {.store_host = ELSEWHERE};
        address_of(&attr, addr, sizeof addr);
        CHECK(starts_with(addr, want));
        setenv("CGLOO_STORE", "tcp://" ELSEWHERE ":5", 1); /* the default store host */
        address_of(NULL, addr, sizeof addr);
        CHECK(starts_with(addr, want));
        clear_env();
    } else {
        fprintf(stderr, "  (no route to " ELSEWHERE ": the route choice is not checked)\n");
    }
    /* A store on this host says nothing of the peers: the same as no store at all. */
    char plain[CGLOO_ERROR_MAX], ip[64];
    address_of(NULL, plain, sizeof plain);
    cgloo_tcp_attr here = {.store_host = "127.0.0.1"};
    address_of(&here, addr, sizeof addr);
    CHECK_OK(cgloo__addr_parse(plain, &a));
    cgloo__addr_format_ip(&a, ip, sizeof ip);
    CHECK(starts_with(addr, ip));
}

/* ---- CGLOO_IFACE: names, lists, exclusions, addresses, subnets ------------------------------- */

static void test_iface_lists(void)
{
    clear_env();
    char addr[CGLOO_ERROR_MAX];
    const char *loopbacks[] = {"lo",          "nosuch0, lo", "lo*",
                               "127.0.0.0/8", "127.0.0.1",   "nosuch0,127.0.0.1/32"};
    for (size_t i = 0; i < sizeof loopbacks / sizeof loopbacks[0]; i++) {
        cgloo_tcp_attr attr = {.iface = loopbacks[i], .family = 4};
        address_of(&attr, addr, sizeof addr);
        CHECK(starts_with(addr, "127.0.0.1:"));
    }
    /* Excluding loopback leaves another interface's address, or nothing at all. */
    cgloo_tcp_attr not_lo = {.iface = "^lo", .family = 4};
    cgloo_device *d;
    int rc = cgloo_device_tcp_create(&not_lo, &d);
    CHECK(rc == CGLOO_OK || rc == CGLOO_EADDR);
    if (rc == CGLOO_OK) {
        CHECK_OK(cgloo_device_address(d, addr, sizeof addr));
        CHECK(!starts_with(addr, "127."));
        cgloo_device_destroy(d);
    }
    setenv("CGLOO_IFACE", "127.0.0.0/8", 1);
    address_of(NULL, addr, sizeof addr);
    CHECK(starts_with(addr, "127.0.0.1:"));
    char detail[CGLOO_ERROR_MAX] = "x"; /* a success leaves no detail */
    CHECK(cgloo_last_error(detail, sizeof detail) == CGLOO_OK && detail[0] == '\0');
}

static void test_iface_errors(void)
{
    clear_env();
    cgloo_tcp_attr absent = {.iface = "198.51.100.0/24"};
    EXPECT_CREATE_FAILS(&absent, CGLOO_EADDR, "cgloo_tcp_attr.iface='198.51.100.0/24'");
    EXPECT_CREATE_FAILS(&absent, CGLOO_EADDR, "this host has: lo 127.0.0.1");
    cgloo_tcp_attr bad_bits = {.iface = "10.0.0.0/33"};
    EXPECT_CREATE_FAILS(&bad_bits, CGLOO_EINVAL, "'10.0.0.0/33' is no subnet");
    cgloo_tcp_attr late_caret = {.iface = "lo,^eth0"};
    EXPECT_CREATE_FAILS(&late_caret, CGLOO_EINVAL, "must come first");
    setenv("CGLOO_IFACE", "nosuch0", 1);
    EXPECT_CREATE_FAILS(NULL, CGLOO_EADDR, "CGLOO_IFACE='nosuch0'");
    clear_env();
    cgloo_tcp_attr no_host = {.hostname = "no-such-host.invalid"};
    EXPECT_CREATE_FAILS(&no_host, CGLOO_EADDR, "'no-such-host.invalid' does not resolve");
}

/* ---- CGLOO_ADVERTISE_ADDR and CGLOO_PORT ------------------------------------------------------
 */

static void test_advertise(void)
{
    clear_env();
    char addr[CGLOO_ERROR_MAX];
    cgloo_tcp_attr host_only = {.hostname = "127.0.0.1", .advertise = ELSEWHERE};
    address_of(&host_only, addr, sizeof addr);
    CHECK(starts_with(addr, ELSEWHERE ":") && atoi(addr + strlen(ELSEWHERE ":")) > 0);
    const char *given[][2] = {{ELSEWHERE ":4242", ELSEWHERE ":4242"},
                              {"[2001:db8::1]:99", "[2001:db8::1]:99"},
                              {"localhost:77", "localhost:77"}};
    for (size_t i = 0; i < sizeof given / sizeof given[0]; i++) {
        cgloo_tcp_attr attr = {.hostname = "127.0.0.1", .advertise = given[i][0]};
        address_of(&attr, addr, sizeof addr);
        CHECK(strcmp(addr, given[i][1]) == 0);
    }
    cgloo_tcp_attr bare_v6 = {.hostname = "127.0.0.1", .advertise = "2001:db8::1"};
    address_of(&bare_v6, addr, sizeof addr);
    CHECK(starts_with(addr, "[2001:db8::1]:"));
    setenv("CGLOO_ADVERTISE_ADDR", "[2001:db8::2]", 1);
    address_of(&mesh_loopback, addr, sizeof addr);
    CHECK(starts_with(addr, "[2001:db8::2]:"));
    setenv("CGLOO_ADVERTISE_ADDR", "host:port", 1);
    EXPECT_CREATE_FAILS(&mesh_loopback, CGLOO_EINVAL, "CGLOO_ADVERTISE_ADDR='host:port'");
    setenv("CGLOO_ADVERTISE_ADDR", "no-such-host.invalid", 1);
    EXPECT_CREATE_FAILS(&mesh_loopback, CGLOO_EADDR, "does not resolve");
}

static void test_port_variable(void)
{
    clear_env();
    const char *bad[] = {"x", "0", "20-10", "1-70000"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        setenv("CGLOO_PORT", bad[i], 1);
        EXPECT_CREATE_FAILS(&mesh_loopback, CGLOO_EINVAL, "CGLOO_PORT");
    }
    /* A port below the ephemeral range that is free now; another test may take it meanwhile,
     * so a few are tried. */
    int found = 0;
    for (int tries = 0; tries < 50 && !found; tries++) {
        char port[16], addr[CGLOO_ERROR_MAX], want[32];
        int p = 30000 + (int)((getpid() * 13 + tries * 3) % 9000);
        snprintf(port, sizeof port, "%d-%d", p, p + 1);
        setenv("CGLOO_PORT", port, 1);
        cgloo_device *d;
        if (cgloo_device_tcp_create(&mesh_loopback, &d) != CGLOO_OK)
            continue;
        CHECK_OK(cgloo_device_address(d, addr, sizeof addr));
        snprintf(want, sizeof want, "127.0.0.1:%d", p);
        found = strcmp(addr, want) == 0 ||
                (snprintf(want, sizeof want, "127.0.0.1:%d", p + 1), strcmp(addr, want) == 0);
        cgloo_device_destroy(d);
    }
    CHECK(found);
}

/* ---- the loopback check, and the connect timeout's detail ---------------------------------- */

static cgloo_store *store;

/* Rank 0 listens on loopback; rank 1 advertises an address of another host. Rank 0 fails at
 * once, saying so; rank 1 fails too (rank 0 never answers it). */
static void rank_loopback_meets_remote(int rank, int size, void *arg)
{
    (void)arg;
    cgloo_tcp_attr remote = {.hostname = "127.0.0.1", .advertise = ELSEWHERE};
    cgloo_device *d;
    cgloo_context *ctx;
    CHECK_OK(cgloo_device_tcp_create(rank == 0 ? &mesh_loopback : &remote, &d));
    cgloo_context_attr attr = {.timeout_ms = 1500, .name = "loopback"};
    CHECK_OK(cgloo_context_create(rank, size, &attr, &ctx));
    long long t0 = test_now_ms();
    int rc = cgloo_context_connect(ctx, store, d);
    if (rank == 0) {
        EXPECT_DETAIL(rc, CGLOO_EADDR, "is a loopback address");
        EXPECT_DETAIL(rc, CGLOO_EADDR, "chosen because cgloo_tcp_attr.hostname=127.0.0.1");
        EXPECT_DETAIL(rc, CGLOO_EADDR, "rank 1 (" ELSEWHERE ":");
        EXPECT_DETAIL(rc, CGLOO_EADDR, "set CGLOO_IFACE");
        CHECK(test_now_ms() - t0 < 1000);
    } else {
        CHECK(rc != CGLOO_OK);
    }
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(d);
}

static void test_loopback_meets_remote_peer(void)
{
    clear_env();
    CHECK_OK(cgloo_store_hash_create(&store));
    run_ranks(2, rank_loopback_meets_remote, NULL);
    cgloo_store_destroy(store);
}

/* Rank 0's record names a port nobody listens on: rank 1's connect says where it dialled from
 * and which variables choose the addresses. */
static void test_dial_timeout_detail(void)
{
    clear_env();
    cgloo_device *gone, *d;
    cgloo_context *ctx;
    char addr[CGLOO_ERROR_MAX], rec[CGLOO_ERROR_MAX];
    CHECK_OK(cgloo_store_hash_create(&store));
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &gone));
    CHECK_OK(cgloo_device_address(gone, addr, sizeof addr));
    cgloo_device_destroy(gone);
    int n = snprintf(rec, sizeof rec, "cgloo2 %s 00000000deadbeef 7fffffffffffffff", addr);
    CHECK_OK(cgloo_store_set(store, "dial/addr/0", rec, (size_t)n));
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &d));
    cgloo_context_attr attr = {.timeout_ms = 800, .name = "dial"};
    CHECK_OK(cgloo_context_create(1, 2, &attr, &ctx));
    int rc = cgloo_context_connect(ctx, store, d);
    EXPECT_DETAIL(rc, CGLOO_ECONNREFUSED, "could not connect to rank 0 at 127.0.0.1:");
    EXPECT_DETAIL(rc, CGLOO_ECONNREFUSED, " from 127.0.0.1:");
    EXPECT_DETAIL(rc, CGLOO_ECONNREFUSED, "CGLOO_IFACE, CGLOO_HOSTNAME and CGLOO_ADVERTISE_ADDR");
    cgloo_context_destroy(ctx);
    cgloo_device_destroy(d);
    cgloo_store_destroy(store);
}

/* ---- cgloo_last_error -------------------------------------------------------------------------
 */

static void *other_thread_error(void *arg)
{
    char detail[CGLOO_ERROR_MAX] = "x";
    *(int *)arg = cgloo_last_error(detail, sizeof detail) == CGLOO_OK && detail[0] == '\0';
    return NULL;
}

static void test_last_error_is_per_thread(void)
{
    clear_env();
    cgloo_tcp_attr absent = {.iface = "nosuch0"};
    EXPECT_CREATE_FAILS(&absent, CGLOO_EADDR, "nosuch0");
    int clean = 0;
    pthread_t t;
    CHECK(pthread_create(&t, NULL, other_thread_error, &clean) == 0);
    pthread_join(t, NULL);
    CHECK(clean);
    EXPECT_DETAIL(CGLOO_EADDR, CGLOO_EADDR, "nosuch0"); /* still this thread's */
    char tiny[8];
    CHECK(cgloo_last_error(tiny, sizeof tiny) == CGLOO_EADDR && strlen(tiny) == sizeof tiny - 1);
    CHECK(cgloo_last_error(NULL, 0) == CGLOO_EADDR);
    cgloo_device *d;
    char detail[CGLOO_ERROR_MAX] = "x";
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &d)); /* a success clears it */
    CHECK(cgloo_last_error(detail, sizeof detail) == CGLOO_OK && detail[0] == '\0');
    cgloo_device_destroy(d);
}

static void test_store_and_context_errors(void)
{
    clear_env();
    cgloo_store *s = NULL;
    cgloo_context *ctx = NULL;
    EXPECT_DETAIL(cgloo_store_open("bogus://x", 100, &s), CGLOO_EINVAL, "not a store URL");
    EXPECT_DETAIL(cgloo_store_open("tcp://nohost", 100, &s), CGLOO_EINVAL, "tcp://HOST:PORT");
    /* A port that refuses: that of a device just closed. */
    cgloo_device *gone;
    char addr[CGLOO_ERROR_MAX];
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &gone));
    CHECK_OK(cgloo_device_address(gone, addr, sizeof addr));
    cgloo_device_destroy(gone);
    int port = atoi(strrchr(addr, ':') + 1);
    int rc = cgloo_store_tcp_connect("127.0.0.1", port, 300, &s);
    EXPECT_DETAIL(rc, rc, "no TCP store answered at 127.0.0.1 port");
    EXPECT_DETAIL(rc, rc, "Connection refused");
    EXPECT_DETAIL(cgloo_context_create(5, 4, NULL, &ctx), CGLOO_EINVAL, "rank 5 of size 4");
    CHECK(s == NULL && ctx == NULL);
}

static void test_from_env_errors(void)
{
    clear_env();
    cgloo_context *ctx = NULL;
    char detail[CGLOO_ERROR_MAX], url[CGLOO_ERROR_MAX + 8];
    unsetenv("CGLOO_RANK");
    EXPECT_DETAIL(cgloo_context_create_from_env(&ctx), CGLOO_EINVAL,
                  "no launcher's variables are set");
    EXPECT_DETAIL(CGLOO_EINVAL, CGLOO_EINVAL, "cgloo-run");
    setenv("CGLOO_RANK", "0", 1);
    setenv("CGLOO_SIZE", "2", 1);
    EXPECT_DETAIL(cgloo_context_create_from_env(&ctx), CGLOO_EINVAL, "CGLOO_STORE is not set");
    cgloo_last_error(detail, sizeof detail);
    CHECK(!strstr(detail, "run the program under cgloo-run")); /* the launcher's part is there */
    setenv("CGLOO_RANK", "2", 1);
    EXPECT_DETAIL(cgloo_context_create_from_env(&ctx), CGLOO_EINVAL, "CGLOO_RANK='2'");
    setenv("CGLOO_RANK", "1", 1);
    setenv("CGLOO_TIMEOUT_MS", "300", 1);
    cgloo_device *gone;
    char addr[CGLOO_ERROR_MAX];
    CHECK_OK(cgloo_device_tcp_create(&mesh_loopback, &gone));
    CHECK_OK(cgloo_device_address(gone, addr, sizeof addr));
    cgloo_device_destroy(gone);
    snprintf(url, sizeof url, "tcp://%s", addr);
    setenv("CGLOO_STORE", url, 1);
    int rc = cgloo_context_create_from_env(&ctx);
    EXPECT_DETAIL(rc, rc, "could not be opened: no TCP store at 'tcp://127.0.0.1:");
    EXPECT_DETAIL(rc, rc, "no TCP store answered");
    setenv("CGLOO_STORE", "hash:", 1);
    setenv("CGLOO_IFACE", "nosuch0", 1);
    EXPECT_DETAIL(cgloo_context_create_from_env(&ctx), CGLOO_EADDR, "CGLOO_IFACE='nosuch0'");
    CHECK(ctx == NULL);
}

static const test_case tests[] = {
    {"default_choice", test_default_choice, 20},
    {"iface_lists", test_iface_lists, 20},
    {"iface_errors", test_iface_errors, 20},
    {"advertise", test_advertise, 20},
    {"port_variable", test_port_variable, 20},
    {"loopback_meets_remote_peer", test_loopback_meets_remote_peer, 20},
    {"dial_timeout_detail", test_dial_timeout_detail, 20},
    {"last_error_is_per_thread", test_last_error_is_per_thread, 20},
    {"store_and_context_errors", test_store_and_context_errors, 20},
    {"from_env_errors", test_from_env_errors, 20},
};
TEST_MAIN(tests)
