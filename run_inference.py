#!/usr/bin/env python3
"""Age and gender of the faces in an image, a folder, a video or a camera, on any OpenVINO device.

    python3 run_inference.py --mean_file graph/age_gender_mean.npy --image_path image.jpg

Same as ``python -m agegender infer``; imports only what requirements-edge.txt installs (no torch).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # runs from a checkout without installing

from agegender.infer import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
