/*
 * The Redis store in a build without hiredis (CGLOO_WITH_REDIS off, or libhiredis-dev missing):
 * the calls exist, so that the API and redis:// URLs are the same in every build, and say
 * ENOTSUP with the way to get the real thing.
 */
#include "store/store.h"

#include <stdio.h>

#define REDIS_MISSING                                                                              \
    "cgloo was built without the Redis store: install libhiredis-dev (Debian) and rebuild"

int cgloo__store_redis_open(const cgloo_redis_attr *attr, int timeout_ms, char *detail,
                            size_t detail_len, cgloo_store **out)
{
    if (!out || timeout_ms < 0)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    CGLOO_ERROR("redis store: %s", REDIS_MISSING);
    if (detail && detail_len)
        snprintf(detail, detail_len, "%s", REDIS_MISSING);
    return CGLOO_ENOTSUP;
}

int cgloo_store_redis_connect(const cgloo_redis_attr *attr, int timeout_ms, cgloo_store **out)
{
    return cgloo__store_redis_open(attr, timeout_ms, NULL, 0, out);
}
