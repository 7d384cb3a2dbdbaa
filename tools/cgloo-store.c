/*
 * cgloo-store: run a TCP store server in the foreground, for jobs whose ranks are started by
 * something other than cgloo-run (Slurm, ssh, a scheduler). Ranks reach it with
 * CGLOO_STORE=tcp://HOST:PORT.
 *
 *   cgloo-store [--host H] [--port P]
 *
 * Prints "cgloo-store listening on HOST:PORT" once the socket is ready, then serves until
 * SIGINT, SIGTERM or SIGHUP, and exits 0. Exit 2 for bad usage, 1 when the server cannot start.
 * With CGLOO_SECRET or CGLOO_SECRET_FILE set, every client must prove that job secret before it
 * is served (give the ranks the same variable).
 */
#define _GNU_SOURCE
#include <cgloo/cgloo.h>

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *to)
{
    fprintf(to, "usage: cgloo-store [--host HOST] [--port PORT]\n"
                "  Serves a cgloo TCP store until interrupted.\n"
                "  --host HOST  address or name to listen on (default 127.0.0.1; 0.0.0.0 or ::\n"
                "               for every interface)\n"
                "  --port PORT  port to listen on (default 0: a free port, printed at start)\n"
                "  CGLOO_SECRET or CGLOO_SECRET_FILE in the environment: clients must prove\n"
                "  that job secret\n");
}

static int parse_port(const char *s, int *out)
{
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (!*s || *end || v < 0 || v > 65535)
        return -1;
    *out = (int)v;
    return 0;
}

/* parse_args fills host and port; returns -1 (usage error), 1 (help shown) or 0. */
static int parse_args(int argc, char **argv, const char **host, int *port)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            usage(stdout);
            return 1;
        }
        if (strcmp(a, "--host") == 0 && i + 1 < argc) {
            *host = argv[++i];
        } else if (strncmp(a, "--host=", 7) == 0) {
            *host = a + 7;
        } else if (strcmp(a, "--port") == 0 && i + 1 < argc) {
            if (parse_port(argv[++i], port) != 0)
                return -1;
        } else if (strncmp(a, "--port=", 7) == 0) {
            if (parse_port(a + 7, port) != 0)
                return -1;
        } else {
            fprintf(stderr, "cgloo-store: unexpected argument '%s'\n", a);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0;
    int rc = parse_args(argc, argv, &host, &port);
    if (rc != 0) {
        if (rc < 0)
            usage(stderr);
        return rc < 0 ? 2 : 0;
    }

    /* Block the stop signals before the server thread starts so that only sigwait sees them. */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);

    cgloo_store_server *server = NULL;
    rc = cgloo_store_server_start(host, port, &server);
    if (rc != CGLOO_OK) {
        char detail[CGLOO_ERROR_MAX];
        cgloo_last_error(detail, sizeof detail);
        fprintf(stderr, "cgloo-store: cannot listen on %s port %d: %s (%s)\n", host, port,
                cgloo_strerror(rc), detail);
        return 1;
    }
    int ipv6 = strchr(host, ':') != NULL;
    printf("cgloo-store listening on %s%s%s:%d\n", ipv6 ? "[" : "", host, ipv6 ? "]" : "",
           cgloo_store_server_port(server));
    fflush(stdout);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0) {
    }
    cgloo_store_server_stop(server);
    return 0;
}
