"""pygloo.transport: the transports a device can use. cgloo has TCP (pygloo.transport.tcp)."""

from . import tcp

__all__ = ["tcp"]
