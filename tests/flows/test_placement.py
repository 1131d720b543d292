"""Work-pool placement (flows/placement.py, flows/deploy.py's placed deployments, flows/placed_flow.py): nodes are
routed to work pools by their `resources:`, the DAG becomes ordered single-pool stages, and the deployments carry
the cluster's scheduler. The deployments are created on a real (temporary) Prefect server; the flow runs of the
pools' workers cannot run here (no second host, no GPU pool), so the coordinator is tested with a recording
launcher in place of `run_deployment`."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from _pipeline_util import load, write_corpus, write_pipeline
from prefect.client.orchestration import get_client

from flows.deploy import deploy_placed, placed_plan
from flows.placed_flow import StageFailedError, run_stages
from flows.placement import ClusterSpecError, load_cluster, main, placement_stages, pool_of, worker_commands
from tests._prefect_home import shared_prefect_harness  # Prefect's harness, one server for the group

REPO = Path(__file__).resolve().parents[2]
CLUSTER = {
    "scheduler": "tcp://sched.example:8786",
    "pools": {"cpu": {"name": "t-cpu"}, "gpu": {"name": "t-gpu"}, "big": {"name": "t-bigmem"}},
    "routes": [{"pool": "gpu", "min_gpus": 1}, {"pool": "big", "min_memory_gb": 64}, {"pool": "cpu"}],
    "workers": [
        {"name": "c", "hosts": ["h1", "h2"], "nworkers": 4, "resources": {"MEMORY_GB": 8}},
        {"name": "g", "hosts": ["g1"], "nthreads": 2, "resources": {"GPU": 1}},
    ],
}


def _pipeline(tmp_path: Path) -> Path:
    """raw -> clean -> embed (1 GPU) -> after; clean -> side; clean -> huge (96 GB) -> late (after + huge)."""
    write_corpus(tmp_path, n_files=2)
    return write_pipeline(
        tmp_path,
        {
            "raw": {"uses": "files", "params": {"paths": ["data"]}},
            "clean": {"uses": "filter", "inputs": ["raw"], "params": {"expr": "length(text) > 1"}},
            "side": {"uses": "filter", "inputs": ["clean"], "params": {"expr": "length(text) > 2"}},
            "embed": {
                "uses": "filter",
                "inputs": ["clean"],
                "params": {"expr": "length(text) > 3"},
                "resources": {"gpus": 1},
            },
            "after": {"uses": "filter", "inputs": ["embed"], "params": {"expr": "length(text) > 4"}},
            "huge": {
                "uses": "filter",
                "inputs": ["clean"],
                "params": {"expr": "length(text) > 5"},
                "resources": {"memory_gb": 96},
            },
            "late": {"uses": "union", "inputs": ["after", "huge"]},
        },
        name="Placed.Pipe",
    )


def _cluster(tmp_path: Path, spec: dict | None = None) -> Path:
    path = tmp_path / "cluster.yaml"
    path.write_text(yaml.safe_dump(spec or CLUSTER))
    return path


def _line(path: Path, text: str) -> int:
    """The 1-based number of the first line of ``path`` that contains ``text``."""
    return next(i for i, line in enumerate(path.read_text().splitlines(), 1) if text in line)


def test_nodes_route_by_resources_into_ordered_stages(tmp_path: Path) -> None:
    pipeline = load(_pipeline(tmp_path))
    cluster = load_cluster(_cluster(tmp_path))
    assert {n: pool_of(pipeline, n, cluster) for n in pipeline.order} == {
        "raw": "cpu",
        "clean": "cpu",
        "side": "cpu",
        "embed": "gpu",
        "after": "cpu",
        "huge": "big",
        "late": "cpu",
    }
    stages = placement_stages(pipeline, cluster)
    assert [(s.work_pool, set(s.nodes)) for s in stages] == [
        ("t-cpu", {"raw", "clean", "side"}),
        ("t-gpu", {"embed"}),
        ("t-cpu", {"after"}),
        ("t-bigmem", {"huge"}),
        ("t-cpu", {"late"}),
    ]
    # every node once, each after all of its inputs
    seen: list[str] = []
    for s in stages:
        for n in s.nodes:
            assert all(d in seen or d in s.nodes for d in pipeline.deps[n]), n
        seen += s.nodes
    assert sorted(seen) == sorted(pipeline.order)


def test_placed_deployments_are_on_their_pools_with_the_scheduler(tmp_path: Path) -> None:
    pipeline = load(_pipeline(tmp_path))
    cluster = load_cluster(_cluster(tmp_path))
    plan = {p.name: p for p in placed_plan(pipeline, cluster)}
    assert {n: (p.flow, p.work_pool) for n, p in plan.items()} == {
        "placed-pipe-cpu": ("arcflow", "t-cpu"),
        "placed-pipe-gpu": ("arcflow", "t-gpu"),
        "placed-pipe-big": ("arcflow", "t-bigmem"),
        "placed-pipe-placed": ("arcflow-placed", "t-cpu"),
    }
    stages = plan["placed-pipe-placed"].parameters["stages"]
    assert [(s["deployment"], s["pool"]) for s in stages][:2] == [
        ("placed-pipe-cpu", "cpu"),
        ("placed-pipe-gpu", "gpu"),
    ]
    assert stages[1]["nodes"] == ["embed"]
    # a loaded shared machine starts it slowly
    with shared_prefect_harness(server_startup_timeout=180, group="deployments"):
        deployed = deploy_placed(pipeline, cluster, create_pool=True)
        assert {d.name for d in deployed} == {
            "arcflow/placed-pipe-cpu",
            "arcflow/placed-pipe-gpu",
            "arcflow/placed-pipe-big",
            "arcflow-placed/placed-pipe-placed",
        }
        with get_client(sync_client=True) as client:
            gpu = client.read_deployment_by_name("arcflow/placed-pipe-gpu")
            placed = client.read_deployment_by_name("arcflow-placed/placed-pipe-placed")
            pools = {p.name: p.type for p in client.read_work_pools()}
    assert gpu.work_pool_name == "t-gpu"
    assert placed.work_pool_name == "t-cpu"
    assert gpu.parameters["overrides"] == ["executor.address=tcp://sched.example:8786"]
    assert gpu.parameters["pipeline"] == str(tmp_path / "pipeline.yaml")
    assert placed.parameters["stages"] == stages
    assert placed.entrypoint == "flows.placed_flow.arcflow_placed"
    assert {pools[n] for n in ("t-cpu", "t-gpu", "t-bigmem")} == {"process"}


def test_coordinator_runs_stages_in_order_and_stops_at_a_failure(tmp_path: Path) -> None:
    pipeline = load(_pipeline(tmp_path))
    plan = placed_plan(pipeline, load_cluster(_cluster(tmp_path)))
    placed = plan[-1].parameters
    calls: list[tuple[str, dict]] = []

    def launch(deployment: str, params: dict) -> str:  # stands in for the pools' workers
        calls.append((deployment, params))
        return "Completed"

    run_stages(placed["pipeline"], placed["store"], placed["stages"], placed["overrides"], launch)
    assert [c[0] for c in calls] == [s["deployment"] for s in placed["stages"]]
    assert calls[1][1]["to_node"] == "embed"
    assert calls[1][1]["overrides"] == ["executor.address=tcp://sched.example:8786"]

    calls.clear()

    def fail_gpu(deployment: str, params: dict) -> str:
        calls.append((deployment, params))
        return "Failed" if deployment.endswith("-gpu") else "Completed"

    with pytest.raises(StageFailedError, match="pool gpu \\(embed\\) ended Failed"):
        run_stages(placed["pipeline"], placed["store"], placed["stages"], [], fail_gpu)
    assert [c[0] for c in calls] == ["placed-pipe-cpu", "placed-pipe-gpu"]


def test_cluster_spec_errors_name_the_file_and_field(tmp_path: Path) -> None:
    bad_pool = {**CLUSTER, "routes": [{"pool": "tpu", "min_gpus": 1}, {"pool": "cpu"}]}
    path = _cluster(tmp_path, bad_pool)
    with pytest.raises(
        ClusterSpecError,
        match=rf"cluster.yaml, line {_line(path, 'pool: tpu')}: spec: routes\[0\]\.pool 'tpu' is not one of pools",
    ):
        load_cluster(path)
    no_default = {**CLUSTER, "routes": [{"pool": "gpu", "min_gpus": 1}]}
    with pytest.raises(ClusterSpecError, match="last of routes must have no condition"):
        load_cluster(_cluster(tmp_path, no_default))
    with pytest.raises(ClusterSpecError, match="scheduler: .*write tcp://sched:1"):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "scheduler": "sched:1"}))
    with pytest.raises(ClusterSpecError, match="workers.0.extra"):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [{**CLUSTER["workers"][0], "extra": 1}]}))
    with pytest.raises(ClusterSpecError, match="not found"):
        load_cluster(tmp_path / "missing.yaml")


def test_worker_commands_offer_cpu_and_the_declared_resources(tmp_path: Path) -> None:
    cmds = worker_commands(load_cluster(_cluster(tmp_path)))
    assert set(cmds) == {"h1", "h2", "g1"} and all(len(c) == 1 for c in cmds.values())
    assert (
        "--resources CPU=1,MEMORY_GB=8" in cmds["h1"][0]
    )  # CPU defaults to nthreads: shard tasks ask for it
    assert "--nthreads 2 --memory-limit auto --resources CPU=2,GPU=1" in cmds["g1"][0]
    assert " dask worker tcp://sched.example:8786 " in cmds["h2"][0]


def test_a_host_in_two_groups_gets_the_command_of_each(tmp_path: Path) -> None:
    both = {**CLUSTER, "workers": [*CLUSTER["workers"], {"name": "gc", "hosts": ["g1"], "nworkers": 3}]}
    cmds = worker_commands(load_cluster(_cluster(tmp_path, both)))
    assert [shlex.split(c)[shlex.split(c).index("--name") + 1] for c in cmds["g1"]] == ["g-g1", "gc-g1"]
    assert "--nworkers 3 " in cmds["g1"][1] and "--resources CPU=1" in cmds["g1"][1]


def test_worker_commands_quote_every_value(tmp_path: Path) -> None:
    odd = {
        **CLUSTER,
        "workers": [
            {
                "name": "c$(x)",
                "hosts": ["h1;touch"],
                "memory_limit": "7 GiB",
                "resources": {"MEMORY_GB": 1},
                "dask_settings": "dask",
            }
        ],
    }
    (cmd,) = worker_commands(load_cluster(_cluster(tmp_path, odd)))["h1;touch"]
    assert shlex.split(cmd) == [
        "dask",
        "worker",
        "tcp://sched.example:8786",
        "--name",
        "c$(x)-h1;touch",
        "--nworkers",
        "1",
        "--nthreads",
        "1",
        "--memory-limit",
        "7 GiB",
        "--resources",
        "CPU=1,MEMORY_GB=1",
    ]


def test_worker_names_and_hosts_are_one_word(tmp_path: Path) -> None:
    group = CLUSTER["workers"][0]
    with pytest.raises(ClusterSpecError, match=r"workers\[1\]\.name 'g pu' contains whitespace"):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [group, {**group, "name": "g pu"}]}))
    with pytest.raises(ClusterSpecError, match=r"workers\[0\]\.name '' is empty"):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [{**group, "name": ""}]}))
    with pytest.raises(ClusterSpecError, match=r"workers\[0\]\.hosts\[1\] 'h2; rm x' contains whitespace"):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [{**group, "hosts": ["h1", "h2; rm x"]}]}))
    with pytest.raises(ClusterSpecError, match=r"workers\[0\]\.hosts\[0\] '' is empty"):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [{**group, "hosts": [""]}]}))


@pytest.mark.parametrize(
    ("scheduler", "problem"),
    [
        ("tcp://", "has no host and port"),
        ("tcp://sched", "has no host and port"),
        ("tcp://:8786", "has no host and port"),
        ("tls://sched:notaport", "the port 'notaport' is not a number from 1 to 65535"),
        ("ws://sched:0", "the port '0' is not a number from 1 to 65535"),
        ("wss://sched:65536", "the port '65536' is not a number from 1 to 65535"),
    ],
)
def test_scheduler_needs_a_host_and_port(tmp_path: Path, scheduler: str, problem: str) -> None:
    path = _cluster(tmp_path, {**CLUSTER, "scheduler": scheduler})
    line = _line(path, "scheduler:")
    with pytest.raises(
        ClusterSpecError, match=rf"cluster.yaml, line {line}: scheduler: .*{problem}; write .*HOST:PORT"
    ):
        load_cluster(path)


@pytest.mark.parametrize(
    "scheduler",
    [
        "tcp://10.0.0.5:8786",
        "tls://[::1]:8786",
        "ws://sched:80",
        "inproc://10.0.0.5/123/1",
        "ucx://sched:13337",
    ],
)
def test_scheduler_addresses_of_every_scheme(tmp_path: Path, scheduler: str) -> None:
    assert load_cluster(_cluster(tmp_path, {**CLUSTER, "scheduler": scheduler})).scheduler == scheduler


def test_yaml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text("scheduler: tcp://s:1\npools:\n  cpu: {name: [x\n")
    with pytest.raises(
        ClusterSpecError, match=rf"^{re.escape(str(path))}, line 4, column 1: not valid YAML \(.*\); fix"
    ):
        load_cluster(path)


def test_main_prints_one_line_per_command_or_one_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    both = {**CLUSTER, "workers": [*CLUSTER["workers"], {"name": "gc", "hosts": ["g1"]}]}
    assert main([str(_cluster(tmp_path, both))]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["h1", "h2", "g1", "g1"]
    assert "--name g-g1 " in lines[2] and "--name gc-g1 " in lines[3]
    bare = _cluster(tmp_path, {k: v for k, v in CLUSTER.items() if k != "workers"})
    assert main([str(bare)]) == 2
    assert capsys.readouterr().err == f"{bare}: no workers: groups to start (add a workers: entry)\n"
    bad = _cluster(tmp_path, {**CLUSTER, "scheduler": "tcp://"})
    done = subprocess.run(
        [sys.executable, "-m", "flows.placement", str(bad)], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr.startswith(f"{bad}, line {_line(bad, 'scheduler:')}: scheduler: "), done.stderr
    assert len(done.stderr.splitlines()) == 1, done.stderr


def test_worker_commands_carry_arcflows_dask_settings_unless_a_group_keeps_dasks(tmp_path: Path) -> None:
    import dask.config

    from flows.executor import IDLE_DEFAULTS
    from flows.placement import worker_environment

    env = worker_environment()
    # the variables are the ones Dask reads back as arcflow's settings (names and values through Dask's own parser)
    read = dask.config.collect_env(env)
    for key, value in IDLE_DEFAULTS.items():
        assert dask.config.get(key, config=read) == value, key
    cmds = worker_commands(load_cluster(_cluster(tmp_path)))
    h1 = cmds["h1"][0]
    assert h1.startswith("env ") and "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED=False" in h1
    plain = {**CLUSTER, "workers": [{**CLUSTER["workers"][0], "dask_settings": "dask"}]}
    cmds = worker_commands(load_cluster(_cluster(tmp_path, plain)))
    assert all(c.startswith("dask worker tcp://sched.example:8786 ") for cs in cmds.values() for c in cs)
    with pytest.raises(ClusterSpecError, match="dask_settings"):
        load_cluster(
            _cluster(tmp_path, {**CLUSTER, "workers": [{**CLUSTER["workers"][0], "dask_settings": "x"}]})
        )


def test_shipped_cluster_spec_routes_gpu_nodes_to_the_gpu_pool(tmp_path: Path) -> None:
    pipeline = load(_pipeline(tmp_path))
    cluster = load_cluster(REPO / "infra" / "cluster.yaml")
    assert pool_of(pipeline, "embed", cluster) == "gpu"
    assert cluster.pools[pool_of(pipeline, "huge", cluster)].name == "arcflow-cpu"
    assert all("CPU=" in c for cs in worker_commands(cluster).values() for c in cs)


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_prints_the_usage_and_exits_0(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "flows.placement", flag], cwd=REPO, capture_output=True, text=True
    )
    assert done.returncode == 0 and done.stderr == "", done
    assert done.stdout.startswith("usage: python -m flows.placement [CLUSTER_SPEC]\n"), done.stdout
    assert "CLUSTER_SPEC: a cluster spec YAML file (default infra/cluster.yaml" in done.stdout
    assert "dask worker" in done.stdout


def test_an_unknown_option_or_two_arguments_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["--spec", "x.yaml"]) == 2
    assert capsys.readouterr().err == (
        "2 arguments, expected at most one; usage: python -m flows.placement [CLUSTER_SPEC] (--help says more)\n"
    )
    assert main(["--verbose"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("unknown option '--verbose'; usage:") and len(err.splitlines()) == 1


def _pinned(cmd: str) -> tuple[str, str, str]:
    """(CUDA_VISIBLE_DEVICES, --name, --nworkers) of a worker command line."""
    words = shlex.split(cmd)
    env = dict(w.split("=", 1) for w in words[1 : words.index("dask")])
    return env["CUDA_VISIBLE_DEVICES"], words[words.index("--name") + 1], words[words.index("--nworkers") + 1]


def test_gpu_workers_get_one_command_each_pinned_to_their_own_gpus(tmp_path: Path) -> None:
    gpu = {"name": "g", "hosts": ["g1", "g2"], "nworkers": 4, "resources": {"GPU": 2}, "gpus_per_host": 8}
    cmds = worker_commands(
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [CLUSTER["workers"][0], gpu]}))
    )
    for host in ("g1", "g2"):
        assert [_pinned(c) for c in cmds[host]] == [
            ("0,1", f"g-{host}-0", "1"),
            ("2,3", f"g-{host}-1", "1"),
            ("4,5", f"g-{host}-2", "1"),
            ("6,7", f"g-{host}-3", "1"),
        ]
        assert all(
            "--resources CPU=1,GPU=2" in c and "DASK_DISTRIBUTED__WORKER__PROFILE" in c for c in cmds[host]
        )
    # a CPU-only group keeps one --nworkers N line per host, with no CUDA_VISIBLE_DEVICES
    assert (
        len(cmds["h1"]) == 1
        and "--nworkers 4 " in cmds["h1"][0]
        and "CUDA_VISIBLE_DEVICES" not in cmds["h1"][0]
    )
    # dask_settings: dask still pins the GPUs
    plain = {**gpu, "nworkers": 2, "resources": {"GPU": 1}, "dask_settings": "dask"}
    cmds = worker_commands(load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [plain]})))
    assert cmds["g1"] == [
        "env CUDA_VISIBLE_DEVICES=0 dask worker tcp://sched.example:8786 --name g-g1-0 --nworkers 1 --nthreads 1 "
        "--memory-limit auto --resources CPU=1,GPU=1",
        "env CUDA_VISIBLE_DEVICES=1 dask worker tcp://sched.example:8786 --name g-g1-1 --nworkers 1 --nthreads 1 "
        "--memory-limit auto --resources CPU=1,GPU=1",
    ]


def test_a_host_in_two_gpu_groups_gets_disjoint_gpus(tmp_path: Path) -> None:
    embed = {"name": "e", "hosts": ["g1"], "nworkers": 2, "resources": {"GPU": 1}, "gpus_per_host": 8}
    train = {"name": "t", "hosts": ["g1", "g2"], "nworkers": 1, "resources": {"GPU": 6}, "gpus_per_host": 8}
    cmds = worker_commands(load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [embed, train]})))
    assert [_pinned(c) for c in cmds["g1"]] == [
        ("0", "e-g1-0", "1"),
        ("1", "e-g1-1", "1"),
        ("2,3,4,5,6,7", "t-g1", "1"),
    ]
    assert [_pinned(c) for c in cmds["g2"]] == [("0,1,2,3,4,5", "t-g2", "1")]


def test_gpu_workers_must_fit_in_the_hosts_gpus(tmp_path: Path) -> None:
    gpu = {"name": "gpu", "hosts": ["g1"], "nworkers": 8, "resources": {"GPU": 2}, "gpus_per_host": 8}
    with pytest.raises(
        ClusterSpecError,
        match=r"workers\[0\] \(group 'gpu'\): 8 workers x GPU=2 on host g1 need GPUs 0\.\.15, but gpus_per_host is 8",
    ):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [gpu]}))
    first = {**gpu, "name": "e", "nworkers": 2, "resources": {"GPU": 1}}
    with pytest.raises(
        ClusterSpecError,
        match=r"workers\[1\] \(group 'gpu'\): .* need GPUs 2\.\.17 after the 2 of its earlier groups",
    ):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [first, gpu]}))
    with pytest.raises(ClusterSpecError, match=r"resources.GPU 0.5 is not a whole number"):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [{**gpu, "resources": {"GPU": 0.5}}]}))
    # without gpus_per_host nothing is checked; the shipped spec fits its hosts
    load_cluster(
        _cluster(tmp_path, {**CLUSTER, "workers": [{k: v for k, v in gpu.items() if k != "gpus_per_host"}]})
    )
    shipped = worker_commands(load_cluster(REPO / "infra" / "cluster.yaml"))
    assert [_pinned(c)[0] for c in shipped["gpu-01.internal"]] == [str(i) for i in range(8)]


BAD_VALUES = """\
scheduler: tcp://sched.example:8786
pools: {cpu: {name: t-cpu}}
routes:
  - pool: cpu
