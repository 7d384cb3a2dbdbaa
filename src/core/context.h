/*
 * The internal shape of a context. One mutex per context guards all of it, its peers and its
 * requests; the thread that waits drives the transports through the context's poller (see
 * cgloo__progress in context.c). The context knows its peers only through the point-to-point
 * engine (p2p/p2p.h); how bytes move is each peer's transport's business.
 */
#ifndef CGLOO_CONTEXT_H
#define CGLOO_CONTEXT_H

#include "cgloo_impl.h"
#include "core/flight.h"
#include "loop/poller.h"
#include "p2p/p2p.h"

#include <pthread.h>
#include <stdatomic.h>

/* A non-blocking collective: what the progress thread runs for a request. coll/nonblocking.c
 * allocates it in one block with its copied arguments after it; progress_thread.c queues,
 * runs, completes and frees it. */
/* At most this many progress threads per context: one per tag with collectives running at
 * once (a program that runs more tags at once than this, in different orders on different
 * ranks, waits on itself until its timeouts). */
#define CGLOO_PT_MAX 16

/* A transport whose peers write into shared memory, where nothing wakes the poller (shared
 * memory): the context calls poll on every round of progress, before it waits, and arm before
 * it sleeps, so that the peer wakes it through a descriptor in the poller instead. */
typedef struct cgloo__spinner cgloo__spinner;
struct cgloo__spinner {
    cgloo__list link; /* in ctx->spinners */
    /* poll does whatever has arrived (lock held); true when something had (a request may have
     * completed, so the context must not sleep this round). */
    bool (*poll)(cgloo__spinner *s);
    /* arm asks the peer to wake the poller from now on; false: work is there already, so the
     * context must not sleep (lock held). */
    bool (*arm)(cgloo__spinner *s);
};

/* Collective names whose algorithm variable a context keeps (coll_env below). */
#define CGLOO_COLL_ENV_MAX 32

/* Which transport binds peers on this host (cgloo_context_attr.transport, CGLOO_TRANSPORT). */
enum cgloo__local_mode { CGLOO_LOCAL_TCP, CGLOO_LOCAL_AUTO, CGLOO_LOCAL_SHM };
/* cgloo__local_mode_parse reads "auto", "tcp" or "shm" ("" is auto) into *mode; NULL gives -1
 * (not said). EINVAL for anything else. */
int cgloo__local_mode_parse(const char *v, int *mode);

typedef struct cgloo_job cgloo_job;
struct cgloo_job {
    cgloo__list queue_link; /* in ctx->jobs_queued until it starts running */
    cgloo__list all_link;   /* in ctx->jobs_all until its request is freed */
    cgloo_request *req;
    /* runs the blocking collective on the progress thread; returns its status */
    int (*run)(cgloo_context *ctx, cgloo_job *job);
    uint64_t tag; /* the caller's tag: jobs of one tag run one at a time, in issue order */
    uint64_t seq; /* issue order on the context */
    bool cancel;  /* cgloo_cancel asks it to stop */
    bool aborted; /* cgloo_context_abort_request stopped it: it completes with EABORTED */
    char detail[CGLOO_ERROR_MAX]; /* the context's error detail when it failed */
};

/* Caller tags whose single-copy probe outcome the context keeps (coll/single_copy.c); calls of
 * other tags probe every time. */
#define CGLOO_SC_TAGS 8

