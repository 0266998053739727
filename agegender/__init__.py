"""agegender: Caffe-format age and gender CNNs, trained with PyTorch, deployed with OpenVINO."""
# OpenCV reads its decoder's pixel limit once, when it loads: imagesize sets it (to its MAX_PIXELS) on import,
# here, before any agegender module imports cv2, so an image whose header hides its size is refused as well
from agegender import imagesize as _imagesize  # noqa: F401

__version__ = "0.1.0"
