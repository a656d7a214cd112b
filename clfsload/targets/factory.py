"""Open a target from the three command-line values: ACCOUNT, CONTAINER, credential."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Optional, Tuple, Union

from ..errors import TargetConfigError
from .base import AsyncBlobTarget, BlobTarget
from .credentials import Credential, CredentialKind
from .endpoint import AzureEndpoint, LocalFolder, check_container_name, parse_account

if TYPE_CHECKING:  # the Azure modules load only for an Azure target
    from .azure_common import AzureOptions

__all__ = ["open_target", "open_async_target", "as_credential", "CredentialLike"]

CredentialLike = Union[Credential, str, None]


def as_credential(value: CredentialLike) -> Credential:
    """A :class:`Credential` from what the API accepts: one already made, a string :meth:`Credential.parse` reads, or None."""
    if value is None:
        return Credential.none()
    if isinstance(value, Credential):
        return value
    return Credential.parse(value)


def _local_checks(account: str, credential: Credential) -> None:
    if credential.kind is not CredentialKind.NONE:
        raise TargetConfigError(
            f"target '{account}' is a local folder and takes no credential; pass '-' as the SAS token"
        )


def _resolve(account: str, container: str, credential: Credential):  # noqa: ANN202 - internal
    where: Union[AzureEndpoint, LocalFolder, None]
    if not account.strip() and credential.kind is CredentialKind.CONNECTION_STRING:
        where = None  # the connection string names the endpoint
    else:
        where = parse_account(account)
    if isinstance(where, LocalFolder):
        _local_checks(account, credential)
        return where
    check_container_name(container)
    from .azure_access import resolve_access

    return resolve_access(where, container, credential)


def _construct(account: str, container: str, credential: CredentialLike, create: bool,
               options: Optional[AzureOptions], aio: bool) -> Tuple[Any, bool]:
    """The target *account* names, unopened on the network, and whether its container must still be created.

    A local folder is created by its constructor; an Azure container by a
    ``create_container`` call the caller makes (and closes the target if it fails).
    """
    where = _resolve(account, container, as_credential(credential))
    if isinstance(where, LocalFolder):
        from . import local

        folder = local.AsyncLocalFolderTarget if aio else local.LocalFolderTarget
        return folder(where.path, container, create=create), False
    if aio:
        from .azure_aio import AsyncAzureBlobTarget

        return AsyncAzureBlobTarget(where, options), create
    from .azure import AzureBlobTarget

    return AzureBlobTarget(where, options), create


def _warn_durable(durable: Optional[bool]) -> None:
    """The ``durable`` argument is gone (always durable at sync): say so to a caller who still passes it."""
    if durable is not None:
        warnings.warn("open_target(durable=...) is ignored: a local folder target is always made durable at sync()",
                      DeprecationWarning, stacklevel=3)


def open_target(account: str, container: str, credential: CredentialLike, *, create: bool = False,
                options: Optional[AzureOptions] = None, durable: Optional[bool] = None) -> BlobTarget:
    """Open a blocking target.

    *account*: an account name, a blob endpoint URL or a ``file:`` URL (see
    :mod:`clfsload.targets.endpoint`); it may be empty with a connection string
    that names the endpoint. *credential*: a :class:`Credential`, or a string
    that :meth:`Credential.parse` understands (``-`` or None for ``file:``).
    *create*: create the container (folder) if it is missing; the loader
    passes it only for ``--new``. Writes are durable once :meth:`~.BlobTarget.sync`
    returns (a local folder fsyncs then).
    *options*: Azure tuning. *durable*: ignored, with a DeprecationWarning
    (a local folder is always durable at :meth:`~.BlobTarget.sync` now).
    Raises :class:`~clfsload.errors.TerminalError` subclasses for unusable
    values; does no network request.
    """
    _warn_durable(durable)
    target, must_create = _construct(account, container, credential, create, options, aio=False)
    if must_create:
        try:
            target.create_container()
        except BaseException:
            target.close()
            raise
    return target


async def open_async_target(account: str, container: str, credential: CredentialLike, *, create: bool = False,
                            options: Optional[AzureOptions] = None,
                            durable: Optional[bool] = None) -> AsyncBlobTarget:
    """Open an asyncio target; the arguments are those of :func:`open_target`.

    Call it from the event loop the target will be used on.
    """
    _warn_durable(durable)
    target, must_create = _construct(account, container, credential, create, options, aio=True)
    if must_create:
        try:
            await target.create_container()
        except BaseException:
            await target.close()
            raise
    return target
