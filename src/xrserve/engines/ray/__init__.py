"""The Ray Serve engine: `xrserve serve --engine ray` (see docs/scaling.md).

One Serve application per model version (`replica.py`: a replica is a one-model scheduler, so
batching, deadlines and latest-frame-wins hold inside it), reached from the xrserve front
through deployment handles (`engine.py`). `cluster.py` starts or joins Ray and deploys.
Nothing here is imported unless the Ray engine is chosen: `ray` is an optional dependency.
"""
