/*
 * The one internal include: configuration, assertions, logging, allocation, time, and the
 * small helpers every module shares. Public API lives in include/cgloo/cgloo.h.
 */
#ifndef CGLOO_IMPL_H
#define CGLOO_IMPL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include <cgloo/cgloo.h>

#include <assert.h>
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Assertions are for our own bugs only; anything from outside is a status code. */
#define CGLOO_ASSERT(cond) assert(cond)

#define CGLOO_MIN(a, b) ((a) < (b) ? (a) : (b))
#define CGLOO_MAX(a, b) ((a) > (b) ? (a) : (b))
#define CGLOO_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#if defined(__GNUC__)
#define CGLOO_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#define CGLOO_LIKELY(x) __builtin_expect(!!(x), 1)
#define CGLOO_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define CGLOO_PRINTF(fmt, args)
#define CGLOO_LIKELY(x) (x)
#define CGLOO_UNLIKELY(x) (x)
#endif

/* ---- logging (src/core/log.c) ---- */
extern int cgloo__log_level_now; /* read without a lock: a stale level only delays a change */
void cgloo__log_init_from_env(void);
void cgloo__log_write(cgloo_log_level level, int rank, int size, const char *fmt, ...)
    CGLOO_PRINTF(4, 5);

/* Log with the rank/size of the caller (-1 when none). The level is tested before formatting. */
#define CGLOO_LOG(level, rank, size, ...)                                                          \
    do {                                                                                           \
        if (CGLOO_UNLIKELY((int)(level) <= cgloo__log_level_now))                                  \
            cgloo__log_write((level), (rank), (size), __VA_ARGS__);                                \
    } while (0)
#define CGLOO_ERROR(...) CGLOO_LOG(CGLOO_LOG_ERROR, -1, -1, __VA_ARGS__)
#define CGLOO_WARN(...) CGLOO_LOG(CGLOO_LOG_WARN, -1, -1, __VA_ARGS__)
#define CGLOO_INFO(...) CGLOO_LOG(CGLOO_LOG_INFO, -1, -1, __VA_ARGS__)
#define CGLOO_DEBUG(...) CGLOO_LOG(CGLOO_LOG_DEBUG, -1, -1, __VA_ARGS__)

/* ---- the calling thread's last error (src/core/error.c), read by cgloo_last_error ---- */
/* cgloo__error_clear forgets it: every public call that records one starts so, so that what
 * cgloo_last_error reads always belongs to the latest of those calls. */
void cgloo__error_clear(void);
/* cgloo__error_set records status and the detail as the thread's last error, logs the detail
 * at DEBUG, and returns status. fmt may take cgloo__error_detail() as an argument (to wrap an
 * inner call's detail). */
int cgloo__error_set(int status, const char *fmt, ...) CGLOO_PRINTF(2, 3);
/* cgloo__error_set_if_none is cgloo__error_set unless an inner call already left a detail,
 * which then stays: the inner call knew more. */
int cgloo__error_set_if_none(int status, const char *fmt, ...) CGLOO_PRINTF(2, 3);
/* cgloo__error_copy records a detail already logged where it arose (a context's). */
int cgloo__error_copy(int status, const char *detail);
/* cgloo__error_detail is the thread's last detail ("" when none), valid until the thread's next
 * cgloo__error_* call. */
const char *cgloo__error_detail(void);

/* ---- errno translation (src/core/status.c) ---- */
/* cgloo__status_from_errno maps a system errno to the closest status code. */
int cgloo__status_from_errno(int err);

/* ---- time (src/core/clock.c) ---- */
/* Monotonic milliseconds and nanoseconds. */
int64_t cgloo__now_ms(void);
int64_t cgloo__now_ns(void);
/* cgloo__coarse_ns is the same clock at its tick's resolution (CLOCK_MONOTONIC_COARSE), about
 * cgloo__coarse_res_ns() behind cgloo__now_ns (more just after an idle spell), for a tenth of
 * its cost: the flight recorder's times, so that collectives and sends that wait for nothing
 * read no fine clock (clock.c says why). Never a deadline. */
