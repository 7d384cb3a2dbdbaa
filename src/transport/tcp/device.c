/*
 * The TCP device: address choice, the listening socket, and routing of incoming hellos. One
 * device is shared by any number of contexts. Connections arrive with a hello naming the
 * context and rank they are for; the device reads it and files the socket under the matching
 * registration, which the connecting context then claims. There is no device thread: whichever
 * connecting thread polls the device serves everyone's arrivals.
 *
 * A device with TLS runs the TLS handshake on each accepted socket first (non-blocking, within
 * the hello's deadline, beside the others) and reads the hello through the session.
 */
#include "transport/tcp/tcp.h"

#include <pthread.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

/* A hello (and the TLS handshake before it) must arrive this soon after the connection is
 * accepted. */
#define HELLO_DEADLINE_MS 10000
#define POLL_MAX 256
/* How long a connecting thread sleeps at most while another thread serves the device (hellos
 * for its context are filed by that thread, and only a poll that ends sees them), or while
 * more hellos are pending than its poll set holds. */
#define SHARED_POLL_MS 10
/* Connections whose hello has not arrived yet. A connection beyond these closes the oldest
 * (device_make_room): a flood then costs its own connections, not a peer that dials after it. */
#define PENDING_MAX 1024

typedef struct tcp_device {
    cgloo_device base;
    int listen_fd;
    int epfd;               /* the listener and unfinished hellos, for lazy contexts' pollers */
    tcp_addr_choice choice; /* the bound address, what peers dial, and why */
    char addr_text[CGLOO_TRANSPORT_ADDR_MAX]; /* what is published: the address peers dial */
    pthread_mutex_t lock;
    bool serving;            /* a thread is polling the listener */
    device_inbound *pending; /* hellos still arriving */
    int npending;
    device_reg *regs;       /* contexts that are connecting */
    cgloo__tls_config *tls; /* TLS on every connection, or NULL */
    char last_reject[320];  /* why the latest connection was refused, for timeout errors */
    int accept_errno;       /* EMFILE or ENFILE: accept found no descriptor left; else 0 */
} tcp_device;

static tcp_device *tcp_device_of(cgloo_device *dev)
{
    return CGLOO_CONTAINER_OF(dev, tcp_device, base);
}

/* device_listen binds the chosen address on the port range, and fixes the published text. */
static int device_listen(tcp_device *dev)
{
    tcp_addr_choice *c = &dev->choice;
    char ip[CGLOO_ADDR_TEXT_MAX];
    int rc = cgloo__listen(&c->bind, c->port_min, c->port_max, &dev->listen_fd);
    if (rc != CGLOO_OK) {
        cgloo__addr_format_ip(&c->bind, ip, sizeof ip);
        return cgloo__error_set(rc, "no TCP device: cannot listen on %s, port %d..%d (%s): %s", ip,
                                c->port_min, CGLOO_MAX(c->port_min, c->port_max), c->why,
                                strerror(errno));
    }
    if (cgloo__tcp_publish_text(c, dev->addr_text, sizeof dev->addr_text) != CGLOO_OK) {
        close(dev->listen_fd);
        return cgloo__error_set(CGLOO_EINVAL,
                                "no TCP device: the address to advertise is too long");
    }
    return CGLOO_OK;
}

static void device_log_choice(const tcp_device *dev)
{
    char bound[CGLOO_ADDR_TEXT_MAX];
    cgloo__addr_format(&dev->choice.bind, bound, sizeof bound);
    if (dev->choice.advertise[0])
        CGLOO_INFO("tcp device: listening on %s (%s); peers dial %s (%s)", bound, dev->choice.why,
                   dev->addr_text, dev->choice.reach_why);
    else
        CGLOO_INFO("tcp device: listening on %s, chosen because %s", bound, dev->choice.why);
}

