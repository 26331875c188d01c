"""ballastd configs for the suites: YAML text from a few facts, and the
names the CLI, `ballast stats` and the change log give a VIP."""

from .world import HTTP_PORT, UDP_PORT, VIP1


def vip_key(port, proto="tcp", address=VIP1):
    """"10.231.100.1:80/tcp" ("[fd00::1]:80/tcp" for IPv6): how the CLI,
    `ballast stats` and the log name a VIP."""
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}/{proto}"


VIP_TCP = vip_key(HTTP_PORT)
VIP_UDP = vip_key(UDP_PORT, "udp")


def yaml_value(value):
    return ("true" if value else "false") if isinstance(value, bool) else value


def vip(world, port, proto="tcp", weights=None, check=None, address=VIP1, **fields):
    """One VIP over every backend of @world (weights default to 1; a weight
    of None leaves that backend out); @check: a health_check flow mapping
    ("{type: tcp, interval: 1s}") or None; each keyword is one more field of
    the VIP (mode="ipip", fail_open=False)."""
    weights = weights or [1] * len(world.backends)
    backends = ", ".join(f"{{address: {be.ip}, weight: {w}}}"
                         for be, w in zip(world.backends, weights) if w is not None)
    text = f"  - address: {address}\n    port: {port}\n    protocol: {proto}\n"
    text += "".join(f"    {k}: {yaml_value(v)}\n" for k, v in fields.items())
    if check:
        text += f"    health_check: {check}\n"
    return text + f"    backends: [{backends}]\n"


def config(*vips, mode="native"):
    return f"interface: eth0\nattach_mode: {mode}\nvips:\n" + "".join(vips)


def standard_config(world, weights=None):
    """VIP1:80/tcp and VIP1:9000/udp over every backend, with @weights
    (default 1 each) on both."""
    return config(vip(world, HTTP_PORT, weights=weights),
                  vip(world, UDP_PORT, proto="udp", weights=weights))
