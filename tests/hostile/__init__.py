"""Hostile inputs: every one must end in one clean error line and a sysexits code.

Layout:

- ``corpus/<area>/<what-it-tries>.<ext>``: small hostile files, committed. ``config/``
  holds TOML configs (read by ``entrypoint/config.py``), ``gguf/`` model headers (read
  by ``entrypoint/gguf_info.py``), ``swap/`` llama-swap YAML, ``state/`` JSON files that
  autoinfer writes itself and reads back. ``make_corpus.py`` writes ``config/`` and
  ``gguf/``; edit it to add a case.
- Big or special inputs (a 20,000-part key, a 2 MiB file, FIFOs, ``/dev/zero``
  symlinks, directories named like files) are made by the tests at run time.
- Each file is fed to the command that reads it in a child process (``python -m
  entrypoint ...``) under a memory limit (RLIMIT_AS) and a wall limit; the tests assert a
  sysexits exit code (64-78, never 1), no traceback, a short stderr and an unchanged
  root and state folder. ``test_fuzz.py`` adds seeded property-based fuzzing in process.
- Cases whose fix belongs to another area are marked ``xfail(strict=True)`` with that
  area in the reason: the suite stays green and says what remains.
"""
