/* Reading the launchers' environments (cgloo_launch_info_from_env): which launcher wins when
 * several left variables, what each one's store is, Slurm's node lists, the job-id port, bad
 * values named in the detail; and cgloo_launch_store_open serving the store on rank 0 and
 * reaching it from rank 1. Each test runs in its own process, so setenv stays there. */
#define _GNU_SOURCE
#include "harness.h"
#include "rendezvous/launcher_env.h"

#include <string.h>

static const char *const all_vars[] = {"CGLOO_RANK",
                                       "CGLOO_SIZE",
                                       "CGLOO_LOCAL_RANK",
                                       "CGLOO_LOCAL_SIZE",
                                       "CGLOO_STORE",
                                       "CGLOO_STORE_HOST",
                                       "CGLOO_STORE_PORT",
                                       "CGLOO_WATCH_STORE",
                                       "RANK",
                                       "WORLD_SIZE",
                                       "LOCAL_RANK",
                                       "LOCAL_WORLD_SIZE",
                                       "MASTER_ADDR",
                                       "MASTER_PORT",
                                       "TORCHELASTIC_USE_AGENT_STORE",
                                       "TORCHELASTIC_RUN_ID",
                                       "TORCHELASTIC_RESTART_COUNT",
                                       "OMPI_COMM_WORLD_RANK",
                                       "OMPI_COMM_WORLD_SIZE",
                                       "OMPI_COMM_WORLD_LOCAL_RANK",
                                       "OMPI_COMM_WORLD_LOCAL_SIZE",
                                       "OMPI_MCA_ess_base_jobid",
                                       "PMIX_NAMESPACE",
                                       "PMI_RANK",
                                       "PMI_SIZE",
                                       "PMI_JOBID",
                                       "MPI_LOCALRANKID",
                                       "MPI_LOCALNRANKS",
                                       "I_MPI_HYDRA_UUID",
                                       "SLURM_PROCID",
                                       "SLURM_NTASKS",
                                       "SLURM_LOCALID",
                                       "SLURM_JOB_ID",
                                       "SLURM_STEP_ID",
                                       "SLURM_JOB_NODELIST",
                                       "SLURM_STEP_NODELIST",
                                       NULL};

static void clean_env(void)
{
    for (int i = 0; all_vars[i]; i++)
        unsetenv(all_vars[i]);
}

/* set_vars sets "NAME=value" pairs. */
static void set_vars(const char *const *pairs)
{
    for (; *pairs; pairs++) {
        char name[64];
        const char *eq = strchr(*pairs, '=');
        CHECK(eq && (size_t)(eq - *pairs) < sizeof name);
        memcpy(name, *pairs, (size_t)(eq - *pairs));
        name[eq - *pairs] = '\0';
        setenv(name, eq + 1, 1);
    }
}

static cgloo_launch_info info;

static void read_ok(void)
{
    CHECK_OK(cgloo_launch_info_from_env(&info));
    CHECK(info.detail[0] == '\0');
}

/* refused checks EINVAL and that the detail contains `what`. */
static void refused(const char *what)
{
    CHECK_STATUS(cgloo_launch_info_from_env(&info), CGLOO_EINVAL);
    if (!strstr(info.detail, what))
        fprintf(stderr, "  detail: %s\n", info.detail);
    CHECK(strstr(info.detail, what));
}

static void test_order(void)
{
    clean_env();
    refused("no launcher's variables");
    set_vars((const char *[]){"SLURM_PROCID=4", "SLURM_NTASKS=5", "SLURM_JOB_ID=77",
                              "SLURM_JOB_NODELIST=localhost", NULL});
    read_ok();
    CHECK(strcmp(info.launcher, "slurm") == 0 && info.rank == 4 && info.size == 5);
    set_vars((const char *[]){"PMI_RANK=3", "PMI_SIZE=5", "MPI_LOCALNRANKS=5", NULL});
    read_ok();
    CHECK(strcmp(info.launcher, "pmi") == 0 && info.rank == 3);
    set_vars((const char *[]){"OMPI_COMM_WORLD_RANK=2", "OMPI_COMM_WORLD_SIZE=5",
                              "OMPI_COMM_WORLD_LOCAL_SIZE=5", "OMPI_MCA_ess_base_jobid=1", NULL});
    read_ok();
    CHECK(strcmp(info.launcher, "openmpi") == 0 && info.rank == 2);
    set_vars((const char *[]){"RANK=1", "WORLD_SIZE=5", "MASTER_ADDR=127.0.0.1",
                              "MASTER_PORT=29500", NULL});
    read_ok();
    CHECK(strcmp(info.launcher, "torchrun") == 0 && info.rank == 1);
    set_vars((const char *[]){"CGLOO_RANK=0", "CGLOO_SIZE=5", "CGLOO_STORE=tcp://h:1", NULL});
    read_ok();
    CHECK(strcmp(info.launcher, "cgloo") == 0 && info.rank == 0 && info.size == 5);
    CHECK(strcmp(info.store, "tcp://h:1") == 0 && info.prefix[0] == '\0');
    CHECK(info.serve_port == 0 && info.local_rank == -1 && info.local_size == -1);
}

