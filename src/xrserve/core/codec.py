"""Open Inference Protocol v2 tensors on the wire: JSON `data`, and the binary tensor extension.

Binary extension (what `tritonclient` sends with `binary_data=True`): the body is a
JSON header of `Inference-Header-Content-Length` bytes followed by the raw tensors,
in input order, for every input whose `parameters.binary_data_size` is set. BYTES
elements are each a 4-byte little-endian length and the bytes. Responses mirror it
for outputs the client asked to get in binary.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np
import orjson

from xrserve.core.errors import BadRequest
from xrserve.core.tensors import DATATYPES, NUMPY_DTYPES, datatype_of


def parse_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], memoryview]:
    """Split the JSON header from the binary section and parse it."""
    binary = memoryview(b"")
    if header_length is not None:
        try:
            size = int(header_length)
        except ValueError:
            raise BadRequest(f"Inference-Header-Content-Length must be an integer, got '{header_length}'") from None
        if not 0 < size <= len(body):
            raise BadRequest(
                f"Inference-Header-Content-Length is {size} but the body has {len(body)} bytes; "
                "it must be the length of the JSON part"
            )
        binary = memoryview(body)[size:]
        body = body[:size]
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(document, dict):
        raise BadRequest("the request body must be a JSON object with an 'inputs' list")
    return document, binary


def decode_inputs(document: dict[str, Any], binary: memoryview) -> dict[str, np.ndarray]:
    tensors = document.get("inputs")
    if not isinstance(tensors, list) or not tensors:
        raise BadRequest("'inputs' must be a non-empty list of tensors ({name, shape, datatype, data})")
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, tensor in enumerate(tensors):
        if not isinstance(tensor, dict):
            raise BadRequest(f"inputs[{index}] must be an object with name, shape, datatype and data")
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise BadRequest(f"inputs[{index}] needs a 'name' string")
        if name in arrays:
            raise BadRequest(f"input '{name}' appears twice")
        datatype, shape = _datatype_and_shape(tensor, f"input '{name}'")
        parameters = tensor.get("parameters", {})
        if not isinstance(parameters, dict):
            raise BadRequest(f"input '{name}': 'parameters' must be an object")
        size = parameters.get("binary_data_size")
        if size is not None:
            if not isinstance(size, int) or isinstance(size, bool) or size < 0 or offset + size > len(binary):
                raise BadRequest(
                    f"input '{name}': binary_data_size {size!r} does not fit the {len(binary) - offset} "
                    "bytes of binary data left in the body"
                )
            arrays[name] = _from_raw(binary[offset : offset + size], datatype, shape, name)
            offset += size
        else:
            if "data" not in tensor:
                raise BadRequest(f"input '{name}' has neither 'data' nor parameters.binary_data_size")
            arrays[name] = _from_json(tensor["data"], datatype, shape, name)
    if offset != len(binary):
        raise BadRequest(f"the body has {len(binary) - offset} bytes of binary data that no input claims")
    return arrays


def _datatype_and_shape(tensor: dict[str, Any], what: str) -> tuple[str, tuple[int, ...]]:
    datatype = tensor.get("datatype")
    if datatype not in DATATYPES:
        raise BadRequest(f"{what}: datatype {datatype!r} is not one of {', '.join(DATATYPES)}")
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"{what}: shape must be a list of non-negative integers, got {shape!r}")
    if len(shape) > 32:
        raise BadRequest(f"{what}: shape has {len(shape)} dimensions; at most 32 are allowed")
    return datatype, tuple(shape)


def _from_raw(raw: memoryview, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if datatype == "BYTES":
        items, position = [], 0
        while position < len(raw):
            if position + 4 > len(raw):
                raise BadRequest(f"input '{name}': BYTES data ends inside a 4-byte length prefix")
            (length,) = struct.unpack_from("<I", raw, position)
            position += 4
            if position + length > len(raw):
                raise BadRequest(f"input '{name}': a BYTES element claims {length} bytes past the end of its data")
            items.append(bytes(raw[position : position + length]))
            position += length
        if len(items) != count:
            raise BadRequest(
                f"input '{name}': shape {list(shape)} needs {count} elements, the binary data has {len(items)}"
            )
        array = np.empty(count, dtype=object)
        array[:] = items
        return array.reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    if len(raw) != count * dtype.itemsize:
        raise BadRequest(
            f"input '{name}': shape {list(shape)} of {datatype} needs {count * dtype.itemsize} bytes, got {len(raw)}"
        )
    return np.frombuffer(raw, dtype=dtype.newbyteorder("<")).reshape(shape)


def _from_json(data: Any, datatype: str, shape: tuple[int, ...], name: str) -> np.ndarray:
    count = math.prod(shape)
    if isinstance(data, list) and data and isinstance(data[0], list):
        flat: list[Any] = []
        _flatten(data, flat, count, name)
        data = flat
    elif not isinstance(data, list):
        data = [data]
    if len(data) != count:
        raise BadRequest(f"input '{name}': shape {list(shape)} needs {count} elements, 'data' has {len(data)}")
    if datatype == "BYTES":
        if not all(isinstance(item, str) for item in data):
            raise BadRequest(f"input '{name}': BYTES data must be strings in JSON (or use the binary extension)")
        array = np.empty(count, dtype=object)
        array[:] = [item.encode("utf-8", "surrogatepass") for item in data]
        return array.reshape(shape)
    dtype = NUMPY_DTYPES[datatype]
    try:
        array = np.array(data)  # numpy checks the elements in C; the kind says whether they were right
    except (ValueError, OverflowError) as exc:
        raise BadRequest(f"input '{name}': 'data' is not a flat list of values: {exc}") from None
    kind = array.dtype.kind
    if datatype == "BOOL":
        if kind != "b":
            raise BadRequest(f"input '{name}': BOOL data must be true or false")
    elif dtype.kind in "iu":
        if kind not in "iu":
            # ints past int64/uint64 make numpy fall back to float or object: say that, not "whole numbers"
            if kind in "fO" and all(isinstance(item, int) and not isinstance(item, bool) for item in data):
                raise _out_of_range(name, datatype, dtype)
            raise BadRequest(f"input '{name}': {datatype} data must be whole numbers")
        limits = np.iinfo(dtype)
        if array.min() < limits.min or array.max() > limits.max:
            raise _out_of_range(name, datatype, dtype)
    elif kind in "iuf":
        return _to_float(array, datatype, dtype, name).reshape(shape)
    elif kind in "UO":  # strings ("NaN", "Infinity"), or ints past uint64 beside them
        return _to_float(_floats_of(data, datatype, name), datatype, dtype, name).reshape(shape)
    else:
        raise BadRequest(f"input '{name}': {datatype} data must be numbers")
    return array.astype(dtype, copy=False).reshape(shape)


# JSON has no NaN or infinity: in `data` of a floating-point tensor they are these strings, as in
# protobuf's JSON mapping (and numpy, so tritonclient's as_numpy reads them back as floats)
NON_FINITE = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _out_of_range(name: str, datatype: str, dtype: np.dtype) -> BadRequest:
    limits = np.iinfo(dtype)
    return BadRequest(f"input '{name}': values do not fit {datatype} ({limits.min} to {limits.max})")


def _to_float(array: np.ndarray, datatype: str, dtype: np.dtype, name: str) -> np.ndarray:
    """Numbers as FP16/32/64; a finite number too large for the datatype is refused, not made infinite."""
    with np.errstate(over="ignore", invalid="ignore"):
        converted = array.astype(dtype, copy=False)
    if not np.isfinite(converted).all():
        overflowed = np.isfinite(array) & ~np.isfinite(converted)  # NaN and infinity sent as strings stay
        if overflowed.any():
            largest = float(np.finfo(dtype).max)
            value = array.ravel()[int(np.flatnonzero(overflowed.ravel())[0])].item()
            raise BadRequest(
                f"input '{name}': {value:g} is out of the range of {datatype} (magnitudes up to {largest:.7g}) "
                'and would become infinity; scale the values into range, or send "Infinity" if that is meant'
            )
    return converted


def _floats_of(data: list[Any], datatype: str, name: str) -> np.ndarray:
    """`data` as float64, with "NaN", "Infinity" and "-Infinity" read as those floats; other strings are refused."""
    values: list[float] = []
    for item in data:
        if isinstance(item, str):
            if item not in NON_FINITE:
                raise BadRequest(
                    f'input \'{name}\': {datatype} data must be numbers, or "NaN", "Infinity", "-Infinity"; '
                    f"got {item[:40]!r}"
                )
            values.append(NON_FINITE[item])
        elif isinstance(item, (int, float)) and not isinstance(item, bool):
            try:
                values.append(float(item))
            except OverflowError:  # an int past 1.8e308
                raise BadRequest(f"input '{name}': a whole number in 'data' is too large for {datatype}") from None
        else:
            raise BadRequest(f"input '{name}': {datatype} data must be numbers, got {repr(item)[:40]}")
    return np.array(values, dtype=np.float64)


def _flatten(data: list[Any], out: list[Any], limit: int, name: str) -> None:
    for item in data:
        if isinstance(item, list):
            _flatten(item, out, limit, name)
        else:
            out.append(item)
        if len(out) > limit:
            raise BadRequest(f"input '{name}': 'data' has more elements than its shape allows ({limit})")


def requested_outputs(document: dict[str, Any]) -> tuple[list[str] | None, set[str], bool]:
    """Output names asked for (None = all), those wanted in binary, and the all-binary flag."""
    parameters = document.get("parameters", {})
    if not isinstance(parameters, dict):
        raise BadRequest("'parameters' must be an object")
    all_binary = parameters.get("binary_data_output", False)
    if not isinstance(all_binary, bool):
        raise BadRequest(f"parameter 'binary_data_output' must be true or false, got {all_binary!r}")
    outputs = document.get("outputs")
    if outputs is None:
        return None, set(), all_binary
    if not isinstance(outputs, list) or not all(
        isinstance(o, dict) and isinstance(o.get("name"), str) for o in outputs
    ):
        raise BadRequest("'outputs' must be a list of objects with a 'name'")
    names = [o["name"] for o in outputs]
    binary = {
        o["name"] for o in outputs if isinstance(o.get("parameters"), dict) and o["parameters"].get("binary_data")
    }
    return names, binary, all_binary


def encode_response(
    model: str, version: str, request_id: str, outputs: dict[str, np.ndarray], binary: set[str], all_binary: bool
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header length when a binary section follows."""
    tensors, chunks = [], []
    for name, array in outputs.items():
        datatype = datatype_of(array)
        tensor: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(array.shape)}
        if all_binary or name in binary:
            raw = _to_raw(array, datatype)
            tensor["parameters"] = {"binary_data_size": len(raw)}
            chunks.append(raw)
        else:
            tensor["data"] = _to_json(array, datatype)
        tensors.append(tensor)
    header = orjson.dumps(
        {"model_name": model, "model_version": version, "id": request_id, "outputs": tensors},
        option=orjson.OPT_SERIALIZE_NUMPY,
    )
    if not chunks:
        return header, None
    return header + b"".join(chunks), len(header)


