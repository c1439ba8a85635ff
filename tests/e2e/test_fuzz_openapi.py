"""Property-based fuzzing of the API from its own OpenAPI spec: no 500s, every response
conforms to the documented schema."""
from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, settings


@pytest.fixture
def api_schema(app):
    """The app's generated OpenAPI spec, served over WSGI."""
    return schemathesis.openapi.from_wsgi("/api/openapi.json", app)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_spec(case, auth):
    case.call_and_validate(headers=auth)
