"""benchmarks/gpu_check.py's helpers, on the CPU (the GPU run itself is manual).

The sync recorder is driven with warnings carrying torch's message, as
``torch.cuda.set_sync_debug_mode("warn")`` would raise them; the ``syncs`` step
runs end to end with ``--device cpu --quick`` (a couple of seconds).
"""

import importlib.util
import json
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def check():
    path = sys.path[:]
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = path  # it puts benchmarks/ and the root first
    return module


def fake_sync(check):
    warnings.warn(f"called a {check.SYNC_MESSAGE}", UserWarning, stacklevel=1)  # one "sync", here


def test_sync_recorder_counts_by_phase_and_site(check):
    rec = check.SyncRecorder(enabled=False)
    with warnings.catch_warnings(record=True) as log:
        warnings.simplefilter("always")
        with rec:
            fake_sync(check)  # setup + epoch 1
            rec.callback(None, 1, {})
            for _ in range(4):  # epoch 2: once per batch
                fake_sync(check)
            warnings.warn("something else", UserWarning, stacklevel=1)
            rec.callback(None, 2, {})
            fake_sync(check)  # after the last epoch
    # Other warnings go where they went before; syncs are only counted.
    assert [str(w.message) for w in log] == ["something else"]
    summary = rec.summary(n_epochs=2, n_batches=4)
    (site,) = summary["steady_sites"]
    assert site.startswith("tests/test_gpu_check.py:") and "fake_sync" in site
    assert summary["phases"] == {"setup + epoch 1": {site: 1}, "epoch 2": {site: 4},
                                 "end of fit": {site: 1}}
    assert summary["syncs_per_steady_epoch"] == 4 and summary["per_batch_sites"] == [site]
    assert rec.summary(n_epochs=2, n_batches=64)["per_batch_sites"] == []
    assert summary["total"] == 6


def test_sync_recorder_can_start_after_the_first_epoch(check):
    rec = check.SyncRecorder(enabled=False, active_from=1)
    with rec:
        rec.on_epoch(1)
        fake_sync(check)
        rec.on_epoch(2)
    summary = rec.summary(n_epochs=2, n_batches=10)
    assert summary["steady_epochs"] == 1 and summary["syncs_per_steady_epoch"] == 1


def test_call_site_is_the_innermost_frame_of_the_repository(check):
    site = check.call_site(traceback.extract_stack())
    assert site.startswith("tests/test_gpu_check.py:")
    assert "test_call_site_is_the_innermost_frame_of_the_repository" in site


def test_run_step_records_a_failure_and_the_next_step_still_runs(check, tmp_path):
    args = check.parse_args(["--device", "cpu", "--quick", "--json", str(tmp_path / "r.json")])
    report = check.Report(args.json, {"device": "cpu"})
    ctx = check.Context(args, report)

    def broken(ctx, out, save):
        out["rows"] = [{"config": "measured before the failure"}]
        save()
        raise RuntimeError("boom")

    def fine(ctx, out, save):
        out["runs"] = [{"device": "cpu", "wall_s": 1.5, "mean_fit_s": 0.1,
                        "best_score": 0.5, "best_params": {"lr": 0.001}}]

    check.run_step(ctx, "determinism", broken)
    check.run_step(ctx, "search", fine)
    doc = json.loads(Path(args.json).read_text())
    failed, ok = doc["steps"]["determinism"], doc["steps"]["search"]
    assert failed["status"] == "failed" and "RuntimeError: boom" in failed["error"]
    assert failed["rows"] == [{"config": "measured before the failure"}]
    assert ok["status"] == "ok" and ok["runs"][0]["wall_s"] == 1.5
    table = Path(args.json).with_suffix(".md").read_text()
    assert "| determinism | failed |" in table and "| cpu | 1.5 |" in table


def test_parse_junit(check, tmp_path):
    xml = tmp_path / "junit.xml"
    xml.write_text(
        '<testsuites><testsuite tests="3" failures="1" errors="0" skipped="1">'
        '<testcase classname="tests.test_cuda" name="test_a" time="0.5"/>'
        '<testcase classname="tests.test_cuda" name="test_b" time="0.1">'
        '<failure message="assert 1 == 2">trace</failure></testcase>'
        '<testcase classname="tests.test_cuda" name="test_c" time="0">'
        '<skipped message="needs a CUDA device"/></testcase>'
        '</testsuite></testsuites>')
    counts, cases = check.parse_junit(xml)
    assert counts == {"tests": 3, "failures": 1, "errors": 0, "skipped": 1, "passed": 1}
    assert [c["outcome"] for c in cases] == ["passed", "failed", "skipped"]
    assert cases[1]["message"] == "assert 1 == 2"


def test_cuda_test_files(check):
    assert "tests/test_cuda.py" in check.cuda_test_files()


def test_jsonable(check):
    out = check.jsonable({"a": np.float32(1.5), "b": (1, np.int64(2)), "c": np.arange(2),
                       "d": float("inf"), 3: Path("x")})
    assert out == {"a": 1.5, "b": [1, 2], "c": [0, 1], "d": "inf", "3": "x"}
    json.dumps(out)


def test_syncs_step_runs_end_to_end_on_cpu(check, tmp_path):
    path = tmp_path / "gpu_check.json"
    check.main(["--device", "cpu", "--quick", "--steps", "syncs", "--json", str(path)])
    step = json.loads(path.read_text())["steps"]["syncs"]
    assert step["status"] == "ok", step.get("traceback")
    assert len(step["configs"]) == 13
    assert not [c for c in step["configs"] if "error" in c]
    assert {r["input"] for r in step["partial_fit"]} == {"dense", "sparse"}
    assert "## Host synchronisations" in path.with_suffix(".md").read_text()
