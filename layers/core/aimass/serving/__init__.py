"""Serving a request: the model store (which version, loaded and verified), the backend kinds that
run a version (in the Lambda, on a SageMaker endpoint), and the request pipeline that every protocol
goes through (decode → screen → pre-rules → run → post-rules → annotate → observe)."""