workers:
  - name: ok
    hosts: [h1]
    memory_limit: 7 GiB
  - name: gpu
    hosts: [g1]
    memory_limit: 1GiBB
    resources:
      CPU: 2
      MEMORY_GBS: 1
      gpu: 1
      MEMORY_GB: -1
      GPU: 0
      A B: 1
"""


def test_worker_values_are_validated_with_the_file_group_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cluster.yaml"
    path.write_text(BAD_VALUES)
    with pytest.raises(ClusterSpecError) as info:
        load_cluster(path)
    message = str(info.value)
    assert message.startswith(
        f"{path}, line 11: workers.1.memory_limit (group 'gpu'): '1GiBB' is not a size ("
    ), message
    parts = message.split("; line ")
    assert [p.split(":")[0] for p in parts[1:]] == ["14", "15", "16", "17", "18"], message
    assert (
        "workers.1.resources.MEMORY_GBS (group 'gpu'): 'MEMORY_GBS' is not a resource arcflow asks for; did you mean MEMORY_GB? write one of CPU, GPU, MEMORY_GB"
        in message
    )
    assert (
        "workers.1.resources.gpu (group 'gpu'): 'gpu' is not a resource arcflow asks for; did you mean GPU?"
        in message
    )
    assert "workers.1.resources.MEMORY_GB (group 'gpu'): -1 is not a positive number" in message
    assert "workers.1.resources.GPU (group 'gpu'): 0 is not a positive number" in message
    assert (
        "workers.1.resources.A B (group 'gpu'): 'A B' is not a resource arcflow asks for; write one of"
        in message
    )
    # python -m flows.placement: that one line on stderr, exit 2, nothing printed into a command
    assert main([str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == "" and out.err == message + "\n"


@pytest.mark.parametrize(
    ("memory_limit", "problem"),
    [
        ("1GiBB", "is not a size"),
        ("-1GB", "is negative"),
        ("lots", "is not a size"),
        ("", "is not a size"),
        ("GiB", "is not a size"),
    ],
)
def test_memory_limit_must_be_a_size(tmp_path: Path, memory_limit: str, problem: str) -> None:
    group = {**CLUSTER["workers"][0], "memory_limit": memory_limit}
    with pytest.raises(
        ClusterSpecError, match=rf"workers.0.memory_limit \(group 'c'\): '{memory_limit}' {problem}"
    ):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [group]}))


@pytest.mark.parametrize("memory_limit", ["auto", "7GiB", "7 GiB", "500MB", "0.5", "0", "1e9"])
def test_memory_limits_dask_takes_are_kept(tmp_path: Path, memory_limit: str) -> None:
    group = {**CLUSTER["workers"][0], "memory_limit": memory_limit}
    (cmd,) = worker_commands(load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [group]})))["h1"]
    assert f"--memory-limit {shlex.quote(memory_limit)} " in cmd


@pytest.mark.parametrize("value", [float("inf"), float("nan"), -0.5])
def test_resource_values_must_be_positive_numbers(tmp_path: Path, value: float) -> None:
    group = {**CLUSTER["workers"][0], "resources": {"MEMORY_GB": value}}
    with pytest.raises(
        ClusterSpecError, match=r"workers.0.resources.MEMORY_GB \(group 'c'\): .* is not a positive"
    ):
        load_cluster(_cluster(tmp_path, {**CLUSTER, "workers": [group]}))


def test_whole_spec_errors_name_their_line_too(tmp_path: Path) -> None:
    group = CLUSTER["workers"][0]
    path = _cluster(tmp_path, {**CLUSTER, "workers": [group, {**group, "name": "g pu"}]})
    with pytest.raises(
        ClusterSpecError,
        match=rf"cluster.yaml, line {_line(path, 'name: g pu')}: spec: workers\[1\]\.name 'g pu'",
    ):
        load_cluster(path)
    gpu = {"name": "gpu", "hosts": ["g1"], "nworkers": 9, "resources": {"GPU": 1}, "gpus_per_host": 8}
    path = _cluster(tmp_path, {**CLUSTER, "workers": [group, gpu]})
    lines = path.read_text().splitlines()
    item = next(i for i, line in enumerate(lines, 1) if line.startswith("- ") and i > _line(path, "name: c"))
    with pytest.raises(
        ClusterSpecError, match=rf"cluster.yaml, line {item}: spec: workers\[1\] \(group 'gpu'\)"
    ):
        load_cluster(path)
