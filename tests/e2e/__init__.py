"""End-to-end tests: the public surface on a running stack (a worker and `driftline api`
processes on the real broker and Redis): the REST API and its OpenAPI document, the
Python client, the CLI and the README's walk-through. Each module is marked ``e2e``;
``make e2e`` runs this folder."""
