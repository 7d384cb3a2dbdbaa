/* The file store: set/get, timeouts, keys that are hostile file names, long keys and forced hash
 * collisions, large values, counters, run-id scoping, and many threads and processes sharing
 * one directory: waits, atomic adds, and readers racing a writer. */
#define _GNU_SOURCE /* F_OFD_SETLK */
#include "harness.h"
#include "store/file_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* path_join returns "a/b" in one of a few rotating static buffers (a may be an earlier one). */
static char *path_join(const char *a, const char *b)
{
    static char bufs[8][1024];
    static int next;
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/%s", a, b);
    char *p = bufs[next++ % 8];
    memcpy(p, tmp, sizeof tmp);
    return p;
}

static cgloo_store *open_store(const char *dir, const char *run_id)
{
    cgloo_store *s = NULL;
    CHECK_OK(cgloo_store_file_create(dir, run_id, &s));
    return s;
}

/* expect_value gets key and checks it holds exactly want[0..n) followed by a NUL. */
static void expect_value(cgloo_store *s, const char *key, const void *want, size_t n)
{
    void *v = NULL;
    size_t len = 0;
    CHECK_OK(cgloo_store_get(s, key, 2000, &v, &len));
    CHECK(len == n);
    CHECK(n == 0 || memcmp(v, want, n) == 0);
    CHECK(((char *)v)[len] == '\0');
    cgloo_free(v);
}

static void expect_absent(cgloo_store *s, const char *key)
{
    int present = -1;
    CHECK_OK(cgloo_store_check(s, &key, 1, &present));
    CHECK(present == 0);
    void *v = NULL;
    size_t n = 0;
    CHECK_STATUS(cgloo_store_get(s, key, 20, &v, &n), CGLOO_ETIMEDOUT);
    CHECK(v == NULL);
}

/* count_entries counts names in dir that start with prefix ("" for all), recursing into
 * subdirectories when recurse is set. */
static int count_entries(const char *dir, const char *prefix, int recurse)
{
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
        if (recurse && e->d_type == DT_DIR)
            n += count_entries(path_join(dir, e->d_name), prefix, 1);
    }
    closedir(d);
    return n;
}

static void test_set_get(void)
{
    const char *dir = test_tmpdir();
    cgloo_store *s = open_store(dir, "run");
    CHECK_OK(cgloo_store_set(s, "a", "hello", 5));
    expect_value(s, "a", "hello", 5);
    CHECK_OK(cgloo_store_set(s, "a", "a longer value", 14));
    expect_value(s, "a", "a longer value", 14);
    CHECK_OK(cgloo_store_set(s, "a", "", 0));
    expect_value(s, "a", "", 0);
    CHECK_OK(cgloo_store_set(s, "bin", "x\0y", 3));
    expect_value(s, "bin", "x\0y", 3);
    cgloo_store_destroy(s);
    /* The value lives in the directory, not the handle. */
    s = open_store(dir, "run");
    expect_value(s, "bin", "x\0y", 3);
    const char *keys[] = {"a", "bin"};
    void *vals[2];
    size_t lens[2];
    CHECK_OK(cgloo_store_multi_get(s, keys, 2, 1000, vals, lens));
    CHECK(lens[0] == 0 && lens[1] == 3 && memcmp(vals[1], "x\0y", 3) == 0);
    cgloo_free(vals[0]);
    cgloo_free(vals[1]);
    cgloo_store_destroy(s);
}

