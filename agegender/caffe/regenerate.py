"""Regenerate caffe_pb2.py from caffe.proto: ``python -m agegender.caffe.regenerate``.

Needs grpcio-tools (``pip install -r requirements-dev.txt``); the generated module is committed,
so nothing else in agegender needs protoc.
"""
import sys
from pathlib import Path


def main() -> int:
    from grpc_tools import protoc

    here = Path(__file__).resolve().parent
    return protoc.main(["protoc", f"-I{here}", f"--python_out={here}", str(here / "caffe.proto")])


if __name__ == "__main__":
    sys.exit(main())
