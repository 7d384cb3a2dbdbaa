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

/* cgloo__host_suffix writes "|host=<16 hex>" into buf (at least 24 bytes), or "" when the
 * context uses TCP for every peer or this host's identity cannot be read. */
void cgloo__host_suffix(const cgloo_context *ctx, char *buf, size_t len);
/* cgloo__bind_local_peers strips the identity from every peer's record (so that TCP sees only
 * its address) and rebinds the peers whose identity equals `mine` (from cgloo__host_suffix) to
 * the shared-memory transport; *n_local gets how many. Takes the lock. ENOMEM. */
int cgloo__bind_local_peers(cgloo_context *ctx, cgloo__peer_record *recs, const char *mine,
                            int *n_local);

#endif