static void test_timeout(void)
{
    cgloo_store *s = open_store(test_tmpdir(), NULL);
    void *v = NULL;
    size_t n = 0;
    int64_t t0 = now_ms();
    CHECK_STATUS(cgloo_store_get(s, "missing", 150, &v, &n), CGLOO_ETIMEDOUT);
    int64_t took = now_ms() - t0;
    CHECK(took >= 145 && took < 700);
    CHECK(v == NULL);
    const char *keys[] = {"x", "y"};
    CHECK_OK(cgloo_store_set(s, "x", "1", 1));
    t0 = now_ms();
    CHECK_STATUS(cgloo_store_wait(s, keys, 2, 100), CGLOO_ETIMEDOUT);
    took = now_ms() - t0;
    CHECK(took >= 95 && took < 700);
    int present = -1;
    CHECK_OK(cgloo_store_check(s, keys, 2, &present));
    CHECK(present == 0);
    CHECK_OK(cgloo_store_set(s, "y", "2", 1));
    CHECK_OK(cgloo_store_check(s, keys, 2, &present));
    CHECK(present == 1);
    CHECK_OK(cgloo_store_wait(s, keys, 2, 100));
    cgloo_store_destroy(s);
}

typedef struct late_setter {
    const char *dir;
    int delay_ms;
} late_setter;

static void *set_later(void *arg)
{
    late_setter *ls = arg;
    cgloo_store *s = open_store(ls->dir, "late");
    struct timespec ts = {0, (long)ls->delay_ms * 1000000};
    nanosleep(&ts, NULL);
    CHECK_OK(cgloo_store_set(s, "late/1", "one", 3));
    CHECK_OK(cgloo_store_set(s, "late/2", "two", 3));
    cgloo_store_destroy(s);
    return NULL;
}

/* A waiter wakes soon after the key appears, not at its deadline. */
static void test_wait_for_late_key(void)
{
    late_setter ls = {test_tmpdir(), 150};
    cgloo_store *s = open_store(ls.dir, "late");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, set_later, &ls) == 0);
    int64_t t0 = now_ms();
    const char *keys[] = {"late/1", "late/2"};
    CHECK_OK(cgloo_store_wait(s, keys, 2, 10000));
    expect_value(s, "late/2", "two", 3);
    int64_t took = now_ms() - t0;
    CHECK(took >= 100 && took < 3000);
    pthread_join(t, NULL);
    cgloo_store_destroy(s);
}

/* Keys that would be dangerous or ambiguous as file names. */
static void test_odd_keys(void)
{
    const char *top = test_tmpdir();
    const char *dir = path_join(top, "store");
    cgloo_store *s = open_store(dir, NULL);
    static char k1024[1025], slashes[1025], long_a[1025], long_b[1025], plain200[201],
        plain201[202], slash66[67], slash67[68];
    memset(k1024, 'x', 1024);
    memset(slashes, '/', 1024);
    memset(long_a, '/', 1000);
    memcpy(long_a + 1000, "tail-a", 7);
    memset(long_b, '/', 1000);
    memcpy(long_b + 1000, "tail-b", 7);
    memset(plain200, 'p', 200);
    memset(plain201, 'p', 201);
    memset(slash66, '/', 66); /* 198 encoded bytes: the longest readable name */
    memset(slash67, '/', 67); /* 201: hashed */
    const char *keys[] = {"a/b",       "/",     "//",         "..",    ".",        "../up",
                          "a/../../b", "a b",   "new\nline",  "tab\t", "\xff\xfe", "\x80",
                          "%2F",       "%",     "%%",         "k.x",   "h.y",      "t.0000",
                          "l.k.x",     "A",     "a",          "-",     "_",        "r.run",
                          k1024,       slashes, long_a,       long_b,  plain200,   plain201,
                          slash66,     slash67, "caf\xc3\xa9"};
    size_t nkeys = sizeof keys / sizeof keys[0];
    char val[32];
    for (size_t i = 0; i < nkeys; i++) {
        snprintf(val, sizeof val, "value-%zu", i);
        CHECK_OK(cgloo_store_set(s, keys[i], val, strlen(val)));
    }
    for (size_t i = 0; i < nkeys; i++) {
        snprintf(val, sizeof val, "value-%zu", i);
        expect_value(s, keys[i], val, strlen(val));
    }
    /* Nothing escaped the store directory, and every file has a safe, bounded name. */
    CHECK(count_entries(top, "", 0) == 1);
    DIR *d = opendir(dir);
    CHECK(d != NULL);
    struct dirent *e;
    int files = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || strcmp(e->d_name, "..") == 0))
            continue;
        CHECK(strlen(e->d_name) <= 255);
        CHECK(e->d_type == DT_REG);
        if (strncmp(e->d_name, "l.", 2) == 0)
            continue; /* long keys' bucket locks */
        CHECK(strncmp(e->d_name, "k.", 2) == 0 || strncmp(e->d_name, "h.", 2) == 0);
        files++;
    }
    closedir(d);
    CHECK(files == (int)nkeys);
    for (size_t i = 0; i < nkeys; i++)
        CHECK_OK(cgloo_store_delete(s, keys[i]));
    for (size_t i = 0; i < nkeys; i++)
        expect_absent(s, keys[i]);
    CHECK(count_entries(dir, "k.", 0) == 0 && count_entries(dir, "h.", 0) == 0);
    CHECK(count_entries(dir, "l.", 0) == 6); /* the six long keys' bucket locks */
    cgloo_store_destroy(s);
}

