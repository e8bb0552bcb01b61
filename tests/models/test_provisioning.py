"""Provisioning as a whole: two processes (two pods on one volume) on the same model at the
same time, and a warm check that loads none of the cold path's heavy modules."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from entrypoint.models.catalog import load_catalog
from tests.helpers.cli import cli_env
from tests.helpers.httpserver import Server
from tests.helpers.models import read_provenance
from tests.models.conftest import provision, sha
from tests.models.fakehub import FakeHub

SCRIPT = """
import json, os, sys
from pathlib import Path
from entrypoint.models import ensure
from entrypoint.settings import Settings
settings = Settings(models_dir=Path(sys.argv[1]), lock_timeout=60)
got = ensure(sys.argv[2], sha256=sys.argv[3], settings=settings, environ=dict(os.environ), base_dir=Path.cwd())
print(json.dumps(got.to_dict()))
"""


def test_two_processes_download_once_and_both_succeed(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body = gguf_bytes(7)

    def slow(handler: BaseHTTPRequestHandler) -> bool:
        time.sleep(0.5)  # keep the first download in flight while the second process starts
        return False

    url = http_server.add("/m.gguf", body, handler=slow)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(models_dir), url, sha(body)],
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    outs = [json.loads(out) for out, _ in results]
    assert outs[0]["path"] == outs[1]["path"] and Path(outs[0]["path"]).read_bytes() == body
    assert len([r for r in http_server.requests_for("/m.gguf") if r.method == "GET"]) == 1
    assert sorted(o["hashed"] for o in outs) == [False, True]  # the second found it verified
    assert load_catalog(models_dir)[url]["state"] == "active"
    assert sorted(p["result"] for p in read_provenance(models_dir)) == ["cached", "downloaded"]


def test_two_processes_pull_the_same_hf_model(
    hub: FakeHub, tmp_path: Path, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    body = gguf_bytes(8)
    hub.add_repo("acme/Race", {"r.gguf": body})
    cdn = f"/cdn/{sha(body)}"
    original = hub.server.routes[cdn]

    def slow(handler: BaseHTTPRequestHandler) -> bool:
        time.sleep(0.5)
        return False

    original.handler = slow
    env = cli_env({"HF_ENDPOINT": hub.endpoint, "HF_HUB_CACHE": str(tmp_path / "hf")})
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SCRIPT, str(models_dir), "hf:acme/Race/r.gguf", sha(body)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], results
    assert hub.gets(cdn) == 1
    paths = {json.loads(out)["path"] for out, _ in results}
    assert len(paths) == 1 and Path(paths.pop()).read_bytes() == body


WARM = """
import json, sys
from pathlib import Path
from entrypoint.models import check, ensure
from entrypoint.settings import Settings
models_dir, url, digest = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
status = check(url, sha256=digest, models_dir=models_dir, base_dir=Path.cwd())
got = ensure(url, sha256=digest, settings=Settings(models_dir=models_dir), environ={}, base_dir=Path.cwd())
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("huggingface_hub", "urllib3", "gguf", "httpx")
               or m == "entrypoint.download")
print(json.dumps({"state": status.state, "outcome": got.outcome, "heavy": heavy}))
"""


def test_check_and_a_warm_ensure_import_nothing_heavy(
    http_server: Server, models_dir: Path, gguf_bytes: Callable[[int], bytes]
) -> None:
    """The warm boot path stays lean: no hub client, no download pipeline, no gguf package."""
    body = gguf_bytes(9)
    url = http_server.add("/warm.gguf", body)
    provision(models_dir, url, sha256=sha(body))
    done = subprocess.run(
        [sys.executable, "-c", WARM, str(models_dir), url, sha(body)],
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"state": "verified", "outcome": "cached", "heavy": []}
