/*
 * cgloo-run: start N ranks of a program around an embedded TCP store.
 *
 *   cgloo-run -n N [--tag] [--grace-ms MS] [--host H] [--bind auto|core|none]
 *             [--launcher PREFIX [--hosts A,B=ADDR,... | --hostfile F]] [--] PROGRAM ...
 *
 * Each rank gets CGLOO_RANK, CGLOO_SIZE, CGLOO_LOCAL_RANK, CGLOO_LOCAL_SIZE, CGLOO_STORE
 * (tcp://HOST:PORT of the store this process serves), CGLOO_RUN_ID (fresh random hex, the
 * same for every rank of the run) and CGLOO_WATCH_STORE=1 in its environment. Rank 0 shares
 * our stdin; the others read /dev/null. With --tag every line a rank writes to stdout or stderr
 * is copied to ours with "[RANK] " in front.
 *
 * Ranks die with us: each is started with PR_SET_PDEATHSIG (SIGKILL), so that a cgloo-run
 * killed with SIGKILL takes its ranks along; ranks that a command prefix (ssh) keeps out of
 * that reach see the store close (CGLOO_WATCH_STORE=1: the library ends the process then).
 *
 * Other hosts: with --launcher, every rank's command is PREFIX ("ssh {host}", "ip netns exec
 * {host}": split at blanks, {host} replaced by the rank's host) followed by "env", the rank's
 * CGLOO_ variables and PROGRAM ARGS, so that the variables cross ssh. --hosts (or --hostfile,
 * one host a line, # comments) lists the hosts; ranks go to them in blocks as even as can be,
 * with local ranks counted per host. "NAME=ADDR" gives a host's address, which its ranks
 * advertise to their peers (CGLOO_HOSTNAME). The store must then listen on an address the hosts
 * reach: --host is required with --hosts. Ranks on other hosts are not pinned.
 *
 * Binding: with --bind auto (the default), when the ranks are no more than the CPUs we may run
 * on, rank r is pinned to the r-th of those CPUs, as Open MPI does; more ranks than CPUs run
 * unpinned. --bind core pins round-robin always, --bind none never. Pinned ranks that spin on
 * their sockets keep to their own core and answer sooner (docs/ARCHITECTURE.md, "Why the yield
 * depends on pinning", has the measurements).
 *
 * Authentication: built with OpenSSL, each run makes a fresh 32-byte job secret (64 hex
 * digits) and hands it to the ranks and to its own store server as CGLOO_SECRET in the
 * environment, so that every connection of the run (rank to rank, rank to store) proves it and
 * nothing outside the run can join or read the store (docs/ARCHITECTURE.md, "Authentication").
 * A CGLOO_SECRET or CGLOO_SECRET_FILE already set is used instead; --no-secret runs without
 * one. The secret never goes on a command line: with --launcher no secret is made, and a
 * CGLOO_SECRET is refused (ssh would show it to every user of the host); CGLOO_SECRET_FILE,
 * naming a file every host reads, is passed on.
 *
 * SIGINT, SIGTERM and SIGHUP are forwarded to every running rank (to the prefix's process, with
 * --launcher). When a rank fails (a non-zero exit or a signal) the others get --grace-ms
 * (default 2000) to finish, then SIGTERM, then SIGKILL KILL_DELAY_MS later. Exit status: that of
 * the first rank to fail (its exit code, or 128 + its signal; see reap); 128 + the forwarded
 * signal if we were interrupted and no rank failed; 127 (126) when the program cannot be found
 * (executed); 2 for bad usage; otherwise 0.
 */
#define _GNU_SOURCE
#include <cgloo/cgloo.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <stdbool.h>
#include <sys/prctl.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

#define RANKS_MAX 4096
#define GRACE_DEFAULT_MS 2000
#define KILL_DELAY_MS 1000
#define LINE_BUF 8192 /* a longer line is passed on in pieces */
#define URL_MAX 600
#define ENV_ENTRY_MAX (URL_MAX + 40)

/* One captured output stream of a rank (only with --tag). */
typedef struct out_stream {
    int fd; /* read end of the pipe; -1 once closed */
    int to; /* our fd it is copied to: 1 or 2 */
    char *buf;
    size_t len;
    int mid_line; /* the last piece passed on did not end a line */
} out_stream;

typedef struct rank_proc {
    pid_t pid; /* 0 when not started or already reaped */
    out_stream out[2];
    int ended;  /* reaped, its status not yet acted on (within one reap) */
    int status; /* waitpid's status, while ended */
} rank_proc;

/* A host ranks run on through the --launcher prefix. */
typedef struct host {
    char *name; /* what {host} becomes */
    char *addr; /* what its ranks advertise (CGLOO_HOSTNAME); NULL: their own choice */
} host;

