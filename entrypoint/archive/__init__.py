"""Safe extraction of package archives: tar (plain, gz, zst, xz, bz2) and zip.

The format is detected by content (magic bytes), never by name alone. Every member is
checked here before anything of it is written, because the interpreter's own guards
cannot be relied on: Python 3.11.7 predates the tarfile filter fixes of 3.11.13
(CVE-2025-4517, gh-135034), and ``zipfile`` silently rewrites ``..`` and absolute names
instead of refusing them. What is refused (:class:`ArchiveError`, exit 65):

- absolute names, ``..`` components, NUL bytes, backslash tricks after normalisation;
- symlinks whose target is absolute or leaves the tree, hard links to anything but a
  regular file extracted earlier from the same archive, and any member written
  *through* a symlink (a planted ``dir -> /etc`` followed by ``dir/passwd``);
- device files, FIFOs and unknown member types; setuid bits, setgid bits on files;
- more members or more bytes than :class:`Limits` allows (bombs);
- after extraction, a symlink that dangles or whose real path leaves the tree.

Steps of :func:`extract_archive`:

1. Open the archive once; the same file descriptor is hashed and read, so a file
   replaced on disk meanwhile cannot slip in (the digest covers exactly what was read).
   Optionally the bytes read are also copied to a new file (the installer's cache copy).
   Tar streams are decompressed on a helper thread, as ``tar -xzf`` runs gzip beside it.
2. Check each member, then create it with ``O_EXCL | O_NOFOLLOW`` inside a destination
   that must be a fresh, empty directory (a link planted by one archive can never be
   followed by the next).
3. Check every symlink of the result (inside the tree, not dangling).

With a :class:`fsutil.Syncer`, each file is handed over to be fsynced as soon as it is
complete, so the caller's wait before publishing covers only the last ones.

The caller owns the destination: on any error it removes the whole staging dir, so
nothing of a refused archive stays.

Modules: :mod:`.formats` (which format, how large unpacked), :mod:`.streams` (hashing,
decompression, read-ahead), :mod:`.members` (the per-member checks and writes),
:mod:`.extract` (one archive, end to end).
"""

from entrypoint.archive.extract import extract_archive
from entrypoint.archive.formats import FORMATS, detect_format, estimate_size
from entrypoint.archive.members import Extracted, Limits, check_tree

__all__ = [
    "FORMATS",
    "Extracted",
    "Limits",
    "check_tree",
    "detect_format",
    "estimate_size",
    "extract_archive",
]