def outputs_as_json(outputs: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """OIP output tensors with their data inline (for transports that carry JSON only)."""
    return [
        {
            "name": name,
            "datatype": datatype_of(array),
            "shape": list(array.shape),
            "data": _to_json(array, datatype_of(array)),
        }
        for name, array in outputs.items()
    ]


def _to_raw(array: np.ndarray, datatype: str) -> bytes:
    if datatype == "BYTES":
        parts = []
        for item in array.ravel():
            data = item if isinstance(item, bytes) else str(item).encode("utf-8")
            parts.append(struct.pack("<I", len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()


def _to_json(array: np.ndarray, datatype: str) -> Any:
    flat = array.ravel()
    if datatype == "BYTES":
        return [item.decode("utf-8", "replace") if isinstance(item, bytes) else str(item) for item in flat]
    if datatype == "FP16":
        flat = flat.astype(np.float32)
    if flat.dtype.kind == "f" and not np.isfinite(flat).all():
        return _with_non_finite(flat)
    return np.ascontiguousarray(flat)


def _with_non_finite(flat: np.ndarray) -> list[Any]:
    """Floats for JSON with NaN and ±infinity as the strings of NON_FINITE (JSON has no literal for them).

    orjson would write them as null, a value the model never produced; this is the only
    path that leaves the vectorised encoder, and only for a tensor that holds such a value.
    """
    values: list[Any] = flat.tolist()
    for index in np.flatnonzero(~np.isfinite(flat)).tolist():
        value = values[index]
        values[index] = "NaN" if value != value else ("Infinity" if value > 0 else "-Infinity")
    return values
