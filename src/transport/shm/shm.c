/* The shared-memory transport's ops table: what the core calls (see transport/transport.h). */
#include "transport/shm/shm.h"

const cgloo_transport cgloo__shm_transport = {
    .name = "shm",
    .peer_size = sizeof(shm_pair),
    .connect_begin = cgloo__shm_connect_begin,
    .connect = cgloo__shm_connect,
    .connect_end = cgloo__shm_connect_end,
    .connect_lazy = cgloo__shm_connect_lazy,
    .peer_want = cgloo__shm_peer_want,
    .connected = cgloo__shm_connected,
    .peer_init = cgloo__shm_peer_init,
    .peer_fini = cgloo__shm_peer_fini,
    .post_send = cgloo__shm_post_send,
    .start_large_recv = cgloo__shm_start_large_recv,
    .eager_released = cgloo__shm_eager_released,
    .cancel = cgloo__shm_cancel,
    .fail = cgloo__shm_fail,
    .close_begin = cgloo__shm_close_begin,
    .close_step = cgloo__shm_close_step,
    .read_memory = cgloo__shm_read_memory,
    .write_memory = cgloo__shm_write_memory,
    .slots = cgloo__shm_slots,
};
