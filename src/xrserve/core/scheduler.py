"""The one scheduler: every request from every transport is computed through here.

Per model version it keeps a bounded, deadline-ordered queue and one dispatch loop
per instance. A dispatch loop takes the most urgent request, gathers compatible
ones into a batch (up to `max_batch_size`, for at most `max_queue_delay_ms`, and
never past the earliest deadline in the batch minus the model's usual compute
time), runs it, and splits the answer. Bulk work yields to interactive work across
all models: a bulk batch waits (bounded) while any interactive request is pending.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from xrserve.core.canary import Canaries, Canary
from xrserve.core.capabilities import Capabilities, Runtimes
from xrserve.core.config import ModelConfig
from xrserve.core.errors import BadRequest, DeadlineExceeded, ModelFailed, NotFound, Unavailable, XRServeError
from xrserve.core.images import check_images
from xrserve.core.metrics import Metrics
from xrserve.core.queue import Pending, RequestQueue
from xrserve.core.request import InferenceRequest, InferenceResponse, Priority, Usage
from xrserve.core.runners import make_runner
from xrserve.core.stream import Stream
from xrserve.core.tensors import NUMPY_DTYPES, datatype_of

log = logging.getLogger("xrserve.scheduler")

BULK_YIELD_MAX_S = 0.05  # longest a bulk batch waits for interactive work to drain
UNLOAD_DRAIN_S = 30.0  # longest an unloading version waits for its queued and running requests
SPEECH_HOLD_MAX_S = 0.5  # longest a model with yields_to_speech pauses for one first spoken piece
DEADLINE_MARGIN_S = 0.002  # a forming batch closes this long before the usual compute would miss a deadline


class ModelVersion:
    """One loaded version of one model: its config, queue, instances and state."""

    def __init__(self, config: ModelConfig, scheduler: Scheduler) -> None:
        self.config = config
        self.scheduler = scheduler
        self.state = "LOADING"
        self.reason = ""
        labels = scheduler.metrics
        self._m_requests = labels.requests.labels(config.name, config.version)
        self._m_queue = labels.queue_time.labels(config.name, config.version)
        self._m_compute = labels.compute_time.labels(config.name, config.version)
        self._m_batch = labels.batch_size.labels(config.name, config.version)
        self._m_latency = labels.request_time.labels(config.name, config.version)
        self._m_depth = labels.queue_depth.labels(config.name, config.version)
        self.queue = RequestQueue(
            config.queue_size,
            on_expired=self._expired,
            frame_policy=scheduler.frame_policy,
            on_superseded=self._superseded,
            on_left=self._left,
        )
        self._builtin_class = scheduler.runtimes.builtin_class(config)
        self.capabilities = Capabilities.of(config, self._builtin_class)
        self.runners = self._make_runners()
        self._tasks: list[asyncio.Task[None]] = []
        self._in_flight = 0  # batches taken from the queue and not yet answered
        self._open_streams = 0
        self.compute_ema_s = 0.0
        self.row_ema_s = 0.0  # compute per batch row: how many rows still fit before a deadline

    def _make_runners(self) -> list[Any]:
        """Where this version computes: its instances here (another engine puts them elsewhere)."""
        restarts = self.scheduler.metrics.restarts.labels(self.config.name, self.config.version).inc
        return [make_runner(self.config, self.scheduler.runtimes, restarts) for _ in range(self.config.instances)]

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def version(self) -> str:
        return self.config.version

    @property
    def ready(self) -> bool:
        return self.state == "READY"

    async def load(self) -> None:
        try:
            configs = await asyncio.gather(*(runner.start() for runner in self.runners))
        except Exception as exc:
            self.state, self.reason = "UNAVAILABLE", f"failed to load: {exc}"
            await asyncio.gather(*(runner.stop() for runner in self.runners), return_exceptions=True)
            raise
        self.config = configs[0]  # a runtime may fill in tensors the file left out (ONNX)
        self.capabilities = Capabilities.of(self.config, self._builtin_class)
        dispatch = self._dispatch_streams if self.config.streaming else self._dispatch
        self._tasks = [asyncio.create_task(dispatch(runner)) for runner in self.runners]
        self.state = "READY"

    @property
    def busy(self) -> bool:
        """Requests queued, in a batch being computed, or streams open."""
        return bool(len(self.queue) or self._in_flight or self._open_streams)

    async def unload(self, drain_s: float = UNLOAD_DRAIN_S) -> None:
        """Stop taking requests, let the queued and running ones finish (up to `drain_s`), then stop.

        While it drains, the version is not ready: requests without a version go to another
        ready version, requests naming it get a 503 that says why. Only what is still running
        after `drain_s` (a long LLM stream) fails, with a 503 that says the version was unloaded.
        """
        self.state, self.reason = "UNLOADING", "draining before it is unloaded"
        deadline = time.monotonic() + drain_s
        while self.busy and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.state, self.reason = "UNAVAILABLE", "unloaded"
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)  # every taken batch is answered first
        self.queue.fail_all(Unavailable.unloaded(self.name, self.version))
        await asyncio.gather(*(runner.stop() for runner in self.runners), return_exceptions=True)

    # -- admission ---------------------------------------------------------------------

    def admit(self, request: InferenceRequest) -> Pending:
        """Check the request against the declared tensors and queue it."""
        pending = self.prepare(request)
        self.queue.put(pending, retry_after_s=max(1.0, self.compute_ema_s * len(self.queue)))
        self._m_requests.inc()
        self._m_depth.set(len(self.queue))
        if pending.interactive:
            self.scheduler.interactive_started()
            pending.future.add_done_callback(self.scheduler.interactive_finished)
        return pending

    def prepare(self, request: InferenceRequest) -> Pending:
        """Check the request against the declared tensors (400 before it waits anywhere); not queued yet."""
        specs = self.config.input_specs
        capabilities = self.capabilities
        missing = [name for name in specs if name not in request.inputs and name not in capabilities.optional_inputs]
        if missing:
            raise BadRequest(f"model '{self.name}' needs input(s) {missing}; the request has {sorted(request.inputs)}")
        unknown = [name for name in request.inputs if name not in specs]
        if unknown:
            raise BadRequest(f"model '{self.name}' has no input(s) {unknown}; its inputs are {sorted(specs)}")
        empty = [name for name, array in request.inputs.items() if array.size == 0]
        if empty:
            raise BadRequest(f"input(s) {empty} are empty; send at least one element")
        batch_size = 1
        if self.config.max_batch_size > 0:
            sizes = {name: array.shape[0] if array.ndim else 0 for name, array in request.inputs.items()}
            if len(set(sizes.values())) != 1:
                raise BadRequest(f"inputs disagree on the batch size (first dimension): {sizes}")
            batch_size = next(iter(sizes.values()))
            if not 1 <= batch_size <= self.config.max_batch_size:
                raise BadRequest(
                    f"batch size {batch_size} is outside 1..{self.config.max_batch_size} "
                    f"(max_batch_size of model '{self.name}')"
                )
        if request.outputs is not None:
            outputs = self.config.output_specs
            bad = [name for name in request.outputs if name not in outputs]
            if bad:
                raise BadRequest(f"model '{self.name}' has no output(s) {bad}; its outputs are {sorted(outputs)}")
        if request.frame_key is not None and not self.queue.frame_aware:
            request.deadline = None  # fifo frame policy: every frame is computed, in arrival order
        if request.deadline is None and self.config.default_deadline_ms:
            request.deadline = request.arrival + self.config.default_deadline_ms / 1000
        if request.deadline is not None and request.deadline <= time.monotonic():
            raise DeadlineExceeded(f"deadline exceeded before the request to '{self.name}' was queued")
        for name, spec in specs.items():
            if name in request.inputs:
                spec.check(request.inputs[name], datatype_of(request.inputs[name]))
        if capabilities.image_inputs:
            check_images(self.config, request.inputs)  # headers only: 400/413 before queuing
        if capabilities.check_inputs is not None:
            capabilities.check_inputs(request.inputs)  # the model's own cheap check: 400 before queuing
        parameters = capabilities.check_parameters(self.name, request.model_parameters())
        signature = (
            tuple((n, a.shape[1:], a.dtype.str) for n, a in sorted(request.inputs.items())),
            repr(sorted(parameters.items())) if parameters else "",
        )
        priority = request.priority or capabilities.priority
        return Pending(request, asyncio.get_running_loop().create_future(), batch_size, signature, priority, parameters)

    def _superseded(self, pending: Pending) -> None:
        self.scheduler.metrics.failures.labels(self.name, self.version, "superseded").inc()

    def _left(self, pending: Pending) -> None:
        self._m_depth.set(len(self.queue))

    def _expired(self, pending: Pending) -> None:
        self.scheduler.metrics.failures.labels(self.name, self.version, "deadline").inc()
        self._m_depth.set(len(self.queue))

    # -- execution ---------------------------------------------------------------------

    async def _dispatch(self, runner: Any) -> None:
        while True:
            try:
                await runner.wait_ready()
            except Unavailable as exc:  # the instance is gone for good
                self.state, self.reason = "UNAVAILABLE", exc.message
                self.queue.fail_all(exc)
                return
            first = await self.queue.take_first()
            batch = [first]
            self._in_flight += 1
            try:  # from here on the batch is this loop's: every way out answers all of it
                if self.config.max_batch_size > 1:
                    await self._gather(batch)
                self._m_depth.set(len(self.queue))
                if not first.interactive:
                    await self.scheduler.yield_to_interactive()
                # the worker may have crashed while this loop waited for work: what arrives during
                # its restart waits for the new worker rather than failing (only in-flight work fails)
                await runner.wait_ready()
                await self._run(runner, batch)
            except asyncio.CancelledError:
                for pending in batch:
                    pending.finish(error=Unavailable.unloaded(self.name, self.version))
                raise
            except Exception as exc:  # noqa: BLE001 - the loop must survive anything
                log.exception("dispatch loop of %s failed", self.name)
                for pending in batch:
                    pending.finish(error=exc if isinstance(exc, XRServeError) else Unavailable(str(exc)))
            finally:
                self._in_flight -= 1

    async def _dispatch_streams(self, runner: Any) -> None:
        """Streaming models: admit queued streams into the instance's free slots, most urgent first."""
        slots = asyncio.Semaphore(self.config.max_streams)
        active = self.scheduler.metrics.active_streams.labels(self.name, self.version)
        while True:
            await slots.acquire()
            try:
                await runner.wait_ready()
            except Unavailable as exc:
                self.state, self.reason = "UNAVAILABLE", exc.message
                self.queue.fail_all(exc)
                return
            pending = await self.queue.take_first()
            self._m_depth.set(len(self.queue))
            try:
                await runner.wait_ready()  # as in _dispatch: a stream that arrives during a restart waits for it
            except Unavailable as exc:
                pending.finish(error=exc)
                slots.release()
                continue
            request = pending.request
            if pending.done or (request.deadline is not None and request.deadline <= time.monotonic()):
                if not pending.done:
                    self._expired(pending)
                    pending.finish(
                        error=DeadlineExceeded(
                            f"deadline exceeded: the stream for '{self.name}' could not start before its deadline"
                        )
                    )
                slots.release()
                continue
            self._m_queue.observe(time.monotonic() - request.arrival)

            def closed(release: Callable[[], None] = slots.release) -> None:
                active.dec()
                self._open_streams -= 1
                release()

            try:
                stream = runner.open_stream(request.inputs, pending.parameters, closed)
            except XRServeError as exc:
                slots.release()
                pending.finish(error=exc)
                continue
            active.inc()
            self._open_streams += 1
            stream.version = self.version
            metrics = self.scheduler.metrics
            first_chunk = metrics.first_chunk_time.labels(self.name, self.version)
            tokens = metrics.generated_tokens.labels(self.name, self.version)
            stream.observe_first = lambda h=first_chunk, t=request.arrival: h.observe(time.monotonic() - t)
            stream.observe_done = lambda chunk, c=tokens: c.inc(max(0, int(chunk.get("completion_tokens", 0))))
            if not pending.finish(stream) or pending.future.cancelled():
                stream.cancel()  # the caller left while it waited

    async def _gather(self, batch: list[Pending]) -> None:
        """Fill the batch from the queue, waiting for company only while company is likely.

        The window opens when the model becomes free (not when the first request arrived),
        so requests answered by the previous batch and sent again at once can join. It is
        only waited while another request is already inside the server (being read or
        parsed) and could join: a lone client never waits for company that cannot come.
        It never runs past a deadline in the batch.
        """
        first = batch[0]
        size = first.batch_size
        limit = self.config.max_batch_size
        window_end = time.monotonic() + self.config.max_queue_delay_ms / 1000
        while True:
            cap = self._rows_in_time(batch, limit, size)
            more = self.queue.take_compatible(first, cap - size)
            batch.extend(more)
            size += sum(p.batch_size for p in more)
            deadlines = [p.request.deadline for p in batch if p.request.deadline is not None]
            end = min([window_end, *(d - self.compute_ema_s - DEADLINE_MARGIN_S for d in deadlines)])
            remaining = end - time.monotonic()
            if size >= cap or remaining <= 0 or self.scheduler.metrics.in_server <= len(batch):
                return
            await self.queue.wait_for_more(remaining)

    def _rows_in_time(self, batch: list[Pending], limit: int, size: int) -> int:
        """How many rows the batch may hold so that its most urgent deadline is still met.

        A runtime whose cost grows with the rows (TFLite on CPU: 4 crops take 4 times one)
        would otherwise let a big batch of camera frames finish long after the first of
        them was due. Estimated from the usual compute per row; never below what is in.
        """
        deadlines = [p.request.deadline for p in batch if p.request.deadline is not None]
        if not deadlines or self.row_ema_s <= 0:
            return limit
        fit = int((min(deadlines) - time.monotonic() - DEADLINE_MARGIN_S) / self.row_ema_s)
        return max(size, min(limit, fit))

    async def _run(self, runner: Any, batch: list[Pending]) -> None:
        now = time.monotonic()
        live = []
        for pending in batch:
            if pending.done or pending.future.cancelled():
                continue
            if pending.request.deadline is not None and pending.request.deadline <= now:
                self._expired(pending)
                pending.finish(
                    error=DeadlineExceeded(
                        f"deadline exceeded: the request to '{self.name}' reached the model after its deadline, "
                        "so it was not computed"
                    )
                )
                continue
            live.append(pending)
        if not live:
            return
        for pending in live:
            self._m_queue.observe(now - pending.request.arrival)
        if len(live) == 1:
            inputs = live[0].request.inputs
        else:
            inputs = {name: np.concatenate([p.request.inputs[name] for p in live]) for name in live[0].request.inputs}
        started = time.monotonic()
        speech = any(p.priority == Priority.FIRST_SPEECH for p in live)
        if speech:
            self.scheduler.first_speech_started()
        try:
            outputs = await runner.run(inputs, live[0].parameters)
        except XRServeError as exc:
            reason = "crash" if exc.status_code == 503 else "model_error"
            self.scheduler.metrics.failures.labels(self.name, self.version, reason).inc(len(live))
            for pending in live:
                pending.finish(error=exc)
            return
        finally:
            if speech:
                self.scheduler.first_speech_finished()
        compute_s = time.monotonic() - started
        self.compute_ema_s = compute_s if not self.compute_ema_s else 0.8 * self.compute_ema_s + 0.2 * compute_s
        row_s = compute_s / sum(p.batch_size for p in live)
        self.row_ema_s = row_s if not self.row_ema_s else 0.8 * self.row_ema_s + 0.2 * row_s
        self._m_compute.observe(compute_s)
        self._m_batch.observe(len(live))
        self._answer(live, outputs, now, compute_s)

    def _answer(self, live: list[Pending], outputs: dict[str, np.ndarray], started: float, compute_s: float) -> None:
        batch_rows = sum(p.batch_size for p in live)
        outputs = self._checked_outputs(outputs, batch_rows)
        offset = 0
        now = time.monotonic()
        for pending in live:
            request = pending.request
            self._m_latency.observe(now - request.arrival)
            wanted = request.outputs or list(outputs)
            absent = [name for name in wanted if name not in outputs]
            if absent:  # declared, but given only when a parameter asks (the gesture models' attributions)
                offset += pending.batch_size
                pending.finish(
                    error=BadRequest(
                        f"model '{self.name}' gives no output(s) {absent} for this request; an output may need a "
                        f"request parameter (GET /v2/models/{self.name}/config describes them)"
                    )
                )
                continue
            if self.config.max_batch_size > 0 and len(live) > 1:
                rows = slice(offset, offset + pending.batch_size)
                mine = {name: outputs[name][rows] for name in wanted}
            else:
                mine = {name: outputs[name] for name in wanted}
            offset += pending.batch_size
            pending.finish(
                InferenceResponse(
                    self.name,
                    self.version,
                    mine,
                    request.id,
                    started - request.arrival,
                    compute_s,
                    Usage(compute_s=compute_s * pending.batch_size / batch_rows),  # its share of the batch
                )
            )

    def _checked_outputs(self, outputs: Any, rows: int) -> dict[str, np.ndarray]:
        if not isinstance(outputs, dict):
            raise ModelFailed(f"model '{self.name}' returned {type(outputs).__name__}, not a dict of arrays")
        declared = self.config.output_specs
        checked = {}
        for name, value in outputs.items():
            array = np.asarray(value)
            spec = declared.get(name)
            if spec is not None and spec.datatype != "BYTES" and array.dtype != NUMPY_DTYPES[spec.datatype]:
                array = array.astype(NUMPY_DTYPES[spec.datatype])
            if self.config.max_batch_size > 0 and (array.ndim == 0 or array.shape[0] != rows):
                raise ModelFailed(f"model '{self.name}' returned {name} with shape {array.shape} for a batch of {rows}")
            checked[name] = array
        return checked


