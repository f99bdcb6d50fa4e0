"""`driftline api` as a child process: used by the demo and the tests."""

from __future__ import annotations

from driftline.stack.process import ServiceProcess


class ApiProcess(ServiceProcess):
    name = "API"
    command = ("api",)
    port_variable = "DRIFTLINE_API_PORT"

    @property
    def host(self) -> str:
        return self.settings.api_host

    @property
    def port(self) -> int:
        return self.settings.api_port
