"""What a code task's own directory costs: a worktree of the host's mirror, against a fresh
`git clone`, on a repository of 10,000 files, A/B interleaved in one run.

    .venv/bin/python bench/bench_worktrees.py [--files 10000] [--history 300] [--rounds 15]
        [--setup CMD]

One bare "remote" (a file:// URL: a clone's best case, no network) holds `--files` files (100
per directory, about 1 KiB each, source-like text) and `--history` more commits each changing
1% of them; its mirror is made and fetched as apply makes it. Each round, in alternating
order, times for one task:

- worktree: the poller's own steps, its functions called directly: bring the task's commit
  into the mirror (`mirror.bring`: present, so no fetch), add the locked worktree detached at
  it (`worktree.add`: record and `git worktree add`), run the repository's `setup`
  (`steps.run`); then, not on the task's path (the sweep does it after `retain`), its removal
  (`worktree.remove`);
- clone: what a poller without a mirror would do per task: `git clone` of the remote into a
  fresh directory (with its checkout), the same `setup`, then `rm -rf`.

`--setup` is the setup run in both (default `true`: the overhead of running one at all; a
real `npm ci` costs the same in both). Disk per task: `du` of one task's directory (and,
for the worktree, its entry in the mirror).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.machine import describe
from poller import mirror, steps, worktree
from poller.repos import Repo


def make_remote(where: Path, files: int, history: int) -> tuple[str, str]:
    """A bare repository whose `main` has `files` files (100 per directory, ~1 KiB of
    source-like text each), then `history` more commits each changing 1% of them, written
    with `git fast-import`; (its file:// URL, the tip)."""
    remote = where / "remote.git"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(remote)], check=True)
    body = "".join(f"    value_{n} = compute({n}, 'text')  # line {n}\n" for n in range(20))
    stream = bytearray()

    def commit(n: int, changes: list[tuple[str, str]]) -> None:
        stream.extend(
            f"commit refs/heads/main\ncommitter bench <bench@example.invalid> {1_700_000_000 + n} "
            f"+0000\ndata {len(f'c{n}')}\nc{n}\n".encode()
        )
        # fast-import continues the branch from its last commit of the stream
        for path, text in changes:
            data = text.encode()
            stream.extend(f"M 100644 inline {path}\ndata {len(data)}\n".encode() + data + b"\n")

    def path(i: int) -> str:
        return f"pkg{i // 100:03d}/mod{i % 100:02d}.py"

    commit(0, [(path(i), f"def f{i}():\n{body}    return {i}\n") for i in range(files)])
    step = max(1, files // 100)
    for n in range(1, history + 1):
        changed = range(n % step, files, step)
        commit(n, [(path(i), f"def f{i}():\n{body}    return {i} + {n}\n") for i in changed])
    subprocess.run(
        ["git", "--git-dir", str(remote), "fast-import", "--quiet"], input=bytes(stream), check=True
    )
    head = subprocess.run(
        ["git", "--git-dir", str(remote), "rev-parse", "main"], capture_output=True, text=True
    )
    return f"file://{remote}", head.stdout.strip()


def make_mirror(where: Path, url: str) -> Path:
    """The mirror, as apply makes it (fleetctl/hostside/steps.py op_repo), then fetched."""
    path = where / "mirrors" / "app.git"
    path.parent.mkdir()
    git = ["git", f"--git-dir={path}"]
    subprocess.run(["git", "init", "-q", "--bare", "--template=", "--shared=0660", str(path)])
    subprocess.run([*git, "config", "remote.origin.url", url], check=True)
    for refspec in mirror.REFSPECS:
        subprocess.run([*git, "config", "--add", "remote.origin.fetch", refspec], check=True)
    return path


def filesystem(path: Path) -> str:
    out = subprocess.run(["df", "--output=fstype,source", str(path)], capture_output=True)
    return " ".join(out.stdout.decode().splitlines()[-1].split())


def du(path: Path) -> int:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) * 1024


def cpu() -> float:
    """CPU seconds (user and system) of this process and its finished children: what a task
    costs the machine, which a busy machine's wall clock hides."""
    me, kids = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


