/*
 * The progress threads: started by the first non-blocking collective of a context (or at
 * connect when asked). A progress thread runs a queued collective by calling the blocking
 * collective, so every algorithm stays straight-line code. Collectives of one tag run one at a
 * time in issue order and so complete in that order; a collective of another tag may run at
 * once on a second thread (started when needed, up to CGLOO_PT_MAX), as blocking collectives of
 * different tags may from different caller threads. An idle thread moves the caller's large
 * point-to-point transfers, but only while no other thread drives the context: a caller that
 * waits keeps the direct path (it reads its own messages, no hand-off).
 *
 * Hand-offs cost a wake-up of a sleeping thread (20 to 60 µs on this machine class), so both
 * ends spin first: a thread spins for CGLOO_SPIN_US after each collective before it sleeps,
 * and a caller waiting for a request spins as long before it sleeps (docs/ARCHITECTURE.md,
 * "Non-blocking collectives", has the measured cost).
 */
#include "core/context.h"

#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>

/* How long an idle thread sleeps in the poller at most while it moves point-to-point
 * transfers, before it looks at its queue and flags again (a submit or a waiter wakes it
 * sooner). */
#define PT_DRIVE_POLL_MS 100

_Thread_local cgloo_context *cgloo__pt_self;
_Thread_local cgloo_job *cgloo__pt_job;

static bool job_done(const cgloo_request *r)
{
    return __atomic_load_n(&r->done, __ATOMIC_ACQUIRE);
}

static cgloo_job *job_at(cgloo__list *link)
{
    return CGLOO_CONTAINER_OF(link, cgloo_job, queue_link);
}

/* job_complete finishes a job's request (lock held) and wakes the threads waiting for one. */
static void job_complete(cgloo_context *ctx, cgloo_job *job, int status)
{
    cgloo__list_remove(&job->queue_link);
    cgloo__list_init(&job->queue_link);
    if (job->aborted) {
        status = CGLOO_EABORTED;
        snprintf(job->detail, sizeof job->detail,
                 "rank %d: a non-blocking collective was aborted by cgloo_context_abort_request; "
                 "the context is unfit for collectives",
                 ctx->rank);
    }
    job->req->status = status;
    __atomic_store_n(&job->req->done, true, __ATOMIC_RELEASE);
    pthread_cond_broadcast(&ctx->job_done);
}

/* job_free frees a job and its request (lock held: the job leaves ctx->jobs_all). */
static void job_free(cgloo_job *job)
{
    cgloo__list_remove(&job->all_link);
    cgloo__list_remove(&job->req->live_link);
    free(job->req);
    free(job);
}

static bool tag_running(cgloo_context *ctx, uint64_t tag)
{
    cgloo__list *it;
    for (it = ctx->jobs_running.next; it != &ctx->jobs_running; it = it->next)
        if (job_at(it)->tag == tag)
            return true;
    return false;
}

/* next_runnable: the earliest queued job whose tag has nothing running (so one tag's jobs
 * keep their order), or NULL. */
static cgloo_job *next_runnable(cgloo_context *ctx)
{
    cgloo__list *it;
    for (it = ctx->jobs_queued.next; it != &ctx->jobs_queued; it = it->next)
        if (!tag_running(ctx, job_at(it)->tag))
            return job_at(it);
    return NULL;
}

/* run_job runs job with the lock released, as this context's progress thread would (its
 * blocking collective then neither waits its turn nor leaves the driving to others). */
static void run_job(cgloo_context *ctx, cgloo_job *job)
{
    cgloo__list_remove(&job->queue_link);
    cgloo__list_push_back(&ctx->jobs_running, &job->queue_link);
    cgloo_context *self = cgloo__pt_self;
    cgloo__pt_self = ctx;
    cgloo__pt_job = job;
    pthread_mutex_unlock(&ctx->lock);
    int rc = job->run(ctx, job);
    if (rc != CGLOO_OK)
        cgloo_context_last_error(ctx, job->detail, sizeof job->detail);
    pthread_mutex_lock(&ctx->lock);
    cgloo__pt_job = NULL;
    cgloo__pt_self = self;
    job_complete(ctx, job, rc);
}

