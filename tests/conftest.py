"""Shared test configuration. `pytest --hypothesis-profile=deep` searches much harder."""

from hypothesis import settings

settings.register_profile("default", max_examples=200, deadline=None)
settings.register_profile("deep", max_examples=5000, deadline=None)
settings.load_profile("default")

# The broker, Redis, worker and API fixtures, for every tier that runs the real parts
# (tests/integration, tests/e2e, tests/faults).
pytest_plugins = ["tests.fixtures"]
