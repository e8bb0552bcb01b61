"""A plain ``autoinfer boot`` line runs without click, with the same output and exit codes as click's path."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from entrypoint.cli import parse_boot_line
from tests.helpers.cli import autoinfer_argv, cli_env


def test_plain_boot_lines_are_read_by_hand(tmp_path: Path) -> None:
    line = parse_boot_line(["--root", str(tmp_path), "--json", "-q", "-v", "boot", "--prepare-only", "--", "a", "--"])
    assert line is not None
    assert (line.root, line.json, line.quiet, line.verbose) == (str(tmp_path), True, True, 1)
    assert line.prepare_only and line.command == ("a", "--")
    bare = parse_boot_line(["boot"])
    assert bare is not None and not bare.prepare_only and bare.command == ()
    assert parse_boot_line([f"--root={tmp_path}", "boot"]) is not None


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["--version"],
        ["plan"],
        ["boot", "--help"],
        ["boot", "-h"],
        ["boot", "--bogus"],
        ["boot", "cmd"],  # click's business: a CMD without "--"
        ["-vv", "boot"],
        ["--root"],
        ["--root", "boot"],
        ["--root", "", "boot"],
        ["--root", "-x", "boot"],
    ],
)
def test_every_other_line_goes_to_click(args: list[str]) -> None:
    assert parse_boot_line(args) is None


def test_a_root_that_click_refuses_goes_to_click(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    assert parse_boot_line(["--root", str(tmp_path / "file"), "boot"]) is None


def _both_paths(args: list[str], env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], ...]:
    click_path = [sys.executable, "-c", "from entrypoint.cli.group import main; main(prog_name='autoinfer')", *args]
    return tuple(
        subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
        for argv in (autoinfer_argv(*args), click_path)
    )


def test_fast_boot_matches_click_and_imports_no_click(tmp_path: Path) -> None:
    env = cli_env({"AUTO_INFER_ROOT": str(tmp_path / "root"), "AUTO_INFER_STATE_DIR": str(tmp_path / "state")})
    fast, slow = _both_paths(["boot", "--prepare-only"], env)
    assert fast.returncode == slow.returncode == 0, fast.stderr + slow.stderr
    seconds = re.compile(r"prepared in \d+\.\d+s")
    assert seconds.sub("", fast.stdout) == seconds.sub("", slow.stdout)
    timed = subprocess.run(
        [sys.executable, "-X", "importtime", *autoinfer_argv("boot", "--prepare-only")[1:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert timed.returncode == 0
    assert not re.search(r"\|\s+click(\.|$)", timed.stderr, re.M)
    # msgspec without typing_extensions, so without the inspect it brings (import_msgspec_alone);
    # importtime still lists the refused import of typing_extensions itself
    assert re.search(r"\|\s+msgspec$", timed.stderr, re.M)
    assert not re.search(r"\|\s+inspect$", timed.stderr, re.M)


def test_msgspec_alone_leaves_typing_extensions_importable() -> None:
    """The boot line's msgspec import blocks typing_extensions only while msgspec imports."""
    code = (
        "import sys; from entrypoint import import_msgspec_alone as m; m(); "
        "assert 'msgspec' in sys.modules and 'typing_extensions' not in sys.modules; "
        "import typing_extensions; from msgspec.structs import replace; from entrypoint.settings import Settings; "
        "print(typing_extensions.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "typing_extensions"


def test_fast_boot_errors_match_click(tmp_path: Path) -> None:
    env = cli_env({"AUTO_INFER_ROOT": str(tmp_path / "root"), "AUTO_INFER_LLAMA_CPP_ON_BOOT": "maybe"})
    for args in (["boot", "--prepare-only"], ["--json", "boot", "--prepare-only"]):
        fast, slow = _both_paths(args, env)
        assert fast.returncode == slow.returncode == 78
        assert (fast.stdout, fast.stderr) == (slow.stdout, slow.stderr)


def test_fast_boot_ends_with_its_output_whole_and_its_status(tmp_path: Path) -> None:
    """The fast path skips the interpreter's teardown: what it printed must still all be there."""
    env = cli_env({"AUTO_INFER_ROOT": str(tmp_path / "root"), "AUTO_INFER_STATE_DIR": str(tmp_path / "state")})
    # stdout a file, not a tty: block-buffered, so a missing flush would lose the summary
    with (tmp_path / "out.json").open("w+") as out:
        done = subprocess.run(
            autoinfer_argv("--json", "boot", "--prepare-only"), env=env, stdout=out, stderr=subprocess.PIPE, timeout=120
        )
        out.seek(0)
        data = json.loads(out.read())
    assert done.returncode == 0, done.stderr
    assert data["success"] is True and data["data"]["servers"] == []
    bad = subprocess.run(
        autoinfer_argv("--json", "boot", "--prepare-only"),
        env={**env, "AUTO_INFER_LLAMA_CPP_ON_BOOT": "maybe"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 78 and json.loads(bad.stdout)["error_code"] == "E_CONFIG"


def test_fast_boot_with_no_reader_exits_1_without_a_traceback(tmp_path: Path) -> None:
    """stdout's reader has gone before anything was printed: exit 1 quietly, as click's path does."""
    env = cli_env({"AUTO_INFER_ROOT": str(tmp_path / "root"), "AUTO_INFER_STATE_DIR": str(tmp_path / "state")})
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(
            autoinfer_argv("boot", "--prepare-only"), env=env, stdout=write_end, stderr=subprocess.PIPE, timeout=120
        )
    finally:
        os.close(write_end)
    assert done.returncode == 1
    assert b"Traceback" not in done.stderr


def test_kept_imports_freezes_what_the_block_imported_and_turns_the_collector_back_on() -> None:
    """Run in a child: freezing is for the whole process."""
    code = (
        "import gc, sys\n"
        "from entrypoint import kept_imports\n"
        "before = gc.get_freeze_count()\n"
        "with kept_imports():\n"
        "    assert not gc.isenabled()\n"
        "    import email.parser\n"
        "assert gc.isenabled() and gc.get_freeze_count() > before + 1000\n"
        "try:\n"
        "    with kept_imports():\n"
        "        raise KeyError\n"
        "except KeyError:\n"
        "    assert gc.isenabled()\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=cli_env(), capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "ok"), done.stderr
