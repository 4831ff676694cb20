"""``ablate.bench.machine``: what a report says about the machine it ran on: a card's bf16 peak, and whether
another process was busy when it started."""

import subprocess
import sys
import threading
import time

import pytest

from ablate.bench.machine import busy_warning, others_cpu_use, peak_bf16


@pytest.mark.parametrize("gpu, peak", [
    ("NVIDIA H100 80GB HBM3", 989e12), ("NVIDIA H100 PCIe", 756e12), ("NVIDIA H100 NVL", 835e12),
    ("NVIDIA H200", 989e12), ("NVIDIA A100-SXM4-80GB", 312e12), ("Tesla T4", None),
])
def test_the_cards_bf16_peak_is_read_off_its_name(gpu, peak):
    assert peak_bf16(gpu) == peak


def _spin(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


@pytest.mark.alone
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_the_quiet_machine_check_sees_other_processes_and_not_its_own():
    """The report's busy check counts another process's work, and not this process's own threads."""
    quiet = others_cpu_use(1.0)  # whatever else this machine runs (on a shared host, /proc/stat shows it too)
    spin = "import time\nend = time.perf_counter() + 3\nwhile time.perf_counter() < end: pass"
    child = subprocess.Popen([sys.executable, "-c", spin])
    try:
        time.sleep(0.5)  # the child has started spinning
        assert others_cpu_use(1.0) - quiet > 0.7  # one more busy core
    finally:
        child.wait(timeout=30)
    own = threading.Thread(target=_spin, args=(1.5,))
    own.start()
    try:
        # this process kept a core busy (counted, it would add about 1.0), but it is not another process; 0.5 leaves
        # room for this test run's own helpers (a wandb service an earlier test started) waking up meanwhile
        assert others_cpu_use(1.0) - quiet < 0.5
    finally:
        own.join()


def test_a_busy_start_is_a_warning_and_a_quiet_one_is_not():
    assert busy_warning(load=3.0, others=0.1) == []  # the load average counts this process's own start-up
    (warning,) = busy_warning(load=0.1, others=0.5)
    assert warning.startswith("other processes used 0.50 CPUs at start") and "rerun on a quiet machine" in warning
    assert busy_warning(load=0.4, others=None) == []  # no /proc/stat: the load average decides
    assert busy_warning(load=0.6, others=None)[0].startswith("the load average was 0.60 at start")
