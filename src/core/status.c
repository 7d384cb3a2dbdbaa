/* Status strings, generated from the one list in cgloo.h, and errno translation. */
#include "cgloo_impl.h"

const char *cgloo_strerror(int status)
{
    switch (status) {
#define STATUS_TEXT(name, value, text)                                                             \
    case value:                                                                                    \
        return text;
        CGLOO_STATUS_MAP(STATUS_TEXT)
#undef STATUS_TEXT
    }
    return "unknown status";
}

const char *cgloo_status_name(int status)
{
    switch (status) {
#define STATUS_NAME(name, value, text)                                                             \
    case value:                                                                                    \
        return #name;
        CGLOO_STATUS_MAP(STATUS_NAME)
#undef STATUS_NAME
    }
    return "UNKNOWN";
}

int cgloo__status_from_errno(int err)
{
    switch (err) {
    case 0:
        return CGLOO_OK;
    case ENOMEM:
    case ENOBUFS:
        return CGLOO_ENOMEM;
    case ETIMEDOUT:
        return CGLOO_ETIMEDOUT;
    case ECONNREFUSED:
        return CGLOO_ECONNREFUSED;
    case ECONNRESET:
    case EPIPE:
    case ECONNABORTED:
    case ENOTCONN:
    case EHOSTUNREACH:
    case ENETUNREACH:
        return CGLOO_EPEER;
    case EADDRINUSE:
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
        return CGLOO_EADDR;
    case EINVAL:
        return CGLOO_EINVAL;
    default:
        return CGLOO_EIO;
    }
}

int cgloo_version(void)
{
    return CGLOO_VERSION;
}

const char *cgloo_version_string(void)
{
    return CGLOO_VERSION_STRING;
}

void cgloo_free(void *ptr)
{
    free(ptr);
}