static uint64_t same_hash(const void *data, size_t len)
{
    (void)data;
    (void)len;
    return 42;
}

/* With every long key hashed alike, keys share one bucket and still keep their own values
 * through sets, deletes in the middle and at the end, re-sets and adds. */
static void test_long_key_collisions(void)
{
    const char *dir = test_tmpdir();
    cgloo_store *s = open_store(dir, NULL);
    cgloo__file_store_set_name_hash(s, same_hash);
    enum { N = 6 };
    static char keys[N][1010];
    char val[32];
    for (int i = 0; i < N; i++) {
        memset(keys[i], 'q', 1000);
        snprintf(keys[i] + 1000, 10, "-%d", i);
        snprintf(val, sizeof val, "val-%d", i);
        CHECK_OK(cgloo_store_set(s, keys[i], val, strlen(val)));
    }
    CHECK(count_entries(dir, "h.", 0) == N);
    for (int i = 0; i < N; i++) {
        snprintf(val, sizeof val, "val-%d", i);
        expect_value(s, keys[i], val, strlen(val));
    }
    CHECK_OK(cgloo_store_set(s, keys[3], "new-3", 5));
    expect_value(s, keys[3], "new-3", 5);
    CHECK(count_entries(dir, "h.", 0) == N);
    /* A middle delete leaves a tombstone; deleting at the end trims tombstones too. */
    CHECK_OK(cgloo_store_delete(s, keys[2]));
    expect_absent(s, keys[2]);
    expect_value(s, keys[4], "val-4", 5);
    CHECK_OK(cgloo_store_delete(s, keys[2]));
    CHECK_OK(cgloo_store_delete(s, keys[5]));
    CHECK_OK(cgloo_store_delete(s, keys[4]));
    CHECK_OK(cgloo_store_delete(s, keys[3]));
    CHECK(count_entries(dir, "h.", 0) == 2);
    expect_value(s, keys[1], "val-1", 5);
    for (int i = 2; i < N; i++)
        expect_absent(s, keys[i]);
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, keys[4], 7, &r));
    CHECK(r == 7);
    CHECK_OK(cgloo_store_add(s, keys[4], 3, &r));
    CHECK(r == 10);
    expect_value(s, keys[4], "10", 2);
    CHECK_STATUS(cgloo_store_add(s, keys[0], 1, &r), CGLOO_ESTORE);
    CHECK_OK(cgloo_store_set(s, keys[2], "", 0));
    expect_value(s, keys[2], "", 0);
    expect_value(s, keys[0], "val-0", 5);
    for (int i = 0; i < N; i++)
        CHECK_OK(cgloo_store_delete(s, keys[i]));
    CHECK(count_entries(dir, "h.", 0) == 0);
    cgloo_store_destroy(s);
}

