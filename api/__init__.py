"""The REST API process: deletions, slices, publishing over HTTP, metrics, with auth.

It holds no state of its own (Kafka, Redis and the workers hold it all), so any number
of API processes can run behind one load balancer. ``api.app.create_app`` builds it;
``driftline api`` runs it.
"""
