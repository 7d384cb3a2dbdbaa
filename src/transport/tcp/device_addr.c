/*
 * How a TCP device chooses the address it listens on and the one it publishes, and the checks
 * that the peers can reach it.
 *
 * Named by the caller (an attribute, else its variable): CGLOO_IFACE (interface names, IP
 * addresses, subnets, '^' exclusions), else CGLOO_HOSTNAME (a name or IP). Otherwise the address
 * the peers are most likely to reach: the local address the route to the store's host leaves
 * from (the peers reach the store, so they are on that network), else the host name's
 * non-loopback address, else loopback. CGLOO_ADVERTISE_ADDR replaces the published address where
 * the peers see this host under another one (NAT, containers). Every choice is logged at INFO
 * with its reason, and kept for the error that a loopback address meets a remote store or peer.
 */
#include "transport/tcp/tcp.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <unistd.h>

#define HINT_VARS                                                                                  \
    "set CGLOO_IFACE (an interface such as eth0, a list such as ^lo,docker0, or a subnet such "    \
    "as 10.0.0.0/8), CGLOO_HOSTNAME or CGLOO_ADVERTISE_ADDR to an address the other hosts reach"

/* What the caller named, and where it came from (for messages). */
typedef struct choice_inputs {
    const char *iface, *iface_from;
    const char *hostname, *hostname_from;
    const char *advertise, *advertise_from;
    const char *store_host;
    char store_buf[256];
    int family;
} choice_inputs;

/* setting takes the attribute when set, else the environment variable. */
static const char *setting(const char *attr_value, const char *attr_name, const char *var,
                           const char **from)
{
    const char *v = attr_value && *attr_value ? attr_value : getenv(var);
    *from = attr_value && *attr_value ? attr_name : var;
    return v && *v ? v : NULL;
}

static void read_inputs(const cgloo_tcp_attr *attr, choice_inputs *in)
{
    const cgloo_tcp_attr none = {0};
    if (!attr)
        attr = &none;
    in->family = attr->family;
    in->iface = setting(attr->iface, "cgloo_tcp_attr.iface", "CGLOO_IFACE", &in->iface_from);
    in->hostname =
        setting(attr->hostname, "cgloo_tcp_attr.hostname", "CGLOO_HOSTNAME", &in->hostname_from);
    in->advertise = setting(attr->advertise, "cgloo_tcp_attr.advertise", "CGLOO_ADVERTISE_ADDR",
                            &in->advertise_from);
    in->store_host = attr->store_host && *attr->store_host ? attr->store_host : NULL;
    const char *url = getenv("CGLOO_STORE");
    if (!in->store_host && cgloo__url_host(url, in->store_buf, sizeof in->store_buf) == CGLOO_OK)
        in->store_host = in->store_buf;
}

/* resolve_ordered resolves host, IPv4 addresses first when the family is open, so that hosts
 * with and without IPv6 pick the same kind. */
static size_t resolve_ordered(const char *host, int family, cgloo__addr *out, size_t max)
{
    cgloo__addr all[CGLOO_ADDRS_MAX];
    size_t n = 0, k = 0;
    if (cgloo__addr_resolve_all(host, family, 0, all, CGLOO_ADDRS_MAX, &n) != CGLOO_OK)
        return 0;
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n && k < max; i++)
            if ((all[i].ss.ss_family == AF_INET) == (pass == 0))
                out[k++] = all[i];
    return k;
}

/* ---- the default choice ------------------------------------------------------------------- */

/* by_route takes the local address the route to the store's host leaves from, unless that is
 * loopback (the store is on this host: no sign of where the peers are). note says why not. */
