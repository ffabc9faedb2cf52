"""`gridwarden hash-password`: make the salted hash of an HMI password or PIN.

The secret is read from a no-echo prompt (asked twice) on a terminal, or as the first line
of standard input when it is piped, so it never appears in the shell history or ``ps``.
The printed line goes under ``[hmi.users]`` in the site config.
"""

import argparse
import getpass
import re
import sys
from typing import Any

from controller.hmi.auth import hash_password

_ACCOUNT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MIN_SECRET_LEN = 4  # a 4-digit PIN is the floor; the lock-out limits guessing


def register_hash_password(subparsers: "argparse._SubParsersAction[Any]") -> None:
    p = subparsers.add_parser(
        "hash-password",
        help="print the salted hash of an HMI password or PIN for [hmi.users]",
        description="Reads the password or PIN from a no-echo prompt (or the first line of"
        " stdin when piped) and prints a line to put under [hmi.users] in the config.",
    )
    p.add_argument(
        "account", nargs="?", default=None, help='account name: prints `account = "hash"`'
    )
    p.set_defaults(func=_cmd_hash_password)


def _read_secret() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password or PIN: ")
        again = getpass.getpass("Again: ")
        if first != again:
            raise ValueError("the two entries differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _cmd_hash_password(args: argparse.Namespace) -> int:
    account: str | None = args.account
    if account is not None and not _ACCOUNT.match(account):
        print(
            "gridwarden hash-password: an account name is 1-64 letters, digits, '_', '.', '-'",
            file=sys.stderr,
        )
        return 2
    try:
        secret = _read_secret()
    except (ValueError, EOFError, KeyboardInterrupt) as exc:
        print(f"gridwarden hash-password: {exc or 'cancelled'}", file=sys.stderr)
        return 2
    if len(secret) < MIN_SECRET_LEN:
        print(
            f"gridwarden hash-password: use at least {MIN_SECRET_LEN} characters",
            file=sys.stderr,
        )
        return 2
    line = hash_password(secret)
    print(f'{account} = "{line}"' if account else line)
    return 0