static void fill_pattern(unsigned char *buf, size_t n, uint32_t seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        buf[i] = (unsigned char)x;
    }
}

static void test_large_values(void)
{
    cgloo_store *s = open_store(test_tmpdir(), "big");
    size_t n = 6u << 20;
    unsigned char *buf = malloc(n);
    CHECK(buf != NULL);
    fill_pattern(buf, n, 1);
    CHECK_OK(cgloo_store_set(s, "big", buf, n));
    expect_value(s, "big", buf, n);
    fill_pattern(buf, n / 2 + 3, 2);
    CHECK_OK(cgloo_store_set(s, "big", buf, n / 2 + 3));
    expect_value(s, "big", buf, n / 2 + 3);
    static char long_key[1025];
    memset(long_key, '\x01', 1024);
    CHECK_OK(cgloo_store_set(s, long_key, buf, n));
    expect_value(s, long_key, buf, n);
    free(buf);
    cgloo_store_destroy(s);
}

static void test_add_counters(void)
{
    cgloo_store *s = open_store(test_tmpdir(), "add");
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "c", 5, &r));
    CHECK(r == 5);
    CHECK_OK(cgloo_store_add(s, "c", -7, &r));
    CHECK(r == -2);
    expect_value(s, "c", "-2", 2);
    CHECK_OK(cgloo_store_add(s, "c", 0, NULL));
    CHECK_OK(cgloo_store_set(s, "n", "41", 2));
    CHECK_OK(cgloo_store_add(s, "n", 1, &r));
    CHECK(r == 42);
    CHECK_OK(cgloo_store_set(s, "text", "abc", 3));
    CHECK_STATUS(cgloo_store_add(s, "text", 1, &r), CGLOO_ESTORE);
    expect_value(s, "text", "abc", 3);
    CHECK_OK(cgloo_store_set(s, "empty", "", 0));
    CHECK_STATUS(cgloo_store_add(s, "empty", 1, &r), CGLOO_ESTORE);
    CHECK_OK(cgloo_store_delete(s, "c"));
    CHECK_OK(cgloo_store_add(s, "c", 1, &r));
    CHECK(r == 1);
    CHECK_OK(cgloo_store_add(s, "max", INT64_MAX, &r));
    CHECK_OK(cgloo_store_add(s, "max", 1, &r));
    CHECK(r == INT64_MIN);
    cgloo_store_destroy(s);
}

static void test_delete_check(void)
{
    cgloo_store *s = open_store(test_tmpdir(), NULL);
    static char long_key[1025];
    memset(long_key, 'L', 1024);
    const char *keys[] = {"d1", "d2", long_key};
    CHECK_OK(cgloo_store_delete(s, "never"));
    CHECK_OK(cgloo_store_delete(s, long_key));
    int present = -1;
    CHECK_OK(cgloo_store_check(s, keys, 3, &present));
    CHECK(present == 0);
    for (int i = 0; i < 3; i++)
        CHECK_OK(cgloo_store_set(s, keys[i], "v", 1));
    CHECK_OK(cgloo_store_check(s, keys, 3, &present));
    CHECK(present == 1);
    CHECK_OK(cgloo_store_delete(s, "d2"));
    CHECK_OK(cgloo_store_check(s, keys, 3, &present));
    CHECK(present == 0);
    expect_absent(s, "d2");
    CHECK_OK(cgloo_store_delete(s, long_key));
    expect_absent(s, long_key);
    expect_value(s, "d1", "v", 1);
    /* check never waits, even for keys that will never come. */
    int64_t t0 = now_ms();
    for (int i = 0; i < 100; i++)
        CHECK_OK(cgloo_store_check(s, keys, 3, &present));
    CHECK(now_ms() - t0 < 1000);
    cgloo_store_destroy(s);
}

/* Each rank publishes its key and reads everyone's; odd ranks use a handle of their own. */
static cgloo_store *shared_store;
static const char *shared_dir;

