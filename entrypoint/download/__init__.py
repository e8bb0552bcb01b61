"""Fetch bytes to a final path only after they verify: HTTP(S) with resume, or a local copy.

Nothing reaches the final path before its size and sha256 check out; a partial download is
kept beside it and resumed by the next run. Importing this package loads no HTTP stack:
urllib3 is imported by the first download.

Modules: :mod:`.stream` (:func:`fetch_url`: one stream with resume, handing a large body to
the ranged engine), :mod:`.ranged` (several connections at once), :mod:`.pieces` (how many
connections, which byte ranges), :mod:`.fetcher` (one connection's requests and retries),
:mod:`.journal` (the ranged part file and its journal), :mod:`.redirects` (signed
addresses behind redirects), :mod:`.verify` (check, then publish), :mod:`.progress`,
:mod:`.local` (:func:`copy_file`: a local source copied and verified).
"""

from entrypoint.download.local import copy_file, copy_times
from entrypoint.download.pieces import byte_count, content_range
from entrypoint.download.stream import fetch_url
from entrypoint.download.verify import Fetched

__all__ = ["Fetched", "byte_count", "content_range", "copy_file", "copy_times", "fetch_url"]
