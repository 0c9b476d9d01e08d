"""Generated worlds: a prompt becomes a glTF scene with terrain, objects, labels and a place to stand.

The layer sits between the session and the pipelines: it uses models only through
core's `InferenceClient` (the terrain generators, `minilm`, the LLM), and the
transports (`api.worlds`, the session's `jobs` stream) sit above it.

- `mesh`: the triangle-mesh type every part hands around (Y up, metres, glTF's axes);
- `assets`: the procedural asset library (meshes built in code, real-world sizes);
- `extraction`: prompt -> objects, counts, attributes, relations, texts (parser or LLM);
- `matching`: words -> assets by `minilm` similarity, unmatched words reported;
- `terrain`: large heightmaps from the trained 32x32 generators, terrain meshes, LODs;
- `layout`: places objects on the terrain without overlap, respecting relations;
- `labels`: text rasterised into a texture on a quad;
- `glb`: the scene written as one deterministic GLB with names and `extras`;
- `scene`: the pipeline from prompt to scene (and edits), with stage timings;
- `jobs`: queued generation jobs owned by a key, kept on disk for a while.
"""

SCOPE = "worlds"
"""The key scope for terrain, scenes and their jobs (REST and the session's `jobs` stream); `*` covers it too."""