static void rank_exchange(int rank, int size, void *arg)
{
    (void)arg;
    cgloo_store *s = rank % 2 ? open_store(shared_dir, "threads") : shared_store;
    char key[32], val[32];
    snprintf(key, sizeof key, "rank/%d", rank);
    snprintf(val, sizeof val, "value-%d", rank);
    CHECK_OK(cgloo_store_set(s, key, val, strlen(val)));
    CHECK_OK(cgloo_store_add(s, "arrived", 1, NULL));
    for (int p = 0; p < size; p++) {
        snprintf(key, sizeof key, "rank/%d", p);
        snprintf(val, sizeof val, "value-%d", p);
        expect_value(s, key, val, strlen(val));
    }
    if (s != shared_store)
        cgloo_store_destroy(s);
}

static void test_concurrent_threads(void)
{
    shared_dir = test_tmpdir();
    shared_store = open_store(shared_dir, "threads");
    run_ranks(16, rank_exchange, NULL);
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(shared_store, "arrived", 0, &r));
    CHECK(r == 16);
    cgloo_store_destroy(shared_store);
}

/* Adds from threads: the lock excludes threads of one process, sharing a handle or not. */
static void rank_add(int rank, int size, void *arg)
{
    (void)size;
    (void)arg;
    cgloo_store *s = rank % 2 ? open_store(shared_dir, NULL) : shared_store;
    int64_t last = 0, r = 0;
    for (int i = 0; i < 100; i++) {
        CHECK_OK(cgloo_store_add(s, "count", 1, &r));
        CHECK(r > last);
        last = r;
    }
    if (s != shared_store)
        cgloo_store_destroy(s);
}

static void test_add_threads(void)
{
    shared_dir = test_tmpdir();
    shared_store = open_store(shared_dir, NULL);
    run_ranks(8, rank_add, NULL);
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(shared_store, "count", 0, &r));
    CHECK(r == 800);
    cgloo_store_destroy(shared_store);
}

/* run_children forks n children running fn(rank, n, dir) and checks every one exits 0. */
static void run_children(int n, void (*fn)(int, int, const char *), const char *dir)
{
    pid_t pids[16];
    CHECK(n <= 16);
    fflush(NULL);
    for (int r = 0; r < n; r++) {
        pids[r] = fork();
        CHECK(pids[r] >= 0);
        if (pids[r] == 0) {
            fn(r, n, dir);
            _exit(0);
        }
    }
    int failed = 0;
    for (int r = 0; r < n; r++) {
        int status = 0;
        CHECK(waitpid(pids[r], &status, 0) == pids[r]);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            failed++;
    }
    CHECK(failed == 0);
}

static void proc_exchange(int rank, int size, const char *dir)
{
    cgloo_store *s = open_store(dir, "procs");
    char key[32], val[32];
    snprintf(key, sizeof key, "rank/%d", rank);
    snprintf(val, sizeof val, "value-%d", rank);
    CHECK_OK(cgloo_store_set(s, key, val, strlen(val)));
    CHECK_OK(cgloo_store_add(s, "arrived", 1, NULL));
    for (int p = size - 1; p >= 0; p--) {
        snprintf(key, sizeof key, "rank/%d", p);
        snprintf(val, sizeof val, "value-%d", p);
        expect_value(s, key, val, strlen(val));
    }
    cgloo_store_destroy(s);
}

static void test_concurrent_processes(void)
{
    const char *dir = test_tmpdir();
    run_children(7, proc_exchange, dir);
    cgloo_store *s = open_store(dir, "procs");
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "arrived", 0, &r));
    CHECK(r == 7);
    cgloo_store_destroy(s);
}

enum { ADD_PROCS = 8, ADDS_EACH = 200 };

