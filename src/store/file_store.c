/*
 * The file store: one file per key in a directory every rank can reach, whether the ranks are
 * threads, processes, or hosts sharing an NFS mount.
 *
 * Layout. Everything lives in one directory, the "run directory":
 *   <dir>/r.<encoded run id>/   when a run id is given (the run_id argument, else CGLOO_RUN_ID;
 *                               an empty string counts as none). Keys written under one run id
 *                               are never read under another, so a run cannot pick up the
 *                               stale keys of an earlier one. Reusing a run id reuses its keys.
 *                               The id is encoded like a key (below) and must encode to at
 *                               most FILE_ENC_MAX bytes, else create fails with EINVAL.
 *   <dir>/                      when there is no run id: no scoping at all, every store opened
 *                               on <dir> without a run id shares the same keys, stale or not.
 * Inside it:
 *   k.<encoded key>         a key whose encoded name fits in FILE_ENC_MAX bytes; the file holds
 *                           exactly the value, so counters can be read with cat.
 *   h.<hint>.<hash>.<slot>  a longer key: <hint> is the start of its encoding, <hash> 16 hex
 *                           digits of a 64-bit hash of the key. The file holds a header with
 *                           the whole key, so a read verifies the key and never returns another
 *                           key's value. Keys whose names collide take slots 0, 1, 2... of the
 *                           bucket (see "Long keys" below).
 *   l.<k. or h. name>       the lock file of a key (or bucket); empty, kept after use.
 *   t.<random>              a value being written; it is renamed over its key file once
 *                           complete, so a reader sees the old value or the new one, never part
 *                           of one. Temp names never start with k. or h., so they are never
 *                           read as keys. A writer killed mid-write leaves its temp file behind.
 *
 * Encoding. Bytes [A-Za-z0-9._-] stand for themselves; every other byte (including '/', '%',
 * spaces, newlines and bytes >= 0x80) becomes "%XX". The map is injective and its output never
 * holds '/', so any key names one file inside the run directory; the "k."/"h." prefix keeps
 * "." and ".." out. File systems that fold case are not supported.
 *
 * Waits. get and wait poll (open/stat) with a backoff from 1 ms to FILE_POLL_MAX_MS until the
 * deadline, without inotify, so they work over NFS. On NFS a new file is seen as soon as the
 * client revalidates its cached "no such file" answer; mount with lookupcache=positive (or
 * none) so that happens at once rather than after the directory attribute cache expires.
 *
 * Locks. add is a read-modify-write and takes the key's lock file with an open file
 * description lock (fcntl F_OFD_SETLK: per open file, so threads of one process exclude each
 * other too), polled with backoff for at most the lock timeout (CGLOO_DEFAULT_TIMEOUT_MS), then
 * ETIMEDOUT: the wait is never unbounded. A holder that dies cannot leave the lock held: the
 * kernel drops the lock when the process exits, and an NFS server drops the locks of a crashed
 * client host when its lease expires (NFSv4 ~90 s; an add waiting meanwhile times out and may
 * be retried). An NFS mount with "nolock" keeps locks local to each host, so add is then atomic
 * only among the ranks of one host. The lock descriptor is close-on-exec and held only for the
 * few system calls of one add; a fork from another thread during that window would share it.
 * set and delete of a short key take no lock: they are one rename or unlink, so a set racing
 * an add on the same key is ordered either way.
 *
 * Long keys. A bucket is the run of slot files 0..n-1, with no hole: slots are claimed and
 * released only under the bucket's lock, so set, add and delete of a long key take it too.
 * Deleting a key in the last slot removes its file (and any tombstones then at the end);
 * deleting one in an earlier slot overwrites it with a tombstone, so readers, which take no
 * lock, can stop scanning at the first missing slot.
 */
#include "store/file_store.h"

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Longest encoded key or run id kept as a readable name; with its prefixes it stays far below
 * NAME_MAX (255). */
