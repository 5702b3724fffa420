"""The project installs as a wheel that carries its configs, and finds them from either place."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_is_listed_in_pyproject():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {
        ".".join(p.parent.relative_to(ROOT).parts)
        for top in ("lasr", "preprocess")
        for p in (ROOT / top).rglob("__init__.py")
    }
    assert found | {"lasr.conf"} == listed


def test_conf_dir_is_the_checkouts_when_run_from_it():
    from lasr.config import conf_dir

    assert conf_dir() == ROOT / "conf"


@pytest.mark.skipif(shutil.which("uv") is None, reason="uv not on PATH")
def test_installed_wheel_finds_its_configs(tmp_path):
    subprocess.run(["uv", "build", "--wheel", "-o", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True)
    (wheel,) = (tmp_path / "dist").glob("lasr-*.whl")
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as z:
        z.extractall(site)
    assert (site / "lasr/conf/config.yaml").is_file()
    assert (site / "lasr/conf/preprocess/flow/raft.yaml").is_file()
    code = (
        "from hydra import compose, initialize_config_dir\n"
        "from lasr.config import conf_dir\n"
        "with initialize_config_dir(str(conf_dir()), version_base='1.3'):\n"
        "    c = compose('preprocess_app', overrides=['preprocess/flow=raft'])\n"
        "print(conf_dir()); print(c.preprocess.flow.value)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    assert out == [str(site / "lasr" / "conf"), "raft"]
