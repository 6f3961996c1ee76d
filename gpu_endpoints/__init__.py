"""The SageMaker inference container of aimass: an ONNX Runtime server with dynamic batching.

`python -m gpu_endpoints.server` runs it (README.md). It is standalone: it never imports `aimass`, so
the container holds only ONNX Runtime, numpy, Starlette and uvicorn.
"""
