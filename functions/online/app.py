"""Online predictions behind API Gateway: V1 :predict, Open Inference Protocol V2, /health."""

import gc

# Init allocates hundreds of thousands of long-lived objects and nothing is garbage yet: collecting
# during it cost ~0.2 s of cold start (bench/RESULTS.md). Collection resumes once init is done.
gc.disable()

from aimass import wiring  # noqa: E402
from aimass.api.lambda_entry import api_handler  # noqa: E402

# Predictions are answered without FastAPI (aimass.api.direct); the app is built at the first request
# they do not take, or before a snapshot. SnapStart's hooks put the models in the snapshot and
# refresh what a restore must not share.
handler = api_handler(["online"], snapstart=True)
# The AWS clients and the request pipeline are made in init, not by the first request.
wiring.prepare()
gc.freeze()
gc.enable()
