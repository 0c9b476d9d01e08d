"""The serving core: request and tensor types, model.toml, the Model base class, the repository, the
scheduler and the runners. It imports nothing else of xrserve: the server hands it the built-in
configs and the runtimes (see docs/architecture.md)."""