#define FILE_ENC_MAX 200
/* Encoded bytes of a long key kept in its hashed name, to make the directory readable. */
#define FILE_HINT_MAX 48
/* Room for a key's base name ("k." + FILE_ENC_MAX), and for any name derived from one. */
#define FILE_BASE_LEN (FILE_ENC_MAX + 8)
#define FILE_NAME_LEN 256
/* Slots per bucket: reaching it needs that many long keys with one 64-bit hash. */
#define FILE_SLOTS_MAX 1024
/* Backoff caps: key polls (1 ms upward) and lock polls (50 us upward). */
#define FILE_POLL_MAX_MS 32
#define FILE_LOCK_POLL_MAX_US 10000
/* A long key's file starts with "V<keylen>\n<key>" (a value follows) or "D<keylen>\n<key>". */
#define FILE_HEADER_MAX (2 + 20 + CGLOO_STORE_KEY_MAX)

typedef struct file_store {
    cgloo_store base;
    int dirfd;   /* the run directory; every file operation is relative to it */
    char *path;  /* its path, for messages */
    int lock_ms; /* how long add waits for a lock */
    uint64_t (*name_hash)(const void *data, size_t len);
} file_store;

/* A key resolved to its file name. */
typedef struct file_key {
    const char *key;
    size_t klen;
    bool hashed;              /* a long key: base names a bucket, not a file */
    char base[FILE_BASE_LEN]; /* "k.<enc>" or "h.<hint>.<hash>" */
} file_key;

/* Where a long key sits in its bucket. */
typedef struct file_slot {
    int index;   /* the key's slot, or -1 */
    bool live;   /* that slot holds a value, not a tombstone */
    int used;    /* slots 0..used-1 exist (full scans only) */
    char *value; /* the live value (NUL after it) when asked for */
    size_t len;
} file_slot;

static const cgloo_store_ops file_ops;

/* file_fail logs a failed system call and maps its errno. An EINVAL from the file system is
 * not the caller's bad argument, so it becomes EIO like everything unexpected. */
static int file_fail(const file_store *f, const char *what, const char *name, int err)
{
    char buf[128];
    const char *text = strerror_r(err, buf, sizeof buf);
    CGLOO_WARN("file store %s: %s %s: %s", f ? f->path : "", what, name, text);
    int rc = cgloo__status_from_errno(err);
    rc = rc == CGLOO_ENOMEM || rc == CGLOO_ETIMEDOUT ? rc : CGLOO_EIO;
    if (!f) /* while creating: cgloo_store_file_create's detail */
        cgloo__error_set(rc, "file store: %s %s: %s", what, name, text);
    return rc;
}

static bool file_plain_byte(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
           c == '_' || c == '-';
}

/* file_encode writes the escaped form of s[0..n) into out and returns its length, or stops
 * before the first unit that would pass `cap` bytes (never splitting a "%XX"). */
static size_t file_encode(const char *s, size_t n, char *out, size_t cap)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        size_t unit = file_plain_byte(c) ? 1 : 3;
        if (o + unit > cap)
            break;
        if (unit == 1) {
            out[o++] = (char)c;
        } else {
            out[o++] = '%';
            out[o++] = hex[c >> 4];
            out[o++] = hex[c & 15];
        }
    }
    out[o] = '\0';
    return o;
}

/* file_encoded_len is the length of the whole encoding of s[0..n). */
static size_t file_encoded_len(const char *s, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += file_plain_byte((unsigned char)s[i]) ? 1 : 3;
    return len;
}

static void file_key_init(const file_store *f, const char *key, file_key *fk)
{
    fk->key = key;
    fk->klen = strlen(key);
    char enc[FILE_ENC_MAX + 1];
    if (file_encoded_len(key, fk->klen) <= FILE_ENC_MAX) {
        fk->hashed = false;
        file_encode(key, fk->klen, enc, FILE_ENC_MAX);
        snprintf(fk->base, sizeof fk->base, "k.%s", enc);
        return;
    }
    fk->hashed = true;
    char hint[FILE_HINT_MAX + 1];
    file_encode(key, fk->klen, hint, FILE_HINT_MAX);
    snprintf(fk->base, sizeof fk->base, "h.%s.%016" PRIx64, hint, f->name_hash(key, fk->klen));
}

static void file_slot_name(const file_key *fk, int slot, char *name)
{
    snprintf(name, FILE_NAME_LEN, "%s.%d", fk->base, slot);
}

/* ---- whole-file reads and atomic writes ---- */

static int file_open_at(const file_store *f, const char *name, int flags, mode_t mode)
{
    int fd;
    do
        fd = openat(f->dirfd, name, flags | O_CLOEXEC, mode);
    while (fd < 0 && errno == EINTR);
    return fd;
}