static bool by_route(const choice_inputs *in, tcp_addr_choice *c, char *note, size_t len)
{
    cgloo__addr dst[CGLOO_ADDRS_MAX], src;
    char ip[INET6_ADDRSTRLEN];
    if (!in->store_host) {
        snprintf(note, len, "no store host is known (CGLOO_STORE is no tcp:// URL)");
        return false;
    }
    size_t n = resolve_ordered(in->store_host, in->family, dst, CGLOO_ADDRS_MAX);
    snprintf(note, len, "the store's host '%s' does not resolve", in->store_host);
    for (size_t i = 0; i < n; i++) {
        if (cgloo__addr_route_source(&dst[i], &src) != CGLOO_OK) {
            snprintf(note, len, "no route to the store's host %s: %s", in->store_host,
                     strerror(errno));
            continue;
        }
        if (cgloo__addr_is_loopback(&src)) {
            snprintf(note, len, "the store (%s) is on this host", in->store_host);
            continue;
        }
        c->bind = src;
        cgloo__addr_format_ip(&dst[i], ip, sizeof ip);
        bool named = strcmp(ip, in->store_host) != 0;
        snprintf(c->why, sizeof c->why, "the route to the store's host %s%s%s%s leaves from it",
                 in->store_host, named ? " (" : "", named ? ip : "", named ? ")" : "");
        return true;
    }
    return false;
}

/* by_host_name takes the first non-loopback address the host's name resolves to that is
 * this host's (a stale /etc/hosts entry could not be bound). */
static bool by_host_name(const choice_inputs *in, tcp_addr_choice *c, const char *note)
{
    char name[256] = "";
    cgloo__addr a[CGLOO_ADDRS_MAX];
    bool local;
    if (gethostname(name, sizeof name - 1) != 0)
        snprintf(name, sizeof name, "(unknown)");
    size_t n = resolve_ordered(name, in->family, a, CGLOO_ADDRS_MAX);
    for (size_t i = 0; i < n; i++) {
        if (cgloo__addr_is_loopback(&a[i]) || cgloo__addr_is_local(&a[i], &local) != CGLOO_OK ||
            !local)
            continue;
        c->bind = a[i];
        snprintf(c->why, sizeof c->why, "the host name '%s' resolves to it (%s)", name, note);
        return true;
    }
    snprintf(c->why, sizeof c->why, "the host name '%s' resolves to no other address and %s", name,
             note);
    return false;
}

static int choose_default(const choice_inputs *in, tcp_addr_choice *c)
{
    char note[200];
    if (by_route(in, c, note, sizeof note) || by_host_name(in, c, note))
        return CGLOO_OK;
    const char *loop = in->family == 6 ? "::1" : "127.0.0.1";
    return cgloo__addr_resolve(loop, in->family, &c->bind);
}

/* ---- named by the caller ------------------------------------------------------------------ */

/* route_source_to_store gives the preferred address for a list: the route to the store's. */
static const cgloo__addr *route_source_to_store(const choice_inputs *in, cgloo__addr *src)
{
    cgloo__addr dst[1];
    if (!in->store_host || resolve_ordered(in->store_host, in->family, dst, 1) == 0 ||
        cgloo__addr_route_source(&dst[0], src) != CGLOO_OK)
        return NULL;
    return src;
}

static int choose_by_iface(const choice_inputs *in, tcp_addr_choice *c)
{
    char why[200], have[400];
    cgloo__addr src;
    int rc = cgloo__addr_select(in->iface, in->family, route_source_to_store(in, &src), &c->bind,
                                why, sizeof why);
    if (rc == CGLOO_OK) {
        snprintf(c->why, sizeof c->why, "%s=%s chose %s", in->iface_from, in->iface, why);
        return CGLOO_OK;
    }
    cgloo__iface_summary(in->family, have, sizeof have);
    return cgloo__error_set(rc, "no TCP device: %s='%s': %s; this host has: %s", in->iface_from,
                            in->iface, why, have[0] ? have : "no interface addresses");
}

