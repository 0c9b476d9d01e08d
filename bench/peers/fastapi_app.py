"""The reference floor: a bare FastAPI route running the ONNX model in-process, no auth, audit or queue.

Run with `BENCH_ONNX=model.onnx uvicorn fastapi_app:app --loop uvloop --http httptools`.
It parses the same OIP v2 JSON and answers the same shape of response, so the only
thing it lacks next to a model server is the serving machinery.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request, Response
from tinymodel import LinearModel, decode_oip, encode_oip

app = FastAPI()
model = LinearModel(os.environ["BENCH_ONNX"])


@app.post("/v2/models/{name}/infer")
async def infer(name: str, request: Request) -> Response:
    return Response(encode_oip(name, model(decode_oip(await request.body()))), media_type="application/json")
