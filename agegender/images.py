"""Reading face images, with the reason for every failure: one reader for the dataset stage (agegender.dataset)
and the runtime (run_inference.py), so both decode a file exactly alike (OpenCV's IMREAD_COLOR)."""
from __future__ import annotations

import cv2
import numpy as np

from agegender.imagesize import pixel_cap_problem

_MAGIC = {b"\xff\xd8\xff": "JPEG", b"\x89PNG": "PNG", b"BM": "BMP", b"GIF8": "GIF", b"II*\x00": "TIFF",
          b"MM\x00*": "TIFF", b"RIFF": "WebP"}

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
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        if fmt == "JPEG" and b"\xff\xd9" not in data[-64:]:
            raise BadImage("truncated JPEG (no end-of-image marker)")
        raise BadImage(f"corrupt {fmt} (does not decode)")
    return image


def read_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise BadImage("file not found") from None
    except OSError as exc:
        raise BadImage(f"cannot read: {exc.strerror}") from None


def read_image(path: str) -> np.ndarray:
    return decode_image(read_bytes(path))