int64_t cgloo__coarse_ns(void);
int64_t cgloo__coarse_res_ns(void);
/* cgloo__deadline turns a timeout (0 = fallback) into an absolute monotonic ms deadline. */
int64_t cgloo__deadline(int timeout_ms, int fallback_ms);
/* cgloo__remaining_ms returns the ms left to deadline, at least 0. */
int cgloo__remaining_ms(int64_t deadline_ms);
/* cgloo__sleep_ms sleeps for ms milliseconds (EINTR restarts). */
void cgloo__sleep_ms(int ms);

/* ---- condition variables on the monotonic clock (src/core/sync.c) ---- */
/* cgloo__cond_init_monotonic initialises *cond so that pthread_cond_timedwait takes its time on
 * CLOCK_MONOTONIC, the clock of every deadline here. The caller owns *cond and destroys it with
 * pthread_cond_destroy. Does not block. Errors: ENOMEM (memory or other resources), EINVAL. */
int cgloo__cond_init_monotonic(pthread_cond_t *cond);
/* cgloo__timespec_after_ms is the CLOCK_MONOTONIC time ms (>= 0) from now, for a timed wait on a
 * condition variable made by cgloo__cond_init_monotonic. */
struct timespec cgloo__timespec_after_ms(int ms);
/* cgloo__timespec_at_ms is a monotonic deadline in ms (as cgloo__deadline gives) as a timespec,
 * for the same kind of wait. */
struct timespec cgloo__timespec_at_ms(int64_t deadline_ms);

/* ---- small string helpers (src/core/util.c) ---- */
/* cgloo__strdup duplicates s with malloc (NULL on failure or NULL input). */
char *cgloo__strdup(const char *s);
/* cgloo__memdup_z copies len bytes and appends a NUL, for values handed to the caller. */
void *cgloo__memdup_z(const void *data, size_t len);
/* cgloo__parse_int parses a whole decimal int in [min, max]; returns 0 on success. */
int cgloo__parse_int(const char *s, long min, long max, long *out);
/* cgloo__env_int reads an integer environment variable in [min, max]; absent gives fallback,
 * malformed gives EINVAL. */
int cgloo__env_int(const char *name, long min, long max, long fallback, long *out);

/* A list of ranks for an error detail: "rank 3 (why)" or "ranks 3 (why), 17, 40, ... (and 208
 * more)". The first CGLOO_RANK_LIST_WHY ranks carry their reason, at most CGLOO_RANK_LIST_SHOWN
 * are named, so that the list and the detail around it fit in CGLOO_ERROR_MAX. */
#define CGLOO_RANK_LIST_WHY 4
#define CGLOO_RANK_LIST_SHOWN 16
typedef struct cgloo__rank_list {
    char names[400]; /* "3 (why), 17, 40" */
    char text[460];  /* the finished list */
    int named, total;
    bool full; /* no room for another name: the rest are counted only */
} cgloo__rank_list;
/* cgloo__rank_list_add counts rank in, naming it (with why, may be NULL) while there is room. */
void cgloo__rank_list_add(cgloo__rank_list *l, int rank, const char *why);
/* cgloo__rank_list_text is the finished list ("" when empty), valid while l lives. */
const char *cgloo__rank_list_text(cgloo__rank_list *l);

/* Little-endian fixed-width encoding for the wire. */
static inline void cgloo__put_u32(uint8_t *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline void cgloo__put_u64(uint8_t *p, uint64_t v)
{
    for (int i = 0; i < 8; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}
static inline uint32_t cgloo__get_u32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int i = 3; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}
static inline uint64_t cgloo__get_u64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

/* 64-bit FNV-1a, for turning names into wire identities (not for security). */
uint64_t cgloo__hash64(const void *data, size_t len);
/* cgloo__random64 returns 64 unpredictable bits (getrandom, falling back to time and pid). */
uint64_t cgloo__random64(void);

#endif /* CGLOO_IMPL_H */
