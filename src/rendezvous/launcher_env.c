/*
 * cgloo_launch_info_from_env: the rank, size and store of a process started by cgloo-run,
 * torchrun, mpirun (Open MPI), an MPICH/PMI launcher or srun (Slurm), read from the variables
 * each launcher sets, so that one program runs under any of them unchanged.
 *
 * Launchers are tried in a fixed order (the table `launchers`): a job started by one launcher
 * inside another's allocation (mpirun or torchrun inside a Slurm job) carries both sets of
 * variables, and the innermost launcher, the one that started this process, comes first.
 */
#include "rendezvous/launcher_env.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct launcher {
    const char *name;
    const char *rank, *size, *local_rank, *local_size; /* local_size may be NULL */
    /* where fills the store (or what rank 0 serves) when CGLOO_STORE is not set */
    int (*where)(cgloo_launch_info *li, const char *job);
    /* job writes this job's id (the same on every rank, different between jobs) into buf;
     * returns 0 when the launcher leaves no id */
    int (*job)(char *buf, size_t size);
} launcher;

/* refuse records why the environment does not do, for the caller's detail. */
static int refuse(cgloo_launch_info *li, const char *fmt, ...) CGLOO_PRINTF(2, 3);
static int refuse(cgloo_launch_info *li, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(li->detail, sizeof li->detail, fmt, ap);
    va_end(ap);
    return CGLOO_EINVAL;
}

/* env_text is the variable's value, or NULL when it is unset or empty. */
static const char *env_text(const char *name)
{
    const char *v = name ? getenv(name) : NULL;
    return v && *v ? v : NULL;
}

/* read_int reads variable `name` into *out when it is set; a malformed value is refused. */
static int read_int(cgloo_launch_info *li, const char *name, long min, long max, int *out)
{
    const char *v = env_text(name);
    long x;
    if (!v)
        return CGLOO_OK;
    if (cgloo__parse_int(v, min, max, &x) != CGLOO_OK)
        return refuse(li, "%s='%s' is not a whole number in [%ld, %ld]", name, v, min, max);
    *out = (int)x;
    return CGLOO_OK;
}

/* put_url writes scheme://host:port, bracketing an IPv6 address. */
static int put_url(cgloo_launch_info *li, const char *scheme, const char *host, int port)
{
    const char *open = strchr(host, ':') ? "[" : "", *close = *open ? "]" : "";
    int n =
        snprintf(li->store, sizeof li->store, "%s://%s%s%s:%d", scheme, open, host, close, port);
    return n > 0 && (size_t)n < sizeof li->store
               ? CGLOO_OK
               : refuse(li, "the store host '%s' is too long", host);
}

/* one_host tells whether every rank runs on this host, as far as the launcher says. */
static int one_host(const cgloo_launch_info *li)
{
    return li->local_size == li->size;
}

/* serve_here makes rank 0 host a TCP store at port: on the loopback when the job is on one
 * host (nothing else should reach it), else on every interface, since the others reach this
 * host by whatever name their launcher gave. The others connect to `host`. */
static int serve_here(cgloo_launch_info *li, const char *host, int port, int local)
{
    if (li->rank == 0) {
        snprintf(li->serve_host, sizeof li->serve_host, "%s", local ? "127.0.0.1" : "0.0.0.0");
        li->serve_port = port;
    }
    return put_url(li, "tcp", local ? "127.0.0.1" : host, port);
}

/* ---- where each launcher's ranks meet, when CGLOO_STORE does not say ---- */

static int where_cgloo(cgloo_launch_info *li, const char *job)
{
    return refuse(li, "CGLOO_STORE is not set");
}

/* torchrun: its agent serves a PyTorch store at MASTER_ADDR:MASTER_PORT when it says so
 * (static rendezvous); otherwise (--standalone, c10d rendezvous, or RANK and friends set by
 * hand) nothing listens there and rank 0 is the one expected to. */
