/*
 * Which peers share this rank's host, for binding them to the shared-memory transport.
 *
 * A rank whose context asks for shared memory (cgloo_context_attr.transport, CGLOO_TRANSPORT)
 * publishes its host identity after its device's address ("<address>|host=<16 hex>"); a peer
 * whose record carries the same identity is on this kernel, in the same IPC and network
 * namespaces, and is bound to shared memory. Ranks that publish no identity (TCP only) are
 * bound to TCP by everyone, so the binding is symmetric.
 */
#ifndef CGLOO_LOCAL_PEERS_H
#define CGLOO_LOCAL_PEERS_H

#include "core/context.h"
#include "transport/transport.h"

/* cgloo__local_begin, before this rank publishes its record: host gets the identity suffix
 * (cgloo__host_suffix) and, when there is one, *shm_conn a shared-memory connector that listens
 * already. Where shared memory cannot work on this rank (its identity cannot be read, its
 * abstract socket cannot be made), auto leaves host empty (every peer then binds this rank to
 * TCP) and logs why, while shm fails with an error saying so: ENOTSUP, or the socket's status. */
int cgloo__local_begin(cgloo_context *ctx, char *host, size_t len, cgloo__connector **shm_conn);
/* cgloo__local_connect connects the peers cgloo__bind_local_peers bound to shared memory (the
 * full mesh: blocks until every pair is connected or the deadline), or in a lazy context hands
 * the connector to the context (ctx->lazy_shm, *shm_conn NULL after), whose pairs then connect
 * on first use. Errors: those of the shared-memory connect; ENOMEM. */
int cgloo__local_connect(cgloo_context *ctx, cgloo__connector **shm_conn,
                         const cgloo__peer_record *recs, int64_t deadline);

/* Bytes of the suffix cgloo__host_suffix writes, with its NUL. */
#define CGLOO__HOST_SUFFIX_MAX 48

/* cgloo__host_suffix writes "|host=<16 hex>/<uid>/<mode><segment>" into buf (at least
 * CGLOO__HOST_SUFFIX_MAX bytes), or "" when the context uses TCP for every peer or this host's
 * identity cannot be read. */
void cgloo__host_suffix(const cgloo_context *ctx, char *buf, size_t len);
/* cgloo__bind_local_peers strips the identity from every peer's record (so that TCP sees only
 * its address) and rebinds the peers whose identity equals `mine` (from cgloo__host_suffix) to
 * the shared-memory transport; *n_local gets how many. A peer of this host with which sharing
 * cannot work (another user; a rank that cannot make a segment) stays TCP's, with a warning,
 * unless one of the two insists on shared memory: then ENOTSUP, saying why. Takes the lock.
 * ENOMEM. */
int cgloo__bind_local_peers(cgloo_context *ctx, cgloo__peer_record *recs, const char *mine,
                            int *n_local);

#endif