typedef struct launcher {
    int n, tag, grace_ms;
    int no_secret; /* --no-secret: make no job secret for the run */
    const char *host;
    const char *bind;     /* "auto", "core" or "none" */
    const char *prefix;   /* --launcher, or NULL to run ranks directly */
    const char *hostlist; /* --hosts */
    const char *hostfile; /* --hostfile */
    host *hosts;          /* with a prefix: at least one ("localhost" when none was given) */
    int nhosts;
    int host_given; /* --host was on the command line */
    pid_t self;     /* our pid, which a child checks after asking to die with us */
    int devnull;    /* /dev/null, the stdin of ranks other than 0 */
    cpu_set_t cpus; /* the CPUs we may run on, which ranks are pinned to */
    char **argv;    /* PROGRAM ARGS... */
    rank_proc *ranks;
    int running;
    int exit_code;   /* of the first failure; -1 while none */
    int forwarded;   /* the last signal forwarded, 0 if none */
    int64_t term_at; /* when to SIGTERM the rest; 0 when no failure yet */
    int64_t kill_at; /* when to SIGKILL the rest; 0 until SIGTERM was sent */
    int killed;      /* SIGKILL was sent */
    int sigfd;
} launcher;

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- arguments ---- */

static void usage(FILE *to)
{
    fprintf(to,
            "usage: cgloo-run -n N [--tag] [--grace-ms MS] [--host HOST] [--bind MODE]\n"
            "                 [--launcher PREFIX [--hosts H1,H2=ADDR,... | --hostfile FILE]]\n"
            "                 [--] PROGRAM [ARGS...]\n"
            "  Starts N ranks of PROGRAM with a TCP store for them to meet through.\n"
            "  -n N           number of ranks (1..%d)\n"
            "  --tag          prefix every output line with \"[RANK] \"\n"
            "  --grace-ms MS  after a rank fails, time the others get before SIGTERM "
            "(default %d)\n"
            "  --host HOST    address the store listens on and ranks connect to "
            "(default 127.0.0.1)\n"
            "  --bind MODE    auto: pin rank r to CPU r when the ranks fit the CPUs (default);\n"
            "                 core: pin round-robin always; none: never pin\n"
            "  --launcher P   start each rank as P followed by env, its variables and PROGRAM;\n"
            "                 {host} in P becomes the rank's host (\"ssh {host}\")\n"
            "  --hosts LIST   hosts for --launcher, comma-separated; NAME=ADDR sets the address\n"
            "                 that host's ranks advertise (needs --host)\n"
            "  --hostfile F   the same, one host a line\n"
            "  --no-secret    make no fresh job secret for the run (by default one authenticates\n"
            "                 every connection when cgloo has OpenSSL; CGLOO_SECRET or\n"
            "                 CGLOO_SECRET_FILE, when set, is used either way)\n",
            RANKS_MAX, GRACE_DEFAULT_MS);
}

static int parse_num(const char *s, long min, long max, int *out)
{
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!*s || *end || errno || v < min || v > max)
        return -1;
    *out = (int)v;
    return 0;
}

/* option_value returns the value of option `name` at argv[*i] ("--x V", "--x=V", or "-nV"
 * for a short name), advancing *i past it; NULL if argv[*i] is not that option. Sets *missing
 * when the option is there but its value is not. */
static const char *option_value(int argc, char **argv, int *i, const char *name, int *missing)
{
    const char *a = argv[*i];
    size_t n = strlen(name);
    if (strncmp(a, name, n) != 0)
        return NULL;
    if (a[n] == '\0') {
        if (*i + 1 >= argc) {
            *missing = 1;
            return NULL;
        }
        return argv[++*i];
    }
    if (a[n] == '=')
        return a + n + 1;
    if (name[1] != '-') /* -n4 */
        return a + n;
    return NULL;
}

/* usage_error reports a mistake on the command line; the usage text follows. */
static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "cgloo-run: %s%s%s%s\n", what, arg ? " '" : "", arg ? arg : "", arg ? "'" : "");
    return -1;
}

/* check_hosts_args refuses host options that cannot work together. */
static int check_hosts_args(const launcher *l)
{
    if ((l->hostlist || l->hostfile) && !l->prefix)
        return usage_error("--hosts and --hostfile need --launcher", NULL);
    if (l->hostlist && l->hostfile)
        return usage_error("give --hosts or --hostfile, not both", NULL);
    if ((l->hostlist || l->hostfile) && !l->host_given)
        return usage_error("with other hosts, --host must name an address of this machine that "
                           "they reach (the store listens there)",
                           NULL);
    if (l->prefix && strspn(l->prefix, " \t") == strlen(l->prefix))
        return usage_error("--launcher is empty", NULL);
    if (l->prefix && !strstr(l->prefix, "{host}") && (l->hostlist || l->hostfile))
        return usage_error("--launcher has no {host} for the hosts to go in", NULL);
    return 0;
}

