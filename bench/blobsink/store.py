"""The sink's blobs: containers of named byte strings in memory, and the List Blobs page.

A blob is ``[data, etag, last_modified]``; ``data`` is the bytes as put (or
only their length when the sink runs with ``keep_data=False``, for runs
that never read back). Listing walks a sorted copy of the names, made again
only after the container changed, so a listing of a million names sorts
once, not once per page.
"""

from __future__ import annotations

import bisect
from typing import Dict, List, Optional, Tuple, Union
from xml.sax.saxutils import escape

__all__ = ["Blob", "Container", "MAX_PAGE"]

#: The service's largest page of List Blobs.
MAX_PAGE = 5000

#: ``[data or length, etag, last-modified text]``
Blob = List[object]


class Container:
    """One container: blobs by name, its own ETag and times."""

    __slots__ = ("name", "blobs", "etag", "created", "_sorted")

    def __init__(self, name: str, etag: str, created: str) -> None:
        self.name = name
        self.blobs: Dict[str, Blob] = {}
        self.etag = etag
        self.created = created
        self._sorted: Optional[List[str]] = None

    def put(self, name: str, data: Union[bytes, int], etag: str, modified: str) -> None:
        """Create or replace *name*."""
        if self._sorted is not None and name not in self.blobs:
            self._sorted = None
        self.blobs[name] = [data, etag, modified]

    def delete(self, name: str) -> bool:
        """Remove *name*; False if it was not there."""
        if self.blobs.pop(name, None) is None:
            return False
        self._sorted = None
        return True

    def list_page(self, endpoint: str, prefix: str, marker: str, size: int,
                  echo: Tuple[Optional[str], Optional[str], Optional[str]]) -> bytes:
        """The List Blobs XML of one page; ``echo`` is the Prefix, Marker, MaxResults as the request gave them."""
        if self._sorted is None:
            self._sorted = sorted(self.blobs)
        names = self._sorted
        i = bisect.bisect_left(names, max(marker, prefix))
        out = ['<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="%s" ContainerName="%s">'
               % (escape(endpoint), escape(self.name))]
        for tag, value in zip(("Prefix", "Marker", "MaxResults"), echo):
            if value is not None:
                out.append("<%s>%s</%s>" % (tag, escape(value), tag))
        out.append("<Blobs>")
        end = len(names)
        taken = 0
        while i < end and taken < size:
            name = names[i]
            if not name.startswith(prefix):
                end = i
                break
            data, etag, modified = self.blobs[name]
            length = data if isinstance(data, int) else len(data)
            out.append(
                "<Blob><Name>%s</Name><Properties><Creation-Time>%s</Creation-Time><Last-Modified>%s</Last-Modified>"
                "<Etag>%s</Etag><Content-Length>%d</Content-Length><Content-Type>application/octet-stream"
                "</Content-Type><BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier>"
                "<AccessTierInferred>true</AccessTierInferred><LeaseStatus>unlocked</LeaseStatus>"
                "<LeaseState>available</LeaseState><ServerEncrypted>true</ServerEncrypted></Properties></Blob>"
                % (escape(name), modified, modified, etag, length))
            i += 1
            taken += 1
        out.append("</Blobs>")
        if i < end and names[i].startswith(prefix):
            out.append("<NextMarker>%s</NextMarker>" % escape(names[i]))
        else:
            out.append("<NextMarker />")
        out.append("</EnumerationResults>")
        return "".join(out).encode("utf-8")
