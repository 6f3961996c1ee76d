"""The SageMaker inference container of aimass: an ONNX Runtime server with dynamic batching.

`python -m gpu_endpoints.server` runs it (README.md). Of aimass it imports only the protocol package
(`aimass.protocol`, numpy only), which the container holds beside it with ONNX Runtime, numpy,
Starlette, uvicorn and prometheus-client.
"""
