"""An MCP client built on the official Python SDK (`mcp`, pinned in ../python/requirements.txt),
run by python.test.mjs against Bridgekeeper's gateway.

It opens one Streamable HTTP session on BK_MCP_URL with `Authorization: Bearer BK_ACCESS_TOKEN`,
runs the same fixed list of requests whoever the token belongs to (listings, the built-in whoami,
calls of the upstream server-everything's tools under `everything_<tool>`, unknown tools, a prompt,
a resource) and
prints ONE JSON object on stdout with what it saw: each step is either {"result": <the SDK's
parsed result, as wire JSON>} or {"error": {"type", "code", "message"}}, so the Node test decides
what should have succeeded. BK_READ_URI names the resource to read (default: the first static
document that resources/list returned). Nothing else is printed on stdout; the exit status is 0
unless the session itself could not be opened (then {"fatal": ...} and 1).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import sys
import traceback
from importlib.metadata import version
from typing import Any, Awaitable, Callable

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import PaginatedRequestParams

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def wire(model: Any) -> Any:
    """A parsed SDK model as the JSON it stands for (camelCase names, unset fields left out)."""
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def step(fn: Callable[[], Awaitable[Any]]) -> dict[str, Any]:
    try:
        return {"result": await fn()}
    except MCPError as e:
        return {"error": {"type": type(e).__name__, "code": e.code, "message": e.message}}
    except Exception as e:  # noqa: BLE001 - everything the SDK raises is reported, never fatal
        return {"error": {"type": type(e).__name__, "code": None, "message": str(e)}}


async def all_pages(list_page: Callable[..., Awaitable[Any]], field: str) -> dict[str, Any]:
    """Every page of a paginated listing: {"items": [...], "pages": n}."""
    items: list[Any] = []
    cursor = None
    pages = 0
    while True:
        page = await list_page(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        pages += 1
        items.extend(wire(x) for x in getattr(page, field))
        cursor = page.next_cursor
        if not cursor or pages > 50:
            return {"items": items, "pages": pages}


async def main() -> dict[str, Any]:
    url = os.environ["BK_MCP_URL"]
    token = os.environ["BK_ACCESS_TOKEN"]
    out: dict[str, Any] = {"sdk": version("mcp")}
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=httpx2.Timeout(20.0, read=30.0)) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write, read_timeout_seconds=20.0) as session:
                init = await session.initialize()
                out["initialize"] = {
                    "protocolVersion": init.protocol_version,
                    "serverInfo": wire(init.server_info),
                    "capabilities": wire(init.capabilities),
                }
                out["tools"] = await step(lambda: all_pages(session.list_tools, "tools"))
                out["whoami"] = await step(lambda: _call(session, "whoami", {}))
                out["echo"] = await step(
                    lambda: _call(session, "everything_echo", {"message": "hello from the Python SDK"})
                )
                out["sum"] = await step(lambda: _call(session, "everything_get-sum", {"a": 1234, "b": 4321}))
                out["image"] = await step(lambda: _image(session))
                out["structured"] = await step(
                    lambda: _call(session, "everything_get-structured-content", {"location": "New York"})
                )
                out["unknownTool"] = await step(lambda: _call(session, "no-such-tool", {}))
                out["unknownUpstreamTool"] = await step(lambda: _call(session, "everything_no-such-tool", {}))
                out["prompts"] = await step(lambda: all_pages(session.list_prompts, "prompts"))
                out["prompt"] = await step(
                    lambda: _wired(session.get_prompt("everything_args-prompt", {"city": "Lisbon"}))
                )
                out["resources"] = await step(lambda: all_pages(session.list_resources, "resources"))
                uri = os.environ.get("BK_READ_URI") or _first_document(out["resources"])
                out["readUri"] = uri
                if uri:
                    out["read"] = await step(lambda: _wired(session.read_resource(uri)))
    return out


async def _wired(coro: Awaitable[Any]) -> Any:
    return wire(await coro)


async def _call(session: ClientSession, name: str, arguments: dict[str, Any]) -> Any:
    return wire(await session.call_tool(name, arguments))


async def _image(session: ClientSession) -> Any:
    result = await session.call_tool("everything_get-tiny-image", {})
    dumped = wire(result)
    # The SDK parsed an ImageContent; check that its data really is a base64 PNG.
    images = [c for c in result.content if getattr(c, "type", None) == "image"]
    dumped["decodedImages"] = [
        {
            "mimeType": c.mime_type,
            "bytes": len(raw := base64.b64decode(c.data, validate=True)),
            "pngSignature": raw.startswith(PNG_SIGNATURE),
        }
        for c in images
    ]
    return dumped


def _first_document(resources: dict[str, Any]) -> str | None:
    for r in resources.get("result", {}).get("items", []):
        if r["uri"].startswith("demo://resource/static/document/"):
            return r["uri"]
    return None


if __name__ == "__main__":
    try:
        report = asyncio.run(main())
    except BaseException as e:  # noqa: BLE001 - reported as JSON for the Node test
        print(json.dumps({"fatal": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}))
        sys.exit(1)
    print(json.dumps(report))