/* parse_args fills l; returns 0, 1 for --help, or -1 for a usage error (already reported). */
static int parse_args(launcher *l, int argc, char **argv)
{
    int i = 1;
    for (; i < argc && argv[i][0] == '-'; i++) {
        const char *a = argv[i], *v;
        int missing = 0;
        if (strcmp(a, "--") == 0) {
            i++;
            break;
        } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            return 1;
        } else if (strcmp(a, "--tag") == 0) {
            l->tag = 1;
        } else if (strcmp(a, "--no-secret") == 0) {
            l->no_secret = 1;
        } else if ((v = option_value(argc, argv, &i, "-n", &missing))) {
            if (parse_num(v, 1, RANKS_MAX, &l->n) != 0)
                return usage_error("bad rank count", v);
        } else if ((v = option_value(argc, argv, &i, "--grace-ms", &missing))) {
            if (parse_num(v, 0, 24L * 3600 * 1000, &l->grace_ms) != 0)
                return usage_error("bad --grace-ms", v);
        } else if ((v = option_value(argc, argv, &i, "--hostfile", &missing))) {
            l->hostfile = v;
        } else if ((v = option_value(argc, argv, &i, "--hosts", &missing))) {
            l->hostlist = v;
        } else if ((v = option_value(argc, argv, &i, "--host", &missing))) {
            l->host = v;
            l->host_given = 1;
        } else if ((v = option_value(argc, argv, &i, "--launcher", &missing))) {
            l->prefix = v;
        } else if ((v = option_value(argc, argv, &i, "--bind", &missing))) {
            if (strcmp(v, "auto") != 0 && strcmp(v, "core") != 0 && strcmp(v, "none") != 0)
                return usage_error("bad --bind (auto, core or none)", v);
            l->bind = v;
        } else {
            return usage_error(missing ? "missing value for" : "unknown option", a);
        }
    }
    if (l->n == 0)
        return usage_error("-n N is required", NULL);
    if (i >= argc)
        return usage_error("no program to run", NULL);
    l->argv = argv + i;
    return check_hosts_args(l);
}

/* ---- hosts ---- */

/* add_host appends "NAME" or "NAME=ADDR" (len bytes of text). */
static int add_host(launcher *l, const char *text, size_t len)
{
    while (len && (text[len - 1] == ' ' || text[len - 1] == '\t' || text[len - 1] == '\r'))
        len--;
    while (len && (*text == ' ' || *text == '\t')) {
        text++;
        len--;
    }
    if (len == 0)
        return 0;
    host *h = realloc(l->hosts, (size_t)(l->nhosts + 1) * sizeof *h);
    if (!h)
        return -1;
    l->hosts = h;
    h = &l->hosts[l->nhosts];
    const char *eq = memchr(text, '=', len);
    h->name = strndup(text, eq ? (size_t)(eq - text) : len);
    h->addr = eq ? strndup(eq + 1, len - (size_t)(eq - text) - 1) : NULL;
    if (!h->name || (eq && !h->addr) || !*h->name || (h->addr && !*h->addr))
        return -1;
    l->nhosts++;
    return 0;
}

/* read_hostfile adds one host a line; blank lines and # comments are skipped. */
static int read_hostfile(launcher *l, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "cgloo-run: cannot read --hostfile '%s': %s\n", path, strerror(errno));
        return -1;
    }
    char line[1024];
    int rc = 0;
    while (rc == 0 && fgets(line, sizeof line, f)) {
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        line[strcspn(line, "\n")] = '\0';
        rc = add_host(l, line, strlen(line));
    }
    fclose(f);
    return rc;
}

/* read_hosts fills l->hosts from --hosts or --hostfile; "localhost" when a prefix is given
 * alone. Returns -1 after saying what is wrong. */
static int read_hosts(launcher *l)
{
    int rc = 0;
    if (l->hostfile) {
        rc = read_hostfile(l, l->hostfile);
    } else if (l->hostlist) {
        for (const char *p = l->hostlist; rc == 0 && *p;) {
            size_t n = strcspn(p, ",");
            rc = add_host(l, p, n);
            p += n + (p[n] == ',');
        }
    } else if (l->prefix) {
        rc = add_host(l, "localhost", 9);
    }
    if (rc == 0 && l->prefix && l->nhosts == 0)
        rc = -1;
    if (rc != 0)
        fprintf(stderr, "cgloo-run: no usable host in --hosts/--hostfile (NAME or NAME=ADDR)\n");
    return rc;
}

/* host_of gives rank r's host: blocks of ranks as even as can be, in host order. */
static int host_of(const launcher *l, int r)
{
    return (int)((int64_t)r * l->nhosts / l->n);
}

/* local_of sets rank r's rank and count among the ranks of its host. */
static void local_of(const launcher *l, int r, int *local_rank, int *local_size)
{
    if (l->nhosts == 0) {
        *local_rank = r;
        *local_size = l->n;
        return;
    }
    int h = host_of(l, r), first = r;
    while (first > 0 && host_of(l, first - 1) == h)
        first--;
    int last = r;
    while (last + 1 < l->n && host_of(l, last + 1) == h)
        last++;
    *local_rank = r - first;
    *local_size = last - first + 1;
}

/* ---- the ranks' environment ---- */

static const char *const our_vars[] = {
    "CGLOO_RANK=",  "CGLOO_SIZE=",   "CGLOO_LOCAL_RANK=",  "CGLOO_LOCAL_SIZE=",
    "CGLOO_STORE=", "CGLOO_RUN_ID=", "CGLOO_WATCH_STORE=", "CGLOO_HOSTNAME="};
