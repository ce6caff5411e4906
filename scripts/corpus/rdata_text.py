#!/usr/bin/env python3
"""Write the character vectors of an R package's lazy-load data DB as plain-text files.

Usage: rdata_text.py PKGDIR/data/Rdata OUTDIR

R packages such as janeaustenr (Jane Austen's six novels) and tokenizers (Moby Dick) ship
their data as a lazy-load DB: Rdata.rdx (an index) and Rdata.rdb (the objects), each object
compressed and serialised in R's XDR format. This stdlib-only reader decodes the subset of the
format those objects use (vectors, pairlists, symbols, references), so no R install is needed.
Each character-vector object becomes OUTDIR/<name>.txt, one element per line.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import sys
import zlib
from pathlib import Path

NIL, SYM, LIST, CLO, ENV, CHAR, LGL, INT, REAL, CPLX, STR, VEC = 254, 1, 2, 3, 4, 9, 10, 13, 14, 15, 16, 19
REF, EMPTYENV, BASEENV, GLOBALENV, BASENS, MISSINGARG, UNBOUND = 255, 242, 241, 253, 247, 251, 252


class Reader:
    """Decodes one XDR-serialised R object."""

    def __init__(self, data: bytes):
        if data[:2] != b"X\n":
            raise ValueError("not an XDR-serialised R object")
        self.data, self.pos, self.refs = data, 2, []
        version = self.int()
        self.int(), self.int()  # writer and minimal reader versions
        if version == 3:
            n = self.int()
            self.pos += n  # native encoding name

    def int(self) -> int:
        (v,) = struct.unpack_from(">i", self.data, self.pos)
        self.pos += 4
        return v

    def length(self) -> int:
        n = self.int()
        if n == -1:  # long vector: two ints
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def item(self):
        flags = self.int()
        kind, has_attr, has_tag = flags & 0xFF, bool(flags & (1 << 9)), bool(flags & (1 << 10))
        if kind in (NIL, EMPTYENV, BASEENV, GLOBALENV, BASENS, MISSINGARG, UNBOUND):
            return None
        if kind == REF:
            index = flags >> 8 or self.int()
            return self.refs[index - 1]
        if kind == SYM:
            name = self.item()
            self.refs.append(name)
            return name
        if kind == CHAR:
            n = self.int()
            return None if n == -1 else self.bytes(n).decode("utf-8", "replace")
        if kind == LIST:
            if has_attr:
                self.item()  # a pairlist cell's own attributes: unused
            tag = self.item() if has_tag else None
            head = (tag, self.item())
            rest = self.item()
            return [head] + (rest or [])
        if kind in (LGL, INT):
            n = self.length()
            value = list(struct.unpack_from(f">{n}i", self.data, self.pos))
            self.pos += 4 * n
        elif kind == REAL:
            n = self.length()
            value = list(struct.unpack_from(f">{n}d", self.data, self.pos))
            self.pos += 8 * n
        elif kind in (STR, VEC):
            value = [self.item() for _ in range(self.length())]
        else:
            raise ValueError(f"R object type {kind} is not supported by this reader")
        attrs = dict(self.item()) if has_attr else {}
        if kind == VEC and attrs.get("names"):  # a named list: the index, or a data frame
            return dict(zip(attrs["names"], value))
        return value

    def bytes(self, n: int) -> bytes:
        b = self.data[self.pos:self.pos + n]
        self.pos += n
        return b


def read_rds(path: Path) -> bytes:
    """An .rds/.rdx file: gzip, bzip2 or xz compressed (as saveRDS writes it), or plain."""
    blob = path.read_bytes()
    if blob[:2] == b"\x1f\x8b":
        return gzip.decompress(blob)
    if blob[:3] == b"BZh":
        return bz2.decompress(blob)
    if blob[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(blob)
    return blob


def decompress(blob: bytes) -> bytes:
    """A lazy-load DB record: 4-byte length, then zlib data or a type byte plus bzip2/xz/raw data."""
    body = blob[4:]
    if body[:1] == b"Z":
        return lzma.decompress(body[1:])
    if body[:1] == b"2":
        return bz2.decompress(body[1:])
    if body[:1] == b"0":
        return body[1:]
    return zlib.decompress(body)


def main(argv: list[str]) -> int:
    if len(argv) != 3:
        print(__doc__.splitlines()[2], file=sys.stderr)
        return 2
    base, out = Path(argv[1]), Path(argv[2])
    index = Reader(read_rds(base.with_suffix(".rdx"))).item()
    rdb = base.with_suffix(".rdb").read_bytes()
    out.mkdir(parents=True, exist_ok=True)
    for name, (start, size) in index["variables"].items():
        obj = Reader(decompress(rdb[int(start):int(start) + int(size)])).item()
        if isinstance(obj, list) and obj and all(isinstance(s, str) or s is None for s in obj):
            (out / f"{name}.txt").write_text("\n".join(s or "" for s in obj) + "\n", encoding="utf-8")
            print(f"{out / name}.txt: {len(obj)} lines")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
