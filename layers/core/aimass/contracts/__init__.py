"""Every payload that crosses a boundary (HTTP bodies, registry records, signatures, events), as
pydantic models, one module per domain: `registry`, `rules`, `quality`, `pipeline`, `feedback`, the
protocols as the OpenAPI document shows them (`v1`, `v2`), `api` (errors, health) and `common`.

The OpenAPI document is generated from these models, and the tests build requests from them."""