static void test_bad_values(void)
{
    clean_env();
    set_vars((const char *[]){"CGLOO_RANK=3", "CGLOO_SIZE=3", NULL});
    refused("CGLOO_RANK='3'");
    set_vars((const char *[]){"CGLOO_RANK=0", "CGLOO_SIZE=two", NULL});
    refused("CGLOO_SIZE='two'");
    set_vars((const char *[]){"CGLOO_SIZE=2", NULL});
    refused("CGLOO_STORE is not set");
    set_vars((const char *[]){"CGLOO_SIZE=1", NULL});
    read_ok(); /* one rank needs no store */
    CHECK(info.store[0] == '\0');
    clean_env();
    set_vars(
        (const char *[]){"RANK=0", "WORLD_SIZE=2", "MASTER_ADDR=a", "MASTER_PORT=99999", NULL});
    refused("MASTER_PORT='99999'");
    unsetenv("MASTER_ADDR");
    refused("MASTER_ADDR");
}

static void test_torchrun(void)
{
    clean_env();
    set_vars((const char *[]){"RANK=2", "WORLD_SIZE=3", "LOCAL_RANK=2", "LOCAL_WORLD_SIZE=3",
                              "MASTER_ADDR=127.0.0.1", "MASTER_PORT=29512",
                              "TORCHELASTIC_USE_AGENT_STORE=True", "TORCHELASTIC_RUN_ID=none",
                              "TORCHELASTIC_RESTART_COUNT=1", NULL});
    read_ok();
    CHECK(strcmp(info.store, "torch://127.0.0.1:29512") == 0);
    CHECK(strcmp(info.prefix, "cgloo/none/attempt_1") == 0);
    CHECK(info.local_rank == 2 && info.local_size == 3 && info.serve_port == 0);
    /* --standalone: nothing serves at MASTER_PORT, so rank 0 does, on the loopback. */
    set_vars((const char *[]){"TORCHELASTIC_USE_AGENT_STORE=False", "MASTER_ADDR=myhost", NULL});
    read_ok();
    CHECK(strcmp(info.store, "tcp://127.0.0.1:29512") == 0 && info.serve_port == 0);
    set_vars((const char *[]){"RANK=0", "LOCAL_RANK=0", NULL});
    read_ok();
    CHECK(info.serve_port == 29512 && strcmp(info.serve_host, "127.0.0.1") == 0);
    /* Several hosts: serve on every interface, the others dial MASTER_ADDR. */
    set_vars((const char *[]){"LOCAL_WORLD_SIZE=1", "MASTER_ADDR=fe80::1", NULL});
    read_ok();
    CHECK(strcmp(info.serve_host, "0.0.0.0") == 0);
    CHECK(strcmp(info.store, "tcp://[fe80::1]:29512") == 0);
}

static void test_openmpi(void)
{
    clean_env();
    set_vars((const char *[]){"OMPI_COMM_WORLD_RANK=1", "OMPI_COMM_WORLD_SIZE=3",
                              "OMPI_COMM_WORLD_LOCAL_RANK=1", "OMPI_COMM_WORLD_LOCAL_SIZE=3",
                              "OMPI_MCA_ess_base_jobid=1048838145", NULL});
    read_ok();
    int port = cgloo__launch_port("1048838145");
    CHECK(port >= 20000 && port < 30000);
    char want[64];
    snprintf(want, sizeof want, "tcp://127.0.0.1:%d", port);
    CHECK(strcmp(info.store, want) == 0 && strcmp(info.prefix, "cgloo/1048838145") == 0);
    CHECK(info.serve_port == 0 && info.local_rank == 1 && info.local_size == 3);
    set_vars((const char *[]){"CGLOO_STORE_PORT=23456", "OMPI_COMM_WORLD_RANK=0", NULL});
    read_ok();
    CHECK(info.serve_port == 23456 && strcmp(info.store, "tcp://127.0.0.1:23456") == 0);
    /* Several hosts: rank 0's host must be given. */
    set_vars((const char *[]){"OMPI_COMM_WORLD_LOCAL_SIZE=2", NULL});
    refused("CGLOO_STORE_HOST");
    set_vars((const char *[]){"CGLOO_STORE_HOST=node7", NULL});
    read_ok();
    CHECK(strcmp(info.store, "tcp://node7:23456") == 0 && strcmp(info.serve_host, "0.0.0.0") == 0);
    /* CGLOO_STORE wins, under the job's prefix. */
    set_vars((const char *[]){"CGLOO_STORE=tcp://shared:9", NULL});
    read_ok();
    CHECK(strcmp(info.store, "tcp://shared:9") == 0 && info.serve_port == 0);
    CHECK(strcmp(info.prefix, "cgloo/1048838145") == 0);
    /* No job id and no port. */
    clean_env();
    set_vars((const char *[]){"PMI_RANK=0", "PMI_SIZE=2", "MPI_LOCALNRANKS=2", NULL});
    refused("CGLOO_STORE_PORT");
    set_vars((const char *[]){"PMI_JOBID=42", NULL});
    read_ok();
    CHECK(info.serve_port == cgloo__launch_port("42"));
}

