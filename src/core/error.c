/*
 * The calling thread's last error, for the calls that have no context to keep it in (or have
 * not made one yet): stores, devices, context creation and connection (cgloo_last_error).
 * Thread-local, so that threads setting up at once never read each other's detail and no lock
 * is needed.
 */
#include "cgloo_impl.h"

#include <stdio.h>

static _Thread_local int error_status;
static _Thread_local char error_detail[CGLOO_ERROR_MAX];

void cgloo__error_clear(void)
{
    error_status = CGLOO_OK;
    error_detail[0] = '\0';
}

static int error_vset(int status, const char *fmt, va_list ap)
{
    char detail[CGLOO_ERROR_MAX];
    vsnprintf(detail, sizeof detail, fmt, ap); /* fmt may name the old detail: format first */
    memcpy(error_detail, detail, sizeof detail);
    error_status = status;
    CGLOO_DEBUG("%s (%s)", detail, cgloo_status_name(status));
    return status;
}

int cgloo__error_set(int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    error_vset(status, fmt, ap);
    va_end(ap);
    return status;
}

int cgloo__error_set_if_none(int status, const char *fmt, ...)
{
    if (error_detail[0]) {
        error_status = status;
        return status;
    }
    va_list ap;
    va_start(ap, fmt);
    error_vset(status, fmt, ap);
    va_end(ap);
    return status;
}

int cgloo__error_copy(int status, const char *detail)
{
    snprintf(error_detail, sizeof error_detail, "%s", detail);
    error_status = status;
    return status;
}

const char *cgloo__error_detail(void)
{
    return error_detail;
}

int cgloo_last_error(char *buf, size_t len)
{
    if (buf && len)
        snprintf(buf, len, "%s", error_detail);
    return error_status;
}
