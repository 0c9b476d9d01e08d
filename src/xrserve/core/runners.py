"""Where a model instance computes: a thread in the server, or its own process.

`ThreadRunner` is for pure-Python and PyTorch adapters we trust. `ProcessRunner` is
for native code that can crash (ONNX Runtime, TorchScript, llama.cpp, user Python):
the model lives in a spawned worker; the event loop waits on the pipe with
`add_reader` (no thread hop per request), and a dead worker is restarted with
back-off. Both run batches (`run`) and open streams (`open_stream`).
"""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing as mp
import os
import pickle
import signal
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from xrserve.core import worker
from xrserve.core.capabilities import Runtimes
from xrserve.core.config import ModelConfig
from xrserve.core.errors import Unavailable, error_for, model_error
from xrserve.core.images import decode_inputs
from xrserve.core.model import Model, StreamingModel
from xrserve.core.stream import Stream

Outputs = dict[str, np.ndarray]
LOAD_TIMEOUT_S = 600.0
MAX_RESTARTS_PER_MINUTE = 5
_LARGE_MESSAGE = 1 << 20  # bigger sends go through a thread so the event loop never blocks on the pipe
_stream_ids = itertools.count(1)


def _compute(model: Model, inputs: Outputs, parameters: dict[str, Any]) -> Outputs:
    """What every runner does with a batch, in the thread or process that computes it."""
    try:
        return model.infer(decode_inputs(model.config, inputs), parameters)
    except Exception as exc:
        raise model_error(model.config.name, exc) from exc


class ThreadRunner:
    """Runs the model inside the server: `infer` in a dedicated thread, streams on the model's own threads."""

    def __init__(self, config: ModelConfig, create: Callable[[ModelConfig], Model]) -> None:
        self.config = config
        self._create = create
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{config.name}")

    async def start(self) -> ModelConfig:
        self.model = self._create(self.config)
        await asyncio.get_running_loop().run_in_executor(self._executor, self.model.load)
        return self.model.config

    async def wait_ready(self) -> None:
        return None

    async def run(self, inputs: Outputs, parameters: dict[str, Any]) -> Outputs:
        return await asyncio.get_running_loop().run_in_executor(
            self._executor, _compute, self.model, inputs, parameters
        )

    def open_stream(self, inputs: Outputs, parameters: dict[str, Any], on_close: Callable[[], None]) -> Stream:
        assert isinstance(self.model, StreamingModel)
        loop = asyncio.get_running_loop()
        stream = Stream(next(_stream_ids), self.model.cancel_stream, on_close)

        def emit(chunk: dict[str, Any]) -> None:  # from the model's own threads
            loop.call_soon_threadsafe(stream.deliver, chunk)

        try:
            self.model.start_stream(stream.id, inputs, parameters, emit)
        except Exception as exc:  # noqa: BLE001
            error = model_error(self.config.name, exc)
            stream.deliver({"kind": "error", "status": error.status_code, "message": error.message})
        return stream

    def hold(self, seconds: float) -> None:
        model = getattr(self, "model", None)
        if isinstance(model, StreamingModel):
            model.hold(seconds)

    async def stop(self) -> None:
        close = getattr(self.model, "close", None) if hasattr(self, "model") else None
        if callable(close):
            close()
        self._executor.shutdown(wait=False, cancel_futures=True)


class InlineRunner(ThreadRunner):
    """Runs `infer` on the event loop itself: for sub-millisecond models only.

    A thread or process hop costs more than such a model computes (a gesture classifier,
    a small head); the price is that the loop waits while the model runs.
    """

    async def run(self, inputs: Outputs, parameters: dict[str, Any]) -> Outputs:
        return _compute(self.model, inputs, parameters)


