"""Sweeps: configuration expansion, the results store, resume after failure or kill, the feature cache, Ray."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from neuroreg.brain import load_kriegeskorte92
from neuroreg.cli.main import main
from neuroreg.errors import ConfigError
from neuroreg.sweep import SweepStore, expand_jobs, load_sweep_config, run_sweep

TINY = {"layers": "areas", "batch_size": 32, "seed": 0, "image_size": 32}


def _config(models=("cornet_z",), brain=("kriegeskorte92",), scorers=("crsa",), **extra):
    return {"models": list(models), "brain": list(brain), "scorers": list(scorers), "options": dict(TINY), **extra}


def _responses_set(folder: Path, n: int = 60, drop_image: bool = False) -> Path:
    """A user response file (npz) with a folder of its stimulus images, in load_responses' format."""
    data = load_kriegeskorte92()
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    x = data.images_tensor(size=32)[:n]
    for i in range(n):
        if drop_image and i == n - 1:
            continue
        arr = (x[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(arr).save(images / f"stim{i:03d}.png")
    rng = np.random.default_rng(0)
    pixels = x.flatten(1).numpy()
    responses = pixels @ rng.normal(size=(pixels.shape[1], 30)) + rng.normal(size=(n, 30))
    path = folder / "responses.npz"
    np.savez(path, responses=responses, stimulus_ids=np.array([f"stim{i:03d}" for i in range(n)]))
    return path


def test_jobs_are_the_product_with_stable_keys():
    cfg = load_sweep_config(_config(models=["cornet_z", {"name": "cornet_z", "label": "z2", "kwargs": {"num_classes": 5}}],
                                    brain=["kriegeskorte92", "algonauts2019_78"]))
    jobs = expand_jobs(cfg)
    assert len(jobs) == 4 and len({j.key for j in jobs}) == 4
    again = expand_jobs(load_sweep_config(_config(
        models=[{"name": "cornet_z", "label": "z2", "kwargs": {"num_classes": 5}}, "cornet_z"],
        brain=["algonauts2019_78", "kriegeskorte92"])))
    assert {j.key for j in again} == {j.key for j in jobs}  # listing order does not change the keys
    changed = expand_jobs(load_sweep_config({**_config(), "options": {**TINY, "seed": 1}}))
    assert changed[0].key not in {j.key for j in jobs}


@pytest.mark.parametrize("bad, match", [
    ({"scorers": ["crsaa"]}, "unknown scorers"),
    ({"models": []}, "no models"),
    ({"models": ["cornet_z", "cornet_z"]}, "labels must be unique"),
    ({"models": [{"name": "cornet_z", "checkpoint": "missing.pth"}]}, "checkpoint not found"),
    ({"scorers": ["attacks"]}, "need task data"),
    ({"brain": ["nsd:/nonexistent/nsd"]}, "does not exist"),
    ({"brain": ["mri:/x"]}, "prefix"),
    ({"extra": 1}, "unknown sweep config keys"),
])
def test_bad_configs_are_refused_with_the_reason(bad, match):
    with pytest.raises(ConfigError, match=match):
        load_sweep_config({**_config(), **bad})


def test_failed_job_is_recorded_the_rest_runs_and_retry_runs_only_it(tmp_path):
    resp = _responses_set(tmp_path / "user", drop_image=True)  # one image missing: that data set fails
    user = {"responses": str(resp), "stimuli": str(resp.parent / "images"), "label": "user"}
    cfg = _config(brain=["kriegeskorte92", user])
    store = tmp_path / "store"
    jobs = expand_jobs(load_sweep_config(cfg))
    bundled, mine = (j.key for j in jobs)
    table = run_sweep(cfg, store, progress=False)
    st = SweepStore(store)
    assert st.status(bundled)["state"] == "done" and st.status(mine)["state"] == "failed"
    assert "stim059" in st.status(mine)["error"]
    assert "Traceback" in (st.job_dir(mine) / "log.txt").read_text()
    assert set(table.to_pandas()["job"]) == {bundled}
    # Without retry_failed a second run runs nothing; with it only the failed job, once the data is fixed.
    run_sweep(cfg, store, progress=False)
    assert st.status(bundled)["attempts"] == 1 and st.status(mine)["attempts"] == 1
    _responses_set(tmp_path / "user")
    table = run_sweep(cfg, store, retry_failed=True, progress=False)
    assert st.status(bundled)["attempts"] == 1 and st.status(bundled)["completions"] == 1
    assert st.status(mine)["state"] == "done" and st.status(mine)["attempts"] == 2
    assert set(table.to_pandas()["job"]) == {bundled, mine}


def test_second_scorer_on_the_same_model_reuses_the_cached_features(tmp_path):
    resp = _responses_set(tmp_path / "user")
    user = {"responses": str(resp), "stimuli": str(resp.parent / "images"), "label": "user"}
    store = tmp_path / "store"
    run_sweep(_config(brain=[user], scorers=["crsa"]), store, progress=False)
    files = list((store / "features").glob("*.h5"))
    assert len(files) == 1
    stamp = files[0].stat().st_mtime_ns
    table = run_sweep(_config(brain=[user], scorers=["crsa", "versa"]), store, progress=False)
    assert list((store / "features").glob("*.h5")) == files and files[0].stat().st_mtime_ns == stamp
    assert set(table.to_pandas()["scorer"]) == {"crsa", "versa"}


def test_status_command_counts_states(tmp_path, capsys):
    cfg_path = tmp_path / "sweep.yaml"
    import yaml
    cfg_path.write_text(yaml.safe_dump(_config()))
    assert main(["sweep", "--config", str(cfg_path), "--store", str(tmp_path / "s"), "--status"]) == 0
    assert "1 jobs: 0 done, 0 running, 0 failed, 1 to do" in capsys.readouterr().out
    assert main(["sweep", "--config", str(cfg_path), "--store", str(tmp_path / "s")]) == 0
    main(["sweep", "--config", str(cfg_path), "--store", str(tmp_path / "s"), "--status"])
    assert "1 jobs: 1 done" in capsys.readouterr().out
    rows = (tmp_path / "s" / "results.csv").read_text().splitlines()
    assert len(rows) > 1 and "crsa" in rows[1]
    card = SweepStore(tmp_path / "s").scorecard()
    assert card.models == ["cornet_z"] and len(card.sections["brain"]) == len(rows) - 1
    assert (tmp_path / "s" / "report" / "report.html").is_file()


ZOO = _config(models=["cornet_z", {"name": "cornet_z", "kwargs": {"num_classes": 10}, "label": "cornet_z_10"},
                      {"name": "resnet18", "label": "resnet18_init"}],
              brain=["kriegeskorte92", "algonauts2019_78"])


@pytest.mark.slow
def test_ray_sweep_killed_after_first_job_resumes_each_job_once_and_matches_local(tmp_path):
    pytest.importorskip("ray")
    import yaml
    cfg_path = tmp_path / "zoo.yaml"
    cfg_path.write_text(yaml.safe_dump(ZOO))
    store = tmp_path / "ray_store"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2])]
                                                        + os.environ.get("PYTHONPATH", "").split(os.pathsep))}
    proc = subprocess.Popen([sys.executable, "-m", "neuroreg.cli.main", "sweep", "--config", str(cfg_path), "--store",
                             str(store), "--backend", "ray", "--workers", "1"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    jobs = expand_jobs(load_sweep_config(ZOO))
    st = SweepStore(store)
    deadline = time.time() + 300
    while time.time() < deadline and st.counts([j.key for j in jobs])["done"] < 1 and proc.poll() is None:
        time.sleep(0.5)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_first = {j.key for j in jobs if st.status(j.key)["state"] == "done"}
    assert 1 <= len(done_first) < len(jobs)
    import ray
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        merged = run_sweep(cfg_path, store, backend="ray", progress=False)
    finally:
        ray.shutdown()
    for job in jobs:
        status = st.status(job.key)
        assert status["state"] == "done" and status["completions"] == 1, (job.key, status)
        if job.key in done_first:
            assert status["attempts"] == 1
    local = run_sweep(cfg_path, tmp_path / "local_store", progress=False)
    a = merged.to_pandas().drop(columns=["normalized"], errors="ignore")
    b = local.to_pandas().drop(columns=["normalized"], errors="ignore")
    cols = ["job", "layer", "rdm_set", "subject", "split", "region"]
    a = a.sort_values(cols, kind="stable").reset_index(drop=True)
    b = b.sort_values(cols, kind="stable").reset_index(drop=True)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(a["score"].to_numpy(float), b["score"].to_numpy(float), rtol=0, atol=1e-10)
    assert (a[cols].astype(str).to_numpy() == b[cols].astype(str).to_numpy()).all()


@pytest.mark.slow
def test_tune_runs_two_trials_of_the_tiny_training_config(tmp_path):
    pytest.importorskip("ray")
    root = Path(__file__).resolve().parents[2]
    assert main(["tune", "--config", str(root / "configs" / "tune_tiny.yaml"), "--store", str(tmp_path),
                 "--cpus", "2"]) == 0
    trials = sorted((tmp_path / "trials").iterdir())
    assert len(trials) == 2
    for t in trials:
        assert (t / "checkpoints" / "last.ckpt").is_file() and (t / "scorecard.json").is_file()
        rows = json.loads((t / "scorecard.json").read_text())
        assert any(r["metric"] == "crsa" for r in rows) and any(r["metric"] == "val/acc1" for r in rows)
    weights = {r["param:model.alignment.0.init_args.weight"] for t in trials
               for r in json.loads((t / "scorecard.json").read_text())}
    assert weights == {0.0, 1.0}


@pytest.mark.slow
def test_ray_gpu_jobs_get_a_fresh_worker_each_cpu_jobs_reuse_theirs():
    # a worker reused across GPU jobs would keep its first job's CUDA device and memory; Ray only
    # restarts it per call when the function is declared with max_calls=1 (a GPU resource is
    # declared here without a GPU: Ray schedules by the count alone)
    ray = pytest.importorskip("ray")
    from neuroreg.sweep.backends import ray_tasks

    def worker_pid(_: int) -> int:  # defined here: pickled by value, the workers cannot import tests
        return os.getpid()

    ray.init(num_cpus=1, num_gpus=1, include_dashboard=False, log_to_driver=False)
    try:
        cpu_task, gpu_task = ray_tasks(ray, worker_pid)
        cpu = [ray.get(cpu_task.options(num_cpus=1).remote(i)) for i in range(3)]
        gpu = [ray.get(gpu_task.options(num_cpus=1, num_gpus=1).remote(i)) for i in range(3)]
    finally:
        ray.shutdown()
    assert len(set(cpu)) == 1, cpu
    assert len(set(gpu)) == 3, gpu


def test_feature_keys_change_with_the_extraction_version(monkeypatch):
    """Stored features are not re-used once extract gives other features for the same call."""
    import neuroreg.sweep.cache as cache

    spec, data = {"name": "vone_cornet_s", "label": "a"}, {"name": "kriegeskorte92"}
    key = cache.feature_key(spec, data, layers=["V1"], seed=0)
    assert cache.feature_key({**spec, "label": "b"}, data, layers=["V1"], seed=0) == key
    monkeypatch.setattr(cache, "EXTRACT_VERSION", cache.EXTRACT_VERSION + 1)
    assert cache.feature_key(spec, data, layers=["V1"], seed=0) != key
