"""``patron serve --workers N``: several HTTP worker processes on one port, and the processor.

Python runs one thread at a time per process, so one server process parses and validates
requests on one core however many it has. With ``N`` workers, each process binds the port
with ``SO_REUSEPORT`` and the kernel spreads connections over them. The processing loop
must read the log in one place only, so with workers it runs in a process of its own
(when ``PATRON_PROCESS_IN_SERVER`` is on), not in every worker.

This process only supervises: it starts the children, stops them on SIGINT or SIGTERM,
and stops them all, exiting non-zero, when one of them dies. Children notice when this
process dies (even by SIGKILL) and stop too, so none is left holding the port.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import socket
import sys
import threading
from typing import Any

from patron.core.runtime import Runtime, tune_garbage_collector
from patron.core.settings import Settings

log = logging.getLogger("patron.supervisor")

PR_SET_PDEATHSIG = 1  # linux/prctl.h
PROCESSOR_NICENESS = 10  # the processing loop's CPU priority below the web workers


def serve_with_workers(settings: Settings, host: str, port: int, workers: int) -> int:
    """Run ``workers`` HTTP processes (and the processor) until a signal; the exit status."""
    context = multiprocessing.get_context("spawn")
    parent = os.getpid()
    children = [
        context.Process(
            target=run_web_worker, args=(settings, host, port, parent), name=f"patron-web-{i}"
        )
        for i in range(workers)
    ]
    if settings.process_in_server:
        children.append(
            context.Process(target=run_processor, args=(settings, parent), name="patron-processor")
        )
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    for child in children:
        child.start()
    while not stop.is_set() and all(child.is_alive() for child in children):
        stop.wait(0.2)
    for child in children:
        if child.is_alive():
            child.terminate()
    for child in children:
        child.join(timeout=20)
        if child.is_alive():
            child.kill()
            child.join()
    died = [c.name for c in children if c.exitcode not in (0, -signal.SIGTERM)]
    if died and not stop.is_set():
        log.error("stopped because %s exited", ", ".join(died))
        return 1
    return 0


def run_web_worker(settings: Settings, host: str, port: int, parent: int) -> None:
    """One HTTP worker: the API and the UI on the shared port, without the processing loop."""
    import uvicorn

    from patron.app import create_app

    follow_parent(parent)
    runtime = Runtime.start(settings, check_schema=False)  # the supervisor checked it
    config = uvicorn.Config(
        create_app(runtime, process=False),
        host=host,
        port=port,
        log_level=settings.log_level,
        access_log=False,
        timeout_graceful_shutdown=10,
    )
    sockets = [shared_socket(host, port)]
    tune_garbage_collector()
    try:
        uvicorn.Server(config).run(sockets=sockets)
    finally:
        runtime.close()


def shared_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` that other processes may bind as well."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind(address)
    sock.listen(2048)
    return sock


def run_processor(settings: Settings, parent: int | None = None) -> None:
    """The processing loop until SIGINT or SIGTERM (``patron worker``, or a child of serve)."""
    from patron.pipeline import Processor

    if parent is not None:
        follow_parent(parent)
        # Beside the web workers, ingest goes first: a client waits for its answer, and
        # the log can be processed later. On PostgreSQL, where the processor holds no lock
        # that ingest waits for, this gave ingest about 12 % more events/s under load.
        os.nice(PROCESSOR_NICENESS)
    logging.basicConfig(level=settings.log_level.upper())
    runtime = Runtime.start(settings, check_schema=parent is None)
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    processor = Processor(
        runtime.sessions,
        batch_size=settings.process_batch_size,
        settings=settings,
        readers=runtime.readers,
    )
    tune_garbage_collector()
    try:
        processor.run(stop, settings.process_idle_ms / 1000)
    finally:
        runtime.close()


def follow_parent(parent: int) -> None:
    """Get SIGTERM when the supervisor ``parent`` dies, however it dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc: Any = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    # Elsewhere, and if it died before prctl above: notice the change of parent.
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


def _watch_parent(parent: int) -> None:
    while os.getppid() == parent:
        threading.Event().wait(1.0)
    os.kill(os.getpid(), signal.SIGTERM)