/* Each process adds 1 ADDS_EACH times and publishes the results it got. */
static void proc_add(int rank, int size, const char *dir)
{
    (void)size;
    cgloo_store *s = open_store(dir, "adds");
    int64_t got[ADDS_EACH];
    for (int i = 0; i < ADDS_EACH; i++) {
        CHECK_OK(cgloo_store_add(s, "counter", 1, &got[i]));
        CHECK(i == 0 || got[i] > got[i - 1]);
    }
    char key[32];
    snprintf(key, sizeof key, "results/%d", rank);
    CHECK_OK(cgloo_store_set(s, key, got, sizeof got));
    cgloo_store_destroy(s);
}

/* Every add's result is unique across processes: 1..N, each exactly once. */
static void test_add_processes(void)
{
    const char *dir = test_tmpdir();
    run_children(ADD_PROCS, proc_add, dir);
    cgloo_store *s = open_store(dir, "adds");
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "counter", 0, &r));
    CHECK(r == ADD_PROCS * ADDS_EACH);
    static unsigned char seen[ADD_PROCS * ADDS_EACH + 1];
    for (int p = 0; p < ADD_PROCS; p++) {
        char key[32];
        snprintf(key, sizeof key, "results/%d", p);
        void *v;
        size_t n;
        CHECK_OK(cgloo_store_get(s, key, 1000, &v, &n));
        CHECK(n == ADDS_EACH * sizeof(int64_t));
        for (int i = 0; i < ADDS_EACH; i++) {
            int64_t x;
            memcpy(&x, (char *)v + i * sizeof x, sizeof x);
            CHECK(x >= 1 && x <= ADD_PROCS * ADDS_EACH && !seen[x]);
            seen[x] = 1;
        }
        cgloo_free(v);
    }
    cgloo_store_destroy(s);
}

enum { TORN_SIZE = 1 << 20 };

/* The writer rewrites one large value, each generation a single repeated byte, until told to
 * stop. */
static void torn_writer(const char *dir)
{
    cgloo_store *s = open_store(dir, "torn");
    unsigned char *buf = malloc(TORN_SIZE);
    CHECK(buf != NULL);
    const char *stop = "stop";
    int present = 0;
    int64_t t0 = now_ms();
    for (unsigned gen = 1; !present && now_ms() - t0 < 20000; gen++) {
        memset(buf, (int)(gen % 251) + 1, TORN_SIZE);
        CHECK_OK(cgloo_store_set(s, "big", buf, TORN_SIZE));
        CHECK_OK(cgloo_store_check(s, &stop, 1, &present));
    }
    free(buf);
    cgloo_store_destroy(s);
}

static void test_no_torn_reads(void)
{
    const char *dir = test_tmpdir();
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        torn_writer(dir);
        _exit(0);
    }
    cgloo_store *s = open_store(dir, "torn");
    unsigned char seen[256] = {0};
    int distinct = 0, reads = 0;
    int64_t t0 = now_ms();
    /* at least 1.5 s, 3 generations and 11 reads, however slow the build (sanitizers) */
    while (now_ms() - t0 < 1500 || distinct < 3 || reads <= 10) {
        CHECK(now_ms() - t0 < 15000);
        void *v;
        size_t n;
        CHECK_OK(cgloo_store_get(s, "big", 5000, &v, &n));
        const unsigned char *p = v;
        CHECK(n == TORN_SIZE);
        for (size_t i = 1; i < n; i++)
            if (p[i] != p[0])
                CHECK(!"torn value: bytes of two generations");
        if (!seen[p[0]]++)
            distinct++;
        cgloo_free(v);
        reads++;
    }
    CHECK_OK(cgloo_store_set(s, "stop", "", 0));
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(reads > 10);
    cgloo_store_destroy(s);
}

