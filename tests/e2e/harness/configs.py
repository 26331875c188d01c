"""ballastd configs for the suites: YAML text from a few facts."""

from .world import VIP1


def vip(world, port, proto="tcp", weights=None, check=None, address=VIP1):
    """One VIP over every backend of @world (weights default to 1; a weight
    of None leaves that backend out); @check: a health_check flow mapping
    ("{type: tcp, interval: 1s}") or None."""
    weights = weights or [1] * len(world.backends)
    backends = ", ".join(f"{{address: {be.ip}, weight: {w}}}"
                         for be, w in zip(world.backends, weights) if w is not None)
    text = f"  - address: {address}\n    port: {port}\n    protocol: {proto}\n"
    if check:
        text += f"    health_check: {check}\n"
    return text + f"    backends: [{backends}]\n"


def config(*vips, mode="native"):
    return f"interface: eth0\nattach_mode: {mode}\nvips:\n" + "".join(vips)
