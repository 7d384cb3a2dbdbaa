/*
 * The context's poller: one epoll set that every transport registers its descriptors with, and
 * an eventfd that wakes a thread sleeping in it. Each registrant embeds a cgloo__pollable whose
 * callback the poller calls with the events that fired, so the poller knows nothing of what a
 * descriptor is (a TCP socket today; another transport's eventfd later).
 *
 * The poller has no lock of its own: the context's lock guards registration and dispatch, and
 * only the wait itself runs with that lock released (see cgloo__progress in core/context.c).
 */
#ifndef CGLOO_POLLER_H
#define CGLOO_POLLER_H

#include "cgloo_impl.h"
#include "core/list.h"

/* Events, as the poller reports and takes them. */
enum {
    CGLOO_POLL_IN = 1,  /* readable */
    CGLOO_POLL_OUT = 2, /* writable */
    CGLOO_POLL_ERR = 4, /* error or hang-up: a read will tell which */
};

typedef struct cgloo__pollable cgloo__pollable;
/* A registrant's callback: `events` is a mask of CGLOO_POLL_*. Runs with the context lock held. */
typedef void (*cgloo__poll_fn)(cgloo__pollable *p, unsigned events);
struct cgloo__pollable {
    cgloo__poll_fn on_event;
};

typedef struct cgloo__poller {
    int epfd, wakefd;
    cgloo__pollable wake; /* drains wakefd */
} cgloo__poller;

/* cgloo__poller_init makes the epoll set and the wake-up eventfd. Errors from the system, as a
 * status; on failure cgloo__poller_fini still frees what was made. */
int cgloo__poller_init(cgloo__poller *pl);
void cgloo__poller_fini(cgloo__poller *pl);
/* cgloo__poller_add registers fd with interest `events` (CGLOO_POLL_IN and/or OUT); `who` must
 * stay valid until cgloo__poller_del. Returns a status. */
int cgloo__poller_add(cgloo__poller *pl, int fd, unsigned events, cgloo__pollable *who);
/* cgloo__poller_mod changes the interest of a registered fd. Returns a status. */
int cgloo__poller_mod(cgloo__poller *pl, int fd, unsigned events, cgloo__pollable *who);
/* cgloo__poller_del unregisters fd (before it is closed). */
void cgloo__poller_del(cgloo__poller *pl, int fd);

/* A batch of fired events, collected without the lock and dispatched with it. */
#define CGLOO_POLL_BATCH 64
typedef struct cgloo__poll_events {
    int n;
    struct {
        cgloo__pollable *who;
        unsigned events;
    } ev[CGLOO_POLL_BATCH];
} cgloo__poll_events;

/* cgloo__poller_wait waits up to timeout_ms (0: do not wait) and collects what fired. It may
 * run without the context lock; it touches no registrant. Returns the number collected. */
int cgloo__poller_wait(cgloo__poller *pl, int timeout_ms, cgloo__poll_events *out);
/* cgloo__poller_dispatch calls each collected registrant's callback (context lock held). */
void cgloo__poller_dispatch(cgloo__poll_events *evs);
/* cgloo__poller_wake makes a thread sleeping in cgloo__poller_wait return. Safe from any
 * thread. */
void cgloo__poller_wake(cgloo__poller *pl);

#endif
