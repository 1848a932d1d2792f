"""The AdminService handlers: authorise, call the registry, map refusals to gRPC statuses."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf.json_format import ParseDict

from semroute.admin.registry import AdminError, Entry, IndexRegistry
from semroute.v1 import admin_pb2 as apb
from semroute.v1 import admin_pb2_grpc

if TYPE_CHECKING:
    from semroute.admin.runtime import Admin

log = logging.getLogger("semroute.admin")

SERVICE_NAME = apb.DESCRIPTOR.services_by_name["AdminService"].full_name
T = TypeVar("T")


def index_info(reg: IndexRegistry, entry: Entry) -> apb.IndexInfo:
    info = reg.info(entry)
    info["state"] = apb.IndexState.Value(f"INDEX_STATE_{info['state']}")
    return apb.IndexInfo(**info)


def shadow_report(report: dict[str, Any] | None) -> apb.ShadowReport:
    return ParseDict(report or {}, apb.ShadowReport()) if report else apb.ShadowReport()


class AdminServicer(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, admin: Admin) -> None:
        self._admin = admin

    async def _call(
        self,
        context: grpc.aio.ServicerContext,
        write: bool,
        op: Callable[[IndexRegistry], Awaitable[T]],
        name: str,
    ) -> T:
        await self._admin.auth.check(context, write=write)
        reg = self._admin.registry
        if reg is None:
            await context.abort(
                grpc.StatusCode.UNAVAILABLE, "the server is still loading; retry when SERVING"
            )
            raise AssertionError("unreachable")
        try:
            return await op(reg)
        except AdminError as e:
            code, message = grpc.StatusCode[e.code], e.message
        if write:
            log.info("admin call refused", extra={"fields": {"rpc": name, "code": code.name}})
        await context.abort(code, message)
        raise AssertionError("unreachable: abort raises")

    async def LoadIndex(
        self, request: apb.LoadIndexRequest, context: grpc.aio.ServicerContext
    ) -> apb.LoadIndexResponse:
        async def op(reg: IndexRegistry) -> apb.LoadIndexResponse:
            if not request.path.strip():
                raise AdminError("INVALID_ARGUMENT", "path is required")
            entry, already = await reg.load(request.path, request.config_path or None)
            await _apply_mode(reg, entry.version, request.activate, request, "shadow_sample_rate")
            return apb.LoadIndexResponse(
                index=index_info(reg, entry),
                already_loaded=already,
                active_version=reg.active,
                shadow_version=reg.shadow_version,
            )

        return await self._call(context, True, op, "LoadIndex")

    async def ActivateIndex(
        self, request: apb.ActivateIndexRequest, context: grpc.aio.ServicerContext
    ) -> apb.ActivateIndexResponse:
        async def op(reg: IndexRegistry) -> apb.ActivateIndexResponse:
            if not request.version:
                raise AdminError("INVALID_ARGUMENT", "version is required")
            mode = request.mode or apb.ACTIVATION_MODE_ACTIVE
            swap_ms = await _apply_mode(reg, request.version, mode, request, "shadow_sample_rate")
            return apb.ActivateIndexResponse(
                active_version=reg.active,
                previous_version=reg.previous,
                shadow_version=reg.shadow_version,
                swap_ms=swap_ms,
            )

        return await self._call(context, True, op, "ActivateIndex")

    async def ListIndexes(
        self, request: apb.ListIndexesRequest, context: grpc.aio.ServicerContext
    ) -> apb.ListIndexesResponse:
        async def op(reg: IndexRegistry) -> apb.ListIndexesResponse:
            return apb.ListIndexesResponse(
                indexes=[index_info(reg, e) for e in reg.entries.values()]
            )

        return await self._call(context, False, op, "ListIndexes")

    async def Rollback(
        self, request: apb.RollbackRequest, context: grpc.aio.ServicerContext
    ) -> apb.RollbackResponse:
        async def op(reg: IndexRegistry) -> apb.RollbackResponse:
            active, was = await reg.rollback(request.to_version)
            return apb.RollbackResponse(active_version=active, rolled_back_from=was)

        return await self._call(context, True, op, "Rollback")

    async def GetStatus(
        self, request: apb.GetStatusRequest, context: grpc.aio.ServicerContext
    ) -> apb.GetStatusResponse:
        async def op(reg: IndexRegistry) -> apb.GetStatusResponse:
            return self._admin.status()

        return await self._call(context, False, op, "GetStatus")

    async def StopShadow(
        self, request: apb.StopShadowRequest, context: grpc.aio.ServicerContext
    ) -> apb.StopShadowResponse:
        async def op(reg: IndexRegistry) -> apb.StopShadowResponse:
            return apb.StopShadowResponse(report=shadow_report(reg.stop_shadow()))

        return await self._call(context, True, op, "StopShadow")

    async def UnloadIndex(
        self, request: apb.UnloadIndexRequest, context: grpc.aio.ServicerContext
    ) -> apb.UnloadIndexResponse:
        async def op(reg: IndexRegistry) -> apb.UnloadIndexResponse:
            return apb.UnloadIndexResponse(released=reg.unload(request.version))

        return await self._call(context, True, op, "UnloadIndex")


async def _apply_mode(
    reg: IndexRegistry, version: str, mode: int, request: Any, rate_field: str
) -> float:
    """Activate or shadow `version` as `mode` asks; returns the swap time in ms (0 if none)."""
    if mode == apb.ACTIVATION_MODE_ACTIVE:
        _, _, ms = await reg.activate(version)
        return ms
    if mode == apb.ACTIVATION_MODE_SHADOW:
        rate = getattr(request, rate_field) if request.HasField(rate_field) else None
        await reg.start_shadow(version, rate)
    return 0.0
