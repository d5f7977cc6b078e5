"""Run a command in a network namespace with no way out, and record every packet it sends
anywhere but loopback.

Usage (as root, or where user namespaces are allowed, `unshare -rn`):
    unshare -n python tests/netwatch.py REPORT.json -- COMMAND ...

In the new namespace only `lo` exists. Every IPv4 and IPv6 address is routed to it as local
(`ip route add local 0.0.0.0/0 dev lo`), so any connection, UDP datagram or DNS query,
from Python, C code or a subprocess, goes out on `lo`, where a raw packet socket sees it,
and is refused at once (no time-outs). REPORT.json gets the command's exit code and every
non-loopback destination seen (and every DNS query, even to a resolver on loopback). The
command cannot tell: it simply has no network.
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys
import threading
import time

ETH_P_ALL = 0x0003
IPV4, IPV6 = 0x0800, 0x86DD


def setup_namespace() -> None:
    for command in (["ip", "link", "set", "lo", "up"],
                    ["ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo"],
                    ["ip", "-6", "route", "add", "local", "::/0", "dev", "lo"]):
        subprocess.run(command, check=True, capture_output=True)


def destination(frame: bytes) -> str | None:
    """The destination address of an Ethernet frame on `lo`, if IP."""
    kind = int.from_bytes(frame[12:14], "big")
    if kind == IPV4 and len(frame) >= 34:
        return socket.inet_ntop(socket.AF_INET, frame[30:34])
    if kind == IPV6 and len(frame) >= 54:
        return socket.inet_ntop(socket.AF_INET6, frame[38:54])
    return None


def destination_port(frame: bytes) -> int | None:
    """The TCP or UDP destination port of an IPv4 or IPv6 frame."""
    kind = int.from_bytes(frame[12:14], "big")
    if kind == IPV4 and len(frame) >= 34:
        protocol, start = frame[23], 14 + (frame[14] & 0x0F) * 4
    elif kind == IPV6 and len(frame) >= 54:
        protocol, start = frame[20], 54
    else:
        return None
    if protocol not in (6, 17) or len(frame) < start + 4:
        return None
    return int.from_bytes(frame[start + 2:start + 4], "big")


def dns_name(frame: bytes) -> str:
    """The name a DNS query over IPv4 UDP asks for ('' if the frame is not one): the report
    says what was looked up, not only where."""
    if int.from_bytes(frame[12:14], "big") != IPV4 or frame[23] != 17:  # UDP
        return ""
    header = 14 + (frame[14] & 0x0F) * 4
    if int.from_bytes(frame[header + 2:header + 4], "big") != 53:
        return ""
    labels, at = [], header + 8 + 12
    while at < len(frame) and frame[at]:
        labels.append(frame[at + 1:at + 1 + frame[at]].decode("ascii", "replace"))
        at += 1 + frame[at]
    return ".".join(labels)


def watch(sniffer: socket.socket, seen: dict[str, int], stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            frame = sniffer.recv(65535)
        except TimeoutError:
            continue
        address = destination(frame)
        # Anything off this machine, and any DNS query even to a loopback resolver
        # (systemd-resolved listens on 127.0.0.53): a look-up is the first step out.
        if address and (not ipaddress.ip_address(address).is_loopback
                        or destination_port(frame) == 53):
            name = dns_name(frame)
            key = f"{address} (DNS {name})" if name else address
            seen[key] = seen.get(key, 0) + 1


def main() -> int:
    report, command = sys.argv[1], sys.argv[sys.argv.index("--") + 1:]
    setup_namespace()
    sniffer = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    sniffer.bind(("lo", 0))
    sniffer.settimeout(0.2)
    seen: dict[str, int] = {}
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(sniffer, seen, stop), daemon=True)
    watcher.start()
    result = subprocess.run(command)
    time.sleep(0.5)  # packets still in flight
    stop.set()
    watcher.join(5)
    with open(report, "w", encoding="utf-8") as out:
        json.dump({"returncode": result.returncode, "attempts": seen}, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
