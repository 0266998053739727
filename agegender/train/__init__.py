"""The training engine: ``caffe train`` semantics for prototxt nets, executed by PyTorch.

``data`` feeds Data layers from LMDBs, ``solvers`` holds Caffe's update rules and learning-rate policies
(Caffe's initialisers are agegender.layers.fillers), ``session`` sets everything up (device, ranks, nets,
weights, resume), ``trainer`` runs the Solver::Solve loop and writes snapshots, ``log`` formats Caffe's glog lines,
``command`` is the ``python -m agegender train`` entry point.
"""
