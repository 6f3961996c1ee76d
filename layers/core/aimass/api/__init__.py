"""The HTTP API as FastAPI routers; the Lambda functions and the local server serve the same apps."""
