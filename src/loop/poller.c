/* The context's poller over epoll (see poller.h). Level-triggered: a registrant that leaves
 * bytes unread (a transport taking turns between peers) hears of them again on the next wait. */
#include "loop/poller.h"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

static uint32_t to_epoll(unsigned events)
{
    return (events & CGLOO_POLL_IN ? EPOLLIN : 0) | (events & CGLOO_POLL_OUT ? EPOLLOUT : 0);
}

static unsigned from_epoll(uint32_t events)
{
    return (events & EPOLLIN ? CGLOO_POLL_IN : 0) | (events & EPOLLOUT ? CGLOO_POLL_OUT : 0) |
           (events & (EPOLLERR | EPOLLHUP) ? CGLOO_POLL_ERR : 0);
}

static void poller_drain_wake(cgloo__pollable *p, unsigned events)
{
    cgloo__poller *pl = CGLOO_CONTAINER_OF(p, cgloo__poller, wake);
    uint64_t v;
    ssize_t r = read(pl->wakefd, &v, sizeof v);
    (void)r; /* EAGAIN: another thread drained it first */
}

int cgloo__poller_init(cgloo__poller *pl)
{
    pl->wake.on_event = poller_drain_wake;
    pl->epfd = epoll_create1(EPOLL_CLOEXEC);
    pl->wakefd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (pl->epfd < 0 || pl->wakefd < 0)
        return cgloo__status_from_errno(errno);
    return cgloo__poller_add(pl, pl->wakefd, CGLOO_POLL_IN, &pl->wake);
}

void cgloo__poller_fini(cgloo__poller *pl)
{
    if (pl->epfd >= 0)
        close(pl->epfd);
    if (pl->wakefd >= 0)
        close(pl->wakefd);
    pl->epfd = pl->wakefd = -1;
}

int cgloo__poller_add(cgloo__poller *pl, int fd, unsigned events, cgloo__pollable *who)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = who};
    if (epoll_ctl(pl->epfd, EPOLL_CTL_ADD, fd, &ev) != 0)
        return cgloo__status_from_errno(errno);
    return CGLOO_OK;
}

int cgloo__poller_mod(cgloo__poller *pl, int fd, unsigned events, cgloo__pollable *who)
{
    struct epoll_event ev = {.events = to_epoll(events), .data.ptr = who};
    if (epoll_ctl(pl->epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
        return cgloo__status_from_errno(errno);
    return CGLOO_OK;
}

void cgloo__poller_del(cgloo__poller *pl, int fd)
{
    epoll_ctl(pl->epfd, EPOLL_CTL_DEL, fd, NULL);
}

int cgloo__poller_wait(cgloo__poller *pl, int timeout_ms, cgloo__poll_events *out)
{
    struct epoll_event evs[CGLOO_POLL_BATCH];
    int n = epoll_wait(pl->epfd, evs, CGLOO_POLL_BATCH, timeout_ms);
    out->n = n > 0 ? n : 0;
    for (int i = 0; i < out->n; i++) {
        out->ev[i].who = evs[i].data.ptr;
        out->ev[i].events = from_epoll(evs[i].events);
    }
    return out->n;
}

void cgloo__poller_dispatch(cgloo__poll_events *evs)
{
    for (int i = 0; i < evs->n; i++)
        evs->ev[i].who->on_event(evs->ev[i].who, evs->ev[i].events);
}

void cgloo__poller_wake(cgloo__poller *pl)
{
    uint64_t one = 1;
    ssize_t n = write(pl->wakefd, &one, sizeof one);
    (void)n; /* a full counter already means "wake up" */
}