static void test_run_id_scoping(void)
{
    const char *top = test_tmpdir();
    const char *dir = path_join(top, "shared");
    unsetenv("CGLOO_RUN_ID");
    cgloo_store *a = open_store(dir, "run-A");
    CHECK_OK(cgloo_store_set(a, "x", "from-A", 6));
    CHECK_OK(cgloo_store_add(a, "ctr", 1, NULL));
    /* A later run with another id sees none of run A's keys. */
    cgloo_store *b = open_store(dir, "run-B");
    expect_absent(b, "x");
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(b, "ctr", 1, &r));
    CHECK(r == 1);
    cgloo_store *none = open_store(dir, NULL);
    expect_absent(none, "x");
    cgloo_store *empty = open_store(dir, "");
    CHECK_OK(cgloo_store_set(none, "unscoped", "u", 1));
    expect_value(empty, "unscoped", "u", 1);
    expect_absent(a, "unscoped");
    /* The environment supplies the id when the argument is NULL; the argument wins. */
    setenv("CGLOO_RUN_ID", "run-A", 1);
    cgloo_store *env = open_store(dir, NULL);
    expect_value(env, "x", "from-A", 6);
    cgloo_store *arg = open_store(dir, "run-B");
    expect_absent(arg, "x");
    unsetenv("CGLOO_RUN_ID");
    /* Run ids are encoded like keys: they cannot leave the directory. */
    cgloo_store *odd = open_store(dir, "../../escape/..");
    CHECK_OK(cgloo_store_set(odd, "k", "v", 1));
    expect_absent(a, "k");
    CHECK(count_entries(top, "", 0) == 1);
    static char long_id[300];
    memset(long_id, 'r', sizeof long_id - 1);
    cgloo_store *bad = NULL;
    CHECK_STATUS(cgloo_store_file_create(dir, long_id, &bad), CGLOO_EINVAL);
    CHECK(bad == NULL);
    cgloo_store_destroy(a);
    cgloo_store_destroy(b);
    cgloo_store_destroy(none);
    cgloo_store_destroy(empty);
    cgloo_store_destroy(env);
    cgloo_store_destroy(arg);
    cgloo_store_destroy(odd);
}

static void test_no_temp_files(void)
{
    const char *dir = test_tmpdir();
    cgloo_store *s = open_store(dir, "tmp");
    static char long_key[1025];
    memset(long_key, '/', 1024);
    size_t big = 3u << 20;
    char *buf = calloc(1, big);
    CHECK(buf != NULL);
    for (int i = 0; i < 20; i++) {
        char key[16];
        snprintf(key, sizeof key, "k%d", i % 5);
        CHECK_OK(cgloo_store_set(s, key, buf, i % 2 ? big : 10));
        CHECK_OK(cgloo_store_add(s, "ctr", 1, NULL));
        CHECK_OK(cgloo_store_set(s, long_key, buf, (size_t)i));
        CHECK_OK(cgloo_store_add(s, "text", 1, NULL));
    }
    CHECK_STATUS(cgloo_store_add(s, "k0", 1, NULL), CGLOO_ESTORE);
    CHECK_OK(cgloo_store_delete(s, "k1"));
    CHECK_OK(cgloo_store_delete(s, long_key));
    free(buf);
    CHECK(count_entries(dir, "t.", 1) == 0);
    CHECK(count_entries(dir, "", 0) == 1);
    /* k0 k2 k3 k4, ctr, text, and the lock files of ctr, text, k0 and the long key. */
    CHECK(count_entries(path_join(dir, "r.tmp"), "k.", 0) == 6);
    CHECK(count_entries(path_join(dir, "r.tmp"), "l.", 0) == 4);
    CHECK(count_entries(path_join(dir, "r.tmp"), "", 0) == 10);
    cgloo_store_destroy(s);
}

