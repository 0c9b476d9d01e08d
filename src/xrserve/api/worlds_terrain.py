"""`POST /v1/terrain`: a terrain from the trained generators, answered at once as GLB, PNG or floats.

A thin transport over `worlds.terrain`: the key needs the scope `worlds` (or `*`), the
body is a `TerrainSpec`, and the heights come from the scheduler at bulk priority. The
answer is binary, so what a client needs beside the bytes travels in headers: the size,
the extent and the heights that a PNG's 0 and 65535 stand for (the GLB also has them in
the `terrain` node's extras).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request, Security
from fastapi.responses import Response

from xrserve.api.openai_protocol import OPENAI_ERRORS
from xrserve.security.guard import Credentials, KeyFirstRoute, bearer, guard_of
from xrserve.security.keys import ApiKey
from xrserve.worlds import SCOPE
from xrserve.worlds.terrain import TerrainSpec, f32, generate_heightmap, png16, terrain_glb

MEDIA = {"glb": "model/gltf-binary", "png16": "image/png", "f32": "application/octet-stream"}
_HEADERS = {
    "X-Size": {"description": "vertices a side", "schema": {"type": "integer"}},
    "X-Extent-M": {"description": "the square's side in metres", "schema": {"type": "number"}},
    "X-Height-Min": {"description": "the lowest height in metres (PNG value 0)", "schema": {"type": "number"}},
    "X-Height-Max": {"description": "the highest height in metres (PNG value 65535)", "schema": {"type": "number"}},
}


async def require_worlds(request: Request, _: Credentials = Security(bearer)) -> ApiKey:
    """A key with the scope `worlds` (or `*`): checked before the body is read, so a stranger gets 401, not 400."""
    return guard_of(request).authorize(request, SCOPE)


router = APIRouter(tags=["Worlds"], responses=OPENAI_ERRORS, route_class=KeyFirstRoute)


@router.post(
    "/v1/terrain",
    summary="Generate a terrain: GLB mesh, 16-bit PNG heightmap or float32 heights",
    response_class=Response,
    responses={
        200: {
            "description": "the terrain in the format asked for; row i of a heightmap is z = -extent/2 + i*step",
            "content": {media: {"schema": {"type": "string", "format": "binary"}} for media in MEDIA.values()},
            "headers": _HEADERS,
        }
    },
)
async def terrain(request: Request, spec: TerrainSpec, key: ApiKey = Depends(require_worlds)) -> Response:
    heights = await generate_heightmap(request.app.state.scheduler, spec, session=key.id)
    low, high = float(heights.min()), float(heights.max())
    if spec.format == "glb":
        body = await asyncio.to_thread(terrain_glb, heights, spec.extent_m, spec.lods)
    elif spec.format == "png16":
        body, low, high = await asyncio.to_thread(png16, heights)
    else:
        body = f32(heights)
    headers = {
        "X-Size": str(spec.size),
        "X-Extent-M": repr(float(spec.extent_m)),
        "X-Height-Min": repr(low),
        "X-Height-Max": repr(high),
    }
    return Response(body, media_type=MEDIA[spec.format], headers=headers)
