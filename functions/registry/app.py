"""Model administration behind API Gateway: upload versions, move aliases, read the audit trail."""

from aimass.api.lambda_entry import api_handler

handler = api_handler(["registry"])