/* A lock holder that stays makes add time out at the lock timeout; one that dies frees it. */
static void test_lock_holder_died(void)
{
    const char *dir = test_tmpdir();
    cgloo_store *s = open_store(dir, NULL);
    cgloo__file_store_set_lock_timeout(s, 300);
    int64_t r = 0;
    CHECK_OK(cgloo_store_add(s, "ctr", 1, &r));
    int pipefd[2];
    CHECK(pipe(pipefd) == 0);
    fflush(NULL);
    pid_t pid = fork();
    CHECK(pid >= 0);
    if (pid == 0) {
        int fd = open(path_join(dir, "l.k.ctr"), O_RDWR);
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET};
        if (fd < 0 || fcntl(fd, F_OFD_SETLK, &fl) != 0)
            _exit(3);
        if (write(pipefd[1], "L", 1) != 1)
            _exit(4);
        for (;;)
            pause();
    }
    char c = 0;
    CHECK(read(pipefd[0], &c, 1) == 1 && c == 'L');
    int64_t t0 = now_ms();
    CHECK_STATUS(cgloo_store_add(s, "ctr", 1, &r), CGLOO_ETIMEDOUT);
    int64_t took = now_ms() - t0;
    CHECK(took >= 290 && took < 3000);
    expect_value(s, "ctr", "1", 1);
    CHECK(kill(pid, SIGKILL) == 0);
    int status = 0;
    CHECK(waitpid(pid, &status, 0) == pid);
    CHECK(WIFSIGNALED(status));
    t0 = now_ms();
    CHECK_OK(cgloo_store_add(s, "ctr", 1, &r));
    CHECK(r == 2);
    CHECK(now_ms() - t0 < 250);
    close(pipefd[0]);
    close(pipefd[1]);
    cgloo_store_destroy(s);
}

static void test_bad_args(void)
{
    const char *top = test_tmpdir();
    cgloo_store *s = NULL;
    CHECK_STATUS(cgloo_store_file_create(NULL, NULL, &s), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_file_create("", NULL, &s), CGLOO_EINVAL);
    CHECK_STATUS(cgloo_store_file_create(top, NULL, NULL), CGLOO_EINVAL);
    const char *file = path_join(top, "plain-file");
    FILE *fp = fopen(file, "w");
    CHECK(fp != NULL);
    fclose(fp);
    CHECK_STATUS(cgloo_store_file_create(file, NULL, &s), CGLOO_EIO);
    CHECK_STATUS(cgloo_store_file_create(path_join(file, "sub"), "r", &s), CGLOO_EIO);
    CHECK(s == NULL);
    /* mkdir -p: missing parents are made; a trailing slash is fine. */
    char nested[1024];
    snprintf(nested, sizeof nested, "%s/a/b//c/d/", top);
    s = open_store(nested, "r");
    CHECK_OK(cgloo_store_set(s, "k", "v", 1));
    cgloo_store_destroy(s);
    struct stat st;
    CHECK(stat(path_join(top, "a/b/c/d/r.r/k.k"), &st) == 0 && S_ISREG(st.st_mode));
    s = open_store(nested, "r");
    expect_value(s, "k", "v", 1);
    char key[CGLOO_STORE_KEY_MAX + 2];
    memset(key, 'k', sizeof key - 1);
    key[sizeof key - 1] = '\0';
    CHECK_STATUS(cgloo_store_set(s, key, "v", 1), CGLOO_EINVAL);
    cgloo_store_destroy(s);
}

static const test_case tests[] = {
    {"set_get", test_set_get, 10},
    {"timeout", test_timeout, 10},
    {"wait_for_late_key", test_wait_for_late_key, 10},
    {"odd_keys", test_odd_keys, 10},
    {"long_key_collisions", test_long_key_collisions, 10},
    {"large_values", test_large_values, 20},
    {"add_counters", test_add_counters, 10},
    {"delete_check", test_delete_check, 10},
    {"concurrent_threads", test_concurrent_threads, 20},
    {"add_threads", test_add_threads, 30},
    {"concurrent_processes", test_concurrent_processes, 20},
    {"add_processes", test_add_processes, 40},
    {"no_torn_reads", test_no_torn_reads, 30},
    {"run_id_scoping", test_run_id_scoping, 10},
    {"no_temp_files", test_no_temp_files, 20},
    {"lock_holder_died", test_lock_holder_died, 10},
    {"bad_args", test_bad_args, 10},
};
TEST_MAIN(tests)
