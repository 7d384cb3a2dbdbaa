/*
 * This host's own addresses: which local address the route to a host leaves from, whether an
 * address is loopback or this host's, and the choice of an address by interface names, IP
 * addresses and subnets (CGLOO_IFACE's syntax). Every errno is translated here.
 */
#include "net/net.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <stdio.h>
#include <unistd.h>

#define SPEC_ENTRIES_MAX 32

/* ---- comparing addresses ----------------------------------------------------------------- */

static const uint8_t *addr_bytes(const cgloo__addr *a, size_t *len)
{
    if (a->ss.ss_family == AF_INET) {
        *len = 4;
        return (const uint8_t *)&((const struct sockaddr_in *)&a->ss)->sin_addr;
    }
    *len = 16;
    return (const uint8_t *)&((const struct sockaddr_in6 *)&a->ss)->sin6_addr;
}

/* prefix_equal: the first `bits` bits of a and b (same family) agree. */
static bool prefix_equal(const cgloo__addr *a, const cgloo__addr *b, int bits)
{
    size_t la, lb;
    const uint8_t *x = addr_bytes(a, &la), *y = addr_bytes(b, &lb);
    if (a->ss.ss_family != b->ss.ss_family || bits < 0 || (size_t)bits > 8 * la)
        return false;
    size_t whole = (size_t)bits / 8;
    if (memcmp(x, y, whole) != 0)
        return false;
    int rest = bits % 8;
    return rest == 0 || ((x[whole] ^ y[whole]) & (0xff00 >> rest)) == 0;
}

bool cgloo__addr_same_ip(const cgloo__addr *a, const cgloo__addr *b)
{
    return prefix_equal(a, b, a->ss.ss_family == AF_INET ? 32 : 128);
}

bool cgloo__addr_is_loopback(const cgloo__addr *a)
{
    size_t n;
    const uint8_t *b = addr_bytes(a, &n);
    static const uint8_t v6_loop[16] = {[15] = 1};
    static const uint8_t v4_mapped[12] = {[10] = 0xff, [11] = 0xff};
    if (a->ss.ss_family == AF_INET)
        return b[0] == 127;
    return memcmp(b, v6_loop, 16) == 0 || (memcmp(b, v4_mapped, 12) == 0 && b[12] == 127);
}

/* v6_link_local: fe80::/10, which needs a zone to be dialled and so is never published. */
static bool v6_link_local(const cgloo__addr *a)
{
    size_t n;
    const uint8_t *b = addr_bytes(a, &n);
    return a->ss.ss_family == AF_INET6 && b[0] == 0xfe && (b[1] & 0xc0) == 0x80;
}

void cgloo__addr_format_ip(const cgloo__addr *addr, char *buf, size_t len)
{
    size_t n;
    const void *b = addr_bytes(addr, &n);
    if (!inet_ntop(addr->ss.ss_family, b, buf, (socklen_t)len) && len)
        snprintf(buf, len, "?");
}