/* run runs job on a progress thread. */
static void run(cgloo_context *ctx, cgloo_job *job)
{
    ctx->pt_idle--;
    run_job(ctx, job);
    ctx->pt_idle++;
}

/* should_drive: a large transfer of the caller's is open and nobody else drives. */
static bool should_drive(const cgloo_context *ctx)
{
    return ctx->large_open > 0 && ctx->user_waits == 0 && !ctx->progressing && !ctx->aborted;
}

static void drive(cgloo_context *ctx)
{
    ctx->pt_driving = true;
    cgloo__ctx_poll_once(ctx, PT_DRIVE_POLL_MS, false);
    ctx->pt_driving = false;
}

static void sleep_idle(cgloo_context *ctx)
{
    ctx->pt_sleeping++;
    pthread_cond_wait(&ctx->pt_wake, &ctx->lock);
    ctx->pt_sleeping--;
}

/* fail_queued completes the jobs that never ran when the threads end (lock held). */
static void fail_queued(cgloo_context *ctx)
{
    while (!cgloo__list_empty(&ctx->jobs_queued)) {
        cgloo_job *job = job_at(ctx->jobs_queued.next);
        snprintf(job->detail, sizeof job->detail,
                 "rank %d: a non-blocking collective was queued when the context was destroyed",
                 ctx->rank);
        job_complete(ctx, job, CGLOO_EABORTED);
    }
}

static void *pt_main(void *arg)
{
    cgloo_context *ctx = arg;
    cgloo__pt_self = ctx;
    pthread_mutex_lock(&ctx->lock);
    int64_t spin_until = 0;
    while (!ctx->pt_stop) {
        cgloo_job *job = next_runnable(ctx);
        if (job) {
            run(ctx, job);
            /* Where ranks outnumber the cores, a thread spinning for the next collective
             * takes the core from a rank that has work: it sleeps at once instead, and a
             * caller that waits runs the next collective itself (docs/BENCHMARKS.md,
             * "Non-blocking collectives"). */
            spin_until = ctx->cores_shared ? 0 : cgloo__now_ns() + (int64_t)ctx->spin_us * 1000;
        } else if (should_drive(ctx)) {
            drive(ctx);
        } else if (cgloo__now_ns() < spin_until) {
            pthread_mutex_unlock(&ctx->lock);
            sched_yield();
            pthread_mutex_lock(&ctx->lock);
        } else {
            sleep_idle(ctx);
        }
    }
    fail_queued(ctx);
    pthread_mutex_unlock(&ctx->lock);
    return NULL;
}

