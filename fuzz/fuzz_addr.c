/*
 * fuzz_addr: the address parsers a device and the rendezvous read from settings and records.
 *
 * The input is split at newlines into up to five fields (the first byte picks the family:
 * 0, 4 or 6): field 0 goes to cgloo__addr_parse ("host:port" from a peer's record),
 * cgloo__split_host_port, cgloo__url_host and cgloo__addr_select (CGLOO_IFACE lists: names,
 * prefixes with '*', IPs, IP/BITS subnets, '^' exclusions); then fields 0..3 are a device's
 * iface, hostname, advertised address and store host, and field 4 is CGLOO_PORT, for
 * cgloo__tcp_choose_address (which listens on nothing: the device's listen is separate).
 * Name resolution is numeric only here (numeric_resolver.c), so no input makes a DNS query.
 *
 * Expected: a choice or EINVAL / EADDR with a message, never a crash or an overrun.
 */
#include "transport/tcp/tcp.h"

#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>

#define INPUT_MAX 4096
#define NFIELDS 5

static void setup(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    static const char *vars[] = {"CGLOO_IFACE", "CGLOO_HOSTNAME", "CGLOO_ADVERTISE_ADDR",
                                 "CGLOO_STORE", "CGLOO_PORT"};
    for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
        unsetenv(vars[i]);
}

/* split cuts text at newlines into at most NFIELDS fields; the missing ones are "". */
static void split(char *text, const char **f)
{
    for (int i = 0; i < NFIELDS; i++) {
        f[i] = text;
        char *nl = strchr(text, '\n');
        if (!nl) {
            for (int k = i + 1; k < NFIELDS; k++)
                f[k] = "";
            return;
        }
        *nl = '\0';
        text = nl + 1;
    }
}

static void parsers(const char *s, int family)
{
    cgloo__addr a;
    char buf[256], why[512];
    int port;
    cgloo__addr_parse(s, &a);
    cgloo__split_host_port(s, buf, sizeof buf, &port);
    cgloo__url_host(s, buf, sizeof buf);
    if (cgloo__addr_select(s, family, NULL, &a, why, sizeof why) != CGLOO_OK && !why[0])
        abort(); /* a rejected list must say why */
}

static void choose(const char **f, int family)
{
    cgloo_tcp_attr attr = {
        .family = family, .iface = f[0], .hostname = f[1], .advertise = f[2], .store_host = f[3]};
    if (f[4][0])
        setenv("CGLOO_PORT", f[4], 1);
    else
        unsetenv("CGLOO_PORT");
    tcp_addr_choice *c = malloc(sizeof *c);
    if (cgloo__tcp_choose_address(&attr, c) == CGLOO_OK) {
        char text[CGLOO_TRANSPORT_ADDR_MAX];
        cgloo__tcp_publish_text(c, text, sizeof text);
    }
    free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > INPUT_MAX)
        return 0;
    setup();
    static const int families[] = {0, 4, 6};
    int family = families[data[0] % 3];
    char *text = malloc(size);
    memcpy(text, data + 1, size - 1);
    text[size - 1] = '\0';
    const char *f[NFIELDS];
    split(text, f);
    parsers(f[0], family);
    choose(f, family);
    free(text);
    return 0;
}
