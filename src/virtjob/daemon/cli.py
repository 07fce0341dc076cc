"""The ``virtjobd`` command line: parse the options, open the service, run the server."""

from __future__ import annotations

import argparse
import faulthandler
import logging
import math
import os
import signal
import sys

from virtjob import defaults
from virtjob.drivers.qemu.command import kvm_usable
from virtjob.errors import InvalidArgError, VirtError

from .listen import ListenSpec, parse_listen
from .security import load_token
from .service import Service, Settings


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``virtjobd``."""
    parser = argparse.ArgumentParser(
        prog="virtjobd",
        description="Serve virtjob hosts (test:///NAME, qemu:///session...) over HTTP/JSON,"
        " where every long operation is an asynchronous, cancellable job.",
    )
    parser.add_argument(
        "--state-dir",
        help="where the job history, definitions, QEMU guests' files and default socket live"
        " (default: $VIRTJOB_STATE_DIR or ~/.local/share/virtjob)",
    )
    parser.add_argument(
        "--listen",
        help="unix:PATH (mode 0600) or tcp:HOST:PORT (needs --token-file);"
        f" default: unix:STATE_DIR/{defaults.SOCKET_NAME}",
    )
    parser.add_argument("--token-file", help="file holding the bearer token clients must send")
    parser.add_argument("--tls-cert", help="PEM certificate: serve HTTPS (with --tls-key)")
    parser.add_argument("--tls-key", help="PEM private key of --tls-cert")
    parser.add_argument(
        "--allow-dir",
        action="append",
        default=[],
        metavar="DIR",
        help="a directory save/restore/dump paths may be in (repeatable);"
        " default: STATE_DIR/files only",
    )
    parser.add_argument(
        "--allow-emulator",
        action="append",
        default=[],
        metavar="PATH",
        help="an emulator binary domain XML may name in <emulator> (repeatable);"
        " default: only the driver's own",
    )
    parser.add_argument(
        "--allow-qemu-args",
        action="store_true",
        help="let domain XML pass extra QEMU arguments (<qemu:commandline>); off by default:"
        " such arguments run with the daemon's rights",
    )
    parser.add_argument(
        "--qemu-accel",
        choices=["kvm", "tcg"],
        help="run every guest of qemu:///session under this accelerator (tcg: emulation, for"
        " a machine without KVM); default: each guest as its <domain type> says."
        " Clients may not choose it",
    )
    parser.add_argument(
        "--listen-any",
        action="store_true",
        help="allow a TCP address other than loopback (reachable from other machines)",
    )
    parser.add_argument(
        "--retain-jobs",
        type=int,
        default=1000,
        metavar="N",
        help="finished jobs kept in the history (oldest dropped first; default 1000)",
    )
    parser.add_argument(
        "--max-hosts", type=int, default=32, metavar="N", help="hosts served at most (32)"
    )
    parser.add_argument(
        "--max-domains",
        type=int,
        default=64,
        metavar="N",
        help="domains one host may hold, counting creates and restores under way (64)",
    )
    parser.add_argument(
        "--max-networks",
        type=int,
        default=64,
        metavar="N",
        help="networks one host may hold, counting creates under way (64)",
    )
    parser.add_argument(
        "--header-timeout",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="seconds a client has to send a whole request once it connects or starts one;"
        " slower connections are closed (10)",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=1000,
        metavar="N",
        help="connections served at once; more are answered 503 and closed (1000)",
    )
    parser.add_argument(
        "--shutdown-grace",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="how long shutdown waits for cancelled jobs to end (10)",
    )
    parser.add_argument(
        "--log-level",
        default="warning",
        choices=["debug", "info", "warning", "error"],
        help="log verbosity (warning); debug logs every request (method, path, status,"
        " duration) and every job's tracking and recording",
    )
    return parser


def _check_range(
    option: str,
    value: float,
    meaning: str,
    *,
    low: float,
    high: float | None = None,
    above: bool = False,
) -> None:
    """Refuse an option's number below `low` (or equal to it when `above`), over `high`, or
    not finite: `InvalidArgError` naming the option, its value and what it takes."""
    fits = math.isfinite(value) and (value > low if above else value >= low)
    if not fits or (high is not None and value > high):
        raise InvalidArgError(f"{option} {value:g} is out of range: give a number of {meaning}")


def settings_from(args: argparse.Namespace) -> Settings:
    """Check the parsed options and turn them into `Settings`; `InvalidArgError` if wrong."""
    state_dir = os.path.abspath(os.path.expanduser(args.state_dir or defaults.state_dir()))
    spec = parse_listen(args.listen or f"unix:{defaults.daemon_socket(state_dir)}")
    if spec.kind == "tcp" and not args.token_file:
        raise InvalidArgError(
            f"refusing to listen on {spec} without --token-file: anyone able to connect"
            f" could run jobs; create a token file (chmod 600) and pass it"
        )
    if bool(args.tls_cert) != bool(args.tls_key):
        raise InvalidArgError("--tls-cert and --tls-key go together; give both or neither")
    if args.tls_cert and spec.kind != "tcp":
        raise InvalidArgError("TLS applies to tcp: listeners only; drop --tls-cert/--tls-key")
    for path in filter(None, (args.tls_cert, args.tls_key)):
        if not os.path.isfile(path):
            raise InvalidArgError(f"TLS file {path} does not exist; give the path of a PEM file")
    for directory in args.allow_dir:
        if not os.path.isdir(directory):
            raise InvalidArgError(
                f"--allow-dir {directory} is not a directory; create it or fix the path"
            )
    emulators: list[str] = []
    for emulator in args.allow_emulator:
        if not os.path.isabs(emulator):
            raise InvalidArgError(
                f"--allow-emulator {emulator} is not an absolute path; give the binary's full"
                f" path, e.g. /usr/bin/qemu-system-x86_64"
            )
        if not (os.path.isfile(emulator) and os.access(emulator, os.X_OK)):
            raise InvalidArgError(
                f"--allow-emulator {emulator} is not an executable file; fix the path"
            )
        emulators.append(emulator)
    _check_range("--retain-jobs", args.retain_jobs, "finished jobs, 0 or more", low=0)
    _check_range("--max-hosts", args.max_hosts, "hosts, at least 1", low=1)
    _check_range("--max-domains", args.max_domains, "domains, at least 1", low=1)
    _check_range("--max-networks", args.max_networks, "networks, at least 1", low=1)
    _check_range("--shutdown-grace", args.shutdown_grace, "seconds, 0 or more", low=0)
    _check_range(
        "--header-timeout",
        args.header_timeout,
        "seconds, above 0 and at most 3600",
        low=0,
        high=3600,
        above=True,
    )
    _check_range("--max-connections", args.max_connections, "connections, at least 1", low=1)
    host_params: dict[str, dict[str, str]] = {}
    if args.qemu_accel is not None:
        if args.qemu_accel == "kvm" and not kvm_usable():
            raise InvalidArgError(
                "--qemu-accel kvm: /dev/kvm is not usable here; give --qemu-accel tcg, or leave"
                " it out (each guest then runs as its <domain type> says)"
            )
        host_params["qemu"] = {"accel": args.qemu_accel}
    return Settings(
        state_dir=state_dir,
        allow_dirs=list(args.allow_dir),
        token=load_token(args.token_file) if args.token_file else None,
        retain_jobs=args.retain_jobs,
        max_hosts=args.max_hosts,
        max_domains=args.max_domains,
        max_networks=args.max_networks,
        shutdown_grace=args.shutdown_grace,
        allow_emulators=emulators,
        allow_qemu_args=args.allow_qemu_args,
        socket_path=spec.path if spec.kind == "unix" else None,
        header_timeout=args.header_timeout,
        max_connections=args.max_connections,
        host_params=host_params,
    )


def main(argv: list[str] | None = None) -> int:
    """Run virtjobd; return its exit status (0 clean stop, 2 bad options, 1 start failure)."""
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 dumps every thread's stack to the log
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="virtjobd: %(levelname)s: %(name)s: %(message)s"
    )
    from .server import run, tls_context

    try:
        settings = settings_from(args)
        tls = tls_context(args.tls_cert, args.tls_key) if args.tls_cert else None
        spec = parse_listen(args.listen or f"unix:{defaults.daemon_socket(settings.state_dir)}")
        service = Service.open(settings)
    except VirtError as exc:
        print(f"virtjobd: {exc}", file=sys.stderr)
        return 2
    if spec.kind == "unix" and settings.socket_path is not None:
        spec = ListenSpec("unix", path=settings.socket_path)  # resolved by Service.open
    try:
        return run(
            service,
            spec,
            allow_any=args.listen_any,
            tls=tls,
            log_level=args.log_level,
        )
    except VirtError as exc:
        service.finish_shutdown()
        print(f"virtjobd: {exc}", file=sys.stderr)
        return 1
