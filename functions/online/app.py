"""Online predictions behind API Gateway: V1 :predict, Open Inference Protocol V2, /health."""

from aimass.api.lambda_entry import api_handler

handler = api_handler(["online"])