#define OUR_VARS (sizeof our_vars / sizeof our_vars[0])
#define VAR_HOSTNAME (OUR_VARS - 1) /* ours only when the rank's host has an address */

static int is_our_var(const char *entry, int with_hostname)
{
    for (size_t i = 0; i < OUR_VARS; i++)
        if ((i != VAR_HOSTNAME || with_hostname) &&
            strncmp(entry, our_vars[i], strlen(our_vars[i])) == 0)
            return 1;
    return 0;
}

/* rank_env builds rank r's environment: ours minus any stale CGLOO_* launcher variables, plus
 * the fresh ones, whose text is kept in `storage`. */
static char **rank_env(const launcher *l, int r, const char *url, const char *run_id,
                       char storage[OUR_VARS][ENV_ENTRY_MAX])
{
    const char *addr = l->nhosts ? l->hosts[host_of(l, r)].addr : NULL;
    size_t n = 0, k = 0, ours = addr ? OUR_VARS : OUR_VARS - 1;
    while (environ[n])
        n++;
    char **env = malloc((n + OUR_VARS + 1) * sizeof *env);
    if (!env)
        return NULL;
    for (size_t i = 0; i < n; i++)
        if (!is_our_var(environ[i], addr != NULL))
            env[k++] = environ[i];
    int local_rank, local_size;
    local_of(l, r, &local_rank, &local_size);
    snprintf(storage[0], ENV_ENTRY_MAX, "CGLOO_RANK=%d", r);
    snprintf(storage[1], ENV_ENTRY_MAX, "CGLOO_SIZE=%d", l->n);
    snprintf(storage[2], ENV_ENTRY_MAX, "CGLOO_LOCAL_RANK=%d", local_rank);
    snprintf(storage[3], ENV_ENTRY_MAX, "CGLOO_LOCAL_SIZE=%d", local_size);
    snprintf(storage[4], ENV_ENTRY_MAX, "CGLOO_STORE=%s", url);
    snprintf(storage[5], ENV_ENTRY_MAX, "CGLOO_RUN_ID=%s", run_id);
    snprintf(storage[6], ENV_ENTRY_MAX, "CGLOO_WATCH_STORE=1");
    snprintf(storage[VAR_HOSTNAME], ENV_ENTRY_MAX, "CGLOO_HOSTNAME=%s", addr ? addr : "");
    for (size_t i = 0; i < ours; i++)
        env[k++] = storage[i];
    env[k] = NULL;
    return env;
}

/* ---- a rank's command line ---- */

/* subst_host copies word with every "{host}" replaced by name (malloc'd). */
static char *subst_host(const char *word, const char *name)
{
    size_t n = 0, nl = strlen(name);
    for (const char *p = word; (p = strstr(p, "{host}")); p += 6)
        n++;
    char *out = malloc(strlen(word) + n * nl + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = word; *p;) {
        if (strncmp(p, "{host}", 6) == 0) {
            memcpy(o, name, nl);
            o += nl;
            p += 6;
        } else {
            *o++ = *p++;
        }
    }
    *o = '\0';
    return out;
}

/* A rank's argv and the strings it owns. */
typedef struct rank_cmd {
    char **argv;
    char *words; /* the prefix, split in place */
    int nsubst;  /* argv[0..nsubst) were made by subst_host */
} rank_cmd;

static void cmd_free(rank_cmd *c)
{
    for (int i = 0; c->argv && i < c->nsubst; i++)
        free(c->argv[i]);
    free(c->argv);
    free(c->words);
}

/* rank_cmd_make: without a prefix, PROGRAM ARGS; with one, PREFIX env CGLOO_...=... PROGRAM
 * ARGS, so that the variables reach a rank that ssh starts with an environment of its own. */
static int rank_cmd_make(const launcher *l, int r, char **env, rank_cmd *c)
{
    size_t nargs = 0, nenv = 0, k = 0;
    *c = (rank_cmd){0};
    while (l->argv[nargs])
        nargs++;
    while (env[nenv])
        nenv++;
    size_t nwords = l->prefix ? strlen(l->prefix) / 2 + 2 : 0;
    if (!(c->argv = calloc(nwords + 1 + nenv + nargs + 1, sizeof *c->argv)))
        return -1;
    if (l->prefix) {
        if (!(c->words = strdup(l->prefix)))
            return -1;
        const char *name = l->hosts[host_of(l, r)].name;
        for (char *save, *w = strtok_r(c->words, " \t", &save); w;
             w = strtok_r(NULL, " \t", &save)) {
            if (!(c->argv[k] = subst_host(w, name)))
                return -1;
            c->nsubst = (int)++k;
        }
        c->argv[k++] = "env";
        for (size_t i = 0; i < nenv; i++)
            if (strncmp(env[i], "CGLOO_", 6) == 0 && strncmp(env[i], "CGLOO_SECRET=", 13) != 0)
                c->argv[k++] = env[i];
    }
    for (size_t i = 0; i < nargs; i++)
        c->argv[k++] = l->argv[i];
    return l->prefix && c->nsubst == 0 ? -1 : 0;
}

