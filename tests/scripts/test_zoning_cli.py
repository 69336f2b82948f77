"""The GIS staff's command-line tool works on the same store as the service, with progress and exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import geopandas as gpd
import pyogrio
import pytest

ROOT = Path(__file__).resolve().parents[2]
GPKG = ROOT / "geodata" / "manzhouli.gpkg"


def run(env, *args, check=True):
    proc = subprocess.run([sys.executable, "-m", "scripts.zoning", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    return {**os.environ, "MZL_VERSIONS_DIR": str(root / "store"), "MZL_STORE_PATH": str(root / "a.sqlite3"),
            "PYTHONPATH": str(ROOT)}


def test_the_cli_round_trip(env, tmp_path):
    listing = run(env, "versions")
    assert "* v1" in listing.stdout and "published" in listing.stdout

    units = pyogrio.read_dataframe(GPKG, layer="control_units")
    units.loc[units.HJZHGKDYBM == "ZH15078120004", "HJZHGKDYMC"] = "满洲里市工业园区重点管控单元（扩区）"
    good = tmp_path / "units.gpkg"
    pyogrio.write_dataframe(units, good, layer="control_units")

    checked = run(env, "validate", str(good), "--layer", "control_units")
    assert "共 0 个错误" in checked.stdout
    assert "读取 units.gpkg" in checked.stderr and "[" in checked.stderr  # progress lines with elapsed time

    broken = units.to_crs(4548)
    row = broken.index[broken.HJZHGKDYBM == "ZH15078120004"][0]
    broken.loc[row, "geometry"] = broken.geometry[row].buffer(250)
    bad = tmp_path / "bad.gpkg"
    pyogrio.write_dataframe(gpd.GeoDataFrame(broken).to_crs(4490), bad, layer="control_units")
    issues = tmp_path / "issues.gpkg"
    refused = run(env, "validate", str(bad), "--layer", "control_units", "--report", str(issues), check=False)
    assert refused.returncode == 1 and "unit_overlap" in refused.stdout
    assert len(pyogrio.read_dataframe(issues, layer="validation_issues")) >= 1

    uploaded = run(env, "upload", str(good), "--layer", "control_units", "--note", "扩区")
    assert "草稿版本 v2 已创建" in uploaded.stdout
    published = run(env, "publish", "v2", "--acknowledge-warnings")
    assert "v1 → v2" in published.stdout
    assert "* v2" in run(env, "versions").stdout

    out = tmp_path / "v2.gpkg"
    run(env, "export", "v2", str(out))
    exported = pyogrio.read_dataframe(out, layer="control_units").set_index("HJZHGKDYBM")
    assert exported.HJZHGKDYMC["ZH15078120004"].endswith("（扩区）")

    diff = run(env, "diff", "v1", "v2")
    assert "ZH15078120004" in diff.stdout and "（扩区）" in diff.stdout

    assert "v2 → v1" in run(env, "rollback", "v1").stdout
    key = run(env, "keys", "create", "--name", "李四", "--role", "editor")
    assert "mzl_" in key.stdout and "只显示这一次" in key.stdout
    audit = run(env, "audit").stdout.splitlines()
    actions = [line.split()[2] if len(line.split()) > 2 else "" for line in audit]
    assert any("key_create" in line for line in audit)
    assert any(" rollback " in line for line in audit) and any(" publish " in line for line in audit)
    assert all("命令行" in line or "system" in line for line in audit if " publish " in line or " rollback " in line)
    assert actions


def test_cli_errors_are_chinese_and_exit_2(env, tmp_path):
    garbage = tmp_path / "junk.bin"
    garbage.write_bytes(b"\x00\x01 not a boundary file")
    proc = run(env, "validate", str(garbage), check=False)
    assert proc.returncode == 2 and "失败：" in proc.stderr
    assert "Traceback" not in proc.stderr