/* from_ifaddr copies an interface address of AF_INET or AF_INET6 into *out. */
static bool from_ifaddr(const struct ifaddrs *i, cgloo__addr *out)
{
    if (!i->ifa_addr || (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
        return false;
    memset(out, 0, sizeof *out);
    out->len = i->ifa_addr->sa_family == AF_INET ? sizeof(struct sockaddr_in)
                                                 : sizeof(struct sockaddr_in6);
    memcpy(&out->ss, i->ifa_addr, out->len);
    return true;
}

/* ---- this host ------------------------------------------------------------------------------ */

int cgloo__addr_is_local(const cgloo__addr *addr, bool *local)
{
    *local = cgloo__addr_is_loopback(addr);
    struct ifaddrs *list = NULL;
    if (*local)
        return CGLOO_OK;
    if (getifaddrs(&list) != 0)
        return cgloo__status_from_errno(errno);
    cgloo__addr a;
    for (const struct ifaddrs *i = list; i && !*local; i = i->ifa_next)
        *local = from_ifaddr(i, &a) && cgloo__addr_same_ip(&a, addr);
    freeifaddrs(list);
    return CGLOO_OK;
}

int cgloo__addr_route_source(const cgloo__addr *dst, cgloo__addr *src)
{
    cgloo__addr to = *dst;
    if (cgloo__addr_port(&to) == 0)
        cgloo__addr_set_port(&to, 9); /* any port: a UDP connect sends nothing */
    int fd = socket(to.ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return cgloo__status_from_errno(errno);
    int err = 0;
    memset(src, 0, sizeof *src);
    src->len = sizeof src->ss;
    if (connect(fd, (const struct sockaddr *)&to.ss, to.len) != 0 ||
        getsockname(fd, (struct sockaddr *)&src->ss, &src->len) != 0)
        err = errno;
    close(fd);
    errno = err;
    if (err)
        return err == ENETUNREACH || err == EHOSTUNREACH ? CGLOO_EPEER
                                                         : cgloo__status_from_errno(err);
    cgloo__addr_set_port(src, 0);
    return CGLOO_OK;
}

void cgloo__iface_summary(int family, char *buf, size_t len)
{
    struct ifaddrs *list = NULL;
    size_t used = 0;
    buf[0] = '\0';
    if (getifaddrs(&list) != 0)
        return;
    cgloo__addr a;
    for (const struct ifaddrs *i = list; i && used < len; i = i->ifa_next) {
        if (!from_ifaddr(i, &a) || (family == 4 && a.ss.ss_family != AF_INET) ||
            (family == 6 && a.ss.ss_family != AF_INET6) || v6_link_local(&a))
            continue;
        char ip[INET6_ADDRSTRLEN];
        cgloo__addr_format_ip(&a, ip, sizeof ip);
        int n = snprintf(buf + used, len - used, "%s%s %s%s", used ? ", " : "", i->ifa_name, ip,
                         i->ifa_flags & IFF_UP ? "" : " (down)");
        used += n > 0 ? (size_t)n : 0;
    }
    freeifaddrs(list);
}

/* ---- choosing by interface names, addresses and subnets -------------------------------------- */

enum { ENTRY_NAME, ENTRY_PREFIX, ENTRY_SUBNET };

typedef struct spec_entry {
    int kind;
    char name[IF_NAMESIZE]; /* ENTRY_NAME, ENTRY_PREFIX */
    cgloo__addr net;        /* ENTRY_SUBNET (an IP is a subnet of all its bits) */
    int bits;
} spec_entry;

typedef struct addr_spec {
    spec_entry e[SPEC_ENTRIES_MAX];
    int n;
    bool exclude;
} addr_spec;

/* entry_subnet parses "IP" or "IP/BITS". */
static bool entry_subnet(const char *text, spec_entry *e)
{
    char ip[INET6_ADDRSTRLEN];
    const char *slash = strchr(text, '/');
    size_t iplen = slash ? (size_t)(slash - text) : strlen(text);
    if (iplen == 0 || iplen >= sizeof ip)
        return false;
    memcpy(ip, text, iplen);
    ip[iplen] = '\0';
    struct sockaddr_in *v4 = (struct sockaddr_in *)&e->net.ss;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)&e->net.ss;
    memset(&e->net, 0, sizeof e->net);
    if (inet_pton(AF_INET, ip, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        e->net.len = sizeof *v4;
    } else if (inet_pton(AF_INET6, ip, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        e->net.len = sizeof *v6;
    } else {
        return false;
    }
    int max = v4->sin_family == AF_INET ? 32 : 128;
    long bits = max;
    if (slash && cgloo__parse_int(slash + 1, 0, max, &bits) != CGLOO_OK)
        return false;
    e->kind = ENTRY_SUBNET;
    e->bits = (int)bits;
    return true;
}

/* entry_parse reads one entry: a subnet (it has a '/'), an IP address, or else an interface
 * name (a trailing '*' matches every name that begins so). */
static int entry_parse(const char *text, spec_entry *e, char *why, size_t why_len)
{
    size_t n = strlen(text);
    if (entry_subnet(text, e))
        return CGLOO_OK;
    if (strchr(text, '/')) {
        snprintf(why, why_len, "'%s' is no subnet (IP/BITS)", text);
        return CGLOO_EINVAL;
    }
    bool prefix = n > 0 && text[n - 1] == '*';
    if (prefix)
        n--;
    if (n == 0 || n >= IF_NAMESIZE || memchr(text, '*', n)) {
        snprintf(why, why_len, "'%s' is no interface name", text);
        return CGLOO_EINVAL;
    }
    e->kind = prefix ? ENTRY_PREFIX : ENTRY_NAME;
    memcpy(e->name, text, n);
    e->name[n] = '\0';
    return CGLOO_OK;
}

/* spec_parse splits a comma list; a leading '^' makes every entry an exclusion. */
static int spec_parse(const char *spec, addr_spec *s, char *why, size_t why_len)
{
    char buf[1024], *save = NULL;
    if (snprintf(buf, sizeof buf, "%s", spec) >= (int)sizeof buf) {
        snprintf(why, why_len, "the list is longer than %zu characters", sizeof buf - 1);
        return CGLOO_EINVAL;
    }
    char *start = buf + strspn(buf, " \t");
    s->n = 0;
    s->exclude = *start == '^';
    for (char *tok = strtok_r(start, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        tok += strspn(tok, " \t");
        tok[strcspn(tok, " \t")] = '\0';
        if (*tok == '^' && !s->exclude) {
            snprintf(why, why_len, "'^' excludes the whole list and must come first, as in ^lo,%s",
                     tok + 1);
            return CGLOO_EINVAL;
        }
        tok += *tok == '^';
        if (!*tok)
            continue;
        if (s->n == SPEC_ENTRIES_MAX) {
            snprintf(why, why_len, "more than %d entries", SPEC_ENTRIES_MAX);
            return CGLOO_EINVAL;
        }
        int rc = entry_parse(tok, &s->e[s->n], why, why_len);
        if (rc != CGLOO_OK)
            return rc;
        s->n++;
    }
    if (s->n == 0) {
        snprintf(why, why_len, "the list is empty");
        return CGLOO_EINVAL;
    }
    return CGLOO_OK;
}

static bool entry_matches(const spec_entry *e, const char *ifname, const cgloo__addr *a)
{
    switch (e->kind) {
    case ENTRY_NAME:
        return strcmp(ifname, e->name) == 0;
    case ENTRY_PREFIX:
        return strncmp(ifname, e->name, strlen(e->name)) == 0;
    default:
        return prefix_equal(a, &e->net, e->bits);
    }
}

/* spec_rank orders a usable address: -1 when the spec rules it out, else lower is better.
 * Included addresses go by the entry that named them; with exclusions, loopback comes last.
 * IPv4 before IPv6 when both are allowed, so that hosts with and without IPv6 agree. */
static int spec_rank(const addr_spec *s, int family, const char *ifname, const cgloo__addr *a)
{
    int v6 = family == 0 && a->ss.ss_family == AF_INET6;
    if (s->exclude) {
        for (int k = 0; k < s->n; k++)
            if (entry_matches(&s->e[k], ifname, a))
                return -1;
        return 2 * cgloo__addr_is_loopback(a) + v6;
    }
    for (int k = 0; k < s->n; k++)
        if (entry_matches(&s->e[k], ifname, a))
            return 2 * k + v6;
    return -1;
}

/* usable: an address of an interface that is up, of the family asked for, and publishable. */
static bool usable(const struct ifaddrs *i, int family, cgloo__addr *a)
{
    if (!(i->ifa_flags & IFF_UP) || !from_ifaddr(i, a) || v6_link_local(a))
        return false;
    return family == 0 || (family == 4) == (a->ss.ss_family == AF_INET);
}

/* spec_pick takes the best-ranked address of list, or `prefer` if the spec allows it. */
static bool spec_pick(const addr_spec *s, struct ifaddrs *list, int family,
                      const cgloo__addr *prefer, cgloo__addr *out, char *ifname, size_t ifname_len)
{
    int best = -1;
    cgloo__addr a;
    for (const struct ifaddrs *i = list; i; i = i->ifa_next) {
        int r = usable(i, family, &a) ? spec_rank(s, family, i->ifa_name, &a) : -1;
        bool preferred = r >= 0 && prefer && cgloo__addr_same_ip(&a, prefer);
        if (r < 0 || (best >= 0 && r >= best && !preferred))
            continue;
        *out = a;
        snprintf(ifname, ifname_len, "%s", i->ifa_name);
        best = r;
        if (preferred)
            return true;
    }
    return best >= 0;
}

int cgloo__addr_select(const char *spec, int family, const cgloo__addr *prefer, cgloo__addr *out,
                       char *why, size_t why_len)
{
    addr_spec *s = malloc(sizeof *s);
    struct ifaddrs *list = NULL;
    if (!s)
        return CGLOO_ENOMEM;
    int rc = spec_parse(spec, s, why, why_len);
    if (rc == CGLOO_OK && getifaddrs(&list) != 0) {
        rc = cgloo__status_from_errno(errno);
        snprintf(why, why_len, "cannot list the interfaces: %s", strerror(errno));
    }
    char ifname[IF_NAMESIZE] = "", ip[INET6_ADDRSTRLEN];
    if (rc == CGLOO_OK && spec_pick(s, list, family, prefer, out, ifname, sizeof ifname)) {
        cgloo__addr_format_ip(out, ip, sizeof ip);
        snprintf(why, why_len, "%s on %s", ip, ifname);
    } else if (rc == CGLOO_OK) {
        rc = CGLOO_EADDR;
        snprintf(why, why_len, "no address%s of an interface that is up matches",
                 family ? (family == 4 ? " (IPv4)" : " (IPv6)") : "");
    }
    if (list)
        freeifaddrs(list);
    free(s);
    return rc;
}
