/*
 * cgloo over an MPI communicator: a context whose ranks are the communicator's, connected by
 * exchanging addresses with MPI itself instead of a store. In the cgloo_mpi library (built when
 * MPI is found at build time, CGLOO_WITH_MPI); link it with -lcgloo_mpi -lcgloo and MPI's own
 * libraries. The core library knows nothing of MPI.
 */
#ifndef CGLOO_MPI_H
#define CGLOO_MPI_H

#include <cgloo/cgloo.h>
#include <mpi.h>

#ifdef __cplusplus
extern "C" {
#endif

/* cgloo_context_create_from_mpi makes a connected context of comm's size, this process being
 * its rank in comm. Collective over comm: every rank of comm must call it, and blocks until
 * every rank is connected (or the context timeout, CGLOO_TIMEOUT_MS or 30 s, passes). The
 * addresses go around with MPI_Allgather; CGLOO_HOSTNAME / CGLOO_IFACE choose the device's
 * address as for cgloo_context_create_from_env. MPI must be initialised; only the calling
 * thread calls MPI, and only during this call. The context owns its device; comm is not kept.
 * Errors: EINVAL, ENOMEM, EPEER (a rank could not make its device: all ranks fail together),
 * EIO (an MPI call failed), those of cgloo_device_tcp_create and cgloo_context_connect. */
CGLOO_API int cgloo_context_create_from_mpi(MPI_Comm comm, cgloo_context **out);

#ifdef __cplusplus
}
#endif

#endif
