/* The TCP transport's ops table: what the core calls (see transport/transport.h). */
#include "transport/tcp/tcp.h"

const cgloo_transport cgloo__tcp_transport = {
    .name = "tcp",
    .peer_size = sizeof(tcp_pair),
    .device_address = cgloo__tcp_device_address,
    .device_destroy = cgloo__tcp_device_destroy,
    .connect_begin = cgloo__tcp_connect_begin,
    .connect = cgloo__tcp_connect,
    .connect_end = cgloo__tcp_connect_end,
    .connect_lazy = cgloo__tcp_connect_lazy,
    .peer_want = cgloo__tcp_peer_want,
    .connected = cgloo__tcp_pair_connected,
    .peer_init = cgloo__tcp_peer_init,
    .peer_fini = cgloo__tcp_peer_fini,
    .post_send = cgloo__tcp_post_send,
    .start_large_recv = cgloo__tcp_start_large_recv,
    .eager_released = cgloo__tcp_eager_released,
    .cancel = cgloo__tcp_cancel,
    .fail = cgloo__tcp_fail,
    .close_begin = cgloo__tcp_close_begin,
    .close_step = cgloo__tcp_close_step,
};
