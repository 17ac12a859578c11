"""scripts/install.sh, run against a fake Python that only logs its pip calls (nothing is installed),
and the rule that the project names no package-registry host."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "install.sh"
# Split, so this file does not hold the strings it looks for.
HOSTS = ("download." + "pytorch.org", "pypi" + ".org")

# Logs each call's arguments as one line. `-c` code fails when it imports torch unless FAKE_TORCH=1
# (torch "installed"); `pip install --no-index` exits FAKE_NOINDEX_RC (0: a wheel in find-links).
FAKE_PYTHON = """#!/usr/bin/env bash
printf '%s\\n' "$*" >> "$FAKE_LOG"
if [ "$1" = "-c" ]; then
    case "$2" in *"import torch"*) [ "${FAKE_TORCH:-0}" = 1 ] && { echo 2.13.0+cpu; exit 0; }; exit 1;; esac
    exit 0
fi
if [ "$1 $2 $3" = "-m pip install" ] && [ "$4" = "--no-index" ]; then exit "${FAKE_NOINDEX_RC:-1}"; fi
exit 0
"""


def run_install(tmp_path, *args, gpu=False, env=None) -> tuple[list[str], str]:
    """Run install.sh with the fake Python and a fake nvidia-smi (finds a GPU only if `gpu`), so a real
    GPU or torch on this machine changes nothing. Returns (the logged calls, stdout)."""
    if shutil.which("bash") is None:
        pytest.skip("bash not found")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "fake-python"
    fake.write_text(FAKE_PYTHON)
    smi = bin_dir / "nvidia-smi"
    smi.write_text(f"#!/usr/bin/env bash\nexit {0 if gpu else 1}\n")
    for p in (fake, smi):
        p.chmod(0o755)
    log = tmp_path / "calls.log"
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("MMKGBENCH_TORCH")}
    full_env.update({"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHON": str(fake),
                     "FAKE_LOG": str(log), **(env or {})})
    proc = subprocess.run(["bash", str(SCRIPT), *args], env=full_env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return log.read_text().splitlines(), proc.stdout


def test_offline_wheel_in_find_links_is_used_first(tmp_path):
    calls, _ = run_install(tmp_path, env={"FAKE_NOINDEX_RC": "0", "MMKGBENCH_TORCH_INDEX": "http://mirror.test/cpu"})
    assert calls == ["-c import torch",
                     "-m pip install --no-index --no-deps torch==2.13.0",
                     "-m pip install torch==2.13.0",        # its dependencies
                     "-m pip install -e ."]


def test_torch_index_from_the_environment_when_no_wheel_is_at_hand(tmp_path):
    calls, out = run_install(tmp_path, env={"MMKGBENCH_TORCH_INDEX": "http://mirror.test/cpu",
                                            "MMKGBENCH_TORCH": "torch==2.9.1"})
    assert calls == ["-c import torch",
                     "-m pip install --no-index --no-deps torch==2.9.1",
                     "-m pip install --index-url http://mirror.test/cpu --no-deps torch==2.9.1",
                     "-m pip install torch==2.9.1",         # its dependencies, through pip's configuration
                     "-m pip install -e ."]
    assert "MMKGBENCH_TORCH_INDEX" in out


def test_pip_configuration_decides_otherwise_and_the_script_says_so(tmp_path):
    calls, out = run_install(tmp_path, "dev")
    assert calls == ["-c import torch",
                     "-m pip install --no-index --no-deps torch==2.13.0",
                     "-m pip install torch==2.13.0",
                     "-m pip install -e .[dev,text,text-minilm]"]
    assert "pip's own configuration" in out and "CUDA build" in out and "MMKGBENCH_TORCH_INDEX" in out


def test_gpu_and_installed_torch_branches(tmp_path):
    calls, _ = run_install(tmp_path / "gpu", gpu=True, env={"MMKGBENCH_TORCH_INDEX": "http://mirror.test/cpu"})
    assert calls == ["-c import torch", "-m pip install torch>=2.1", "-m pip install -e ."]
    calls, out = run_install(tmp_path / "kept", env={"FAKE_TORCH": "1"})
    assert [c for c in calls if "pip" in c] == ["-m pip install -e ."]
    assert "using the installed torch 2.13.0+cpu" in out


def _tracked_text_files():
    if shutil.which("git") is None:
        pytest.skip("git not found")
    proc = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, timeout=60)
    if proc.returncode != 0:
        pytest.skip(f"not a git checkout: {proc.stderr.decode(errors='replace').strip()}")
    for name in proc.stdout.decode().split("\0"):
        path = ROOT / name
        if not name or not path.is_file():       # deleted in the working tree, or a submodule
            continue
        data = path.read_bytes()
        if b"\0" in data[:8192]:                  # binary (figures, archives)
            continue
        yield name, data.decode("utf-8", errors="replace")


def test_no_tracked_file_names_a_package_registry_host():
    """Where packages come from is the user's or pip's configuration, never the project's."""
    found = [f"{name}: {host}" for name, text in _tracked_text_files() for host in HOSTS if host in text]
    assert not found, found