struct cgloo_context {
    int rank, size;
    int timeout_ms;
    char *name;
    uint64_t ctx_id;
    uint64_t nonce;               /* this instance's identity in the rendezvous */
    struct cgloo__secret *secret; /* the job secret connections prove; NULL: none */
    pthread_mutex_t lock;
    pthread_cond_t progress_done;
    bool progressing;
    int waiters;
    cgloo__poller poller;
    bool connected;
    bool aborted;
    cgloo_peer *peers;         /* size entries, including self */
    cgloo__list any_posted;    /* receives from a set of ranks */
    cgloo__list live_requests; /* the caller's requests not yet freed (cgloo_request.live_link) */
    uint64_t last_request_id;
    uint64_t post_seq, arrival_seq;
    uint32_t eager_max, eager_budget; /* what this side accepts from each peer */
    int spin_us;
    bool cores_shared;      /* this host runs more ranks than it has CPUs (CGLOO_LOCAL_SIZE) */
    int64_t yield_after_ns; /* spin this long before yielding between polls */
    cgloo_interrupt_fn interrupt_fn; /* see cgloo_context_set_interrupt_check */
    void *interrupt_user;
    /* last error detail, under err_lock (taken inside `lock` or alone, never around it), so
     * that connect, which runs mostly without `lock`, and abort can both record one */
    pthread_mutex_t err_lock;
    int last_status;
    char last_error[CGLOO_ERROR_MAX];
    /* The progress threads and the non-blocking collectives (core/progress_thread.c). */
    bool pt_wanted;  /* start one at connect (attribute or CGLOO_PROGRESS_THREAD) */
    bool pt_stop;    /* destroy asks them to end */
    int pt_count;    /* threads started (until destroy joins them) */
    int pt_idle;     /* of which not running a job */
    int pt_sleeping; /* of which asleep on pt_wake */
    bool pt_driving; /* one of them drives the transports for the caller's transfers */
    pthread_t pt_threads[CGLOO_PT_MAX];
    pthread_cond_t pt_wake;   /* idle progress threads sleep here */
    pthread_cond_t job_done;  /* threads waiting for a non-blocking collective sleep here */
    cgloo__list jobs_queued;  /* cgloo_job not yet running, in issue order */
    cgloo__list jobs_running; /* cgloo_job running, at most one per tag */
    cgloo__list jobs_all;     /* every job whose request is not freed yet */
    uint64_t jobs_issued;     /* seq of the latest job */
    int user_waits;           /* threads other than the progress thread inside cgloo__progress */
    int large_open; /* point-to-point requests above eager_max that the caller has not waited for */
    /* Diagnostics (core/diag.c): the flight recorder, and check mode with its call numbers per
     * caller tag (under `lock`). */
    cgloo__flight flight;
    bool check;
    struct cgloo_check_seq {
        uint64_t tag, calls;
    } * check_seqs;
    size_t n_check_seqs;
    /* The device the context connected through (NULL for one rank): sub-contexts connect
     * through it too (rendezvous/split.c). Not owned (see owned_device) unless device_held. */
    cgloo_device *device;
    bool device_held; /* a sub-context holds its device (released at destroy) */
    uint64_t splits;  /* cgloo_context_split calls so far: part of each child's context id */
    /* Lazy connections (attribute or CGLOO_LAZY=1): the rendezvous keeps the transport's
     * connector for the context's life (lazy_conn, of lazy_transport), and shared memory's
     * (lazy_shm, when peers share this host), through which pairs connect on first use;
     * destroy ends them. */
    bool lazy;
    struct cgloo__connector *lazy_conn;
    const cgloo_transport *lazy_transport;
    struct cgloo__connector *lazy_shm;
    /* The single_copy collectives (coll/single_copy.c), per caller tag below CGLOO_SC_TAGS: 0
     * not tried yet, 1 the peers' memory can be read, -1 some rank cannot. Per tag, since the
     * calls of one tag run in the same order on every rank (those of different tags do not):
     * every rank then decides alike whether a call probes. Under `lock`. */
    int8_t single_copy[CGLOO_SC_TAGS];
    /* The scratch a single_copy reduction last used, kept for the next call (NULL: none kept):
     * taken and given back by atomic exchange, so that calls of several tags at once each get
     * their own; freed at destroy. */
    _Atomic(void *) sc_scratch;
    /* The collectives' shared-memory slots (coll/slots.c): slots_all says whether every peer
     * is bound to a transport with slots (1) or not (-1), 0 before the first collective that
     * asks, since a peer's binding does not change after connect; slot_links each rank's
     * link, NULL for this rank and until the pair connects (a lazy context's on first use),
     * stored under `lock` and read without it. */
    _Atomic(struct cgloo__slot_link *) *slot_links;
    _Atomic int slots_all;
    /* CGLOO_<COLL>_ALGORITHM by collective name (the name pointer the call passes), read at
     * the context's first call of that collective (coll/coll.c): entries are appended under
     * `lock` and published by coll_env_n; value NULL when unset. */
    struct cgloo__coll_env {
        const char *name;
        char *value;
    } coll_env[CGLOO_COLL_ENV_MAX];
    _Atomic int coll_env_n;
    uint8_t local_mode;   /* enum cgloo__local_mode */
    bool local_fixed;     /* local_mode from the context's attribute: a device's does not apply */
    uint8_t local_env;    /* else CGLOO_TRANSPORT's (or auto), unless the device says */
    cgloo__list spinners; /* cgloo__spinner of peers polled on every round */
    uint32_t spin_rounds; /* rounds of polling them: the poller is asked every few */
    /* Revoke (p2p/revoke.c): the collectives were given up, by this rank or by a peer's notice;
     * revoked_by and revoked_why (the first failure's text) are fixed once it is set. */
    bool coll_revoked;
    bool revoke_sent; /* this rank has sent its notices (or chose not to) */
    int revoked_by;
    char revoked_why[CGLOO_ERROR_MAX];
    /* Which ranks share a host (core/topology.h), set at connect; NULL: unknown (one rank),
     * and the collectives treat every rank as its own host. */
    struct cgloo__topology *topo;
    /* owned by contexts made from the environment */
    cgloo_store *owned_store;
    cgloo_device *owned_device;
};

/* cgloo__ctx_error records the detail of an error on the context and logs it; returns status.
 * Callable with or without ctx->lock. */
int cgloo__ctx_error(cgloo_context *ctx, int status, const char *fmt, ...) CGLOO_PRINTF(3, 4);
/* cgloo__progress drives the transports until req is done, the deadline passes or the context
 * is aborted. ctx->lock is held on entry and on return. Returns OK when done, else ETIMEDOUT,
 * EABORTED, or EPEER for a collective's request once the collectives are revoked (revoke.c).
 * deadline_ms 0 means poll once without waiting. */