class Scheduler:
    """Owns every loaded model version and is the only way to reach one (an `InferenceClient`)."""

    #: what a loaded version is; the Ray Serve engine's versions compute in Serve replicas instead
    version_class: type[ModelVersion] = ModelVersion

    def __init__(self, runtimes: Runtimes, metrics: Metrics | None = None, frame_policy: str = "deadline") -> None:
        self.runtimes = runtimes
        self.metrics = metrics or Metrics()
        self.frame_policy = frame_policy
        self.models: dict[str, dict[str, ModelVersion]] = {}
        self.failed: dict[str, str] = {}  # model name -> why it could not load
        self.defaults: dict[str, str] = {}  # model name -> promoted default version (core/promoted.py)
        self.canaries = Canaries(self.metrics)  # a share of the unversioned requests to a new version
        self._interactive_pending = 0
        self._interactive_idle = asyncio.Event()
        self._interactive_idle.set()
        self._first_speech_running = 0
        self._held_since: float | None = None  # when the yielding models were last told to pause
        self._hold_allowed_at = 0.0  # after a pause of d seconds they run at least d before the next

    # -- model lifecycle -----------------------------------------------------------------

    async def load(self, config: ModelConfig) -> ModelVersion:
        version = self.version_class(config, self)
        self.models.setdefault(config.name, {})[config.version] = version
        try:
            await version.load()
        except Exception as exc:
            self.failed[f"{config.name}/{config.version}"] = str(exc)
            raise
        self.failed.pop(f"{config.name}/{config.version}", None)
        return version

    async def unload(self, name: str, version: str | None = None, drain_s: float = UNLOAD_DRAIN_S) -> None:
        """Unload one version, or every version, each once it has drained (ModelVersion.unload).

        The versions stay listed (state UNLOADING) while they drain, so a request naming one
        gets a 503 saying so rather than a 404; they are forgotten once stopped.
        """
        versions = self.models.get(name, {})
        chosen = [versions[key] for key in ([version] if version else list(versions)) if key in versions]
        canary = self.canaries.active.get(name)
        if canary is not None and any(canary.watches(model.version) for model in chosen):
            self.canaries.end(name)  # its canary or its stable version is going away
        await asyncio.gather(*(model.unload(drain_s) for model in chosen))
        for model in chosen:
            if versions.get(model.version) is model:
                del versions[model.version]
        if not versions:
            self.models.pop(name, None)

    async def close(self) -> None:
        for name in list(self.models):
            await self.unload(name, drain_s=2.0)  # shutting down: a short grace for what is running

    def resolve(
        self, name: str, version: str | None = None, affinity: str | None = None, *, route: bool = False
    ) -> ModelVersion:
        """The version a request means: the one asked for, else the promoted default, else the newest ready one.

        While a canary runs (core/canary.py) a request without a version may get the canary
        version instead: always the same one for an `affinity` (a session), and for the others
        (`route`: a request being routed, not a look-up) the canary's share of them.
        """
        versions = self.models.get(name)
        if not versions:
            known = ", ".join(sorted(self.models)) or "none"
            raise NotFound(f"unknown model '{name}'; the models here are: {known}")
        if version:
            found = versions.get(version)
            if found is None:
                raise NotFound(
                    f"model '{name}' has no version '{version}'; its versions are {sorted(versions, key=int)}"
                )
            return found
        canary = self.canaries.active.get(name)
        if canary is not None and (route or affinity is not None):
            picked = versions.get(canary.pick(affinity))
            if picked is not None and picked.ready:
                return picked
        default = versions.get(self.defaults.get(name, ""))
        if default is not None and default.ready:
            return default
        ready = [v for v in versions.values() if v.ready]
        if not ready:
            return max(versions.values(), key=lambda v: int(v.version))
        return max(ready, key=lambda v: int(v.version))

    async def engine_status(self) -> dict[str, Any]:
        """Where the models compute, for operators (`GET /v1/engine`, `xrserve ray status`)."""
        return {
            "engine": "embedded",
            "versions": [
                {"model": v.name, "version": v.version, "state": v.state, "instances": len(v.runners)}
                for v in self.all_versions()
            ],
        }

    async def replica_metrics(self) -> bytes:
        """Series measured elsewhere (another engine's replicas), appended to `/metrics`; none here."""
        return b""

    def all_versions(self) -> list[ModelVersion]:
        return [v for versions in self.models.values() for v in versions.values()]

    def model_names(self) -> list[str]:
        return sorted(self.models)

    # -- requests ------------------------------------------------------------------------

    def _ready_model(self, request: InferenceRequest) -> ModelVersion:
        model = self.resolve(request.model, request.version, request.affinity, route=True)
        if not model.ready:
            raise Unavailable(
                f"model '{model.name}' version {model.version} is not ready: {model.state} {model.reason}"
            )
        return model

    async def submit(self, request: InferenceRequest) -> InferenceResponse:
        """Compute a request and return the whole answer (a streaming model's stream is collected)."""
        model = self._ready_model(request)
        canary = self.canaries.active.get(model.name) if self.canaries.active else None
        if canary is not None and canary.watches(model.version):
            return await self._watched(canary, model, request)
        if model.config.streaming:
            return await self._collect(model, request)
        pending = model.admit(request)
        response: InferenceResponse = await pending.future
        return response

    async def _watched(self, canary: Canary, model: ModelVersion, request: InferenceRequest) -> InferenceResponse:
        """A request to a canary or its stable version: its outcome and latency judge the canary.

        A client's mistake (4xx) says nothing about the version and a cancelled request
        nothing about its latency: neither is counted.
        """
        try:
            if model.config.streaming:
                response = await self._collect(model, request)
            else:
                response = await model.admit(request).future
        except Exception as exc:
            if not isinstance(exc, XRServeError) or exc.status_code >= 500:
                self.canaries.observe(canary, model.version, True, time.monotonic() - request.arrival)
            raise
        self.canaries.observe(canary, model.version, False, time.monotonic() - request.arrival)
        return response

    async def stream(self, request: InferenceRequest) -> Stream:
        """Open a stream on a streaming model once a slot is free; iterate it for the chunks."""
        model = self._ready_model(request)
        if not model.config.streaming:
            raise BadRequest(f"model '{model.name}' does not stream; use infer")
        pending = model.admit(request)
        try:
            stream: Stream = await pending.future
            return stream
        except asyncio.CancelledError:
            if pending.future.done() and not pending.future.cancelled() and pending.future.exception() is None:
                pending.future.result().cancel()
            raise

    async def _collect(self, model: ModelVersion, request: InferenceRequest) -> InferenceResponse:
        """Join a stream's text into the model's first output: OIP clients get one answer."""
        started = time.monotonic()
        request.version = request.version or model.version  # a canary's pick is not made twice
        stream = await self.stream(request)
        parts: list[str] = []
        try:
            async for chunk in stream:
                parts.append(chunk.get("text", ""))
        finally:
            stream.cancel()
        name = model.config.outputs[0].name if model.config.outputs else "text_output"
        output = np.array(["".join(parts).encode("utf-8")], dtype=object)
        return InferenceResponse(
            model.name, model.version, {name: output}, request.id, started - request.arrival, time.monotonic() - started
        )

    # -- interactive before bulk ----------------------------------------------------------

    def interactive_started(self) -> None:
        self._interactive_pending += 1
        self._interactive_idle.clear()

    def interactive_finished(self, _future: Any = None) -> None:
        self._interactive_pending -= 1
        if self._interactive_pending <= 0:
            self._interactive_pending = 0
            self._interactive_idle.set()

    # -- the first words of an answer before other streams' next tokens ------------------

    def first_speech_started(self) -> None:
        """A first spoken piece computes: models with `yields_to_speech` pause (see its description).

        Why here: only the scheduler sees both the speech request and the LLM's instances. Each
        pause is bounded (SPEECH_HOLD_MAX_S: a lost release costs a pause, never a stall), and
        they take at most half the time: many characters' first pieces back to back must not
        starve the streams that are still writing the next characters' first words.
        """
        self._first_speech_running += 1
        now = time.monotonic()
        if self._first_speech_running == 1 and self._held_since is None and now >= self._hold_allowed_at:
            self._held_since = now
            self._hold_yielding(SPEECH_HOLD_MAX_S)

    def first_speech_finished(self) -> None:
        self._first_speech_running = max(0, self._first_speech_running - 1)
        if self._first_speech_running == 0 and self._held_since is not None:
            now = time.monotonic()
            self._hold_allowed_at = now + min(now - self._held_since, SPEECH_HOLD_MAX_S)
            self._held_since = None
            self._hold_yielding(0.0)

    def _hold_yielding(self, seconds: float) -> None:
        for versions in self.models.values():
            for version in versions.values():
                if version.config.yields_to_speech and version.ready:
                    for runner in version.runners:
                        runner.hold(seconds)

    async def yield_to_interactive(self) -> None:
        if not self._interactive_idle.is_set():
            try:
                await asyncio.wait_for(self._interactive_idle.wait(), BULK_YIELD_MAX_S)
            except TimeoutError:
                pass
