"""Property-based fuzzing of the OpenAPI spec (schemathesis) against the running API on the real database:
no 5xx, every response as documented (status code, content type, body schema). Bounded for CI:
`IOTLM_FUZZ_EXAMPLES` examples per operation (default 25)."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.transport.requests import REQUESTS_TRANSPORT, binary_serializer, text_serializer
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (content_type_conformance, response_schema_conformance,
                                               status_code_conformance)

pytestmark = pytest.mark.services
# the import route's bodies, as the bytes generated for them
REQUESTS_TRANSPORT.serializer("application/x-ndjson")(text_serializer)
REQUESTS_TRANSPORT.serializer("application/msgpack")(binary_serializer)
EXAMPLES = int(os.environ.get("IOTLM_FUZZ_EXAMPLES", "25"))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture(scope="module")
def api_schema(api):
    with api.client() as c:  # some records to find, so not every generated id is a 404
        c.post("/v1/sites", json={"id": "fz", "name": "Fuzz"})
        c.post("/v1/buildings", json={"id": "fz-b", "site_id": "fz", "name": "B"})
        c.post("/v1/rooms", json={"id": "fz-1", "building_id": "fz-b", "name": "1"})
        c.post("/v1/devices", json={"id": "fz-dev", "room_id": "fz-1"})
    schema = schemathesis.openapi.from_url(f"{api.url}/openapi.json")
    # revoking keys would revoke the fuzzer's own (key ids are small integers); test_auth covers revocation
    return schema.exclude(method="DELETE", path="/v1/keys/{key_id}")


def test_no_5xx_and_responses_match_the_spec(api_schema, api):
    """Each operation, with valid data (positive) and invalid data (negative: must be refused with a 4xx)."""
    headers = {"Authorization": f"Bearer {api.keys['admin']}"}
    failures, operations = [], 0
    for result in api_schema.get_all_operations():
        operation = result.ok()
        operations += 1
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            @given(case=operation.as_strategy(generation_mode=mode))
            # no shrinking: a failure is reported as found, so a failing run stays bounded in time
            @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None, print_blob=False,
                      suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
            def fuzz(case):
                case.call_and_validate(headers=headers, checks=CHECKS)

            try:
                fuzz()
            except Unsatisfiable:
                assert mode is GenerationMode.NEGATIVE  # nothing to get wrong (GET /health has no input)
            except (Exception, BaseExceptionGroup) as exc:  # collected, reported together below
                failures.append(f"{operation.label} [{mode.value}]: {str(exc)[:1500]}")
    assert operations >= 30
    assert not failures, "\n\n".join(failures)
