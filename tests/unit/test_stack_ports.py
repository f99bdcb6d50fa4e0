"""Ports for the servers the stack and the tests start, and restart after an outage."""

from __future__ import annotations

import socket

from driftline.stack import kafka
from driftline.stack.kafka import free_broker_port, free_ports


def test_ports_are_drawn_below_the_range_the_kernel_gives_client_sockets() -> None:
    start = kafka._ephemeral_start()
    for _ in range(20):
        port = free_broker_port()
        assert port >= kafka._LISTEN_PORTS_FROM
        assert port + 1 < start


def test_the_ports_are_consecutive_and_free() -> None:
    first = free_ports(3)
    sockets = []
    try:
        for port in range(first, first + 3):
            sock = socket.socket()
            sockets.append(sock)
            sock.bind(("127.0.0.1", port))  # raises if taken
    finally:
        for sock in sockets:
            sock.close()


def test_a_taken_port_is_not_bindable() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    try:
        port = taken.getsockname()[1]
        assert not kafka._bindable(port)
    finally:
        taken.close()