static void make_run_id(char *out, size_t size)
{
    uint64_t v[2];
    if (getrandom(v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        v[0] = (uint64_t)now_ms() * 6364136223846793005ull ^ (uint64_t)getpid();
        v[1] = (uint64_t)time(NULL) * 1442695040888963407ull ^ (uint64_t)(uintptr_t)&v;
    }
    snprintf(out, size, "%016llx%016llx", (unsigned long long)v[0], (unsigned long long)v[1]);
}

/* ---- output tagging ---- */

static void write_all(int fd, struct iovec *iov, int cnt)
{
    while (cnt > 0) {
        ssize_t n = writev(fd, iov, cnt);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return; /* our stdout/stderr is gone: drop the output, keep running the ranks */
        size_t done = (size_t)n;
        while (cnt > 0 && done >= iov->iov_len) {
            done -= iov->iov_len;
            iov++;
            cnt--;
        }
        if (cnt > 0) {
            iov->iov_base = (char *)iov->iov_base + done;
            iov->iov_len -= done;
        }
    }
}

/* emit copies len bytes of a rank's stream to ours, with the tag unless it continues a line. */
static void emit(out_stream *o, int rank, const char *p, size_t len, int ends_line)
{
    char tag[24];
    int tlen = snprintf(tag, sizeof tag, "[%d] ", rank);
    struct iovec iov[3] = {{tag, o->mid_line ? 0 : (size_t)tlen},
                           {(void *)p, len},
                           {"\n", ends_line && (len == 0 || p[len - 1] != '\n') ? 1 : 0}};
    write_all(o->to, iov, 3);
    o->mid_line = !ends_line;
}

/* take_lines passes on every complete line in the buffer; a full buffer goes out as a piece. */
static void take_lines(out_stream *o, int rank)
{
    size_t start = 0;
    for (;;) {
        char *nl = memchr(o->buf + start, '\n', o->len - start);
        if (!nl)
            break;
        size_t n = (size_t)(nl - (o->buf + start)) + 1;
        emit(o, rank, o->buf + start, n, 1);
        start += n;
    }
    if (start == 0 && o->len == LINE_BUF) {
        emit(o, rank, o->buf, o->len, 0);
        start = o->len;
    }
    memmove(o->buf, o->buf + start, o->len - start);
    o->len -= start;
}

static void close_stream(out_stream *o, int rank)
{
    if (o->len)
        emit(o, rank, o->buf, o->len, 1); /* a last line without its newline */
    else if (o->mid_line)
        emit(o, rank, "", 0, 1);
    close(o->fd);
    o->fd = -1;
    free(o->buf);
    o->buf = NULL;
    o->len = 0;
}

/* on_output reads what a rank wrote; end of file (or an error) closes the stream. */
static void on_output(out_stream *o, int rank)
{
    if (!o->buf && !(o->buf = malloc(LINE_BUF))) {
        close_stream(o, rank);
        return;
    }
    ssize_t n = read(o->fd, o->buf + o->len, LINE_BUF - o->len);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (n <= 0) {
        close_stream(o, rank);
        return;
    }
    o->len += (size_t)n;
    take_lines(o, rank);
}

/* ---- starting ranks ---- */

/* bind_cpu gives the CPU to pin rank r to, or -1 to leave it unpinned. Ranks on other hosts
 * are never pinned: our CPUs are not theirs. */
static int bind_cpu(const launcher *l, int r)
{
    int ncpu = CPU_COUNT(&l->cpus);
    bool pin = strcmp(l->bind, "core") == 0 || (strcmp(l->bind, "auto") == 0 && l->n <= ncpu);
    if (!pin || strcmp(l->bind, "none") == 0 || ncpu == 0 || l->hostlist || l->hostfile)
        return -1;
    for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; cpu++)
        if (CPU_ISSET(cpu, &l->cpus) && seen++ == r % ncpu)
            return cpu;
    return -1;
}

/* The child's side of a rank's start: what the child does between fork and exec. */
typedef struct child_plan {
    char **argv, **env;
    int stdin_null; /* rank > 0: read /dev/null */
    int devnull;    /* opened by the parent (close-on-exec) */
    int out[2];     /* with --tag: the write ends for stdout and stderr, else -1 */
    int cpu;        /* -1: unpinned */
    int report;     /* write end of the pipe that carries exec's errno back */
    pid_t parent;
} child_plan;

/* raw_dup makes `to` a copy of `from` (the descriptor keeps no close-on-exec flag). */
static void raw_dup(int from, int to)
{
    if (from >= 0 && from != to)
        syscall(SYS_dup3, from, to, 0);
}

/* child_setup prepares the child and execs; it only returns (with errno) when that fails.
 * Between fork and exec the store's thread may have held any lock of the parent, so the child
 * makes system calls only, and makes them directly: a sanitizer's wrappers of signal() or
 * sigprocmask() are not safe here. Signal dispositions need no reset: the parent handles none
 * (it blocks them and reads a signalfd), and exec resets handled ones anyway. */
