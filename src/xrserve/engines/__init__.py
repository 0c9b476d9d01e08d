"""Engines: where the models of one `xrserve serve` compute.

The embedded engine is core's `Scheduler` (every model in this server's processes). The Ray
Serve engine (`ray/`) is a second implementation of the same `InferenceClient`: the models run
as Ray Serve deployments on a cluster, and the transports, the session and the pipelines above
it run unchanged.
"""