static int where_torchrun(cgloo_launch_info *li, const char *job)
{
    const char *addr = env_text("MASTER_ADDR");
    int port = 0;
    if (!addr || !env_text("MASTER_PORT"))
        return refuse(li, "torchrun's MASTER_ADDR or MASTER_PORT is not set (or set CGLOO_STORE)");
    if (read_int(li, "MASTER_PORT", 1, 65535, &port) != CGLOO_OK)
        return CGLOO_EINVAL;
    const char *agent = env_text("TORCHELASTIC_USE_AGENT_STORE");
    if (agent && strcmp(agent, "True") == 0)
        return put_url(li, "torch", addr, port);
    return serve_here(li, addr, port, one_host(li));
}

/* store_host names rank 0's host for mpirun, PMI and Slurm: CGLOO_STORE_HOST, else the first
 * node of Slurm's list when the job spans several, else the loopback when it spans one. */
static int store_host(cgloo_launch_info *li, char *buf, size_t size, int *local)
{
    const char *given = env_text("CGLOO_STORE_HOST");
    const char *list = env_text("SLURM_STEP_NODELIST");
    long nodes = 0;
    *local = 0;
    if (given) {
        snprintf(buf, size, "%s", given);
        return CGLOO_OK;
    }
    if (!list)
        list = env_text("SLURM_JOB_NODELIST");
    if (list && strcmp(li->launcher, "slurm") == 0) {
        if (cgloo__nodelist_first(list, buf, size, &nodes) != CGLOO_OK)
            return refuse(li, "SLURM_JOB_NODELIST='%s' is not a node list", list);
        *local = nodes == 1;
        return CGLOO_OK;
    }
    if (one_host(li)) {
        *local = 1;
        return CGLOO_OK;
    }
    return refuse(li, "the ranks run on several hosts: set CGLOO_STORE_HOST to rank 0's host "
                      "(or CGLOO_STORE)");
}

/* where_rank0: mpirun, PMI and Slurm run no store; rank 0 serves one at a port every rank
 * derives from the job id, so that no rank needs to hear from another first. */
static int where_rank0(cgloo_launch_info *li, const char *job)
{
    int port = 0, local = 0;
    char host[256] = "";
    if (read_int(li, "CGLOO_STORE_PORT", 1, 65535, &port) != CGLOO_OK)
        return CGLOO_EINVAL;
    if (port == 0 && !job)
        return refuse(li,
                      "%s leaves no job id to derive the store's port from: set "
                      "CGLOO_STORE_PORT (or CGLOO_STORE)",
                      li->launcher);
    if (port == 0)
        port = cgloo__launch_port(job);
    if (store_host(li, host, sizeof host, &local) != CGLOO_OK)
        return CGLOO_EINVAL;
    return serve_here(li, host, port, local);
}

/* ---- job ids ---- */

/* first_of copies the first of the variables that is set; 0 when none is. */
static int first_of(char *buf, size_t size, const char *const *names)
{
    for (; *names; names++) {
        const char *v = env_text(*names);
        if (v) {
            snprintf(buf, size, "%s", v);
            return 1;
        }
    }
    return 0;
}

/* A torchrun job restarted after a failure keeps its run id: the attempt tells the rounds
 * apart, so that a restarted rank never reads the records of the round before. */
static int job_torchrun(char *buf, size_t size)
{
    const char *run = env_text("TORCHELASTIC_RUN_ID"), *attempt;
    attempt = env_text("TORCHELASTIC_RESTART_COUNT");
    snprintf(buf, size, "%s/attempt_%s", run ? run : "env", attempt ? attempt : "0");
    return 1;
}

static int job_openmpi(char *buf, size_t size)
{
    static const char *const names[] = {"OMPI_MCA_ess_base_jobid", "PMIX_NAMESPACE", NULL};
    return first_of(buf, size, names);
}

/* Two steps of one Slurm job may run at once on the same nodes: the step is part of the id. */
static int job_slurm(char *buf, size_t size)
{
    const char *job = env_text("SLURM_JOB_ID"), *step = env_text("SLURM_STEP_ID");
    if (!job)
        return 0;
    snprintf(buf, size, "%s.%s", job, step ? step : "0");
    return 1;
}