static void child_setup(const child_plan *c)
{
    /* Die with the launcher, even when it is SIGKILLed and cannot pass anything on. If it
     * died before this line, nobody would: check that it is still our parent. */
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0 ||
        syscall(SYS_getppid) != c->parent)
        _exit(126);
    uint64_t none = 0; /* the kernel's signal mask: 64 bits */
    syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, NULL, sizeof none);
    if (c->stdin_null)
        raw_dup(c->devnull, 0);
    for (int s = 0; s < 2; s++)
        raw_dup(c->out[s], s + 1);
    if (c->cpu >= 0) {
        cpu_set_t one;
        CPU_ZERO(&one);
        CPU_SET(c->cpu, &one);
        syscall(SYS_sched_setaffinity, 0, sizeof one, &one); /* unpinned, it still runs */
    }
    execvpe(c->argv[0], c->argv, c->env);
}

/* fork_exec starts the child and waits for its exec: returns 0, or exec's errno. */
static int fork_exec(child_plan *c, pid_t *pid)
{
    int report[2];
    if (pipe2(report, O_CLOEXEC) != 0)
        return errno;
    c->report = report[1];
    *pid = fork();
    if (*pid == 0) {
        child_setup(c);
        int err = errno;
        (void)!write(c->report, &err, sizeof err);
        _exit(127);
    }
    int err = *pid < 0 ? errno : 0;
    close(report[1]);
    if (*pid > 0) {
        ssize_t n;
        while ((n = read(report[0], &err, sizeof err)) < 0 && errno == EINTR) {
        }
        if (n != (ssize_t)sizeof err)
            err = 0; /* closed by exec: the program runs */
        else
            waitpid(*pid, NULL, 0);
    }
    close(report[0]);
    return err;
}

/* spawn_rank starts rank r. Returns 0, or an errno value (reported here). */
static int spawn_rank(launcher *l, int r, char **argv, char **env)
{
    int pipes[2][2] = {{-1, -1}, {-1, -1}};
    child_plan c = {.argv = argv,
                    .env = env,
                    .stdin_null = r > 0,
                    .out = {-1, -1},
                    .cpu = bind_cpu(l, r),
                    .parent = l->self};
    int err = 0;
    for (int s = 0; l->tag && s < 2 && !err; s++) {
        if (pipe2(pipes[s], O_CLOEXEC) != 0)
            err = errno;
        c.out[s] = pipes[s][1];
    }
    pid_t pid = 0;
    if (!err)
        err = fork_exec(&c, &pid);
    for (int s = 0; s < 2; s++) {
        if (pipes[s][1] >= 0)
            close(pipes[s][1]);
        if (err && pipes[s][0] >= 0)
            close(pipes[s][0]);
        l->ranks[r].out[s] = (out_stream){.fd = err ? -1 : pipes[s][0], .to = s + 1};
    }
    if (err) {
        fprintf(stderr, "cgloo-run: cannot run '%s' (rank %d): %s\n", argv[0], r, strerror(err));
        return err;
    }
    l->ranks[r].pid = pid;
    l->running++;
    return 0;
}

/* ---- failures, signals and reaping ---- */

static void signal_running(launcher *l, int sig)
{
    for (int r = 0; r < l->n; r++)
        if (l->ranks[r].pid > 0)
            kill(l->ranks[r].pid, sig);
}

/* start_grace begins the countdown to SIGTERM for the ranks still running. */
static void start_grace(launcher *l)
{
    if (l->term_at == 0)
        l->term_at = now_ms() + l->grace_ms;
}

static void record_failure(launcher *l, int code)
{
    if (l->exit_code < 0)
        l->exit_code = code;
    start_grace(l);
}

static void on_exit_status(launcher *l, int r, int status)
{
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return;
    if (WIFEXITED(status)) {
        fprintf(stderr, "cgloo-run: rank %d exited with status %d\n", r, WEXITSTATUS(status));
        record_failure(l, WEXITSTATUS(status));
    } else if (WIFSIGNALED(status)) {
        int sig = WTERMSIG(status);
        int ours = l->kill_at != 0 && (sig == SIGTERM || sig == SIGKILL);
        if (!ours) /* ranks we terminated after a failure need no line of their own */
            fprintf(stderr, "cgloo-run: rank %d was killed by signal %d (%s)\n", r, sig,
                    strsignal(sig));
        record_failure(l, 128 + sig);
    }
}

/* reap collects every rank that ended. waitpid hands over ranks that ended close together in
 * no order of time, so of those, the ones killed by a signal are acted on first: a rank killed
 * from outside is the likelier first failure, and the others most likely failed because it
 * died (its status is then cgloo-run's). */
