/*
 * Reading the launchers' environments (launcher_env.c) and opening the store they name
 * (launch_store.c), behind cgloo_launch_info_from_env and cgloo_launch_store_open. The helpers
 * here are internal so that tests can check them on their own.
 */
#ifndef CGLOO_LAUNCHER_ENV_H
#define CGLOO_LAUNCHER_ENV_H

#include "cgloo_impl.h"

/* The ports a job's rank 0 hosts its store on when only a job id says where (mpirun, Slurm). */
#define CGLOO_LAUNCH_PORT_MIN 20000
#define CGLOO_LAUNCH_PORT_SPAN 10000

/* cgloo__launch_port hashes a job id into [CGLOO_LAUNCH_PORT_MIN, +CGLOO_LAUNCH_PORT_SPAN). */
int cgloo__launch_port(const char *job_id);

/* cgloo__nodelist_first parses a Slurm node list ("node[01-04,07],gpu5") into its first host
 * name (copied into buf) and the number of hosts it names. Errors: EINVAL (malformed, or a
 * name longer than size). */
int cgloo__nodelist_first(const char *list, char *buf, size_t size, long *count);

/* cgloo__launch_log says which launcher li came from and where its store is, at level. */
void cgloo__launch_log(const cgloo_launch_info *li, cgloo_log_level level);

/* cgloo__store_watch_start starts, once per process, a thread that holds a connection to the
 * TCP store server at url ("tcp://host:port") and sends this process SIGTERM (and SIGKILL two
 * seconds later) when the server closes it: cgloo-run asks for that (CGLOO_WATCH_STORE=1) so
 * that ranks it started through a command prefix (ssh) end when it does. Errors: those of
 * connecting; EINVAL for another kind of URL. */
int cgloo__store_watch_start(const char *url, int timeout_ms);

#endif
