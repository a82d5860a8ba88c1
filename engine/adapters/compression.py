"""Decompressing request bodies without trusting them: the output is capped, not only the
input, so a compression bomb never grows past the limit in memory."""

from __future__ import annotations

import zlib


class DecompressionError(ValueError):
    """`status` is 413 past the limit, 400 for a body that is not what it claims."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status, self.message = status, message


def too_large(limit: int) -> DecompressionError:
    return DecompressionError(
        413, f"the decompressed body is larger than the limit of {limit} bytes"
    )


def gunzip(data: bytes, limit: int) -> bytes:
    """A gzip body (one or more members), decompressed a piece at a time: stops, with
    413, as soon as the output passes `limit` bytes."""
    out = bytearray()
    while True:
        d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        buf = data
        try:
            while not d.eof:
                chunk = d.decompress(buf, limit + 1 - len(out))
                out += chunk
                if len(out) > limit:
                    raise too_large(limit)
                buf = d.unconsumed_tail
                if not chunk and not buf:
                    break
        except zlib.error as exc:
            raise DecompressionError(400, f"the body is not valid gzip: {exc}") from None
        if not d.eof:
            raise DecompressionError(400, "the gzip body is truncated")
        data = d.unused_data
        if not data:
            return bytes(out)
