"""Benchmarks of the online prediction path, each next to the raw ONNX Runtime floor.

`make bench` (or `.venv/bin/python -m bench`) runs them, prints tables and writes
bench/results/<name>.json. Benchmarks measure and record; tests are where behaviour is asserted.
"""
