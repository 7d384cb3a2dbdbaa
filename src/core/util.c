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

void cgloo__rank_list_add(cgloo__rank_list *l, int rank, const char *why)
{
    l->total++;
    if (l->full || l->named >= CGLOO_RANK_LIST_SHOWN)
        return;
    size_t at = strlen(l->names);
    bool with_why = why && why[0] && l->named < CGLOO_RANK_LIST_WHY;
    int n = snprintf(l->names + at, sizeof l->names - at, "%s%d%s%s%s", at ? ", " : "", rank,
                     with_why ? " (" : "", with_why ? why : "", with_why ? ")" : "");
    if (n < 0 || (size_t)n >= sizeof l->names - at) {
        l->names[at] = '\0';
        l->full = true;
        return;
    }
    l->named++;
}

const char *cgloo__rank_list_text(cgloo__rank_list *l)
{
    if (l->total == 0)
        l->text[0] = '\0';
    else if (l->named == 0)
        snprintf(l->text, sizeof l->text, "%d ranks", l->total);
    else if (l->named == l->total)
        snprintf(l->text, sizeof l->text, "rank%s %s", l->total > 1 ? "s" : "", l->names);
    else
        snprintf(l->text, sizeof l->text, "ranks %s, ... (and %d more)", l->names,
                 l->total - l->named);
    return l->text;
}
