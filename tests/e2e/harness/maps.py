"""Ballast's pinned maps read and written from a test, through bpftool (the
tool an operator would use): one wrapper, so that every suite reports a
failed call the same way and parses bpftool's JSON the same way."""

import json
import subprocess

from .processes import Failure


def bpftool(*args):
    """`bpftool ARGS`: its stdout; the test fails, naming the call, when
    bpftool does."""
    done = subprocess.run(["bpftool", *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise Failure(f"bpftool {' '.join(map(str, args[:6]))} ...: {done.stderr.strip()[-300:]}")
    return done.stdout


def as_bytes(field):
    """A key or value as `bpftool -j` prints it (["0x0a", ...]) -> bytes."""
    return bytes(int(b, 16) for b in field)


def as_int(field):
    """A little-endian value, printed as bytes or (BTF-formatted) as a number."""
    return int.from_bytes(as_bytes(field), "little") if isinstance(field, list) else int(field)


def dump(pinned):
    """`bpftool map dump pinned PATH -j`: its entries as bpftool prints them
    (an empty devmap slot has {"error": ...} in place of a value)."""
    return json.loads(bpftool("map", "dump", "pinned", pinned, "-j"))


def dump_bytes(pinned):
    """[(key bytes, value bytes)] of a map whose every slot has a value."""
    return [(as_bytes(e["key"]), as_bytes(e["value"])) for e in dump(pinned)]


def hex_words(data):
    """bytes -> bpftool's `hex 0a 0b ...` arguments."""
    return ["hex", *(f"{b:02x}" for b in data)]


def update(pinned, key, value, *flags):
    """One entry written: @key and @value are bytes."""
    bpftool("map", "update", "pinned", pinned, "key", *hex_words(key),
            "value", *hex_words(value), *flags)


def map_id(pinned):
    """The id of the map pinned at @pinned; None when it is no map (or gone)."""
    try:
        return json.loads(bpftool("-j", "map", "show", "pinned", pinned))["id"]
    except Failure:
        return None
