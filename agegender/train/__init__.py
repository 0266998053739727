"""The training engine: ``caffe train`` semantics for prototxt nets, executed by PyTorch.

``data`` feeds Data layers from LMDBs, ``solvers`` holds Caffe's update rules and learning-rate policies,
``fillers`` Caffe's initialisers, ``snapshot`` the caffemodel/solverstate files, ``trainer`` the Solver::Solve
loop with Caffe's log lines, ``command`` the ``python -m agegender train`` entry point.
"""