/* device_tls_setup makes the TLS configuration the attribute or the environment asks for. */
static int device_tls_setup(const cgloo_tcp_attr *attr, tcp_device *dev)
{
    cgloo__tls_files f;
    if (attr && attr->tls) {
        f = (cgloo__tls_files){.cert = attr->tls->cert,
                               .key = attr->tls->key,
                               .ca = attr->tls->ca,
                               .verify_host = attr->tls->verify_host != 0,
                               .from = "cgloo_tcp_attr.tls"};
    } else if (!cgloo__tls_files_from_env(&f)) {
        return CGLOO_OK;
    }
    int rc = cgloo__tls_config_create(&f, &dev->tls);
    if (rc == CGLOO_OK)
        CGLOO_INFO("tcp device: TLS 1.3 on every connection (certificate %s, CA %s%s)", f.cert,
                   f.ca, f.verify_host ? ", peer host names checked" : "");
    return rc;
}

/* device_epoll_init makes the epoll set a lazy context's poller watches (nested: epoll
 * reports an epoll descriptor readable while it has events ready). */
static int device_epoll_init(tcp_device *dev)
{
    dev->epfd = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    if (dev->epfd >= 0 && epoll_ctl(dev->epfd, EPOLL_CTL_ADD, dev->listen_fd, &ev) == 0)
        return CGLOO_OK;
    if (dev->epfd >= 0)
        close(dev->epfd);
    return CGLOO_EIO;
}

int cgloo__tcp_device_events_fd(cgloo_device *base)
{
    return tcp_device_of(base)->epfd;
}

int cgloo_device_tcp_create(const cgloo_tcp_attr *attr, cgloo_device **out)
{
    cgloo__error_clear();
    if (!out || (attr && (attr->port_min < 0 || attr->port_max < 0 || attr->port_min > 65535 ||
                          attr->port_max > 65535)))
        return cgloo__error_set(CGLOO_EINVAL, "cgloo_device_tcp_create: %s",
                                !out ? "out is NULL" : "a port is outside 0..65535");
    cgloo__log_init_from_env();
    tcp_device *dev = calloc(1, sizeof *dev);
    if (!dev)
        return cgloo__error_set(CGLOO_ENOMEM, "no TCP device: out of memory");
    dev->base.transport = &cgloo__tcp_transport;
    int rc = cgloo__local_mode_parse(attr ? attr->transport : NULL, &dev->base.local_mode);
    if (rc != CGLOO_OK)
        rc = cgloo__error_set(rc,
                              "cgloo_device_tcp_create: transport '%s' is none of auto, tcp, shm",
                              attr->transport);
    if (rc == CGLOO_OK)
        rc = device_tls_setup(attr, dev);
    if (rc == CGLOO_OK)
        rc = cgloo__tcp_choose_address(attr, &dev->choice);
    if (rc == CGLOO_OK)
        rc = device_listen(dev);
    if (rc == CGLOO_OK && device_epoll_init(dev) != CGLOO_OK) {
        close(dev->listen_fd);
        rc = cgloo__error_set(CGLOO_EIO, "no TCP device: epoll: %s", strerror(errno));
    }
    if (rc != CGLOO_OK) {
        cgloo__tls_config_destroy(dev->tls);
        free(dev);
        return rc;
    }
    device_log_choice(dev);
    pthread_mutex_init(&dev->lock, NULL);
    *out = &dev->base;
    return CGLOO_OK;
}

const tcp_addr_choice *cgloo__tcp_device_choice(const cgloo_device *base, const char **published)
{
    const tcp_device *dev = CGLOO_CONTAINER_OF(base, const tcp_device, base);
    *published = dev->addr_text;
    return &dev->choice;
}

cgloo__tls_config *cgloo__tcp_device_tls(const cgloo_device *base)
{
    return CGLOO_CONTAINER_OF(base, const tcp_device, base)->tls;
}