async def worktree_task(
    repo: Repo, root: Path, task_id: str, base: str, env: dict[str, str], setup: list[str]
) -> dict[str, float]:
    c0 = cpu()
    t0 = time.perf_counter()
    commit = await mirror.bring(repo, env, ref=None, base=base)
    t1 = time.perf_counter()
    place = await worktree.add(root, task_id, repo, commit, env)
    t2 = time.perf_counter()
    done = await steps.run(setup, place.dir, env, timeout=600, grace=5, state_dir=None)
    assert done.passed, done.output_tail
    t3 = time.perf_counter()
    return {"bring": t1 - t0, "add": t2 - t1, "setup": t3 - t2, "task": t3 - t0, "cpu": cpu() - c0}


def clone_task(url: str, where: Path, env: dict[str, str], setup: list[str]) -> dict[str, float]:
    c0 = cpu()
    t0 = time.perf_counter()
    subprocess.run(["git", "clone", "-q", url, str(where)], env=env, check=True)
    t1 = time.perf_counter()
    subprocess.run(setup, cwd=where, env=env, check=True)
    t2 = time.perf_counter()
    return {"clone": t1 - t0, "setup": t2 - t1, "task": t2 - t0, "cpu": cpu() - c0}


def summary(name: str, runs: list[dict[str, float]]) -> None:
    parts = [k for k in runs[0]]
    cells = []
    for part in parts:
        values = sorted(r[part] * 1000 for r in runs)
        p90 = values[max(0, round(0.9 * len(values)) - 1)]
        what = "CPU" if part == "cpu" else part
        cells.append(f"{what} {statistics.median(values):.0f} ms (p90 {p90:.0f})")
    print(f"  {name:9} " + ", ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--history", type=int, default=300, help="commits after the first")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--setup", default="true", help="setup argv, split on spaces")
    parser.add_argument("--dir", default=None, help="where the repositories go (default: TMPDIR)")
    args = parser.parse_args()
    setup = args.setup.split()
    env = {"PATH": os.environ["PATH"], "HOME": tempfile.gettempdir(), "LANG": "C.UTF-8"}
    with tempfile.TemporaryDirectory(prefix="bench-worktrees-", dir=args.dir) as tmp:
        where = Path(tmp)
        t0 = time.perf_counter()
        url, head = make_remote(where, args.files, args.history)
        made = time.perf_counter() - t0
        path = make_mirror(where, url)
        repo = Repo("app", url, path, ref="main", setup=tuple(setup))
        asyncio.run(mirror.fetch(repo, env))
        root = where / "worktrees"
        root.mkdir()
        wt_runs: list[dict[str, float]] = []
        clone_runs: list[dict[str, float]] = []
        removes: list[float] = []
        sizes: dict[str, int] = {}
        for i in range(args.rounds):
            order = ("wt", "clone") if i % 2 == 0 else ("clone", "wt")
            for kind in order:
                if kind == "wt":
                    task = f"t{i}"
                    wt_runs.append(asyncio.run(worktree_task(repo, root, task, head, env, setup)))
                    if i == 0:
                        sizes["worktree"] = du(root / task) + du(path / "worktrees")
                    r0 = time.perf_counter()
                    asyncio.run(worktree.remove(root, task))
                    removes.append(time.perf_counter() - r0)
                else:
                    target = where / f"clone-{i}"
                    clone_runs.append(clone_task(url, target, env, setup))
                    if i == 0:
                        sizes["clone"] = du(target)
                    shutil.rmtree(target)
        print(
            f"machine: {describe()}; files on {filesystem(where)}; load average "
            f"{os.getloadavg()[0]:.1f} at the end"
        )
        git_version = subprocess.run(["git", "--version"], capture_output=True, text=True)
        print(
            f"{git_version.stdout.strip()}; repository: {args.files} files, "
            f"{args.history + 1} commits, "
            f"{du(where / 'remote.git') / 1024**2:.1f} MiB packed (made in {made:.1f} s); "
            f"setup {setup}; {args.rounds} rounds, A/B interleaved"
        )
        print("per task (median, p90):")
        summary("worktree", wt_runs)
        summary("clone", clone_runs)
        for part, what in (("task", "wall clock"), ("cpu", "CPU time")):
            ratio = statistics.median(r[part] for r in clone_runs) / statistics.median(
                r[part] for r in wt_runs
            )
            print(f"  a fresh clone costs {ratio:.1f}x a worktree's {what} per task")
        print(
            f"  removing a worktree afterwards (the sweep, off the task's path): "
            f"median {statistics.median(removes) * 1000:.0f} ms"
        )
        print(
            f"disk per task: worktree {sizes['worktree'] / 1024**2:.1f} MiB, "
            f"clone {sizes['clone'] / 1024**2:.1f} MiB"
        )


if __name__ == "__main__":
    main()
