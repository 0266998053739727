"""agegender: Caffe-format age and gender CNNs, trained with PyTorch, deployed with OpenVINO."""
import os as _os

# OpenCV reads its decoder's pixel limit once, when it loads: set here, before any agegender module imports cv2,
# to imagesize.MAX_PIXELS (100 MP), so that an image whose header hides its size is refused as well
_os.environ.setdefault("OPENCV_IO_MAX_IMAGE_PIXELS", "100000000")

__version__ = "0.1.0"
