/*
 * Name resolution for the fuzz targets and their replays: numeric only. Arbitrary input reaches
 * getaddrinfo through the address parsers; forcing AI_NUMERICHOST here means a fuzzed name
 * fails at once instead of sending a DNS query anywhere. The library is unchanged: this
 * definition in the executable comes before the C library's (and a sanitizer's interceptor)
 * at link and load time, and calls the next one with the flag added.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netdb.h>
#include <stddef.h>

typedef int (*getaddrinfo_fn)(const char *, const char *, const struct addrinfo *,
                              struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    static getaddrinfo_fn next;
    if (!next)
        next = (getaddrinfo_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (!next)
        return EAI_SYSTEM;
    struct addrinfo h = {0};
    if (hints)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    return next(node, service, &h, res);
}