/* file_read_fd reads fd to its end into a malloc'd buffer with a NUL after the data. */
static int file_read_fd(const file_store *f, int fd, const char *name, char **data, size_t *len)
{
    struct stat st;
    if (fstat(fd, &st) != 0)
        return file_fail(f, "stat", name, errno);
    size_t limit = (size_t)CGLOO_STORE_VALUE_MAX + FILE_HEADER_MAX;
    if (st.st_size < 0 || (uint64_t)st.st_size > limit) {
        CGLOO_WARN("file store %s: %s is too large for a value", f->path, name);
        return CGLOO_ESTORE;
    }
    /* The file was complete before its rename made it visible, so st_size is its size; the
     * loop still copes with a file that grows (someone else's), up to the limit. */
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf)
        return CGLOO_ENOMEM;
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int rc = file_fail(f, "read", name, errno);
            free(buf);
            return rc;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            char *bigger = cap > limit ? NULL : realloc(buf, cap * 2 + 1);
            if (!bigger) {
                free(buf);
                return cap > limit ? CGLOO_ESTORE : CGLOO_ENOMEM;
            }
            buf = bigger;
            cap *= 2;
        }
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return CGLOO_OK;
}

/* file_read reads the whole file `name`. ENOTFOUND when it does not exist. */
static int file_read(const file_store *f, const char *name, char **data, size_t *len)
{
    int fd = file_open_at(f, name, O_RDONLY, 0);
    if (fd < 0)
        return errno == ENOENT ? CGLOO_ENOTFOUND : file_fail(f, "open", name, errno);
    int rc = file_read_fd(f, fd, name, data, len);
    close(fd);
    return rc;
}

