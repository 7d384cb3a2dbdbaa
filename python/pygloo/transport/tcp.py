"""pygloo.transport.tcp: TCP devices, over cgloo.Device."""

import socket as _socket

import cgloo as _cgloo

__all__ = ["attr", "CreateDevice"]

# ai_family -> cgloo's family argument (0: whatever the name resolves to first).
_FAMILIES = {_socket.AF_UNSPEC: 0, _socket.AF_INET: 4, _socket.AF_INET6: 6}


class attr:
    """Where a TCP device listens: attr() or attr(hostname).

    hostname is an IP address or a host name to bind to and publish; iface an interface name
    (e.g. "eth0") whose address is used instead; ai_family socket.AF_INET or AF_INET6 to force
    an address family (AF_UNSPEC, the default, takes what the name resolves to first). Left
    empty, cgloo uses CGLOO_HOSTNAME / CGLOO_IFACE, else 127.0.0.1.
    """

    def __init__(self, hostname=""):
        self.hostname = hostname
        self.iface = ""
        self.ai_family = _socket.AF_UNSPEC

    def __repr__(self):
        return (
            f"<pygloo.transport.tcp.attr hostname={self.hostname!r} iface={self.iface!r} "
            f"ai_family={self.ai_family!r}>"
        )


def CreateDevice(attr):
    """CreateDevice binds and listens on the address attr names and returns the device
    (a cgloo.Device) to give to Context.connectFullMesh."""
    try:
        family = _FAMILIES[attr.ai_family]
    except KeyError:
        raise ValueError(
            "CreateDevice: ai_family must be AF_UNSPEC, AF_INET or AF_INET6, "
            f"not {attr.ai_family!r}"
        ) from None
    return _cgloo.Device(hostname=attr.hostname or None, iface=attr.iface or None, family=family)