/* add_thread starts one more progress thread (lock held). */
static int add_thread(cgloo_context *ctx)
{
    /* The thread takes no signals: they go to the application's threads, as they would
     * without the library (an interpreter's Ctrl-C handler runs on its main thread). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&ctx->pt_threads[ctx->pt_count], NULL, pt_main, ctx);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (err)
        return cgloo__ctx_error(ctx, CGLOO_EIO, "rank %d: could not start a progress thread: %s",
                                ctx->rank, strerror(err));
    ctx->pt_count++;
    ctx->pt_idle++;
    return CGLOO_OK;
}

int cgloo__pt_start(cgloo_context *ctx)
{
    return ctx->pt_count > 0 ? CGLOO_OK : add_thread(ctx);
}

/* runnable_count: how many queued jobs could start now, one per tag with nothing running. */
static int runnable_count(cgloo_context *ctx)
{
    int n = 0;
    for (cgloo__list *it = ctx->jobs_queued.next; it != &ctx->jobs_queued; it = it->next) {
        bool first_of_tag = true;
        for (cgloo__list *e = ctx->jobs_queued.next; e != it && first_of_tag; e = e->next)
            first_of_tag = job_at(e)->tag != job_at(it)->tag;
        n += first_of_tag && !tag_running(ctx, job_at(it)->tag);
    }
    return n;
}

/* wake_thread makes an idle progress thread look at its queue now, or starts one more when the
 * jobs that could run outnumber the idle threads: a tag whose job waits for a thread may be
 * the one the other ranks wait for (lock held). */
static int wake_thread(cgloo_context *ctx)
{
    if (runnable_count(ctx) > ctx->pt_idle && ctx->pt_count < CGLOO_PT_MAX)
        return add_thread(ctx);
    if (ctx->pt_sleeping)
        pthread_cond_signal(&ctx->pt_wake);
    else if (ctx->pt_driving)
        cgloo__ctx_wake(ctx);
    return CGLOO_OK;
}

int cgloo__pt_submit(cgloo_context *ctx, cgloo_job *job, cgloo_request **out)
{
    cgloo_request *r = calloc(1, sizeof *r);
    if (!r) {
        free(job);
        return CGLOO_ENOMEM;
    }
    cgloo__list_init(&r->link);
    cgloo__list_init(&r->live_link);
    r->ctx = ctx;
    r->kind = REQ_COLL;
    r->source = -1;
    r->job = job;
    job->req = r;
    pthread_mutex_lock(&ctx->lock);
    int rc = !ctx->connected ? CGLOO_ESTATE
             : ctx->aborted  ? CGLOO_EABORTED
             : ctx->pt_stop  ? CGLOO_ESTATE
                             : cgloo__pt_start(ctx);
    if (rc == CGLOO_OK) {
        job->seq = ++ctx->jobs_issued;
        cgloo__list_push_back(&ctx->jobs_queued, &job->queue_link);
        rc = wake_thread(ctx);
        if (rc != CGLOO_OK)
            cgloo__list_remove(&job->queue_link);
    }
    if (rc == CGLOO_OK) {
        cgloo__list_push_back(&ctx->jobs_all, &job->all_link);
        cgloo__p2p_register(ctx, r);
    }
    pthread_mutex_unlock(&ctx->lock);
    if (rc != CGLOO_OK) {
        free(job);
        free(r);
        return rc;
    }
    *out = r;
    return CGLOO_OK;
}

/* unfinished_before: a job of tag (any tag when all is set) issued at or before seq has not
 * finished. */
static bool unfinished_before(cgloo_context *ctx, uint64_t tag, bool all, uint64_t seq)
{
    cgloo__list *lists[] = {&ctx->jobs_running, &ctx->jobs_queued};
    for (size_t i = 0; i < CGLOO_ARRAY_LEN(lists); i++)
        for (cgloo__list *it = lists[i]->next; it != lists[i]; it = it->next)
            if ((all || job_at(it)->tag == tag) && job_at(it)->seq <= seq)
                return true;
    return false;
}

/* timed_wait sleeps on cond until woken or deadline_ms (lock held); false once it has passed. */
static bool timed_wait(cgloo_context *ctx, pthread_cond_t *cond, int64_t deadline_ms)
{
    int left = cgloo__remaining_ms(deadline_ms);
    if (left == 0)
        return false;
    int slice = ctx->interrupt_fn ? CGLOO_MIN(left, CGLOO_INTERRUPT_CHECK_MS) : left;
    struct timespec until = cgloo__timespec_after_ms(slice);
    pthread_cond_timedwait(cond, &ctx->lock, &until);
    return true;
}

/* interrupted calls the interrupt check without the lock (lock held on entry and return). */
static bool interrupted(cgloo_context *ctx)
{
    if (!ctx->interrupt_fn)
        return false;
    pthread_mutex_unlock(&ctx->lock);
    bool stop = cgloo__ctx_interrupted(ctx);
    pthread_mutex_lock(&ctx->lock);
    return stop;
}

int cgloo__pt_wait_turn(cgloo_context *ctx, uint64_t tag, int64_t deadline_ms)
{
    if (ctx->pt_count == 0 || cgloo__pt_self == ctx)
        return CGLOO_OK;
    uint64_t mine = ctx->jobs_issued;
    while (unfinished_before(ctx, tag, false, mine)) {
        if (ctx->aborted)
            return CGLOO_EABORTED;
        if (!timed_wait(ctx, &ctx->job_done, deadline_ms))
            return CGLOO_ETIMEDOUT;
        if (interrupted(ctx))
            return CGLOO_EINTR;
    }
    return CGLOO_OK;
}

void cgloo__pt_user_enter(cgloo_context *ctx)
{
    ctx->user_waits++;
    if (ctx->pt_driving)
        cgloo__ctx_wake(ctx); /* hand the driving to this thread */
}

void cgloo__pt_user_leave(cgloo_context *ctx)
{
    if (--ctx->user_waits == 0 && ctx->large_open > 0 && ctx->pt_sleeping)
        pthread_cond_signal(&ctx->pt_wake);
}

void cgloo__pt_large_opened(cgloo_context *ctx)
{
    if (ctx->large_open == 1 && ctx->user_waits == 0 && ctx->pt_sleeping)
        pthread_cond_signal(&ctx->pt_wake);
}

/* ---- requests of non-blocking collectives ---------------------------------------------------- */

/* spin_for polls r's completion without the lock for the context's spin time, yielding the
 * core between looks: a thread that sleeps pays a wake-up when the collective ends. */
static void spin_for(cgloo_context *ctx, const cgloo_request *r, int64_t deadline_ms)
{
    int64_t until = cgloo__now_ns() + (int64_t)ctx->spin_us * 1000;
    while (!job_done(r) && cgloo__now_ns() < until && cgloo__remaining_ms(deadline_ms) > 0)
        sched_yield();
}

/* finish hands a completed job's status out, records its detail, and frees it (lock held;
 * released on return). */
static int finish(cgloo_context *ctx, cgloo_request *r, cgloo_completion *done)
{
    int status = r->status;
    if (status != CGLOO_OK)
        cgloo__ctx_error(ctx, status, "%s", r->job->detail);
    job_free(r->job);
    pthread_mutex_unlock(&ctx->lock);
    if (done) {
        done->source = ctx->rank;
        done->bytes = 0;
    }
    return status;
}

/* job_running: job is running on a progress thread (lock held). */
static bool job_running(cgloo_context *ctx, const cgloo_job *job)
{
    cgloo__list *it;
    for (it = ctx->jobs_running.next; it != &ctx->jobs_running; it = it->next)
        if (job_at(it) == job)
            return true;
    return false;
}

/* stop_job withdraws a queued job, or stops a running one and waits until it has returned
 * (lock held). */
static void stop_job(cgloo_context *ctx, cgloo_job *job)
{
    job->cancel = true;
    if (!job->req->done && !job_running(ctx, job)) {
        /* still queued: withdrawn before it sent anything */
        cgloo__list_remove(&job->queue_link);
        cgloo__list_init(&job->queue_link);
        pthread_cond_broadcast(&ctx->job_done); /* blocking calls waiting their turn */
    }
    while (!job->req->done && job_running(ctx, job)) {
        /* its waits end at once (cgloo__progress checks the flag) */
        cgloo__ctx_wake(ctx);
        pthread_cond_broadcast(&ctx->progress_done);
        pthread_cond_wait(&ctx->job_done, &ctx->lock);
    }
}

/* wait_ended stops and frees a collective whose wait ended before it did, and records why
 * (lock held; released on return). */
static int wait_ended(cgloo_context *ctx, cgloo_request *r, int status, int waited_ms)
{
    stop_job(ctx, r->job);
    job_free(r->job);
    pthread_mutex_unlock(&ctx->lock);
    if (status == CGLOO_EINTR)
        return cgloo__ctx_error(ctx, status,
                                "rank %d: a wait for a non-blocking collective was interrupted "
                                "(the interrupt check asked); the collective was stopped",
                                ctx->rank);
    return cgloo__ctx_error(ctx, status,
                            "rank %d: a wait for a non-blocking collective timed out after %d ms; "
                            "the collective was stopped",
                            ctx->rank, waited_ms);
}

/* startable: job is queued, first of its tag, and its tag has nothing running (lock held). */
static bool startable(cgloo_context *ctx, cgloo_job *job)
{
    if (job->req->done || job_running(ctx, job) || tag_running(ctx, job->tag))
        return false;
    for (cgloo__list *it = ctx->jobs_queued.next; it != &job->queue_link; it = it->next)
        if (job_at(it)->tag == job->tag)
            return false;
    return true;
}

/* run_here runs a job no progress thread has started on the thread that waits for it (with
 * no wait timeout of its own): a sleeping thread's wake-up would cost more than a small
 * collective (lock held). The jobs it unblocks get threads as a submit would give them. */
static void run_here(cgloo_context *ctx, cgloo_job *job)
{
    run_job(ctx, job);
    wake_thread(ctx);
}

int cgloo__job_wait(cgloo_request *r, int timeout_ms, cgloo_completion *done)
{
    cgloo_context *ctx = r->ctx;
    pthread_mutex_lock(&ctx->lock);
    if (timeout_ms == 0 && startable(ctx, r->job)) /* a wait timeout could not bound it here */
        run_here(ctx, r->job);
    pthread_mutex_unlock(&ctx->lock);
    /* 0: until it ends, which the timeouts of the collectives before it and its own bound */
    int t = timeout_ms > 0 ? timeout_ms : INT_MAX;
    int64_t deadline = cgloo__deadline(t, t);
    spin_for(ctx, r, deadline);
    pthread_mutex_lock(&ctx->lock);
    while (!r->done) {
        if (!timed_wait(ctx, &ctx->job_done, deadline))
            return r->done ? finish(ctx, r, done) : wait_ended(ctx, r, CGLOO_ETIMEDOUT, t);
        if (!r->done && interrupted(ctx))
            return r->done ? finish(ctx, r, done) : wait_ended(ctx, r, CGLOO_EINTR, t);
    }
    return finish(ctx, r, done);
}

int cgloo__job_test(cgloo_request *r, int *completed, cgloo_completion *done)
{
    cgloo_context *ctx = r->ctx;
    *completed = 0;
    if (!job_done(r))
        return CGLOO_OK;
    pthread_mutex_lock(&ctx->lock);
    *completed = 1;
    return finish(ctx, r, done);
}

void cgloo__job_cancel(cgloo_request *r)
{
    cgloo_context *ctx = r->ctx;
    pthread_mutex_lock(&ctx->lock);
    stop_job(ctx, r->job);
    job_free(r->job);
    pthread_mutex_unlock(&ctx->lock);
}

void cgloo__job_abort(cgloo_context *ctx, cgloo_job *job)
{
    job->cancel = true;
    job->aborted = true;
    if (!job_running(ctx, job)) /* still queued: withdrawn before it sent anything */
        return job_complete(ctx, job, CGLOO_EABORTED);
    /* Its waits end at once (cgloo__progress checks the flag); the thread running it
     * completes it when the collective has returned, so the buffers are left alone by then. */
    cgloo__ctx_wake(ctx);
    pthread_cond_broadcast(&ctx->progress_done);
}

/* ---- the end ----------------------------------------------------------------------------------
 */

void cgloo__pt_stop(cgloo_context *ctx)
{
    pthread_mutex_lock(&ctx->lock);
    int count = ctx->pt_count;
    bool busy = unfinished_before(ctx, 0, true, UINT64_MAX);
    pthread_mutex_unlock(&ctx->lock);
    if (count == 0)
        return;
    if (busy)
        cgloo_context_abort(ctx); /* running collectives end at once; peers see it */
    pthread_mutex_lock(&ctx->lock);
    ctx->pt_stop = true;
    pthread_cond_broadcast(&ctx->pt_wake);
    cgloo__ctx_wake(ctx);
    pthread_mutex_unlock(&ctx->lock);
    for (int i = 0; i < count; i++)
        pthread_join(ctx->pt_threads[i], NULL);
    pthread_mutex_lock(&ctx->lock);
    ctx->pt_count = ctx->pt_idle = 0;
    while (!cgloo__list_empty(&ctx->jobs_all))
        job_free(CGLOO_CONTAINER_OF(ctx->jobs_all.next, cgloo_job, all_link));
    pthread_mutex_unlock(&ctx->lock);
}