static void reap(launcher *l)
{
    int status;
    pid_t pid;
    while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
        for (int r = 0; r < l->n; r++) {
            if (l->ranks[r].pid == pid && (WIFEXITED(status) || WIFSIGNALED(status))) {
                l->ranks[r].pid = 0;
                l->ranks[r].ended = 1;
                l->ranks[r].status = status;
                l->running--;
            }
        }
    }
    for (int signalled = 1; signalled >= 0; signalled--)
        for (int r = 0; r < l->n; r++)
            if (l->ranks[r].ended && !WIFSIGNALED(l->ranks[r].status) == !signalled) {
                l->ranks[r].ended = 0;
                on_exit_status(l, r, l->ranks[r].status);
            }
}

static void on_signal(launcher *l)
{
    struct signalfd_siginfo si;
    while (read(l->sigfd, &si, sizeof si) == (ssize_t)sizeof si) {
        if (si.ssi_signo == SIGCHLD) {
            reap(l);
        } else {
            l->forwarded = (int)si.ssi_signo;
            signal_running(l, (int)si.ssi_signo);
            start_grace(l); /* ranks that ignore it are terminated after the grace period */
        }
    }
    reap(l); /* SIGCHLDs merge: reap whatever is left */
}

/* escalate sends SIGTERM, then SIGKILL, when their time has come; returns the poll timeout. */
static int escalate(launcher *l)
{
    int64_t now = now_ms();
    if (l->running == 0 || l->term_at == 0 || l->killed)
        return -1;
    if (l->kill_at == 0 && now >= l->term_at) {
        fprintf(stderr, "cgloo-run: terminating %d remaining rank(s)\n", l->running);
        signal_running(l, SIGTERM);
        l->kill_at = now + KILL_DELAY_MS;
    } else if (l->kill_at && now >= l->kill_at) {
        fprintf(stderr, "cgloo-run: killing %d rank(s) that ignored SIGTERM\n", l->running);
        signal_running(l, SIGKILL);
        l->killed = 1;
        return -1;
    }
    int64_t next = l->kill_at ? l->kill_at : l->term_at;
    return next > now ? (int)(next - now) : 0;
}

/* ---- the main loop ---- */

/* open_streams counts the rank output streams not yet at end of file, filling pfds. */
static int open_streams(launcher *l, struct pollfd *pfds, int (*who)[2])
{
    int k = 0;
    for (int r = 0; r < l->n; r++) {
        for (int s = 0; s < 2; s++) {
            if (l->ranks[r].out[s].fd >= 0) {
                pfds[k] = (struct pollfd){.fd = l->ranks[r].out[s].fd, .events = POLLIN};
                who[k][0] = r;
                who[k++][1] = s;
            }
        }
    }
    return k;
}

/* run_loop forwards signals, copies output and reaps ranks until all are gone. */
static int run_loop(launcher *l)
{
    struct pollfd *pfds = malloc((size_t)(2 * l->n + 1) * sizeof *pfds);
    int(*who)[2] = malloc((size_t)(2 * l->n) * sizeof *who);
    if (!pfds || !who) {
        free(pfds);
        free(who);
        return -1;
    }
    int streams;
    do {
        int timeout = escalate(l);
        streams = open_streams(l, pfds + 1, who);
        pfds[0] = (struct pollfd){.fd = l->sigfd, .events = POLLIN};
        if (l->running == 0)
            timeout = 0; /* the ranks are gone: drain what they left in the pipes, no more */
        int n = poll(pfds, (nfds_t)streams + 1, timeout);
        if (n > 0 && pfds[0].revents)
            on_signal(l);
        for (int k = 0; n > 0 && k < streams; k++)
            if (pfds[k + 1].revents)
                on_output(&l->ranks[who[k][0]].out[who[k][1]], who[k][0]);
        if (l->running == 0 && n == 0)
            break;
    } while (l->running > 0 || streams > 0);
    for (int r = 0; r < l->n; r++)
        for (int s = 0; s < 2; s++)
            if (l->ranks[r].out[s].fd >= 0)
                close_stream(&l->ranks[r].out[s], r);
    free(pfds);
    free(who);
    return 0;
}

/* start_ranks spawns every rank; stops at the first that cannot start (a failure). */
static void start_ranks(launcher *l, const char *url, const char *run_id)
{
    char storage[OUR_VARS][ENV_ENTRY_MAX];
    for (int r = 0; r < l->n; r++) {
        rank_cmd cmd = {0};
        char **env = rank_env(l, r, url, run_id, storage);
        int err = env && rank_cmd_make(l, r, env, &cmd) == 0 ? 0 : ENOMEM;
        if (!err)
            err = spawn_rank(l, r, cmd.argv, env);
        else
            fprintf(stderr, "cgloo-run: cannot build rank %d's command: out of memory\n", r);
        cmd_free(&cmd);
        free(env);
        if (err) {
            record_failure(l, err == ENOENT ? 127 : 126);
            return;
        }
    }
}

/* block_signals routes our signals to a signalfd; blocked before the store's thread starts so
 * that it inherits the mask. SIGPIPE is blocked too, not ignored: a write to a closed pipe
 * then fails with EPIPE all the same, and the ranks inherit no ignored signal to undo. */
