"""Exceptions raised by model-boss.

Every exception the library raises on purpose derives from :class:`ModelBossError`::

    ModelBossError
    ├── ConfigError                   a settings or manifest file is wrong (names file + key path)
    └── LeaseError                    anything about memory leases
        ├── InvalidLeaseRequest       (also ValueError) zero/negative size, bad priority, bad TTL
        ├── RequestTooLarge           the size exceeds every pool it could go to
        ├── UnknownDevice             (also LookupError) no GPU with that index, unknown pool
        ├── AcquireTimeout            (also TimeoutError) no grant within ``timeout``
        ├── LeaseLost                 the lease expired or was fenced; stop using the memory
        └── StoreUnavailable          (also ConnectionError) the ledger's store cannot be reached

Two more subtrees live beside the code that raises them: ``BackendError`` (a backend
process or upstream failed; ``model_boss.backends``) and ``ClientError`` (the SDK's view
of a coordinator answer; ``model_boss.client``).
"""

from __future__ import annotations

__all__ = [
    "AcquireTimeout",
    "ConfigError",
    "InvalidLeaseRequest",
    "LeaseError",
    "LeaseLost",
    "ModelBossError",
    "RequestTooLarge",
    "StoreUnavailable",
    "UnknownDevice",
]


class ModelBossError(Exception):
    """Base of every error model-boss raises on purpose."""


class ConfigError(ModelBossError):
    """A settings or manifest file is wrong; the message names the file and key path."""


class LeaseError(ModelBossError):
    """Base of the lease ledger's errors."""


class InvalidLeaseRequest(LeaseError, ValueError):
    """The request itself is malformed (size <= 0, unknown priority, TTL <= 0...)."""


class RequestTooLarge(LeaseError):
    """The requested size is larger than the capacity of every eligible pool."""


class UnknownDevice(LeaseError, LookupError):
    """The request names a GPU index or pool that does not exist."""


class AcquireTimeout(LeaseError, TimeoutError):
    """No pool could grant the request within the caller's timeout."""


class LeaseLost(LeaseError):
    """The lease expired, was released, or its holder self-fenced; the memory is not yours."""


class StoreUnavailable(LeaseError, ConnectionError):
    """The ledger's store (SQLite file, Redis server) cannot be reached or used."""