int cgloo__progress(cgloo_context *ctx, cgloo_request *req, int64_t deadline_ms);
/* cgloo__progress_until is cgloo__progress until done(arg) says so (called with the lock held,
 * between rounds) instead of until a request completes. */
int cgloo__progress_until(cgloo_context *ctx, bool (*done)(void *), void *arg, int64_t deadline_ms);
/* cgloo__ctx_interrupted calls the interrupt check, if any (lock not held), and says whether
 * the wait should end with EINTR. */
bool cgloo__ctx_interrupted(cgloo_context *ctx);
/* cgloo__ctx_aborted says whether the context was aborted (takes ctx->lock: for threads that
 * do not hold it, such as a connecting one). */
bool cgloo__ctx_aborted(cgloo_context *ctx);
/* cgloo__ctx_wake interrupts a thread sleeping in the poller (lock held). */
void cgloo__ctx_wake(cgloo_context *ctx);
/* cgloo__ctx_poll_once drives the transports once: waits in the poller for at most timeout_ms
 * with the lock released (yielding the core after an empty poll when asked), then dispatches
 * what fired and wakes the threads waiting for that round. Lock held on entry and return. */
void cgloo__ctx_poll_once(cgloo_context *ctx, int timeout_ms, bool yield);
/* cgloo__ctx_poll_all drives every transport once without waiting: the shared-memory pairs and
 * the poller, which cgloo__ctx_poll_once asks only every few rounds while pairs spin (a caller
 * that looks between long pieces of other work would otherwise seldom reach TCP). Lock held. */
void cgloo__ctx_poll_all(cgloo_context *ctx);

/* ---- diagnostics (diag.c) ---- */
/* cgloo__ctx_diag_init sets up check mode, the flight recorder and the dump signal from attr
 * and the environment; errors (EINVAL, ENOMEM) are the thread's last error. */
int cgloo__ctx_diag_init(cgloo_context *ctx, const cgloo_context_attr *attr);
void cgloo__ctx_diag_fini(cgloo_context *ctx);
/* cgloo__ctx_check_call returns the number of the next checked call under caller tag `tag`
 * (1, 2, ...). Lock held. 0 when out of memory. */
uint64_t cgloo__ctx_check_call(cgloo_context *ctx, uint64_t tag);

/* ---- the progress thread (progress_thread.c) ---- */
/* The context whose progress thread the calling thread is, if any, and the job it runs. */
extern _Thread_local cgloo_context *cgloo__pt_self;
extern _Thread_local cgloo_job *cgloo__pt_job;
/* cgloo__pt_submit queues job (its run set) behind the context's earlier ones, starting the
 * thread if needed, and hands out its request. Takes the lock. Errors: ESTATE, EABORTED,
 * ENOMEM, EIO (no thread); job is freed on error. */
int cgloo__pt_submit(cgloo_context *ctx, cgloo_job *job, cgloo_request **out);
/* cgloo__pt_start starts a progress thread if none runs (lock held). EIO when it cannot. */
int cgloo__pt_start(cgloo_context *ctx);
/* cgloo__pt_wait_turn waits until every non-blocking collective of the caller's tag issued
 * before the call has finished, so that a blocking collective keeps program order (lock held;
 * returns at once on a progress thread). ETIMEDOUT at deadline_ms, EABORTED, EINTR. */
int cgloo__pt_wait_turn(cgloo_context *ctx, uint64_t tag, int64_t deadline_ms);
/* cgloo__pt_stop ends the thread before destroy: unfinished jobs are aborted (the context with
 * them), the thread joined, and every job's request freed. Takes the lock. */
void cgloo__pt_stop(cgloo_context *ctx);
/* A thread other than the progress thread enters or leaves cgloo__progress (lock held): the
 * progress thread leaves the driving of the transports to it meanwhile. */
void cgloo__pt_user_enter(cgloo_context *ctx);
void cgloo__pt_user_leave(cgloo_context *ctx);
/* cgloo__pt_large_opened: a caller's point-to-point request that needs progress to move (a
 * large one) was posted: the progress thread, if any, moves it while nobody waits (lock held). */
void cgloo__pt_large_opened(cgloo_context *ctx);
/* For requests of non-blocking collectives (kind REQ_COLL): cgloo_wait, cgloo_test and
 * cgloo_cancel. Take the lock. */
int cgloo__job_wait(cgloo_request *r, int timeout_ms, cgloo_completion *done);
int cgloo__job_test(cgloo_request *r, int *completed, cgloo_completion *done);
void cgloo__job_cancel(cgloo_request *r);
/* cgloo__job_abort stops a non-blocking collective for cgloo_context_abort_request without
 * waiting for it: a queued one is withdrawn and completed at once, a running one is told to
 * stop and completes with EABORTED when it has (lock held). */
void cgloo__job_abort(cgloo_context *ctx, cgloo_job *job);

#endif
