"""Image dimensions from the file header, read before decoding, so a decompression bomb (a 1.9 MB PNG that
decodes to 25000x25000, 1.9 GB of BGR) is refused in one line instead of taking a small device's memory.

Reads what each format's specification puts first: PNG's IHDR, JPEG's SOFn segment, GIF's logical screen,
BMP's BITMAPINFOHEADER (or BITMAPCOREHEADER), WebP's VP8/VP8L/VP8X chunk, TIFF's first image file
directory. Whatever a header does not say (a BigTIFF, a JPEG without a frame header before its scan) is left
to OpenCV's own limit, OPENCV_IO_MAX_IMAGE_PIXELS, set to the same cap here; agegender/__init__.py imports
this module first, before any module imports cv2 (OpenCV reads it once, when it loads).
"""
from __future__ import annotations

import os
import struct
import zlib

MAX_PIXELS = 100_000_000  # 100 MP: larger than any camera photo most people take (a 12000x8000 sensor is 96 MP)
os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", str(MAX_PIXELS))  # imported by agegender/__init__.py

_NO_LENGTH = {0x00, 0x01, *range(0xD0, 0xD8)}  # stuffed zero, TEM, RSTn: no segment length follows
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int] | None:
    """Width and height of the first SOFn segment (JPEG, ITU T.81 B.2.2). Bytes between segments that are no
    marker are skipped, as libjpeg's next_marker() skips them (it decodes such a file with a warning)."""
    i = 2
    while i + 9 <= len(data):
        if data[i] != 0xFF:
            i = data.find(b"\xff", i)
            if i < 0:
                return None
            continue
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in _NO_LENGTH:  # a marker without a length field (FF00 is a stuffed byte, not a marker)
            i += 2
            continue
        if marker in _SOF:
            height, width = struct.unpack(">HH", data[i + 5:i + 9])
            return width, height
        if marker == 0xDA:  # start of scan before any frame header
            return None
        i += 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
    return None


def _webp(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30:
        width, height = struct.unpack("<HH", data[26:30])
        return width & 0x3FFF, height & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25:
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    return None


def _png(data: bytes) -> tuple[int, int] | None:
    """IHDR's width and height, when the chunk's CRC holds (else the header is garbage, left to the decoder)."""
    if len(data) < 33 or data[12:16] != b"IHDR" or zlib.crc32(data[12:29]) != struct.unpack(">I", data[29:33])[0]:
        return None
    return struct.unpack(">II", data[16:24])


def _gif(data: bytes) -> tuple[int, int] | None:
    """The logical screen size, when the block after it (past the global colour table) is a real one."""
    if len(data) < 14:
        return None
    after = 13 + ((3 << ((data[10] & 7) + 1)) if data[10] & 0x80 else 0)
    if after >= len(data) or data[after] not in (0x21, 0x2C, 0x3B):  # extension, image, trailer
        return None
    return struct.unpack("<HH", data[6:10])


def _bmp(data: bytes) -> tuple[int, int] | None:
    if len(data) < 26 or struct.unpack("<I", data[14:18])[0] not in (12, 40, 52, 56, 64, 108, 124):
        return None
    if struct.unpack("<I", data[14:18])[0] == 12:  # BITMAPCOREHEADER: 16-bit sizes
        return struct.unpack("<HH", data[18:22])
    width, height = struct.unpack("<ii", data[18:26])
    return abs(width), abs(height)  # a negative height is a top-down bitmap


def _tiff_chain(data: bytes) -> tuple[str, list[int]]:
    """A classic TIFF's byte order and the offsets of its image file directories (TIFF 6.0 section 2), each
    whole in ``data``, at most 1,000, each once (a loop of offsets ends); ("", []) for BigTIFF or a broken
    header. Only each directory's entry count and next offset are read: cheap on any file."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return "", []
    order = "<" if data[:2] == b"II" else ">"
    if struct.unpack(order + "H", data[2:4])[0] != 42:
        return "", []
    out: list[int] = []
    offset = struct.unpack(order + "I", data[4:8])[0]
    while offset and offset + 2 <= len(data) and offset not in out and len(out) < 1000:
        end = offset + 2 + 12 * struct.unpack(order + "H", data[offset:offset + 2])[0]
        if end + 4 > len(data):
            break
        out.append(offset)
        offset = struct.unpack(order + "I", data[end:end + 4])[0]
    return order, out


def _tiff(data: bytes) -> tuple[int, int] | None:
    """ImageWidth (256) and ImageLength (257), SHORT or LONG, of the first directory: the image OpenCV reads.
    Entries are sorted by tag, so the scan stops past 257."""
    order, chain = _tiff_chain(data)
    if not chain:
        return None
    size, count = {}, struct.unpack(order + "H", data[chain[0]:chain[0] + 2])[0]
    for entry in range(chain[0] + 2, chain[0] + 2 + 12 * count, 12):
        tag, kind, n = struct.unpack(order + "HHI", data[entry:entry + 8])
        if tag > 257:
            break
        if tag in (256, 257) and n == 1 and kind in (3, 4) and tag not in size:  # libtiff keeps the first
            width = 2 if kind == 3 else 4  # SHORT or LONG, left-justified in the value field
            size[tag] = int.from_bytes(data[entry + 8:entry + 8 + width], "little" if order == "<" else "big")
    return (size[256], size[257]) if len(size) == 2 else None


def pages(data: bytes, fmt: str) -> int:
    """How many images a TIFF holds (its directories); 1 for every other format. OpenCV reads the first."""
    return max(1, len(_tiff_chain(data)[1])) if fmt == "TIFF" else 1


def image_size(data: bytes, fmt: str) -> tuple[int, int] | None:
    """(width, height) from the header of a ``fmt`` image (see images.image_format); None when not known."""
    if fmt == "PNG":
        return _png(data)
    if fmt == "JPEG":
        return _jpeg(data)
    if fmt == "GIF":
        return _gif(data)
    if fmt == "BMP":
        return _bmp(data)
    if fmt == "WebP" and data[8:12] == b"WEBP":
        return _webp(data)
    if fmt == "TIFF":
        return _tiff(data)
    return None


def pixel_cap_problem(data: bytes, fmt: str) -> str | None:
    """Why the image must not be decoded (too many pixels), or None."""
    size = image_size(data, fmt)
    if size is None or size[0] * size[1] <= MAX_PIXELS:
        return None
    width, height = size
    return (f"{width}x{height} pixels is over the {MAX_PIXELS // 1_000_000} MP limit (decoding it would take "
            f"{3 * width * height / 2**30:.1f} GiB); downscale it first")