void cgloo__tcp_device_last_reject(cgloo_device *base, char *buf, size_t len)
{
    tcp_device *dev = tcp_device_of(base);
    pthread_mutex_lock(&dev->lock);
    snprintf(buf, len, "%s", dev->last_reject);
    pthread_mutex_unlock(&dev->lock);
}

int cgloo__tcp_device_fds_out(cgloo_device *base)
{
    tcp_device *dev = tcp_device_of(base);
    pthread_mutex_lock(&dev->lock);
    int err = dev->accept_errno;
    pthread_mutex_unlock(&dev->lock);
    return err;
}

void cgloo__tcp_device_note_reject(cgloo_device *base, const char *addr, const char *why)
{
    tcp_device *dev = tcp_device_of(base);
    pthread_mutex_lock(&dev->lock);
    snprintf(dev->last_reject, sizeof dev->last_reject, "%s: %s", addr, why);
    pthread_mutex_unlock(&dev->lock);
}

int cgloo__tcp_device_address(const cgloo_device *base, char *buf, size_t len)
{
    const tcp_device *dev = CGLOO_CONTAINER_OF(base, const tcp_device, base);
    if ((size_t)snprintf(buf, len, "%s", dev->addr_text) >= len)
        return CGLOO_EINVAL;
    return CGLOO_OK;
}

static void inbound_close_all(device_inbound *in)
{
    while (in) {
        device_inbound *next = in->next;
        cgloo__tls_free(in->tls);
        close(in->fd);
        free(in);
        in = next;
    }
}

void cgloo__tcp_device_destroy(cgloo_device *base)
{
    tcp_device *dev = tcp_device_of(base);
    close(dev->listen_fd);
    close(dev->epfd);
    inbound_close_all(dev->pending);
    cgloo__tls_config_destroy(dev->tls);
    pthread_mutex_destroy(&dev->lock);
    free(dev);
}

void cgloo__tcp_device_register(cgloo_device *base, device_reg *reg)
{
    tcp_device *dev = tcp_device_of(base);
    pthread_mutex_lock(&dev->lock);
    reg->arrived = NULL;
    reg->next = dev->regs;
    dev->regs = reg;
    pthread_mutex_unlock(&dev->lock);
}

void cgloo__tcp_device_unregister(cgloo_device *base, device_reg *reg)
{
    tcp_device *dev = tcp_device_of(base);
    pthread_mutex_lock(&dev->lock);
    for (device_reg **pp = &dev->regs; *pp; pp = &(*pp)->next) {
        if (*pp == reg) {
            *pp = reg->next;
            break;
        }
    }
    inbound_close_all(reg->arrived);
    reg->arrived = NULL;
    pthread_mutex_unlock(&dev->lock);
}

device_inbound *cgloo__tcp_device_take(cgloo_device *base, device_reg *reg)
{
    tcp_device *dev = tcp_device_of(base);
    pthread_mutex_lock(&dev->lock);
    device_inbound *got = reg->arrived;
    reg->arrived = NULL;
    pthread_mutex_unlock(&dev->lock);
    return got;
}

static void inbound_reject(tcp_device *dev, device_inbound *in, const char *why)
{
    CGLOO_WARN("device: rejected connection from %s: %s", in->addr, why);
    snprintf(dev->last_reject, sizeof dev->last_reject, "%s: %s", in->addr, why);
    cgloo__tls_free(in->tls);
    close(in->fd);
    free(in);
}

