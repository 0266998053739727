"""Reading face images, with the reason for every failure: one reader for the dataset stage (agegender.dataset)
and the runtime (run_inference.py), so both decode a file exactly alike (OpenCV's IMREAD_COLOR)."""
from __future__ import annotations

import os

import cv2
import numpy as np

from agegender.imagesize import MAX_PIXELS, pixel_cap_problem

MAX_FILE_BYTES = 1 << 30  # no photo of MAX_PIXELS needs more (an uncompressed 16-bit 100 MP TIFF is 600 MB)

_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"GIF8": "GIF", b"II*\x00": "TIFF",
          b"MM\x00*": "TIFF", b"II+\x00": "TIFF", b"MM\x00+": "TIFF", b"RIFF": "WebP"}

_HEIF_BRANDS = {b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1", b"avif", b"avis"}


class BadImage(ValueError):
    """A file that is not a usable image; the message is the reason reported to the user."""


def image_format(data: bytes) -> str | None:
    return next((fmt for magic, fmt in _MAGIC.items() if data.startswith(magic)), None)


def check_image_bytes(data: bytes) -> str:
    """The image format of ``data`` (cheap header check, no decoding); BadImage if empty or unknown."""
    if not data:
        raise BadImage("empty file")
    fmt = image_format(data)
    if fmt is None:
        brand = data[8:12] if data[4:8] == b"ftyp" else b""
        if brand in _HEIF_BRANDS:
            kind = ("AVIF" if brand.startswith(b"avi") or b"avif" in data[16:64]
                    else "HEIC/HEIF (a phone's photo format)")
            raise BadImage(f"{kind} is not readable by OpenCV: convert it to JPEG or PNG first "
                           f"(e.g. heif-convert or ImageMagick)")
        raise BadImage("not an image file (no JPEG/PNG/BMP/GIF/TIFF/WebP header)")
    return fmt


def decode_image(data: bytes) -> np.ndarray:
    """uint8 HxWx3 BGR, as convert_imageset's cv::imread(IMREAD_COLOR); BadImage saying why it fails."""
    fmt = check_image_bytes(data)
    too_large = pixel_cap_problem(data, fmt)
    if too_large:
        raise BadImage(too_large)
    try:
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as exc:  # OpenCV's own checks, e.g. its pixel limit on a size no header told us
        if "CV_IO_MAX_IMAGE_PIXELS" in str(exc):
            raise BadImage(f"over the {MAX_PIXELS // 1_000_000} MP limit (OpenCV's decoder refused it); "
                           f"downscale it first") from None
        raise BadImage(f"corrupt {fmt} (OpenCV: {str(exc).strip().splitlines()[-1][:120]})") from None
    if image is None:
        if fmt == "JPEG" and b"\xff\xd9" not in data[-64:]:
            raise BadImage("truncated JPEG (no end-of-image marker)")
        if fmt == "TIFF":
            raise BadImage("TIFF that OpenCV does not decode (corrupt, or samples it cannot read, such as 32-bit "
                           "floats); convert it to an 8-bit JPEG or PNG")
        raise BadImage(f"corrupt {fmt} (does not decode)")
    return image


def read_bytes(path: str) -> bytes:
    """The file's bytes, at most MAX_FILE_BYTES (a larger file, or a stream that goes on, is refused)."""
    too_big = BadImage(f"over {MAX_FILE_BYTES >> 30} GiB, more than any photo of {MAX_PIXELS // 1_000_000} MP "
                       f"needs; downscale or recompress it first")
    try:
        with open(path, "rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_FILE_BYTES:
                raise too_big
            head = f.read(64)
            check_image_bytes(head)  # a stream of anything else (/dev/zero) is refused before it is read
            data = head + f.read(MAX_FILE_BYTES + 1 - len(head))  # a pipe's size is not known in advance
        if len(data) > MAX_FILE_BYTES:
            raise too_big
        return data
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except OSError as exc:
        raise BadImage(f"cannot read: {exc.strerror}") from None


def read_image(path: str) -> np.ndarray:
    return decode_image(read_bytes(path))
