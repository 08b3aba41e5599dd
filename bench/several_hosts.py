"""Several hosts: ten console backups drained by two real workers, and one large SFTP copy against scp.

Part 1 (``--backups``): two Celery workers standing for two hosts (their own ``DBS_HOST_NAME`` and var
folder, one database, one Redis) and ten *Back up now* jobs queued at once through the console's door
(``jobs.launch.queue_backup``): time until the last one ends, jobs per worker, and each worker's peak RSS
(``VmHWM``). One backup per target at a time: the ten take turns on the target, and the waits are part of
the figure.

Part 2 (``--sftp-gib``): a sealed file of that many GiB (random, so incompressible) copied to the
loopback sshd by ``SftpTarget.put`` (upload, one read-back that is the verification, rename), the bytes
read back counted, against ``scp`` of the same file in the same run; and the old path (put, then a
second full read by ``verify``) for comparison.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/dbs_bench_hosts REDIS_URL=redis://127.0.0.1:6379/14 \\
        .venv/bin/python bench/several_hosts.py [--posts 2000] [--sftp-gib 1]

Without DATABASE_URL the database is a SQLite file in a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_worker(host: str, var: Path, env: dict, log: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "celery", "-A", "demo_site", "worker", "--pool", "solo", "--loglevel", "WARNING",
           "-n", f"{host}-{secrets.token_hex(3)}@%h"]
    return subprocess.Popen(cmd, cwd=ROOT, env={**env, "DBS_HOST_NAME": host, "DBS_VAR_DIR": str(var)},
                            stdout=open(log, "ab"), stderr=subprocess.STDOUT, start_new_session=True)


def drain(args, work: Path) -> None:
    env = {**os.environ, "DBS_CELERY_QUEUE": f"bench-hosts-{secrets.token_hex(4)}", "DBS_DEMO_KEYS": "0"}
    env.setdefault("REDIS_URL", "redis://127.0.0.1:6379/14")
    env.setdefault("DATABASE_URL", f"sqlite:///{work / 'bench.sqlite3'}")
    os.environ.update({k: env[k] for k in ("DBS_CELERY_QUEUE", "REDIS_URL", "DATABASE_URL", "DBS_DEMO_KEYS")})
    os.environ["DBS_VAR_DIR"] = str(work / "web")
    subprocess.run([sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=os.environ, check=True)
    subprocess.run([sys.executable, "manage.py", "demo_seed", "--posts", str(args.posts), "--images", "20",
                    "--flush", "--no-history"], cwd=ROOT, env=os.environ, check=True, stdout=subprocess.DEVNULL)
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    django.setup()
    from dbs_admin.jobs.launch import queue_backup
    from dbs_admin.models import Job

    workers = {h: start_worker(h, work / h, env, work / f"{h}.log") for h in ("host-a", "host-b")}
    try:
        time.sleep(6)  # both workers up before the clock starts
        started = time.monotonic()
        jobs = [queue_backup(user=None, kind="logical", target="local", label=f"drain {n}",
                             passphrase="bench several hosts passphrase") for n in range(args.backups)]
        pks = [j.pk for j in jobs]
        while Job.objects.filter(pk__in=pks, finished_at__isnull=True).exists():
            time.sleep(0.05)
            if time.monotonic() - started > 900:
                raise SystemExit("the jobs did not drain within 15 minutes")
        elapsed = time.monotonic() - started
        rss = {h: peak_rss_mib(p.pid) for h, p in workers.items()}
    finally:
        for p in workers.values():
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(30)
    done = list(Job.objects.filter(pk__in=pks))
    states = {s: sum(1 for j in done if j.state == s) for s in {j.state for j in done}}
    per_host = {h: sum(1 for j in done if j.worker.startswith(h)) for h in workers}
    each = sorted((j.finished_at - j.started_at).total_seconds() for j in done if j.started_at and j.finished_at)
    print(f"{args.backups} console backups ({args.posts} posts) on two workers: drained in {elapsed:.1f} s "
          f"({states}); jobs per worker {per_host}; one backup {each[len(each) // 2]:.2f} s (median), so the "
          f"serial floor under the one-per-target rule is {sum(each):.1f} s")
    for host, mib in rss.items():
        print(f"  {host}: peak RSS {mib:.0f} MiB")


def sftp(args, work: Path) -> None:
    from dbs_admin.sealed import Argon2Params, seal
    from dbs_admin.targets.sftp import SftpTarget, _RemoteReader
    from tests.services import ssh_server

    server = ssh_server()
    folder = server.root / "bench-several-hosts"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    source = work / "source.sealed"
    left = int(args.sftp_gib * (1 << 30))

    def chunks():
        nonlocal left
        while left > 0:
            n = min(left, 4 << 20)
            left -= n
            yield os.urandom(n)

    seal(chunks(), source, passphrase="bench", argon2=Argon2Params(time_cost=1, memory_kib=1024, parallelism=1),
         allow_weak_argon2=True)
    size = source.stat().st_size
    target = SftpTarget("bench", host=server.host, port=server.port, username=server.username,
                        key_filename=str(server.key_path), known_hosts=str(server.known_hosts), path=str(folder),
                        timeout=60)
    ours, old, scp = [], [], []
    read_back = 0
    for n in range(args.rounds):
        name = f"dbs-20261207T00000{n}000000Z-logical-bench.dbs"
        os.link(source, work / name)  # the same bytes under a backup's name, without copying them
        before = _RemoteReader.fetched_total
        t = time.monotonic()
        target.put(work / name, name)
        ours.append(time.monotonic() - t)
        read_back = _RemoteReader.fetched_total - before
        t = time.monotonic()
        target.verify(name)  # what the old path added: a second full read
        old.append(ours[-1] + time.monotonic() - t)
        target.delete(name)
        t = time.monotonic()
        subprocess.run(["scp", "-q", "-P", str(server.port), "-i", str(server.key_path), "-o", "BatchMode=yes",
                        "-o", f"UserKnownHostsFile={server.known_hosts}", str(work / name),
                        f"{server.username}@{server.host}:{folder}/scp-{name}"], check=True)
        scp.append(time.monotonic() - t)
        (folder / f"scp-{name}").unlink()
        (work / name).unlink()
    med = sorted(ours)[len(ours) // 2]
    med_old = sorted(old)[len(old) // 2]
    med_scp = sorted(scp)[len(scp) // 2]
    print(f"SFTP copy of {size / 2**30:.2f} GiB (median of {args.rounds}): ours {med:.1f} s "
          f"({size / med / 2**20:.0f} MiB/s), scp {med_scp:.1f} s: {med / med_scp:.2f}x scp; "
          f"bytes crossed: {size:,} up + {read_back:,} read back = {(size + read_back) / size:.2f}x the file "
          f"(the old path: put + verify, {med_old:.1f} s, 3.00x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backups", type=int, default=10)
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--sftp-gib", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-drain", action="store_true")
    parser.add_argument("--skip-sftp", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "demo_site.settings")
    print(f"load average at start: {os.getloadavg()[0]:.2f}")
    work = Path(tempfile.mkdtemp(prefix="bench-hosts-"))
    try:
        if not args.skip_sftp:
            sftp(args, work)
        if not args.skip_drain:
            drain(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