class ProcessRunner:
    """One model instance in a worker process, restarted when it dies."""

    def __init__(
        self, config: ModelConfig, create: Callable[[ModelConfig], Model], on_restart: Callable[[], None] = lambda: None
    ) -> None:
        self.config = config
        self._create = create
        self._ctx = mp.get_context("spawn")
        self._on_restart = on_restart
        self._process: Any = None
        self._conn: Any = None
        self._pending: asyncio.Future[Any] | None = None  # the batch in flight (one at a time)
        self._streams: dict[int, Stream] = {}
        self._seq = 0
        self._ready = asyncio.Event()
        self._stopping = False
        self._restarts: list[float] = []
        self.failure: str | None = None  # set when restarting has been given up

    @property
    def label(self) -> str:
        return f"model '{self.config.name}' version {self.config.version}"

    async def start(self) -> ModelConfig:
        loop = asyncio.get_running_loop()
        parent, child = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(
            target=worker.serve,
            args=(child, self.config.model_dump(), self._create),
            daemon=True,
            name=f"xrserve-{self.config.name}-{self.config.version}",
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        first = loop.create_future()
        self._pending = first
        loop.add_reader(parent.fileno(), self._on_readable)
        # uvloop makes a watched fd non-blocking; a send larger than the pipe buffer (a 400 kB
        # PNG) would then fail half-written. Readiness polling works on a blocking fd too.
        os.set_blocking(parent.fileno(), True)
        try:
            tag, payload = await asyncio.wait_for(first, LOAD_TIMEOUT_S)
        except (TimeoutError, Unavailable) as exc:
            self._discard()
            raise RuntimeError(f"{self.label} did not load: {getattr(exc, 'message', 'timed out')}") from None
        if tag != worker.READY:
            self._discard()
            raise RuntimeError(payload)
        self._ready.set()
        return ModelConfig.model_validate(payload)

    async def wait_ready(self) -> None:
        await self._ready.wait()
        if self.failure:
            raise Unavailable(self.failure, retry_after_s=30)

    def _check_ready(self) -> None:
        if not self._ready.is_set() or self._conn is None:
            raise Unavailable(f"{self.label} is restarting after a crash; retry in a moment", retry_after_s=2)

    def _send(self, tag: str, ident: int, payload: Any) -> bytes | None:
        message = pickle.dumps((tag, ident, payload), protocol=pickle.HIGHEST_PROTOCOL)
        if len(message) > _LARGE_MESSAGE:
            return message  # the caller sends it from a thread
        try:
            self._conn.send_bytes(message)
        except OSError:
            self._crashed()
        return None

    async def run(self, inputs: Outputs, parameters: dict[str, Any]) -> Outputs:
        self._check_ready()
        self._seq += 1
        future = asyncio.get_running_loop().create_future()
        self._pending = future
        large = self._send(worker.INFER, self._seq, (inputs, parameters))
        if large is not None:
            try:
                await asyncio.to_thread(self._conn.send_bytes, large)
            except OSError:
                self._crashed()
        ok, payload = await future
        if not ok:
            raise error_for(*payload)  # (status, message, headers), as the model's error was mapped there
        outputs: Outputs = payload
        return outputs

    def open_stream(self, inputs: Outputs, parameters: dict[str, Any], on_close: Callable[[], None]) -> Stream:
        self._check_ready()
        stream = Stream(next(_stream_ids), self._cancel_stream, lambda: self._forget(stream.id, on_close))
        self._streams[stream.id] = stream
        large = self._send(worker.START, stream.id, (inputs, parameters))
        if large is not None:
            asyncio.get_running_loop().run_in_executor(None, self._conn.send_bytes, large)
        return stream

    def _cancel_stream(self, stream_id: int) -> None:
        if self._conn is not None and self._ready.is_set():
            self._send(worker.CANCEL, stream_id, None)

    def hold(self, seconds: float) -> None:
        if self._conn is not None and self._ready.is_set():
            self._send(worker.HOLD, 0, seconds)

    def _forget(self, stream_id: int, on_close: Callable[[], None]) -> None:
        self._streams.pop(stream_id, None)
        on_close()

    def _on_readable(self) -> None:
        try:
            tag, ident, payload = pickle.loads(self._conn.recv_bytes())
        except (EOFError, OSError):
            self._crashed()
            return
        if tag == worker.CHUNK:
            stream = self._streams.get(ident)
            if stream is not None:
                stream.deliver(payload)
            return
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.set_result(payload if tag == worker.REPLY else (tag, payload))

    def _describe_exit(self) -> str:
        self._process.join(timeout=1)
        code = self._process.exitcode
        if code is not None and code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit code {code}"

    def _crashed(self) -> None:
        """The worker died: fail what it held, then bring up a new one."""
        if self._conn is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(self._conn.fileno())
        how = self._describe_exit()
        was_serving = self._ready.is_set()  # a crash while loading is start()'s to report
        self._ready.clear()
        if was_serving:
            error = Unavailable(
                f"{self.label}: its worker process crashed ({how}) while computing this request; "
                f"it is being restarted, retry in a moment",
                retry_after_s=2,
            )
        else:
            error = Unavailable(
                f"{self.label}: its worker process died while loading ({how}); the server log shows its error output",
                retry_after_s=30,
            )
        pending, self._pending = self._pending, None
        if pending is not None and not pending.done():
            pending.set_exception(error)
        for stream in list(self._streams.values()):
            stream.deliver({"kind": "error", "status": 503, "message": error.message})
        self._streams.clear()
        self._conn.close()
        self._conn = None
        if was_serving and not self._stopping:
            self._restart_task = loop.create_task(self._restart(how))

    async def _restart(self, how: str) -> None:
        now = time.monotonic()
        self._restarts = [t for t in self._restarts if now - t < 60] + [now]
        if len(self._restarts) > MAX_RESTARTS_PER_MINUTE:
            self.failure = f"{self.label} crashed {len(self._restarts)} times in a minute (last: {how}); not restarted"
            self._ready.set()  # wake the dispatcher so it can fail queued requests
            return
        await asyncio.sleep(0.1 * 2 ** (len(self._restarts) - 1))
        self._on_restart()
        try:
            await self.start()
        except Exception as exc:  # noqa: BLE001
            self.failure = f"{self.label} could not be restarted: {exc}"
            self._ready.set()

    def _discard(self) -> None:
        if self._conn is not None:
            try:
                asyncio.get_running_loop().remove_reader(self._conn.fileno())
            except (ValueError, OSError):
                pass
            self._conn.close()
            self._conn = None
        if self._process is not None and self._process.is_alive():
            self._process.kill()

    async def stop(self) -> None:
        self._stopping = True
        self._ready.clear()
        self._discard()
        if self._process is not None:
            await asyncio.to_thread(self._process.join, 5)


def make_runner(
    config: ModelConfig, runtimes: Runtimes, on_restart: Callable[[], None]
) -> ThreadRunner | ProcessRunner:
    if config.isolation == "process":
        return ProcessRunner(config, runtimes.create, on_restart)
    return (InlineRunner if config.isolation == "inline" else ThreadRunner)(config, runtimes.create)
