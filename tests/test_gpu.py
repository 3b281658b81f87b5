"""GPU lanes: run on the CPU here (torch pinned to its CPU build in CI); what
needs CUDA is skipped unless a CUDA device is present."""

import logging

import pytest

from hueyq.runtime.gpu import GpuLane

from conftest import missing


def _torch():
    try:
        import torch
    except ImportError:
        missing("torch is not installed (CI installs torch==2.13.0, CPU)")
    return torch


def test_without_cuda_the_lane_runs_on_the_cpu_and_says_so(caplog):
    torch = _torch()
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present; see the CUDA test")
    lane = GpuLane(0.5, threads=1)
    with caplog.at_level(logging.INFO, logger="hueyq.gpu"):
        assert lane.start() == "cpu"
    assert torch.get_num_threads() == 1
    assert "no CUDA device; tasks run on the CPU" in caplog.text
    assert not lane.cuda and lane.after_task() is None


def test_with_cuda_the_fraction_is_set_and_memory_reported():
    torch = _torch()
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    lane = GpuLane(0.25)
    assert lane.start().startswith("cuda:")
    block = torch.empty(64 << 20, dtype=torch.uint8, device="cuda")
    stats = lane.after_task()
    assert stats["peak"] >= 64 << 20 and stats["allocated"] >= 64 << 20
    del block
    after = lane.after_task()
    assert after["reserved"] <= stats["reserved"]
    total = torch.cuda.get_device_properties(0).total_memory
    with pytest.raises(torch.cuda.OutOfMemoryError):
        torch.empty(int(total * 0.3), dtype=torch.uint8, device="cuda")


def test_without_torch_the_lane_still_runs(monkeypatch, caplog):
    import builtins
    real_import = builtins.__import__

    def no_torch(name, *args, **kwargs):
        if name == "torch":
            raise ImportError("No module named 'torch'")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_torch)
    with caplog.at_level(logging.WARNING, logger="hueyq.gpu"):
        assert GpuLane().start() == "cpu"
    assert "torch is not installed" in caplog.text


@pytest.mark.slow
def test_a_gpu_queue_process_worker_runs_tasks(app, profile_path, runtime, tmp_path):
    handle = app.tasks.gpu_steps(3, 0.01)
    rt = runtime(profile_path)
    rt.wait_ready()
    assert handle(blocking=True, timeout=30) == 3
    assert app.job(handle.id).progress == 100.0
    log = rt.log()
    assert "gpu lane:" in log
    assert rt.terminate() == 0
