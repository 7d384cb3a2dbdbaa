/*
 * A context's diagnostics: check mode's switch and call numbers, the flight recorder's set-up
 * and cgloo_context_dump, and the opt-in dump signal (docs/ARCHITECTURE.md, "Diagnostics").
 */
#include "core/context.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

/* signal_number reads CGLOO_DUMP_SIGNAL: a number, or a name with or without "SIG". */
static int signal_number(const char *v)
{
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"HUP", SIGHUP}, {"QUIT", SIGQUIT},
                 {"INT", SIGINT},   {"TERM", SIGTERM}, {"PWR", SIGPWR}, {"WINCH", SIGWINCH}};
    char *end;
    long n = strtol(v, &end, 10);
    if (*v && !*end)
        return n > 0 && n < NSIG ? (int)n : -1;
    if (strncmp(v, "SIG", 3) == 0)
        v += 3;
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(names); i++)
        if (strcmp(v, names[i].name) == 0)
            return names[i].sig;
    return -1;
}

static int diag_signal(cgloo_context *ctx, const cgloo_context_attr *attr)
{
    int sig = attr ? attr->dump_signal : 0;
    const char *v = getenv("CGLOO_DUMP_SIGNAL");
    if (!sig && v && *v) {
        sig = signal_number(v);
        if (sig < 0)
            return cgloo__error_set(CGLOO_EINVAL,
                                    "CGLOO_DUMP_SIGNAL='%s' is not a signal (a number or a name "
                                    "such as SIGUSR2)",
                                    v);
    }
    if (!sig)
        return CGLOO_OK;
    int rc = cgloo__flight_signal(&ctx->flight, sig);
    if (rc != CGLOO_OK)
        return cgloo__error_set(rc,
                                "cgloo_context_create: cannot dump on signal %d (%s; only one "
                                "dump signal per process, for at most 64 contexts)",
                                sig, cgloo_strerror(rc));
    return CGLOO_OK;
}

int cgloo__ctx_diag_init(cgloo_context *ctx, const cgloo_context_attr *attr)
{
    long check, entries;
    if (cgloo__env_int("CGLOO_CHECK", 0, 1, 0, &check) != CGLOO_OK)
        return cgloo__error_set(CGLOO_EINVAL, "CGLOO_CHECK='%s' is not 0 or 1",
                                getenv("CGLOO_CHECK"));
    if (cgloo__env_int("CGLOO_FLIGHT_RECORDER", 0, CGLOO_FLIGHT_MAX, CGLOO_FLIGHT_DEFAULT,
                       &entries) != CGLOO_OK)
        return cgloo__error_set(CGLOO_EINVAL, "CGLOO_FLIGHT_RECORDER='%s' is not from 0 to %d",
                                getenv("CGLOO_FLIGHT_RECORDER"), CGLOO_FLIGHT_MAX);
    int want_check = attr ? attr->check : 0;
    ctx->check = want_check > 0 || (want_check == 0 && check);
    int want = attr ? attr->flight_recorder : 0;
    if (want > CGLOO_FLIGHT_MAX)
        return cgloo__error_set(CGLOO_EINVAL, "flight_recorder %d is above %d", want,
                                CGLOO_FLIGHT_MAX);
    int n = want > 0 ? want : want < 0 ? 0 : (int)entries;
    if (cgloo__flight_init(&ctx->flight, n, ctx->rank, ctx->size, ctx->name) != CGLOO_OK)
        return CGLOO_ENOMEM;
    return diag_signal(ctx, attr);
}

void cgloo__ctx_diag_fini(cgloo_context *ctx)
{
    cgloo__flight_fini(&ctx->flight);
    free(ctx->check_seqs);
    ctx->check_seqs = NULL;
}

uint64_t cgloo__ctx_check_call(cgloo_context *ctx, uint64_t tag)
{
    for (size_t i = 0; i < ctx->n_check_seqs; i++)
        if (ctx->check_seqs[i].tag == tag)
            return ++ctx->check_seqs[i].calls;
    /* A new caller tag: the table grows by one (programs use a handful of tags). */
    void *grown = realloc(ctx->check_seqs, (ctx->n_check_seqs + 1) * sizeof *ctx->check_seqs);
    if (!grown)
        return 0;
    ctx->check_seqs = grown;
    ctx->check_seqs[ctx->n_check_seqs++] = (struct cgloo_check_seq){.tag = tag, .calls = 1};
    return 1;
}

typedef struct dump_out {
    FILE *f;
    bool failed;
} dump_out;

static void dump_line(const char *text, void *user)
{
    dump_out *o = user;
    if (fputs(text, o->f) == EOF || fputc('\n', o->f) == EOF)
        o->failed = true;
}

int cgloo_context_dump(cgloo_context *ctx, FILE *f)
{
    if (!ctx || !f)
        return CGLOO_EINVAL;
    if (!ctx->flight.ring)
        return CGLOO_ENOTSUP;
    dump_out o = {.f = f};
    cgloo__flight_each(&ctx->flight, dump_line, &o);
    return o.failed || fflush(f) != 0 ? CGLOO_EIO : CGLOO_OK;
}
