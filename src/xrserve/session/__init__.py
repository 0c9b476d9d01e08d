"""The XR session: one WebSocket per headset carrying many streams (camera, voice, ...).

`protocol` is the wire format, `streams` the base class and registry of stream kinds,
`session` the per-connection state. The WebSocket route itself is `api/session.py`.
"""
