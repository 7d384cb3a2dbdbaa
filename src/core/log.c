/*
 * Logging: a process-wide level and sink. Silent by default; CGLOO_LOG_LEVEL turns it on.
 * The level is tested in the CGLOO_LOG macro before any formatting happens.
 */
#include "cgloo_impl.h"

#include <pthread.h>
#include <stdio.h>
#include <strings.h>

int cgloo__log_level_now = CGLOO_LOG_OFF;

static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static cgloo_log_sink log_sink;
static void *log_sink_user;
static pthread_once_t log_env_once = PTHREAD_ONCE_INIT;

static const char *const level_names[] = {"off", "error", "warn", "info", "debug", "trace"};

static void log_read_env(void)
{
    const char *v = getenv("CGLOO_LOG_LEVEL");
    if (!v)
        return;
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(level_names); i++)
        if (strcasecmp(v, level_names[i]) == 0)
            __atomic_store_n(&cgloo__log_level_now, (int)i, __ATOMIC_RELAXED);
}

void cgloo__log_init_from_env(void)
{
    pthread_once(&log_env_once, log_read_env);
}

void cgloo_log_set_level(cgloo_log_level level)
{
    cgloo__log_init_from_env(); /* so that a later init cannot override the caller's choice */
    if ((int)level < CGLOO_LOG_OFF || level > CGLOO_LOG_TRACE)
        return;
    __atomic_store_n(&cgloo__log_level_now, (int)level, __ATOMIC_RELAXED);
}

void cgloo_log_set_sink(cgloo_log_sink sink, void *user)
{
    pthread_mutex_lock(&log_lock);
    log_sink = sink;
    log_sink_user = user;
    pthread_mutex_unlock(&log_lock);
}

void cgloo__log_write(cgloo_log_level level, int rank, int size, const char *fmt, ...)
{
    char line[1024];
    int n = 0;
    if (rank >= 0)
        n = snprintf(line, sizeof line, "cgloo %s [%d/%d] ", level_names[level], rank, size);
    else
        n = snprintf(line, sizeof line, "cgloo %s ", level_names[level]);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);

    pthread_mutex_lock(&log_lock);
    if (log_sink)
        log_sink(level, line, log_sink_user);
    else
        fprintf(stderr, "%s\n", line);
    pthread_mutex_unlock(&log_lock);
}