static int file_write_all(int fd, const void *data, size_t len)
{
    const char *p = data;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return errno;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* file_make_temp creates a fresh temp file and returns its descriptor (name in `name`). */
static int file_make_temp(const file_store *f, char *name, int *fd_out)
{
    for (int tries = 0; tries < 16; tries++) {
        snprintf(name, FILE_NAME_LEN, "t.%016" PRIx64, cgloo__random64());
        int fd = file_open_at(f, name, O_WRONLY | O_CREAT | O_EXCL, 0666);
        if (fd >= 0) {
            *fd_out = fd;
            return CGLOO_OK;
        }
        if (errno != EEXIST)
            return file_fail(f, "create", name, errno);
    }
    return file_fail(f, "create", "temp file", EEXIST);
}

/* file_publish writes head then body to a temp file and renames it over `name`, so readers see
 * the old content or the new, whole. */
static int file_publish(const file_store *f, const char *name, const void *head, size_t hlen,
                        const void *body, size_t blen)
{
    char tmp[FILE_NAME_LEN];
    int fd = -1;
    int rc = file_make_temp(f, tmp, &fd);
    if (rc != CGLOO_OK)
        return rc;
    int err = file_write_all(fd, head, hlen);
    if (!err)
        err = file_write_all(fd, body, blen);
    /* NFS reports delayed write errors at close, so its result counts. */
    if (close(fd) != 0 && !err)
        err = errno;
    if (!err && renameat(f->dirfd, tmp, f->dirfd, name) != 0)
        err = errno;
    if (err) {
        unlinkat(f->dirfd, tmp, 0);
        return file_fail(f, "write", name, err);
    }
    return CGLOO_OK;
}

/* ---- locks ---- */

static void file_sleep_us(long us)
{
    struct timespec ts = {.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* file_lock takes the lock of fk (its "l." file) and returns the descriptor holding it. Polls
 * with jittered backoff; ETIMEDOUT after f->lock_ms. */
static int file_lock(const file_store *f, const file_key *fk, int *fd_out)
{
    char name[FILE_NAME_LEN];
    snprintf(name, sizeof name, "l.%s", fk->base);
    int fd = file_open_at(f, name, O_RDWR | O_CREAT, 0666);
    if (fd < 0)
        return file_fail(f, "open lock", name, errno);
    int64_t deadline = cgloo__deadline(f->lock_ms, CGLOO_DEFAULT_TIMEOUT_MS);
    uint64_t jitter = cgloo__random64() | 1;
    long delay_us = 50;
    for (;;) {
        struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
        if (fcntl(fd, F_OFD_SETLK, &fl) == 0) {
            *fd_out = fd;
            return CGLOO_OK;
        }
        int err = errno;
        if (err != EAGAIN && err != EACCES && err != EINTR) {
            close(fd);
            return file_fail(f, "lock", name, err);
        }
        if (cgloo__remaining_ms(deadline) == 0) {
            close(fd);
            CGLOO_WARN("file store %s: lock %s still held after %d ms", f->path, name, f->lock_ms);
            return CGLOO_ETIMEDOUT;
        }
        /* Jitter keeps contending processes from waking in lockstep. */
        jitter ^= jitter << 13;
        jitter ^= jitter >> 7;
        jitter ^= jitter << 17;
        file_sleep_us(delay_us / 2 + (long)(jitter % (uint64_t)delay_us));
        delay_us = CGLOO_MIN(delay_us * 2, FILE_LOCK_POLL_MAX_US);
    }
}

/* file_unlock releases the lock: the descriptor is the only one on its open file description,
 * so closing it drops the lock even if the explicit unlock failed. */
static void file_unlock(int fd)
{
    struct flock fl = {.l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 0};
    fcntl(fd, F_OFD_SETLK, &fl);
    close(fd);
}

/* ---- long keys: buckets of slot files ---- */

/* file_parse_entry splits a bucket file into its key, state and value offset. */
static int file_parse_entry(const char *data, size_t n, const char **key, size_t *klen, bool *live,
                            size_t *voff)
{
    if (n < 3 || (data[0] != 'V' && data[0] != 'D'))
        return CGLOO_ESTORE;
    size_t i = 1, len = 0;
    while (i < n && data[i] >= '0' && data[i] <= '9' && len <= CGLOO_STORE_KEY_MAX)
        len = len * 10 + (size_t)(data[i++] - '0');
    if (i == 1 || i >= n || data[i] != '\n' || len > CGLOO_STORE_KEY_MAX || n - i - 1 < len)
        return CGLOO_ESTORE;
    *key = data + i + 1;
    *klen = len;
    *live = data[0] == 'V';
    *voff = i + 1 + len;
    return CGLOO_OK;
}

/* file_scan_entry reads slot i and, if it is fk's, records it in *out (taking the value when
 * asked). ENOTFOUND when the slot does not exist. */
static int file_scan_entry(const file_store *f, const file_key *fk, int i, bool want_value,
                           file_slot *out)
{
    char name[FILE_NAME_LEN];
    file_slot_name(fk, i, name);
    char *data;
    size_t n;
    int rc = file_read(f, name, &data, &n);
    if (rc != CGLOO_OK)
        return rc;
    const char *key;
    size_t klen, voff;
    bool live;
    rc = file_parse_entry(data, n, &key, &klen, &live, &voff);
    if (rc != CGLOO_OK) {
        CGLOO_WARN("file store %s: %s is not a key file", f->path, name);
    } else if (klen == fk->klen && memcmp(key, fk->key, klen) == 0) {
        out->index = i;
        out->live = live;
        if (live && want_value) {
            out->len = n - voff;
            memmove(data, data + voff, out->len + 1); /* with the NUL */
            out->value = data;
            data = NULL;
        }
    }
    free(data);
    return rc;
}

/* file_bucket_scan finds fk in its bucket. A partial scan stops at the key; a full one (under
 * the bucket lock) goes on to count the slots in use. */
static int file_bucket_scan(const file_store *f, const file_key *fk, bool full, bool want_value,
                            file_slot *out)
{
    *out = (file_slot){.index = -1};
    for (int i = 0; i < FILE_SLOTS_MAX; i++) {
        int rc = file_scan_entry(f, fk, i, want_value, out);
        if (rc == CGLOO_ENOTFOUND) {
            out->used = i;
            return CGLOO_OK;
        }
        if (rc != CGLOO_OK) {
            free(out->value);
            out->value = NULL;
            return rc;
        }
        if (out->index >= 0 && !full)
            return CGLOO_OK;
    }
    free(out->value);
    out->value = NULL;
    CGLOO_WARN("file store %s: bucket %s is full", f->path, fk->base);
    return CGLOO_ESTORE;
}

/* file_slot_write stores value (or a tombstone when value is NULL) in slot i of fk's bucket. */
static int file_slot_write(const file_store *f, const file_key *fk, int i, const void *value,
                           size_t len)
{
    char name[FILE_NAME_LEN];
    file_slot_name(fk, i, name);
    size_t hlen = 2 + 20 + fk->klen;
    char *head = malloc(hlen);
    if (!head)
        return CGLOO_ENOMEM;
    int n = snprintf(head, hlen, "%c%zu\n", value ? 'V' : 'D', fk->klen);
    memcpy(head + n, fk->key, fk->klen);
    int rc = file_publish(f, name, head, (size_t)n + fk->klen, value, value ? len : 0);
    free(head);
    return rc;
}

/* file_bucket_trim removes slot `last` and any tombstones that then end the bucket. */
static int file_bucket_trim(const file_store *f, const file_key *fk, int last)
{
    for (int i = last; i >= 0; i--) {
        char name[FILE_NAME_LEN];
        file_slot_name(fk, i, name);
        if (i < last) {
            char *data;
            size_t n, klen, voff;
            const char *key;
            bool live = true;
            int rc = file_read(f, name, &data, &n);
            if (rc != CGLOO_OK)
                return rc;
            rc = file_parse_entry(data, n, &key, &klen, &live, &voff);
            free(data);
            if (rc != CGLOO_OK || live)
                return CGLOO_OK;
        }
        if (unlinkat(f->dirfd, name, 0) != 0 && errno != ENOENT)
            return file_fail(f, "unlink", name, errno);
    }
    return CGLOO_OK;
}

/* ---- key lookups and updates ---- */

/* file_lookup finds key without any lock: OK with the value (if asked), ENOTFOUND, or an
 * error. */
static int file_lookup(const file_store *f, const file_key *fk, void **value, size_t *len)
{
    if (!fk->hashed && !value) {
        struct stat st;
        if (fstatat(f->dirfd, fk->base, &st, 0) == 0)
            return CGLOO_OK;
        return errno == ENOENT ? CGLOO_ENOTFOUND : file_fail(f, "stat", fk->base, errno);
    }
    if (!fk->hashed) {
        char *data;
        int rc = file_read(f, fk->base, &data, len);
        if (rc == CGLOO_OK)
            *value = data;
        return rc;
    }
    file_slot hit;
    int rc = file_bucket_scan(f, fk, false, value != NULL, &hit);
    if (rc != CGLOO_OK)
        return rc;
    if (hit.index < 0 || !hit.live)
        return CGLOO_ENOTFOUND;
    if (value) {
        *value = hit.value;
        *len = hit.len;
    }
    return CGLOO_OK;
}

/* file_poll sleeps one backoff step before the next look, or says the deadline has passed. */
static int file_poll(int64_t deadline, int *delay_ms)
{
    int left = cgloo__remaining_ms(deadline);
    if (left == 0)
        return CGLOO_ETIMEDOUT;
    cgloo__sleep_ms(CGLOO_MIN(*delay_ms, left));
    *delay_ms = CGLOO_MIN(*delay_ms * 2, FILE_POLL_MAX_MS);
    return CGLOO_OK;
}

static int file_set(cgloo_store *s, const char *key, const void *value, size_t len)
{
    file_store *f = (file_store *)s;
    file_key fk;
    file_key_init(f, key, &fk);
    if (!fk.hashed)
        return file_publish(f, fk.base, NULL, 0, value, len);
    int lockfd;
    int rc = file_lock(f, &fk, &lockfd);
    if (rc != CGLOO_OK)
        return rc;
    file_slot at;
    rc = file_bucket_scan(f, &fk, true, false, &at);
    if (rc == CGLOO_OK)
        rc = file_slot_write(f, &fk, at.index >= 0 ? at.index : at.used, value ? value : "", len);
    file_unlock(lockfd);
    return rc;
}

static int file_get(cgloo_store *s, const char *key, int timeout_ms, void **value, size_t *len)
{
    file_store *f = (file_store *)s;
    file_key fk;
    file_key_init(f, key, &fk);
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    int delay = 1;
    for (;;) {
        int rc = file_lookup(f, &fk, value, len);
        if (rc != CGLOO_ENOTFOUND)
            return rc;
        rc = file_poll(deadline, &delay);
        if (rc != CGLOO_OK)
            return rc;
    }
}

static int file_wait(cgloo_store *s, const char *const *keys, size_t nkeys, int timeout_ms)
{
    file_store *f = (file_store *)s;
    int64_t deadline = cgloo__deadline(timeout_ms, timeout_ms);
    int delay = 1;
    /* Keys found once are not looked at again: each poll starts at the first missing one. */
    for (size_t i = 0; i < nkeys;) {
        file_key fk;
        file_key_init(f, keys[i], &fk);
        int rc = file_lookup(f, &fk, NULL, NULL);
        if (rc == CGLOO_OK) {
            i++;
            continue;
        }
        if (rc == CGLOO_ENOTFOUND)
            rc = file_poll(deadline, &delay);
        if (rc != CGLOO_OK)
            return rc;
    }
    return CGLOO_OK;
}

static int file_check(cgloo_store *s, const char *const *keys, size_t nkeys, int *all_present)
{
    file_store *f = (file_store *)s;
    for (size_t i = 0; i < nkeys; i++) {
        file_key fk;
        file_key_init(f, keys[i], &fk);
        int rc = file_lookup(f, &fk, NULL, NULL);
        if (rc == CGLOO_ENOTFOUND) {
            *all_present = 0;
            return CGLOO_OK;
        }
        if (rc != CGLOO_OK)
            return rc;
    }
    *all_present = 1;
    return CGLOO_OK;
}

/* file_add_locked reads the counter, adds delta and writes it back; fk's lock is held. */
static int file_add_locked(const file_store *f, const file_key *fk, int64_t delta, int64_t *result)
{
    char *old = NULL;
    size_t n = 0;
    int rc, slot = 0;
    if (fk->hashed) {
        file_slot at;
        rc = file_bucket_scan(f, fk, true, true, &at);
        if (rc == CGLOO_OK && !at.value)
            rc = CGLOO_ENOTFOUND;
        old = at.value;
        n = at.len;
        slot = at.index >= 0 ? at.index : at.used;
    } else {
        rc = file_read(f, fk->base, &old, &n);
    }
    int64_t v = 0;
    if (rc == CGLOO_OK)
        rc = cgloo__store_counter_parse(old, n, &v);
    else if (rc == CGLOO_ENOTFOUND)
        rc = CGLOO_OK;
    free(old);
    if (rc != CGLOO_OK)
        return rc;
    v = (int64_t)((uint64_t)v + (uint64_t)delta); /* wraps like the other backends */
    char text[24];
    size_t tlen = cgloo__store_counter_format(v, text);
    rc = fk->hashed ? file_slot_write(f, fk, slot, text, tlen)
                    : file_publish(f, fk->base, NULL, 0, text, tlen);
    if (rc == CGLOO_OK)
        *result = v;
    return rc;
}

static int file_add(cgloo_store *s, const char *key, int64_t delta, int64_t *result)
{
    file_store *f = (file_store *)s;
    file_key fk;
    file_key_init(f, key, &fk);
    int lockfd;
    int rc = file_lock(f, &fk, &lockfd);
    if (rc != CGLOO_OK)
        return rc;
    rc = file_add_locked(f, &fk, delta, result);
    file_unlock(lockfd);
    return rc;
}

/* file_del_hashed removes a long key from its bucket; the bucket lock is held. */
static int file_del_hashed(const file_store *f, const file_key *fk)
{
    file_slot at;
    int rc = file_bucket_scan(f, fk, true, false, &at);
    if (rc != CGLOO_OK || at.index < 0 || !at.live)
        return rc;
    if (at.index == at.used - 1)
        return file_bucket_trim(f, fk, at.index);
    return file_slot_write(f, fk, at.index, NULL, 0);
}

static int file_del(cgloo_store *s, const char *key)
{
    file_store *f = (file_store *)s;
    file_key fk;
    file_key_init(f, key, &fk);
    if (!fk.hashed) {
        if (unlinkat(f->dirfd, fk.base, 0) != 0 && errno != ENOENT)
            return file_fail(f, "unlink", fk.base, errno);
        return CGLOO_OK;
    }
    int lockfd;
    int rc = file_lock(f, &fk, &lockfd);
    if (rc != CGLOO_OK)
        return rc;
    rc = file_del_hashed(f, &fk);
    file_unlock(lockfd);
    return rc;
}

static void file_destroy(cgloo_store *s)
{
    file_store *f = (file_store *)s;
    close(f->dirfd);
    free(f->path);
    free(f);
}

static const cgloo_store_ops file_ops = {
    .name = "file",
    .set = file_set,
    .get = file_get,
    .wait = file_wait,
    .check = file_check,
    .add = file_add,
    .del = file_del,
    .multi_get = NULL,
    .destroy = file_destroy,
};

/* ---- creation ---- */

/* file_is_dir says whether path names a directory (following links). */
static bool file_is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* file_mkdir_p creates path and its missing parents, like mkdir -p. */
static int file_mkdir_p(const char *path)
{
    char *p = cgloo__strdup(path);
    if (!p)
        return CGLOO_ENOMEM;
    int rc = CGLOO_OK;
    for (char *c = p + 1; rc == CGLOO_OK; c++) {
        if (*c != '/' && *c != '\0')
            continue;
        char saved = *c;
        *c = '\0';
        /* An existing directory may still refuse mkdir (EACCES, EROFS): that is fine. */
        if (mkdir(p, 0777) != 0) {
            int err = errno;
            if (err != EEXIST && !file_is_dir(p))
                rc = file_fail(NULL, "mkdir", p, err);
        }
        *c = saved;
        if (saved == '\0')
            break;
    }
    free(p);
    return rc;
}

/* file_open_run makes and opens the run directory: dir itself, or dir/r.<run id>. */
static int file_open_run(const char *dir, const char *run_id, int *fd_out, char **path_out)
{
    int rc = file_mkdir_p(dir);
    if (rc != CGLOO_OK)
        return rc;
    size_t rlen = run_id ? strlen(run_id) : 0;
    char *path = malloc(strlen(dir) + 4 + 3 * rlen);
    if (!path)
        return CGLOO_ENOMEM;
    strcpy(path, dir);
    if (rlen) {
        strcat(path, "/r.");
        file_encode(run_id, rlen, path + strlen(path), 3 * rlen);
        if (mkdir(path, 0777) != 0 && errno != EEXIST) {
            rc = file_fail(NULL, "mkdir", path, errno);
            free(path);
            return rc;
        }
    }
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        rc = file_fail(NULL, "open", path, errno);
        free(path);
        return rc;
    }
    *fd_out = fd;
    *path_out = path;
    return CGLOO_OK;
}

int cgloo_store_file_create(const char *dir, const char *run_id, cgloo_store **out)
{
    cgloo__error_clear();
    if (!dir || !*dir || !out)
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_store_file_create: %s",
                                !out ? "out is NULL" : "no directory given");
    cgloo__log_init_from_env();
    if (!run_id)
        run_id = getenv("CGLOO_RUN_ID");
    if (run_id && file_encoded_len(run_id, strlen(run_id)) > FILE_ENC_MAX) {
        CGLOO_WARN("file store %s: run id longer than %d encoded bytes", dir, FILE_ENC_MAX);
        return cgloo__error_set(CGLOO_EINVAL, "file store %s: run id longer than %d encoded bytes",
                                dir, FILE_ENC_MAX);
    }
    file_store *f = calloc(1, sizeof *f);
    if (!f)
        return cgloo__error_set(CGLOO_ENOMEM, "out of memory for a file store");
    int rc = file_open_run(dir, run_id, &f->dirfd, &f->path);
    if (rc != CGLOO_OK) {
        free(f);
        return cgloo__error_set_if_none(rc, "file store %s: %s", dir, cgloo_strerror(rc));
    }
    f->base.ops = &file_ops;
    f->lock_ms = CGLOO_DEFAULT_TIMEOUT_MS;
    f->name_hash = cgloo__hash64;
    CGLOO_DEBUG("file store at %s", f->path);
    *out = &f->base;
    return CGLOO_OK;
}

void cgloo__file_store_set_name_hash(cgloo_store *s, uint64_t (*hash)(const void *, size_t))
{
    CGLOO_ASSERT(s && s->ops == &file_ops && hash);
    ((file_store *)s)->name_hash = hash;
}

void cgloo__file_store_set_lock_timeout(cgloo_store *s, int timeout_ms)
{
    CGLOO_ASSERT(s && s->ops == &file_ops && timeout_ms > 0);
    ((file_store *)s)->lock_ms = timeout_ms;
}