static int choose_by_hostname(const choice_inputs *in, tcp_addr_choice *c)
{
    if (cgloo__addr_resolve(in->hostname, in->family, &c->bind) != CGLOO_OK)
        return cgloo__error_set(CGLOO_EADDR, "no TCP device: %s='%s' does not resolve to an %s",
                                in->hostname_from, in->hostname,
                                in->family == 4   ? "IPv4 address"
                                : in->family == 6 ? "IPv6 address"
                                                  : "address");
    snprintf(c->why, sizeof c->why, "%s=%s", in->hostname_from, in->hostname);
    return CGLOO_OK;
}

/* ---- advertising another address ----------------------------------------------------------- */

/* split_advertise reads "host", "host:port", "[v6]", "[v6]:port" or a bare IPv6 address. */
static int split_advertise(const char *text, char *host, size_t len, int *port)
{
    const char *end = text + strlen(text), *colon = strrchr(text, ':');
    long p = 0;
    if (*text == '[') {
        const char *close = strchr(text, ']');
        if (!close || (close[1] && close[1] != ':'))
            return CGLOO_EINVAL;
        colon = close[1] ? close + 1 : NULL;
        end = close;
        text++;
    } else if (colon && strchr(text, ':') != colon) {
        colon = NULL; /* an IPv6 address without brackets has no port */
    } else if (colon) {
        end = colon;
    }
    if (colon && cgloo__parse_int(colon + 1, 1, 65535, &p) != CGLOO_OK)
        return CGLOO_EINVAL;
    if (end == text || (size_t)(end - text) >= len)
        return CGLOO_EINVAL;
    memcpy(host, text, (size_t)(end - text));
    host[end - text] = '\0';
    *port = (int)p;
    return CGLOO_OK;
}

static int choose_advertise(const choice_inputs *in, tcp_addr_choice *c)
{
    char host[CGLOO_TRANSPORT_ADDR_MAX - 8];
    if (split_advertise(in->advertise, host, sizeof host, &c->advertise_port) != CGLOO_OK)
        return cgloo__error_set(CGLOO_EINVAL,
                                "no TCP device: %s='%s' is not HOST, HOST:PORT or [IPv6]:PORT "
                                "(at most %zu characters)",
                                in->advertise_from, in->advertise, sizeof host - 1);
    if (cgloo__addr_resolve(host, 0, &c->reach) != CGLOO_OK)
        return cgloo__error_set(CGLOO_EADDR, "no TCP device: %s='%s': '%s' does not resolve",
                                in->advertise_from, in->advertise, host);
    snprintf(c->advertise, sizeof c->advertise, "%s", host);
    snprintf(c->reach_why, sizeof c->reach_why, "%s=%s", in->advertise_from, in->advertise);
    c->named_by = in->advertise_from;
    return CGLOO_OK;
}

/* ---- the device's calls -------------------------------------------------------------------- */

/* port_range takes the attribute's range, else CGLOO_PORT ("P" or "LO-HI"). */
static int port_range(const cgloo_tcp_attr *attr, tcp_addr_choice *c)
{
    const char *v = getenv("CGLOO_PORT");
    long lo = 0, hi = 0;
    c->port_min = attr ? attr->port_min : 0;
    c->port_max = attr ? attr->port_max : 0;
    if (c->port_min || c->port_max || !v || !*v)
        return CGLOO_OK;
    char buf[32];
    snprintf(buf, sizeof buf, "%s", v);
    char *dash = strchr(buf, '-');
    if (dash)
        *dash = '\0';
    if (cgloo__parse_int(buf, 1, 65535, &lo) != CGLOO_OK ||
        cgloo__parse_int(dash ? dash + 1 : buf, lo, 65535, &hi) != CGLOO_OK)
        return cgloo__error_set(
            CGLOO_EINVAL, "no TCP device: CGLOO_PORT='%s' is not PORT or LOW-HIGH (1-65535)", v);
    c->port_min = (int)lo;
    c->port_max = (int)hi;
    return CGLOO_OK;
}

