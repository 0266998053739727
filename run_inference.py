#!/usr/bin/env python3
"""Age and gender of the faces in an image, a folder, a video or a camera, on any OpenVINO device.

    python3 run_inference.py --mean_file graph/age_gender_mean.npy --image_path image.jpg

Same as ``python -m agegender infer``; imports only what requirements-edge.txt installs (no torch).
"""
import sys

from agegender.infer import main  # a checkout runs without installing: Python puts this script's folder first

if __name__ == "__main__":
    sys.exit(main())
