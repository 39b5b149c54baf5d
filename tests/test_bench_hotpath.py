"""The benchmarks without sockets run end to end on a tiny load: ``bench/hotpath.py``'s figures
come from real sends that were all acked and pushed (it waits for every one), and
``bench/delivery_ir.py`` exits with an error unless every send was acked and pushed, so a
broken hot path makes them fail here."""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_hotpath_benchmark_runs_and_reports_per_message_cost():
    out = subprocess.run(
        [sys.executable, os.path.join(ROOT, "bench", "hotpath.py"), "--pairs", "3",
         "--batch", "6", "--rounds", "2", "--runs", "2"],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith("sqlite, 3 pairs, rounds of 6 messages")
    runs = [line.split(" | ") for line in lines[2:4]]
    assert [r[1] for r in runs] == ["12", "12"]  # every message of each run was delivered
    assert all(float(r[2]) > 0 for r in runs)


def test_delivery_benchmark_checks_that_every_send_was_acked_and_pushed():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "delivery_ir.py"), "300"],
                         capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "300 sends" in out.stdout and "us of thread CPU each" in out.stdout
