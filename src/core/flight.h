/*
 * The flight recorder: a fixed ring of the context's latest operations (collectives and the
 * caller's point-to-point calls), for cgloo_context_dump, the log on a timeout, and an
 * opted-in signal. Writing an entry is a few atomic stores (release order: plain moves on x86)
 * into memory allocated at context creation: no allocation and no lock, so that it can stay on
 * in production.
 *
 * Each entry is a seqlock: its writer makes `ver` odd, stores the fields, makes it even again;
 * a reader copies the fields and keeps the copy only if `ver` was even and unchanged. All
 * fields are read and written with __atomic builtins, so readers on other threads (and a
 * signal handler) never race in the C sense; a reader that meets an entry being rewritten
 * says so. An entry belongs to the operation whose id it holds: when the ring wraps while an
 * operation still runs, the operation's later updates see another id and are dropped.
 */
#ifndef CGLOO_FLIGHT_H
#define CGLOO_FLIGHT_H

#include "cgloo_impl.h"

enum { FLIGHT_RUNNING = 1, FLIGHT_DONE, FLIGHT_FAILED };
enum { FLIGHT_WAIT_NONE, FLIGHT_WAIT_RECV, FLIGHT_WAIT_SEND };

/* The largest ring a context may ask for. */
#define CGLOO_FLIGHT_MAX 65536
/* The default number of entries. */
#define CGLOO_FLIGHT_DEFAULT 64

typedef struct cgloo__flight_entry {
    uint64_t ver;             /* seqlock: odd while being written */
    uint64_t id;              /* the operation's number on the context, from 1 */
    const char *kind;         /* static text: "allreduce", ..., "send", "recv" */
    const char *algorithm;    /* static text, or NULL */
    uint64_t tag;             /* the caller's tag */
    uint64_t count;           /* elements (collectives) or bytes (point-to-point) */
    int32_t dtype;            /* -1 for bytes */
    int32_t peer;             /* the root or the peer; -1 for none */
    int64_t start_ns, end_ns; /* the coarse clock, cgloo__coarse_ns */
    int32_t state, status;
    int32_t wait_peer, wait_step, wait_dir; /* what a running operation waits for */
} cgloo__flight_entry;

typedef struct cgloo__flight {
    cgloo__flight_entry *ring; /* NULL when off */
    uint32_t n;
    uint64_t next; /* ids handed out so far */
    /* for the header line; the name points at the context's */
    int rank, size;
    const char *name;
} cgloo__flight;

/* cgloo__flight_init allocates a ring of n entries (0: off). ENOMEM. */
int cgloo__flight_init(cgloo__flight *f, int n, int rank, int size, const char *name);
/* cgloo__flight_fini unregisters it from the dump signal and frees it. */
void cgloo__flight_fini(cgloo__flight *f);

/* cgloo__flight_begin records a running operation and returns its id (0 when the recorder is
 * off). Any thread; no lock. */
uint64_t cgloo__flight_begin(cgloo__flight *f, const char *kind, uint64_t tag, uint64_t count,
                             int dtype, int peer);
/* cgloo__flight_begin_at is cgloo__flight_begin for a caller that has just read the coarse
 * clock (now_ns, cgloo__coarse_ns), the recorder's: even a fine read costs a tenth of a small
 * collective over shared memory, so times show at the tick's resolution. */
uint64_t cgloo__flight_begin_at(cgloo__flight *f, const char *kind, uint64_t tag, uint64_t count,
                                int dtype, int peer, int64_t now_ns);
/* Updates of the operation `id` (nothing when id is 0 or the entry was reused). */
/* cgloo__flight_detail: the algorithm, the count (UINT64_MAX: unknown) and root (-1: none). */
void cgloo__flight_detail(cgloo__flight *f, uint64_t id, const char *algorithm, uint64_t count,
                          int root);
void cgloo__flight_waiting(cgloo__flight *f, uint64_t id, int peer, int step, int dir);
/* cgloo__flight_end: the operation ended with status (the first end counts). */
void cgloo__flight_end(cgloo__flight *f, uint64_t id, int status);

/* cgloo__flight_each formats the header and then every entry, oldest first, calling
 * line(text, user) once per line (no newline). Only async-signal-safe calls: the signal
 * handler uses it too. Returns the number of entries. */
int cgloo__flight_each(const cgloo__flight *f, void (*line)(const char *text, void *user),
                       void *user);
/* cgloo__flight_log writes the recorder to the log at ERROR (a timeout happened). */
void cgloo__flight_log(const cgloo__flight *f);

/* cgloo__flight_signal installs, once per process, the handler of signal sig that writes every
 * registered recorder (to CGLOO_DUMP_FILE, else stderr), and registers f with it. EINVAL for a
 * bad signal, EBUSY when every registry slot is taken. */
int cgloo__flight_signal(cgloo__flight *f, int sig);

#endif
