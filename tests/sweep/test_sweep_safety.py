"""Sweeps refuse a bad configuration before any job, share a store safely, and survive a killed holder."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from neuroreg.cli.main import main
from neuroreg.sweep import SweepStore, expand_jobs, load_sweep_config, run_sweep

TINY = {"layers": "areas", "batch_size": 32, "seed": 0, "image_size": 32}


def _config(models=("cornet_z",), brain=("kriegeskorte92",), **options):
    return {"models": list(models), "brain": list(brain), "scorers": ["crsa"], "options": {**TINY, **options}}


def _write(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize("cfg, status, words", [
    (_config(models=["cornet_zz"]), 2, ["model 'cornet_zz'", "unknown model"]),
    (_config(models=[{"name": "cornet_z", "kwargs": {"bogus_width": 3}}]), 2, ["model 'cornet_z'", "bogus_width"]),
    (_config(brain=["kriegeskorte93"]), 2, ["brain set 'kriegeskorte93'", "kriegeskorte92"]),
    (_config(layers="V9"), 2, ["options.layers='V9'", "'V9'"]),
    (_config(layers=["V1", "V9"]), 2, ["options.layers=", "'V9'"]),
    (_config(image_size=-5), 2, ["options.image_size", "-5"]),
    (_config(batch_size=0), 2, ["options.batch_size", "0"]),
    (_config(layerz="areas"), 2, ["unknown sweep options ['layerz']", "did you mean 'layers'"]),
    pytest.param(_config(device="cuda"), 3, ["options.device 'cuda'", "CUDA is not available"],
                 marks=pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")),
], ids=["model", "kwargs", "brain", "layer", "layer_in_list", "image_size", "batch_size", "option_key", "device"])
def test_bad_sweep_is_refused_before_any_job(tmp_path, capsys, cfg, status, words):
    store = tmp_path / "store"
    code = main(["sweep", "--config", str(_write(tmp_path / "s.yaml", cfg)), "--store", str(store)])
    line = _error_line(capsys)
    assert code == status, line
    assert line.startswith("neuroreg sweep: error: "), line
    for word in words:
        assert word in line, (word, line)
    assert not (store / "jobs").exists()     # refused before any job was registered or run


def test_address_without_the_ray_backend_is_refused(tmp_path, capsys):
    code = main(["sweep", "--config", str(_write(tmp_path / "s.yaml", _config())), "--store", str(tmp_path / "st"),
                 "--address", "auto"])
    line = _error_line(capsys)
    assert code == 2 and "--address auto joins a Ray cluster: add --backend ray" in line
    with pytest.raises(ValueError, match="address='auto' joins a Ray cluster and needs backend='ray'"):
        run_sweep(_config(), tmp_path / "st", address="auto")
    assert not (tmp_path / "st").exists()


def test_store_that_is_a_file_is_an_output_error(tmp_path, capsys):
    store = tmp_path / "store"
    store.write_text("not a folder")
    cfg = _write(tmp_path / "s.yaml", _config())
    for extra in ([], ["--status"]):
        code = main(["sweep", "--config", str(cfg), "--store", str(store), *extra])
        line = _error_line(capsys)
        assert code == 5 and f"--store='{store}' is an existing file; give a folder" in line, line


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _hold(store: SweepStore, key: str, pid: int) -> None:
    """Leave the job as a sweep process ``pid`` on this host leaves it while running it (status and lock)."""
    record = {"pid": pid, "host": socket.gethostname(), "started": "2026-01-01T00:00:00", "purpose": "sweep job"}
    (store.job_dir(key) / ".lock").write_text(json.dumps(record))
    (store.job_dir(key) / "status.json").write_text(json.dumps(
        {"state": "running", "attempts": 1, "completions": 0, "host": socket.gethostname(), "pid": pid}))


def _registered(tmp_path, cfg) -> tuple[SweepStore, list[str]]:
    store = SweepStore(tmp_path / "store")
    jobs = expand_jobs(load_sweep_config(cfg))
    for job in jobs:
        store.register(job)
    return store, [j.key for j in jobs]


def test_second_sweep_leaves_the_jobs_a_live_sweep_holds(tmp_path, capsys):
    cfg = _config(brain=["kriegeskorte92", "algonauts2019_78"])
    cfg_path = _write(tmp_path / "s.yaml", cfg)
    store, (held, free) = _registered(tmp_path, cfg)
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        _hold(store, held, holder.pid)
        code = main(["sweep", "--config", str(cfg_path), "--store", str(store.root)])
        err = capsys.readouterr().err
        assert code == 6, err
        assert f"1 jobs are being run by another sweep (process {holder.pid} on host" in err
        assert "failed" not in err
        assert store.status(free)["state"] == "done"
        status = store.status(held)
        assert status["state"] == "running" and status["attempts"] == 1 and status["pid"] == holder.pid
        assert not (store.job_dir(held) / "result.json").exists()
        main(["sweep", "--config", str(cfg_path), "--store", str(store.root), "--status"])
        assert "2 jobs: 1 done, 1 running, 0 failed, 0 to do" in capsys.readouterr().out
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone: the job reads as to do, and the next sweep takes its lock over and runs it.
    main(["sweep", "--config", str(cfg_path), "--store", str(store.root), "--status"])
    assert "2 jobs: 1 done, 0 running, 0 failed, 1 to do" in capsys.readouterr().out
    assert main(["sweep", "--config", str(cfg_path), "--store", str(store.root)]) == 0
    assert store.status(held)["state"] == "done" and store.status(held)["attempts"] == 2
    assert store.status(free)["attempts"] == 1
    assert not (store.job_dir(held) / ".lock").exists()


def test_job_of_a_killed_sweep_is_not_running_forever_and_is_retried(tmp_path, capsys):
    cfg = _config()
    store, (key,) = _registered(tmp_path, cfg)
    _hold(store, key, _dead_pid())
    status = store.status(key)
    assert status["state"] == "todo" and status["interrupted"] is True
    cfg_path = _write(tmp_path / "s.yaml", cfg)
    main(["sweep", "--config", str(cfg_path), "--store", str(store.root), "--status"])
    assert "1 jobs: 0 done, 0 running, 0 failed, 1 to do" in capsys.readouterr().out
    table = run_sweep(cfg, store.root, progress=False)
    assert store.status(key)["state"] == "done" and store.status(key)["attempts"] == 2 and len(table)


def test_job_held_on_another_host_runs_again_once_its_lock_is_removed(tmp_path):
    from neuroreg.sweep.jobs import execute

    store, (key,) = _registered(tmp_path, _config())
    record = {"pid": 1, "host": "another-host.example", "started": "", "purpose": "sweep job"}
    (store.job_dir(key) / ".lock").write_text(json.dumps(record))
    (store.job_dir(key) / "status.json").write_text(json.dumps({**record, "state": "running", "attempts": 1}))
    assert store.status(key)["state"] == "running"       # its process cannot be checked from here
    spec = json.loads((store.job_dir(key) / "spec.json").read_text())
    assert execute(spec, str(store.root)) == (key, "busy", 0.0)
    (store.job_dir(key) / ".lock").unlink()                # removed by hand: that process is gone
    assert store.status(key)["state"] == "todo" and store.status(key)["interrupted"] is True


def test_a_job_finished_by_another_sweep_meanwhile_is_not_run_again(tmp_path):
    from neuroreg.sweep.jobs import execute

    cfg = _config()
    store, (key,) = _registered(tmp_path, cfg)
    spec = json.loads((store.job_dir(key) / "spec.json").read_text())
    assert execute(spec, str(store.root))[1] == "done"
    assert execute(spec, str(store.root)) == (key, "skipped", 0.0)   # it looked to do when this sweep started
    assert store.status(key)["attempts"] == 1


def test_a_job_waits_for_features_another_process_is_writing_and_reads_them(tmp_path):
    import threading

    from torch import nn

    from neuroreg.features.extraction import extract
    from neuroreg.sweep.cache import cached_extract

    class Counting(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.calls = nn.Conv2d(3, 2, 3), 0

        def forward(self, x):
            self.calls += 1
            return self.conv(x)

    x = torch.rand(4, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    folder = tmp_path / "features"
    folder.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    record = {"pid": holder.pid, "host": socket.gethostname(), "started": "", "purpose": "neuroreg extract"}
    (folder / "k.h5.lock").write_text(json.dumps(record))   # another sweep's job is writing k.h5

    def other_writer_finishes():
        extract(Counting(), x, ["conv"], out=tmp_path / "k.h5", stimulus_ids=list("abcd"))
        (tmp_path / "k.h5").replace(folder / "k.h5")
        (folder / "k.h5.lock").unlink()

    finisher = threading.Timer(2.0, other_writer_finishes)
    finisher.start()
    try:
        model = Counting()
        feats, hit = cached_extract(folder, "k", model, x, ["conv"], stimulus_ids=list("abcd"), poll_seconds=0.1)
    finally:
        finisher.join()
        holder.kill()
        holder.wait()
    assert hit and model.calls == 0 and feats["conv"].shape == (4, 2, 6, 6)


def _sweep_process(cfg_path: Path, store: Path, **popen) -> subprocess.Popen:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root)] + [p for p in os.environ.get("PYTHONPATH", "")
                                                                       .split(os.pathsep) if p])}
    return subprocess.Popen([sys.executable, "-m", "neuroreg.cli.main", "sweep", "--config", str(cfg_path), "--store",
                             str(store)], env=env, cwd=root, text=True, **popen)


@pytest.mark.slow
def test_two_sweeps_at_once_run_each_job_once(tmp_path):
    cfg = _config(models=["cornet_z", {"name": "cornet_z", "kwargs": {"num_classes": 7}, "label": "z7"}],
                  brain=["kriegeskorte92", "algonauts2019_78"])
    cfg_path = _write(tmp_path / "s.yaml", cfg)
    store = tmp_path / "store"
    procs = [_sweep_process(cfg_path, store, stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    codes = sorted(p.returncode for p in procs)
    errs = "\n".join(err for _, err in outs)
    assert set(codes) <= {0, 6} and 0 in codes, (codes, errs[-3000:])
    assert "failed" not in errs.replace("0 failed", "")
    st = SweepStore(store)
    for key in (j.key for j in expand_jobs(load_sweep_config(cfg))):
        status = st.status(key)
        assert status["state"] == "done" and status["attempts"] == 1 and status["completions"] == 1, (key, status)
        assert not (st.job_dir(key) / ".lock").exists()


@pytest.mark.slow
def test_sigkilled_sweep_job_reads_as_to_do_and_runs_again(tmp_path, capsys):
    import signal
    import time

    cfg = _config(brain=["kriegeskorte92", "algonauts2019_78"])
    cfg_path = _write(tmp_path / "s.yaml", cfg)
    store = SweepStore(tmp_path / "store")
    keys = [j.key for j in expand_jobs(load_sweep_config(cfg))]
    proc = _sweep_process(cfg_path, store.root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None and not any(
            (store.job_dir(k) / ".lock").exists() for k in keys):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = [k for k in keys if (store.job_dir(k) / ".lock").exists()]
    assert len(killed) == 1, "the sweep was not killed while a job ran"
    main(["sweep", "--config", str(cfg_path), "--store", str(store.root), "--status"])
    out = capsys.readouterr().out
    assert "0 running" in out, out
    assert store.status(killed[0])["state"] == "todo"
    assert main(["sweep", "--config", str(cfg_path), "--store", str(store.root)]) == 0
    for key in keys:
        assert store.status(key)["state"] == "done" and store.status(key)["completions"] == 1
    assert not any((store.job_dir(k) / ".lock").exists() for k in keys)
