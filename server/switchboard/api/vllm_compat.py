"""vLLM's runtime LoRA endpoints, same bodies, statuses and messages, so vLLM scripts work unchanged.

Differences a vLLM user may notice: the admin key is required, the path must lie under an adapter
root, and the adapter is validated before it is served.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict

from ..errors import AdapterNotFound, InvalidRequest
from .auth import require_admin
from .deps import ServicesDep
from .openapi import errors
from .response_schemas import text

router = APIRouter(prefix="/v1", dependencies=[Depends(require_admin)])


class LoadLoRABody(BaseModel):
    model_config = ConfigDict(extra="allow")
    lora_name: str = ""
    lora_path: str = ""


class UnloadLoRABody(BaseModel):
    model_config = ConfigDict(extra="allow")
    lora_name: str = ""
    lora_int_id: int | None = None


@router.post(
    "/load_lora_adapter",
    response_class=PlainTextResponse,
    responses={200: text("Success: ...", "text/plain"), **errors(403, 409, 422)},
)
async def load_lora_adapter(services: ServicesDep, body: LoadLoRABody) -> PlainTextResponse:
    if not body.lora_name or not body.lora_path:
        raise InvalidRequest("Both 'lora_name' and 'lora_path' must be provided.")
    if services.registry.current(body.lora_name) is not None:
        raise InvalidRequest(f"The lora adapter '{body.lora_name}' has already been loaded.", param="lora_name")
    await services.register(body.lora_name, body.lora_path)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' added successfully.")


@router.post(
    "/unload_lora_adapter",
    response_class=PlainTextResponse,
    responses={200: text("Success: ...", "text/plain"), **errors(404, 409)},
)
async def unload_lora_adapter(services: ServicesDep, body: UnloadLoRABody) -> PlainTextResponse:
    if not body.lora_name and body.lora_int_id is None:
        raise InvalidRequest("either 'lora_name' and 'lora_int_id' needs to be provided.")
    if services.registry.current(body.lora_name) is None:
        raise AdapterNotFound(f"The lora adapter '{body.lora_name}' cannot be found.", param="lora_name")
    await services.unregister(body.lora_name)
    return PlainTextResponse(f"Success: LoRA adapter '{body.lora_name}' removed successfully.")
