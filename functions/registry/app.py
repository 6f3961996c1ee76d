"""Model administration behind API Gateway: upload versions, move aliases, read the audit trail."""

import gc

# Init allocates hundreds of thousands of long-lived objects and nothing is garbage yet: collecting
# during it cost ~0.2 s of cold start (bench/RESULTS.md). Collection resumes once the app is built.
gc.disable()

from aimass.api.lambda_entry import api_handler  # noqa: E402

handler = api_handler(["registry"])
gc.freeze()
gc.enable()