static void test_slurm(void)
{
    clean_env();
    set_vars((const char *[]){"SLURM_PROCID=3", "SLURM_NTASKS=8", "SLURM_LOCALID=1",
                              "SLURM_JOB_ID=991", "SLURM_STEP_ID=2",
                              "SLURM_JOB_NODELIST=node[01-04,07]", NULL});
    read_ok();
    char want[64];
    snprintf(want, sizeof want, "tcp://node01:%d", cgloo__launch_port("991.2"));
    CHECK(strcmp(info.store, want) == 0 && strcmp(info.prefix, "cgloo/991.2") == 0);
    CHECK(info.local_rank == 1 && info.local_size == -1);
    /* The step's own list comes first; one node means the loopback. */
    set_vars((const char *[]){"SLURM_STEP_NODELIST=gpu5", "SLURM_PROCID=0", NULL});
    read_ok();
    CHECK(strncmp(info.store, "tcp://127.0.0.1:", 16) == 0);
    CHECK(strcmp(info.serve_host, "127.0.0.1") == 0);
    set_vars((const char *[]){"SLURM_STEP_NODELIST=gpu[5-", NULL});
    refused("not a node list");
}

static void test_nodelist(void)
{
    static const struct {
        const char *list, *first;
        long count;
    } good[] = {
        {"node[01-04,07]", "node01", 5},
        {"a,b[1-2]", "a", 3},
        {"rack[1-2]-n[01-03]", "rack1-n01", 6},
        {"x", "x", 1},
        {"n[7]", "n7", 1},
        {"h1,h2,h3", "h1", 3},
    };
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        char buf[64];
        long n = 0;
        CHECK_OK(cgloo__nodelist_first(good[i].list, buf, sizeof buf, &n));
        CHECK(strcmp(buf, good[i].first) == 0 && n == good[i].count);
    }
    const char *bad[] = {"", "node[01-", "node[3-1]", "a,,b", "n[x]", "[1-2", "n]", "a b"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char buf[64];
        long n;
        CHECK_STATUS(cgloo__nodelist_first(bad[i], buf, sizeof buf, &n), CGLOO_EINVAL);
    }
    char tiny[4];
    long n;
    CHECK_STATUS(cgloo__nodelist_first("longname", tiny, sizeof tiny, &n), CGLOO_EINVAL);
}

/* free_port finds a port nothing listens on now. */
static int free_port(void)
{
    cgloo_store_server *s;
    CHECK_OK(cgloo_store_server_start(NULL, 0, &s));
    int port = cgloo_store_server_port(s);
    cgloo_store_server_stop(s);
    return port;
}

static void test_store_open(void)
{
    clean_env();
    char port[16];
    snprintf(port, sizeof port, "%d", free_port());
    setenv("CGLOO_STORE_PORT", port, 1);
    set_vars((const char *[]){"OMPI_COMM_WORLD_RANK=0", "OMPI_COMM_WORLD_SIZE=2",
                              "OMPI_COMM_WORLD_LOCAL_SIZE=2", "OMPI_MCA_ess_base_jobid=5", NULL});
    read_ok();
    cgloo_store *zero = NULL, *one = NULL, *plain = NULL;
    CHECK_OK(cgloo_launch_store_open(&info, 5000, &zero));
    setenv("OMPI_COMM_WORLD_RANK", "1", 1);
    read_ok();
    CHECK_OK(cgloo_launch_store_open(&info, 5000, &one));
    CHECK_OK(cgloo_store_set(zero, "k", "v0", 2));
    void *v = NULL;
    size_t n = 0;
    CHECK_OK(cgloo_store_get(one, "k", 2000, &v, &n));
    CHECK(n == 2 && memcmp(v, "v0", 2) == 0);
    cgloo_free(v);
    /* The keys live under the job's prefix in the server. */
    char url[64];
    snprintf(url, sizeof url, "tcp://127.0.0.1:%s", port);
    CHECK_OK(cgloo_store_open(url, 2000, &plain));
    CHECK_OK(cgloo_store_get(plain, "cgloo/5/k", 2000, &v, &n));
    cgloo_free(v);
    /* A second job hashed to the same port cannot serve: EADDR, said clearly. */
    setenv("OMPI_COMM_WORLD_RANK", "0", 1);
    read_ok();
    cgloo_store *again = NULL;
    CHECK_STATUS(cgloo_launch_store_open(&info, 1000, &again), CGLOO_EADDR);
    /* Rank 0's store owns the server: once it is gone, the others' calls fail. */
    cgloo_store_destroy(zero);
    int present;
    CHECK_STATUS(cgloo_store_check(one, (const char *const[]){"k"}, 1, &present), CGLOO_EIO);
    cgloo_store_destroy(one);
    cgloo_store_destroy(plain);
}

static const test_case tests[] = {
    {"order", test_order, 10},           {"bad_values", test_bad_values, 10},
    {"torchrun", test_torchrun, 10},     {"openmpi", test_openmpi, 10},
    {"slurm", test_slurm, 10},           {"nodelist", test_nodelist, 10},
    {"store_open", test_store_open, 20},
};
TEST_MAIN(tests)
