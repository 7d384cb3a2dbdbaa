/* Small helpers shared by every module: strings, numbers, environment, hashing, randomness. */
#include "cgloo_impl.h"

#include <sys/random.h>
#include <time.h>
#include <unistd.h>

char *cgloo__strdup(const char *s)
{
    if (!s)
        return NULL;
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

void *cgloo__memdup_z(const void *data, size_t len)
{
    if (len == SIZE_MAX)
        return NULL;
    char *d = malloc(len + 1);
    if (!d)
        return NULL;
    if (len)
        memcpy(d, data, len);
    d[len] = '\0';
    return d;
}

int cgloo__parse_int(const char *s, long min, long max, long *out)
{
    if (!s || !*s)
        return CGLOO_EINVAL;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end != '\0' || v < min || v > max)
        return CGLOO_EINVAL;
    *out = v;
    return CGLOO_OK;
}

int cgloo__env_int(const char *name, long min, long max, long fallback, long *out)
{
    const char *v = getenv(name);
    if (!v || !*v) {
        *out = fallback;
        return CGLOO_OK;
    }
    return cgloo__parse_int(v, min, max, out);
}

uint64_t cgloo__hash64(const void *data, size_t len)
{
    const uint8_t *p = data;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

uint64_t cgloo__random64(void)
{
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) == (ssize_t)sizeof v)
        return v;
    /* No entropy yet (early boot): time and pid still differ between runs and ranks. */
    v = (uint64_t)cgloo__now_ns() ^ ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
    return cgloo__hash64(&v, sizeof v);
}
