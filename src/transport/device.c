/* The public device calls every transport shares; each transport makes its own devices
 * (cgloo_device_tcp_create) and answers these through its ops table. */
#include "transport/transport.h"

int cgloo_device_address(const cgloo_device *dev, char *buf, size_t len)
{
    if (!dev || !buf || len == 0)
        return CGLOO_EINVAL;
    return dev->transport->device_address(dev, buf, len);
}

/* The maker's destroy and every hold's release count down; the last one frees the device. */
void cgloo_device_destroy(cgloo_device *dev)
{
    if (dev && atomic_fetch_sub(&dev->holds, 1) == 0)
        dev->transport->device_destroy(dev);
}