/* device_route files a complete, well-formed hello under its registration (lock held). */
static void device_route(tcp_device *dev, device_inbound *in)
{
    const char *why = wire_hello_decode(in->hello, &in->decoded);
    if (!why && in->decoded.type != HELLO_TYPE_HELLO)
        why = "expected a hello";
    if (why)
        return inbound_reject(dev, in, why);
    const wire_hello *h = &in->decoded;
    for (device_reg *reg = dev->regs; reg; reg = reg->next) {
        if (reg->ctx_id != h->ctx_id || reg->rank != h->dst_rank)
            continue;
        if (reg->size != h->size)
            return inbound_reject(dev, in, "world size differs");
        if (reg->nonce != h->dst_nonce)
            return inbound_reject(dev, in,
                                  "hello for another instance of this rank (stale address?)");
        if (h->src_rank >= reg->size || h->src_rank == reg->rank ||
            (h->src_rank < reg->rank && !reg->lazy))
            return inbound_reject(dev, in, "sender rank out of range");
        epoll_ctl(dev->epfd, EPOLL_CTL_DEL, in->fd, NULL); /* the context's from now on */
        in->next = reg->arrived;
        reg->arrived = in;
        if (reg->lazy)
            (void)eventfd_write(reg->notify_fd, 1);
        return;
    }
    inbound_reject(dev, in, "no connecting context matches its context id and rank");
}

/* device_make_room closes the oldest unfinished hello (the list's tail: arrivals go to its
 * head) when PENDING_MAX are waiting. A peer's hello follows its connect at once, so the
 * oldest silent connection is the one least likely to be a peer. */
static void device_make_room(tcp_device *dev)
{
    if (dev->npending < PENDING_MAX)
        return;
    device_inbound **pp = &dev->pending;
    while ((*pp)->next)
        pp = &(*pp)->next;
    device_inbound *oldest = *pp;
    *pp = NULL;
    dev->npending--;
    CGLOO_WARN("device %s: %d hellos pending: closing the oldest, from %s", dev->addr_text,
               PENDING_MAX, oldest->addr);
    cgloo__tls_free(oldest->tls);
    close(oldest->fd);
    free(oldest);
}

static void device_accept(tcp_device *dev)
{
    for (;;) {
        cgloo__addr peer = {.len = sizeof peer.ss};
        int fd = accept4(dev->listen_fd, (struct sockaddr *)&peer.ss, &peer.len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            /* EAGAIN, or a transient error the next poll retries; no descriptor left is not
             * transient, and the connecting contexts fail with it (cgloo__tcp_device_fds_out). */
            if (errno == EMFILE || errno == ENFILE)
                dev->accept_errno = errno;
            return;
        }
        device_make_room(dev);
        device_inbound *in = calloc(1, sizeof *in);
        if (!in) {
            CGLOO_WARN("device %s: closed a connection: out of memory", dev->addr_text);
            close(fd);
            continue;
        }
        in->fd = fd;
        in->ready = true; /* the hello may be there already */
        in->accepted_ms = cgloo__now_ms();
        if (dev->tls && cgloo__tls_new(dev->tls, fd, false, NULL, &in->tls) != CGLOO_OK) {
            close(fd);
            free(in);
            continue;
        }
        cgloo__addr_format(&peer, in->addr, sizeof in->addr);
        struct epoll_event ev = {.events = EPOLLIN};
        epoll_ctl(dev->epfd, EPOLL_CTL_ADD, fd, &ev); /* failing only delays its hello */
        in->next = dev->pending;
        dev->pending = in;
        dev->npending++;
    }
}

/* inbound_want: the bytes a hello takes, its nonce included when its flag says so. */
static size_t inbound_want(const device_inbound *in)
{
    return in->got >= HELLO_LEN && (in->hello[6] & WIRE_FLAG_AUTH) ? HELLO_AUTH_LEN : HELLO_LEN;
}

/* inbound_read takes the TLS handshake a step, then reads what there is of the hello and, when
 * the hello's flag says one follows, of the dialler's nonce (wire.h), in the same round. Returns
 * NULL while it is unfinished and healthy, else why it failed ("" when the hello is whole). */
