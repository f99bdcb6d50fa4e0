"""`driftline worker` as a child process: used by the demo, the benchmarks and the tests."""

from __future__ import annotations

from driftline.stack.process import ServiceProcess


class WorkerProcess(ServiceProcess):
    name = "worker"
    command = ("worker",)
    port_variable = "DRIFTLINE_WORKER_PORT"
    # A worker restoring its partitions from their changelogs may take a while.
    start_timeout_s = 90.0

    @property
    def host(self) -> str:
        return self.settings.worker_host

    @property
    def port(self) -> int:
        return self.settings.worker_port
