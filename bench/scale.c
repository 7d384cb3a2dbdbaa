/*
 * cgloo-scale: what a job of P ranks costs to set up and to start, one line per run for
 * docs/SCALING.md. Run under cgloo-run; every rank times cgloo_context_create_from_env, a first
 * allreduce (checked: the sum of rank + 1 over all ranks) and a barrier, then counts its open
 * file descriptors, its sockets and its resident memory, and rank 0 prints the worst of each:
 *   cgloo-run -n 1024 cgloo-scale            bench/scaling.sh runs it for several P, full mesh
 *   CGLOO_LAZY=1 cgloo-run -n 1024 cgloo-scale  and lazy, and gives the medians
 * Fields: setup_span_ms (first rank's start to last rank's context), setup_max_ms (the slowest
 * rank's own set-up), allreduce_ms and barrier_ms (the slowest rank's first call), sockets and
 * fds (most on one rank, and the mean of sockets), rss_kib (most on one rank), ok (1 when every
 * rank's allreduce sum was right).
 */
#include <cgloo/cgloo.h>

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_us(void)
{
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000000 + t.tv_nsec / 1000;
}

/* count_fds counts this process's open descriptors, and those that are sockets. */
static void count_fds(int64_t *fds, int64_t *sockets)
{
    *fds = *sockets = 0;
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return;
    int self = dirfd(d);
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.' || atoi(e->d_name) == self)
            continue;
        char path[300], link[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", e->d_name);
        ssize_t n = readlink(path, link, sizeof link - 1);
        (*fds)++;
        if (n > 0 && strncmp(link, "socket:", 7) == 0)
            (*sockets)++;
    }
    closedir(d);
}

static int64_t rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    int64_t kib = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kib = atoll(line + 6);
    if (f)
        fclose(f);
    return kib;
}

enum { START, CONNECTED, OWN, ALLREDUCE, BARRIER, FDS, SOCKETS, RSS, OK, NSTAT };

/* report reduces every rank's figures to rank 0 and prints them there. */
static int report(cgloo_context *ctx, const int64_t *s)
{
    int64_t lo[NSTAT], hi[NSTAT], sum[NSTAT];
    int rc = cgloo_allreduce(ctx, s, lo, NSTAT, CGLOO_INT64, CGLOO_MIN, NULL);
    if (rc == CGLOO_OK)
        rc = cgloo_allreduce(ctx, s, hi, NSTAT, CGLOO_INT64, CGLOO_MAX, NULL);
    if (rc == CGLOO_OK)
        rc = cgloo_allreduce(ctx, s, sum, NSTAT, CGLOO_INT64, CGLOO_SUM, NULL);
    if (rc != CGLOO_OK || cgloo_context_rank(ctx) != 0)
        return rc;
    int p = cgloo_context_size(ctx);
    const char *lazy = getenv("CGLOO_LAZY");
    printf("ranks %d lazy %d setup_span_ms %.1f setup_max_ms %.1f allreduce_ms %.2f "
           "barrier_ms %.2f sockets_max %lld sockets_mean %.1f fds_max %lld rss_kib_max %lld "
           "ok %lld\n",
           p, lazy && strcmp(lazy, "1") == 0, (double)(hi[CONNECTED] - lo[START]) / 1000,
           (double)hi[OWN] / 1000, (double)hi[ALLREDUCE] / 1000, (double)hi[BARRIER] / 1000,
           (long long)hi[SOCKETS], (double)sum[SOCKETS] / p, (long long)hi[FDS], (long long)hi[RSS],
           (long long)lo[OK]);
    return CGLOO_OK;
}

int main(void)
{
    int64_t s[NSTAT] = {0};
    s[START] = now_us();
    cgloo_context *ctx = NULL;
    int rc = cgloo_context_create_from_env(&ctx);
    int64_t t = now_us();
    s[CONNECTED] = t;
    s[OWN] = t - s[START];
    int64_t mine = 0, total = 0;
    if (rc == CGLOO_OK) {
        mine = cgloo_context_rank(ctx) + 1;
        rc = cgloo_allreduce(ctx, &mine, &total, 1, CGLOO_INT64, CGLOO_SUM, NULL);
    }
    s[ALLREDUCE] = now_us() - t;
    t = now_us();
    if (rc == CGLOO_OK)
        rc = cgloo_barrier(ctx, NULL);
    s[BARRIER] = now_us() - t;
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        if (ctx)
            cgloo_context_last_error(ctx, detail, sizeof detail);
        else
            cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "cgloo-scale: %s (%s)\n", cgloo_strerror(rc), detail);
        return 1;
    }
    int64_t p = cgloo_context_size(ctx);
    s[OK] = total == p * (p + 1) / 2;
    count_fds(&s[FDS], &s[SOCKETS]);
    s[RSS] = rss_kib();
    rc = report(ctx, s);
    cgloo_context_destroy(ctx);
    return rc == CGLOO_OK && s[OK] ? 0 : 1;
}
