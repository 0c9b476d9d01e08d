"""Ray Serve side of the benchmark: the linear model and the 10 ms model behind Ray's HTTP proxy.

Run as `python ray_app.py PORT MODEL.onnx`; prints READY once both applications
answer, then stays up until its process group is ended. Routes match OIP v2
(`/v2/models/<name>/infer`) through each application's route prefix.
"""

from __future__ import annotations

import asyncio
import sys
import time

import numpy as np
import ray
from ray import serve
from starlette.requests import Request
from starlette.responses import Response
from tinymodel import SLOW_DELAY_S, LinearModel, decode_oip, encode_oip

MAX_BATCH = 16
OPTIONS = {"max_ongoing_requests": 32, "ray_actor_options": {"num_cpus": 0}}


@serve.deployment(**OPTIONS)
class Linear:
    """One request, one session.run, on the replica's event loop (the cheapest way Ray Serve allows)."""

    def __init__(self, onnx_path: str) -> None:
        self.model = LinearModel(onnx_path)

    async def __call__(self, request: Request) -> Response:
        y = self.model(decode_oip(await request.body()))
        return Response(encode_oip("linear", y), media_type="application/json")


@serve.deployment(**OPTIONS)
class SlowLinear:
    """The 10 ms model with `@serve.batch`: concurrent requests share one 10 ms call."""

    def __init__(self, onnx_path: str) -> None:
        self.model = LinearModel(onnx_path, SLOW_DELAY_S)

    @serve.batch(max_batch_size=MAX_BATCH, batch_wait_timeout_s=0.002)
    async def compute(self, xs: list[np.ndarray]) -> list[np.ndarray]:
        y = await asyncio.to_thread(self.model, np.concatenate(xs))
        return np.split(y, np.cumsum([len(x) for x in xs])[:-1])

    async def __call__(self, request: Request) -> Response:
        y = await self.compute(decode_oip(await request.body()))
        return Response(encode_oip("slow", y), media_type="application/json")


def main(port: int, onnx_path: str) -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Linear.bind(onnx_path), name="linear", route_prefix="/v2/models/linear")
    serve.run(SlowLinear.bind(onnx_path), name="slow", route_prefix="/v2/models/slow")
    print("READY", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