static const char *inbound_read(device_inbound *in, char *why, size_t len)
{
    if (in->tls && !in->tls_done) {
        int rc = cgloo__tls_handshake(in->tls);
        if (rc == CGLOO__TLS_AGAIN)
            return NULL;
        if (rc != CGLOO_OK) {
            snprintf(why, len, "TLS handshake failed: %s", cgloo__tls_why(in->tls));
            return why;
        }
        in->tls_done = true;
    }
    ssize_t n;
    do {
        void *dst = in->hello + in->got;
        size_t want = inbound_want(in) - in->got;
        n = in->tls ? cgloo__tls_read(in->tls, dst, want) : recv(in->fd, dst, want, 0);
        if (n > 0)
            in->got += (size_t)n;
    } while (n > 0 && in->got < inbound_want(in));
    if (in->got == inbound_want(in))
        return "";
    if (n == 0)
        return "closed before a whole hello";
    if (n < 0 && errno != EAGAIN && errno != EINTR) {
        snprintf(why, len, "reading the hello failed: %s",
                 in->tls ? cgloo__tls_why(in->tls) : strerror(errno));
        return why;
    }
    return NULL;
}

/* device_read_hellos reads what arrived on unfinished hellos; routes complete ones. Only the
 * connections worth a read are read: at 512 ranks, reading every unfinished hello after every
 * poll made 15 recv calls per connection, most of them finding nothing. */
static void device_read_hellos(tcp_device *dev)
{
    int64_t now = cgloo__now_ms();
    device_inbound **pp = &dev->pending;
    while (*pp) {
        device_inbound *in = *pp;
        char buf[300];
        const char *why = in->ready ? inbound_read(in, buf, sizeof buf) : NULL;
        in->ready = in->tls != NULL; /* a session may hold bytes no poll reports */
        if (!why && now - in->accepted_ms > HELLO_DEADLINE_MS)
            why = in->tls && !in->tls_done ? "TLS handshake too slow" : "hello too slow";
        if (!why) {
            pp = &in->next;
            continue;
        }
        *pp = in->next;
        dev->npending--;
        if (!*why)
            device_route(dev, in);
        else
            inbound_reject(dev, in, why);
    }
}

/* device_note_ready marks the pending connections the poll saw readable, in the order they were
 * put in the poll set (only the serving thread changes the list); those past the poll set stay
 * worth a read. */
static void device_note_ready(tcp_device *dev, const struct pollfd *polled, int n)
{
    int i = 0;
    for (device_inbound *in = dev->pending; in; in = in->next, i++)
        if (i >= n || polled[i].revents)
            in->ready = true;
}

void cgloo__tcp_device_poll(cgloo_device *base, struct pollfd *fds, int nfds, int timeout_ms)
{
    tcp_device *dev = tcp_device_of(base);
    struct pollfd all[POLL_MAX];
    int mine = CGLOO_MIN(nfds, POLL_MAX / 2), n = mine;
    memcpy(all, fds, (size_t)n * sizeof *fds);
    pthread_mutex_lock(&dev->lock);
    bool serve = !dev->serving;
    if (serve) {
        dev->serving = true;
        all[n++] = (struct pollfd){.fd = dev->listen_fd, .events = POLLIN};
        for (device_inbound *in = dev->pending; in && n < POLL_MAX; in = in->next) {
            short ev = in->tls && !in->tls_done ? cgloo__tls_wants(in->tls) : POLLIN;
            all[n++] = (struct pollfd){.fd = in->fd, .events = ev};
        }
    }
    /* Hellos on connections beyond the poll set are read only when a poll ends. */
    bool all_polled = serve && n - mine - 1 == dev->npending;
    pthread_mutex_unlock(&dev->lock);

    poll(all, (nfds_t)n, all_polled ? timeout_ms : CGLOO_MIN(timeout_ms, SHARED_POLL_MS));
    memcpy(fds, all, (size_t)mine * sizeof *fds);
    if (!serve)
        return;
    pthread_mutex_lock(&dev->lock);
    device_note_ready(dev, all + mine + 1, n - mine - 1);
    device_accept(dev);
    device_read_hellos(dev);
    dev->serving = false;
    pthread_mutex_unlock(&dev->lock);
}
