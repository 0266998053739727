"""The dataset stage: UTKFace source -> face folder -> split and oversampled lists -> LMDBs of Datum -> mean.

Every stage reports each unusable input file (path and reason) on stderr, skips it and goes on, ends with a
one-line summary, and writes its outputs atomically.
"""

DEFAULT_SEED = 42  # split, oversampling order, noise and LMDB shuffle
DEFAULT_NOISE_SIGMA = 10.0  # standard deviation of the added Gaussian noise, in 0-255 pixel units