int cgloo__tcp_choose_address(const cgloo_tcp_attr *attr, tcp_addr_choice *c)
{
    choice_inputs in;
    memset(c, 0, sizeof *c);
    read_inputs(attr, &in);
    if (in.family != 0 && in.family != 4 && in.family != 6)
        return cgloo__error_set(CGLOO_EINVAL, "no TCP device: family %d is not 0, 4 or 6",
                                in.family);
    c->named_by = in.iface ? in.iface_from : in.hostname ? in.hostname_from : NULL;
    int rc = port_range(attr, c);
    if (rc == CGLOO_OK)
        rc = in.iface      ? choose_by_iface(&in, c)
             : in.hostname ? choose_by_hostname(&in, c)
                           : choose_default(&in, c);
    if (rc == CGLOO_OK && in.advertise)
        rc = choose_advertise(&in, c);
    if (rc == CGLOO_OK && !in.advertise) {
        c->reach = c->bind;
        memcpy(c->reach_why, c->why, sizeof c->why);
    }
    return rc == CGLOO_OK ? rc
                          : cgloo__error_set_if_none(rc, "no TCP device: %s", cgloo_strerror(rc));
}

int cgloo__tcp_publish_text(const tcp_addr_choice *c, char *buf, size_t len)
{
    if (!c->advertise[0]) {
        cgloo__addr_format(&c->bind, buf, len);
        return CGLOO_OK;
    }
    int port = c->advertise_port ? c->advertise_port : cgloo__addr_port(&c->bind);
    bool v6 = strchr(c->advertise, ':') != NULL;
    int n = snprintf(buf, len, "%s%s%s:%d", v6 ? "[" : "", c->advertise, v6 ? "]" : "", port);
    return n > 0 && (size_t)n < len ? CGLOO_OK : CGLOO_EINVAL;
}

/* unreachable_error says that this rank's loopback address cannot be reached from `what`, on
 * another host, with how the address was chosen and what changes it. */
static int unreachable_error(const tcp_addr_choice *c, const char *published, cgloo_context *ctx,
                             const char *what)
{
    return cgloo__ctx_error(ctx, CGLOO_EADDR,
                            "rank %d: this rank's address %s is a loopback address, which only "
                            "its own host reaches (chosen because %s), but %s is on another "
                            "host; " HINT_VARS "%s%s%s",
                            ctx->rank, published, c->reach_why, what,
                            c->named_by ? ", or unset " : "", c->named_by ? c->named_by : "",
                            c->named_by ? " to let cgloo choose" : "");
}

/* remote_host says whether host resolves to addresses none of which is this host's. */
static bool remote_host(const char *host)
{
    cgloo__addr a[CGLOO_ADDRS_MAX];
    size_t n = 0;
    bool local = false;
    if (cgloo__addr_resolve_all(host, 0, 0, a, CGLOO_ADDRS_MAX, &n) != CGLOO_OK)
        return false; /* cannot tell: let the connect say what happens */
    for (size_t i = 0; i < n && !local; i++)
        if (cgloo__addr_is_local(&a[i], &local) != CGLOO_OK)
            return false;
    return !local;
}

int cgloo__tcp_check_store_reach(const tcp_addr_choice *c, const char *published,
                                 cgloo_context *ctx, const char *store_host)
{
    char what[300];
    if (!store_host || !cgloo__addr_is_loopback(&c->reach) || !remote_host(store_host))
        return CGLOO_OK;
    snprintf(what, sizeof what, "the store (%s)", store_host);
    return unreachable_error(c, published, ctx, what);
}

int cgloo__tcp_check_peer_reach(const tcp_addr_choice *c, const char *published, cgloo_context *ctx,
                                int peer, const cgloo__addr *addr, const char *text)
{
    char what[300];
    bool local = true;
    if (!cgloo__addr_is_loopback(&c->reach) || cgloo__addr_is_local(addr, &local) != CGLOO_OK ||
        local)
        return CGLOO_OK;
    snprintf(what, sizeof what, "rank %d (%s)", peer, text);
    return unreachable_error(c, published, ctx, what);
}
