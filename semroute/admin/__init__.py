"""Hot-swapping index bundles on a running server: registry, shadow, watcher, AdminService.

See README.md, "Operating: hot-swapping indexes", for the operator workflow
(build → shadow → promote → rollback).
"""

from semroute.admin.bundles import build_bundle, pack_archive, register_loader
from semroute.admin.registry import AdminError, IndexRegistry
from semroute.admin.runtime import Admin
from semroute.admin.shadow import ShadowEvaluator

__all__ = [
    "Admin",
    "AdminError",
    "IndexRegistry",
    "ShadowEvaluator",
    "build_bundle",
    "pack_archive",
    "register_loader",
]
