"""Deployment: compile Caffe nets to OpenVINO IR, quantize, and run them on OpenVINO devices (no torch)."""