static int job_pmi(char *buf, size_t size)
{
    static const char *const names[] = {"PMI_JOBID", "PMIX_NAMESPACE", "I_MPI_HYDRA_UUID", NULL};
    return first_of(buf, size, names) || job_slurm(buf, size);
}

static int job_none(char *buf, size_t size)
{
    return 0;
}

static const launcher launchers[] = {
    {"cgloo", "CGLOO_RANK", "CGLOO_SIZE", "CGLOO_LOCAL_RANK", "CGLOO_LOCAL_SIZE", where_cgloo,
     job_none},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", where_torchrun,
     job_torchrun},
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE", where_rank0, job_openmpi},
    {"pmi", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS", where_rank0, job_pmi},
    {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", NULL, where_rank0, job_slurm},
};

/* ---- putting it together ---- */

static const launcher *recognise(void)
{
    for (size_t i = 0; i < sizeof launchers / sizeof launchers[0]; i++)
        if (env_text(launchers[i].rank) && env_text(launchers[i].size))
            return &launchers[i];
    return NULL;
}

static int read_ranks(cgloo_launch_info *li, const launcher *l)
{
    if (read_int(li, l->size, 1, 1L << 24, &li->size) != CGLOO_OK ||
        read_int(li, l->rank, 0, li->size - 1, &li->rank) != CGLOO_OK ||
        read_int(li, l->local_size, 1, li->size, &li->local_size) != CGLOO_OK ||
        read_int(li, l->local_rank, 0, li->size - 1, &li->local_rank) != CGLOO_OK)
        return CGLOO_EINVAL;
    return CGLOO_OK;
}

/* find_store sets the store: CGLOO_STORE, else the launcher's own place; keys of a job go under
 * a prefix of its own unless cgloo-run, which makes a store per job, started it. */
static int find_store(cgloo_launch_info *li, const launcher *l)
{
    char job[200];
    int have_job = l->job(job, sizeof job);
    const char *url = env_text("CGLOO_STORE");
    if (have_job)
        snprintf(li->prefix, sizeof li->prefix, "cgloo/%s", job);
    if (!url)
        return l->where(li, have_job ? job : NULL);
    if (strlen(url) >= sizeof li->store)
        return refuse(li, "CGLOO_STORE is too long");
    snprintf(li->store, sizeof li->store, "%s", url);
    return CGLOO_OK;
}

void cgloo__launch_log(const cgloo_launch_info *li, cgloo_log_level level)
{
    char serving[300] = "";
    if (li->serve_port > 0)
        snprintf(serving, sizeof serving, "; served by this rank on %s port %d", li->serve_host,
                 li->serve_port);
    CGLOO_LOG(level, li->rank, li->size, "launched by %s; store %s%s%s%s", li->launcher,
              li->size > 1 ? li->store : "(none: one rank)", li->prefix[0] ? " under " : "",
              li->prefix, serving);
}

int cgloo_launch_info_from_env(cgloo_launch_info *li)
{
    if (!li)
        return CGLOO_EINVAL;
    cgloo__log_init_from_env();
    *li = (cgloo_launch_info){.local_rank = -1, .local_size = -1};
    const launcher *l = recognise();
    int rc = CGLOO_OK;
    if (!l)
        rc = refuse(li, "no launcher's variables are set: CGLOO_RANK and CGLOO_SIZE (cgloo-run), "
                        "RANK and WORLD_SIZE (torchrun), OMPI_COMM_WORLD_RANK and _SIZE (mpirun), "
                        "PMI_RANK and PMI_SIZE, or SLURM_PROCID and SLURM_NTASKS (srun)");
    else
        li->launcher = l->name;
    if (rc == CGLOO_OK)
        rc = read_ranks(li, l);
    if (rc == CGLOO_OK && li->size > 1)
        rc = find_store(li, l);
    const char *watch = env_text("CGLOO_WATCH_STORE");
    li->watch_store = watch && strcmp(watch, "1") == 0;
    /* A job of several ranks says it at INFO once its store is open (cgloo_launch_store_open),
     * so that reading the environment twice (Python does) logs it once. */
    if (rc == CGLOO_OK)
        cgloo__launch_log(li, li->size > 1 ? CGLOO_LOG_DEBUG : CGLOO_LOG_INFO);
    return rc;
}

/* ---- helpers ---- */

int cgloo__launch_port(const char *job_id)
{
    uint64_t h = cgloo__hash64(job_id, strlen(job_id));
    return CGLOO_LAUNCH_PORT_MIN + (int)(h % CGLOO_LAUNCH_PORT_SPAN);
}

/* A name being built: the first host's text, bounded by the caller's buffer. */
typedef struct name_buf {
    char *p;
    size_t len, size;
    int overflow;
} name_buf;

static void name_put(name_buf *b, const char *s, size_t n)
{
    if (b->len + n >= b->size) {
        b->overflow = 1;
        return;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* read_range reads "lo" or "lo-hi" at *p; the first range's lo (as written, zeros kept) is the
 * first host's. */
static int read_range(const char **p, long *lo, long *hi, size_t *lo_len)
{
    const char *s = *p;
    char *end;
    if (!isdigit((unsigned char)*s))
        return CGLOO_EINVAL;
    *lo = *hi = strtol(s, &end, 10);
    *lo_len = (size_t)(end - s);
    if (*end == '-') {
        s = end + 1;
        if (!isdigit((unsigned char)*s))
            return CGLOO_EINVAL;
        *hi = strtol(s, &end, 10);
    }
    *p = end;
    return *hi >= *lo && *hi - *lo < 1000000 ? CGLOO_OK : CGLOO_EINVAL;
}

/* read_group reads "[a-b,c,...]" at *p: its first value goes into the name when `first`, and
 * *count gets the number of values. */
static int read_group(const char **p, name_buf *name, int first, long *count)
{
    const char *s = *p + 1;
    *count = 0;
    for (int i = 0;; i++) {
        long lo, hi;
        size_t lo_len;
        const char *at = s;
        if (read_range(&s, &lo, &hi, &lo_len) != CGLOO_OK)
            return CGLOO_EINVAL;
        if (first && i == 0)
            name_put(name, at, lo_len);
        *count += hi - lo + 1;
        if (*s == ']')
            break;
        if (*s++ != ',')
            return CGLOO_EINVAL;
    }
    *p = s + 1;
    return CGLOO_OK;
}

/* read_item reads one entry of the list ("rack[1-2]-n[01-04]"), counting the hosts it names. */
static int read_item(const char **p, name_buf *name, int first, long *count)
{
    const char *s = *p;
    *count = 1;
    while (*s && *s != ',') {
        if (*s == '[') {
            long n;
            if (read_group(&s, name, first, &n) != CGLOO_OK || *count > 1000000000L / n)
                return CGLOO_EINVAL;
            *count *= n;
        } else if (*s == ']' || isspace((unsigned char)*s)) {
            return CGLOO_EINVAL;
        } else {
            if (first)
                name_put(name, s, 1);
            s++;
        }
    }
    if (s == *p)
        return CGLOO_EINVAL;
    *p = *s == ',' ? s + 1 : s;
    return CGLOO_OK;
}

int cgloo__nodelist_first(const char *list, char *buf, size_t size, long *count)
{
    if (!list || !buf || size == 0 || !*list)
        return CGLOO_EINVAL;
    name_buf name = {.p = buf, .size = size};
    buf[0] = '\0';
    *count = 0;
    for (int first = 1; *list; first = 0) {
        long n;
        if (read_item(&list, &name, first, &n) != CGLOO_OK || *count > 1000000000L - n)
            return CGLOO_EINVAL;
        *count += n;
    }
    return name.overflow || name.len == 0 ? CGLOO_EINVAL : CGLOO_OK;
}