/* raise_fd_limit lifts the soft limit on open files to the hard one, for cgloo-run (which holds
 * a few descriptors per rank) and the ranks, which inherit it: a full mesh holds one per peer,
 * and a soft limit of 1024, common by default, stops a job near a thousand ranks. */
static void raise_fd_limit(void)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
        lim.rlim_cur = lim.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &lim); /* ranks still check their own limit */
    }
}

static int block_signals(launcher *l)
{
    sigset_t set, blocked;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGCHLD);
    blocked = set;
    sigaddset(&blocked, SIGPIPE);
    if (sigprocmask(SIG_BLOCK, &blocked, NULL) != 0)
        return -1;
    l->sigfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
    return l->sigfd >= 0 ? 0 : -1;
}

/* prepare_secret makes the run's job secret (see the top of this file), in our environment so
 * that the store server and every rank inherit it. Returns 0, or 2 for a refused setting. */
static int prepare_secret(const launcher *l)
{
    const char *env = getenv("CGLOO_SECRET"), *file = getenv("CGLOO_SECRET_FILE");
    if (env && *env && l->prefix) {
        fprintf(stderr, "cgloo-run: CGLOO_SECRET would go on the --launcher command line, where "
                        "every user of the host sees it: use CGLOO_SECRET_FILE\n");
        return 2;
    }
    if ((env && *env) || (file && *file) || l->no_secret || l->prefix || !cgloo_secret_supported())
        return 0;
    uint8_t key[32];
    char hex[2 * sizeof key + 1];
    if (getrandom(key, sizeof key, 0) != (ssize_t)sizeof key) {
        fprintf(stderr, "cgloo-run: no randomness for the job secret: %s\n", strerror(errno));
        return 1;
    }
    for (size_t i = 0; i < sizeof key; i++)
        snprintf(hex + 2 * i, 3, "%02x", key[i]);
    int rc = setenv("CGLOO_SECRET", hex, 1);
    explicit_bzero(key, sizeof key);
    explicit_bzero(hex, sizeof hex);
    if (rc != 0)
        fprintf(stderr, "cgloo-run: cannot set CGLOO_SECRET: %s\n", strerror(errno));
    return rc != 0;
}

static int start_store(launcher *l, cgloo_store_server **server, char *url, size_t size)
{
    int rc = cgloo_store_server_start(l->host, 0, server);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "cgloo-run: cannot start the store on %s: %s (%s)\n", l->host,
                cgloo_strerror(rc), detail);
        return -1;
    }
    int v6 = strchr(l->host, ':') != NULL;
    snprintf(url, size, "tcp://%s%s%s:%d", v6 ? "[" : "", l->host, v6 ? "]" : "",
             cgloo_store_server_port(*server));
    return 0;
}

/* launcher_free frees what main allocated for the run. */
static void launcher_free(launcher *l)
{
    free(l->ranks);
    for (int h = 0; h < l->nhosts; h++) {
        free(l->hosts[h].name);
        free(l->hosts[h].addr);
    }
    free(l->hosts);
}

int main(int argc, char **argv)
{
    launcher l = {
        .grace_ms = GRACE_DEFAULT_MS, .host = "127.0.0.1", .bind = "auto", .exit_code = -1};
    if (sched_getaffinity(0, sizeof l.cpus, &l.cpus) != 0)
        CPU_ZERO(&l.cpus);
    int rc = parse_args(&l, argc, argv);
    if (rc != 0) {
        usage(rc > 0 ? stdout : stderr);
        return rc > 0 ? 0 : 2;
    }
    if (strlen(l.host) > URL_MAX - 20) {
        usage_error("--host is too long", NULL);
        return 2;
    }
    if ((rc = prepare_secret(&l)) != 0)
        return rc;
    if (read_hosts(&l) != 0) {
        launcher_free(&l);
        return 2;
    }
    l.self = getpid();
    raise_fd_limit();
    if ((l.devnull = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) {
        fprintf(stderr, "cgloo-run: cannot open /dev/null: %s\n", strerror(errno));
        launcher_free(&l);
        return 1;
    }
    cgloo_store_server *server = NULL;
    char url[URL_MAX], run_id[40];
    l.ranks = calloc((size_t)l.n, sizeof *l.ranks);
    int setup = l.ranks ? block_signals(&l) : -1;
    if (setup != 0)
        fprintf(stderr, "cgloo-run: cannot set up: %s\n", strerror(errno));
    if (setup != 0 || start_store(&l, &server, url, sizeof url) != 0) {
        launcher_free(&l); /* start_store says why it failed */
        return 1;
    }
    make_run_id(run_id, sizeof run_id);
    for (int r = 0; r < l.n; r++)
        l.ranks[r].out[0].fd = l.ranks[r].out[1].fd = -1;
    start_ranks(&l, url, run_id);
    if (run_loop(&l) != 0) {
        signal_running(&l, SIGKILL);
        fprintf(stderr, "cgloo-run: out of memory\n");
    }
    cgloo_store_server_stop(server);
    launcher_free(&l);
    if (l.exit_code >= 0)
        return l.exit_code;
    return l.forwarded ? 128 + l.forwarded : 0;
}
