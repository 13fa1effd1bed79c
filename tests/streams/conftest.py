"""The stream server's tests start real processes: uvicorn (and granian beside it) from tests/e2e."""
from tests.e2e.conftest import start_api, start_streams  # noqa: F401 (fixtures)
