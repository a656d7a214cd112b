"""Sub-commands that read a container back: ``verify``, ``ls``, ``cat`` and ``get``.

::

    clfsload verify ACCOUNT CONTAINER SOURCE [--deep | --state STATE_DIR] [--output text|json] [--preserve-hardlinks 0|1]
    clfsload ls     ACCOUNT CONTAINER [PATH] [-l] [-R]
    clfsload cat    ACCOUNT CONTAINER PATH
    clfsload get    ACCOUNT CONTAINER PATH DEST [--overwrite]

ACCOUNT and CONTAINER are spelt as for the loader (``file:/path`` for a local
folder). The credential comes, as for the loader, from ``--azure-ad``,
``--sas-token-file``, ``--credential`` or the environment
(``$CLFSLOAD_SAS_TOKEN``, ``$CLFSLOAD_ACCOUNT_KEY``,
``$CLFSLOAD_CONNECTION_STRING``); a ``file:`` target takes none.

Exit codes: 0 success (``verify``: no difference); 1 differences found, the
container or a path in it cannot be read, or writing failed; 2 the command
line is wrong. Failures print one line on stderr, never a traceback and
never a secret.

The entry point is :func:`main`, called with the words after the program
name, the sub-command first.
"""

import argparse
import json
import os
import stat
import sys
import time
from typing import Callable, Dict, List, Tuple

from .common import ENV_ACCOUNT_KEY, ENV_CONNECTION_STRING, ENV_SAS, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .common import ScrubbingParser, credential_from, is_local_target
from ..clfs.constants import Btype
from ..clfs.container import Container, WalkEntry
from ..errors import ClfsLoadError, FormatError
from ..proctitle import looks_secret
from ..read.readback import TargetContainer, open_container
from ..read.restore import DestinationExistsError, restore
from ..settings import Switches
from ..targets.credentials import Credential
from ..targets.redaction import redact
from ..work.checksum_log import FILE_NAME as CHECKSUM_FILE
from ..work.checksum_log import read_checksums
from ..read.verify import compare_tree, display_path, summarize

__all__ = ["COMMANDS", "main"]


class _Failed(ClfsLoadError):
    """A command cannot do what was asked; the message is the one line shown."""


# --- parsers -------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    """ACCOUNT, CONTAINER and the credential options every command takes."""
    p.add_argument("account", metavar="ACCOUNT",
                   help="account name, blob endpoint URL, or file:/path of a local folder")  # fmt: skip
    p.add_argument("container", metavar="CONTAINER", help="the container (for file:, a folder under the path)")
    cred = p.add_mutually_exclusive_group()
    cred.add_argument("--credential", default=None,
                      help="SAS token, account key or connection string (argv is visible to other users: "
                      "prefer --sas-token-file or $%s)" % ENV_SAS)  # fmt: skip
    cred.add_argument("--sas_token_file", "--sas-token-file", default=None, help="read the SAS token from this file")
    cred.add_argument("--azure_ad", "--azure-ad", action="store_true", help="authenticate with Azure AD")
    p.add_argument("--allow_unfinished", "--allow-unfinished", action="store_true",
                   help="read a container whose load never finished (from its tmp root)")  # fmt: skip


def _parser(prog: str, name: str, description: str) -> ScrubbingParser:
    p = ScrubbingParser(
        prog="%s %s" % (prog, name),
        description=description,
        epilog="Credential: --credential, --sas-token-file, --azure-ad, or $%s / $%s / $%s; none for file:. "
        "Exit codes: 0 ok, 1 failure (verify: differences), 2 usage."
        % (ENV_SAS, ENV_ACCOUNT_KEY, ENV_CONNECTION_STRING),
    )
    _common(p)
    return p


def _verify_parser(prog: str) -> ScrubbingParser:
    p = _parser(prog, "verify", "Compare a container with the source tree it was loaded from.")
    p.add_argument("source", metavar="SOURCE", help="the source directory tree")
    p.add_argument("--deep", action="store_true",
                   help="read every data segment and compare all bytes "
                   "(default: sizes and the first 16 KiB)")  # fmt: skip
    p.add_argument("--output", choices=("text", "json"), default="text", help="text lines (default) or one JSON object")
    p.add_argument("--preserve_hardlinks", "--preserve-hardlinks", choices=("0", "1"), default=None,
                   help="how the load was run; default: inferred from the container")  # fmt: skip
    p.add_argument("--state", metavar="STATE_DIR", default=None,
                   help="the load's state dir: compare whole files with the XXH3 checksums recorded at upload "
                   "(hashes the source, downloads no data segment)")  # fmt: skip
    return p


def _ls_parser(prog: str) -> ScrubbingParser:
    p = _parser(prog, "ls", "List a directory of a container (names sorted bytewise; times in UTC).")
    p.add_argument("path", metavar="PATH", nargs="?", default="/", help="path in the container (default: the root)")
    p.add_argument("-l", dest="long", action="store_true", help="long format: mode, nlink, uid, gid, size, mtime")
    p.add_argument("-R", dest="recursive", action="store_true", help="list subdirectories recursively")
    return p


def _cat_parser(prog: str) -> ScrubbingParser:
    p = _parser(prog, "cat", "Write a regular file of a container to standard output, byte for byte.")
    p.add_argument("path", metavar="PATH", help="path of a regular file in the container")
    return p


def _get_parser(prog: str) -> ScrubbingParser:
    p = _parser(prog, "get", "Restore a file or a subtree of a container to local disk.")
    p.add_argument("path", metavar="PATH", help="path in the container ('/' for everything)")
    p.add_argument("dest", metavar="DEST",
                   help="the path the restored object gets "
                   "(an existing directory is reused for a directory)")  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing files (never directories)")
    return p


def _check_positionals(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Refuse a credential typed in place of another argument (exit 2) before it reaches a message."""
    for attr, metavar, bare_keys in (("account", "ACCOUNT", True), ("container", "CONTAINER", True),
                                     ("path", "PATH", False), ("source", "SOURCE", False), ("dest", "DEST", False)):
        value = getattr(args, attr, None)
        if value is not None and looks_secret(value, bare_keys):
            parser.error("%s looks like a credential (a SAS token or an account key); pass credentials with "
                         "--sas-token-file, --credential or $%s" % (metavar, ENV_SAS))  # fmt: skip


# --- helpers ------------------------------------------------------------------------


def _credential(args: argparse.Namespace) -> Credential:
    """The credential, taken like the loader's (:func:`clfsload.cli.common.credential_from`), or from --credential."""
    if args.credential is not None:
        return Credential.parse(args.credential)
    loader_args = argparse.Namespace(azure_ad=args.azure_ad, sas_token_file=args.sas_token_file, sas_token="-",
                                     target_storage_account=args.account)  # fmt: skip
    return credential_from(loader_args, os.environ)


def _open(args: argparse.Namespace) -> TargetContainer:
    # The loader's retry settings (CLFSLOAD_TEST_RETRY), read here at the edge.
    options = Switches.from_environ(os.environ).target_options(is_local_target(args.account))
    return open_container(args.account, args.container, _credential(args), allow_unfinished=args.allow_unfinished,
                          options=options)


def _key(path_text: str) -> bytes:
    return os.fsencode(path_text).strip(b"/")


def _lookup(container: Container, path_text: str) -> WalkEntry:
    try:
        return container.lookup(_key(path_text))
    except FileNotFoundError:
        raise _Failed("no such path in the container: %r" % path_text) from None


def _write_lines(lines: List[bytes]) -> None:
    """Raw bytes lines to stdout: names go out exactly as stored, like ls."""
    sys.stdout.flush()
    out = sys.stdout.buffer
    out.write(b"".join(line + b"\n" for line in lines))
    out.flush()


# --- verify -----------------------------------------------------------------------


def _run_verify(args: argparse.Namespace) -> int:
    hardlinks = None if args.preserve_hardlinks is None else args.preserve_hardlinks == "1"
    checksums = None
    if args.state is not None:
        if not os.path.isfile(os.path.join(args.state, CHECKSUM_FILE)):
            raise _Failed("'%s' holds no checksums recorded at upload (%s); give the load's state "
                               "directory, or leave --state out" % (args.state, CHECKSUM_FILE))
        checksums = read_checksums(args.state)
    with _open(args) as container:
        differences = compare_tree(container, args.source, deep=args.deep, hardlinks=hardlinks, checksums=checksums)
        paths = len(container.entries)
    mode = "deep" if args.deep else ("checksum" if checksums is not None else "fast")
    if args.output == "json":
        print(json.dumps({"ok": not differences, "mode": mode, "paths": paths, "counts": summarize(differences),
                          "differences": [d.to_json() for d in differences]}, indent=1))  # fmt: skip
    else:
        for d in differences:
            print(d)
        if differences:
            counts = ", ".join("%d %s" % (n, what) for what, n in sorted(summarize(differences).items()))
            plural = "" if len(differences) == 1 else "s"
            print("verify: %d difference%s (%s) in %d container paths, %s check"
                  % (len(differences), plural, counts, paths, mode))  # fmt: skip
        else:
            print("verify: OK: %d paths match the source (%s check)" % (paths, mode))
    return EXIT_FAILED if differences else EXIT_OK


# --- ls -----------------------------------------------------------------------------


def _long_line(entry: WalkEntry, name: bytes) -> bytes:
    """``ls -l`` style: mode, nlink, uid, gid, size (major, minor for devices), mtime in UTC, name."""
    attrs = entry.inode.vattr
    size = "%d, %d" % (attrs.rdev_major, attrs.rdev_minor) if attrs.btype in (Btype.BLK, Btype.CHR) else str(attrs.size)
    mtime = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(attrs.mtime_sec)) + ".%09d +0000" % attrs.mtime_nsec
    head = "%s %3d %5d %5d %10s %s " % (stat.filemode(attrs.mode), attrs.nlink, attrs.uid, attrs.gid, size, mtime)
    line = head.encode("ascii") + name
    if attrs.btype == Btype.LNK:
        line += b" -> " + (entry.inode.obj.data or b"")
    return line


def _listing(container: Container, path: bytes, long: bool, prog: str) -> Tuple[List[bytes], List[bytes], int]:
    """The lines for one directory, its subdirectory paths (sorted), and how many entries were unreadable.

    Entries the walk refused (hostile or duplicate names, a directory reached
    twice) are not listed: each gets one line on stderr instead.
    """
    lines, subdirs, unreadable = [], [], 0
    for name in sorted(container.listdir(path)):
        child = path + b"/" + name if path else name
        entry = container.lookup(child)
        lines.append(_long_line(entry, name) if long else name)
        if entry.inode.is_dir:
            subdirs.append(child)
    for skipped in container.skipped:
        if skipped.path.rpartition(b"/")[0] != path:
            continue
        unreadable += 1
        if skipped.refused:
            print("%s: %s: not listed: %s" % (prog, display_path(skipped.path), skipped.reason), file=sys.stderr)
        else:  # listed, but its inode is missing or does not decode (the walk reports which)
            name = skipped.path.rpartition(b"/")[2]
            lines.append(b"?????????? ? ? ? ? ? " + name if long else name)
    return lines, subdirs, unreadable


def _run_ls(args: argparse.Namespace) -> int:
    with _open(args) as container:
        top = _lookup(container, args.path)
        if not top.inode.is_dir:
            name = os.fsencode(args.path)
            _write_lines([_long_line(top, name) if args.long else name])
            return EXIT_OK
        unreadable = 0
        stack = [top.path]
        while stack:  # one directory at a time: the output is streamed
            path = stack.pop()
            lines, subdirs, bad = _listing(container, path, args.long, args.prog)
            unreadable += bad
            if args.recursive:
                header = b"/" + path + b":"
                lines.insert(0, header if path == top.path else b"\n" + header)
                stack.extend(reversed(subdirs))  # depth-first, in name order, like ls -R
            _write_lines(lines)
    if unreadable:
        entries = "entry" if unreadable == 1 else "entries"
        print("%s: %d %s whose inode is missing or unreadable (shown as ?) or whose name was refused"
              % (args.prog, unreadable, entries), file=sys.stderr)  # fmt: skip
        return EXIT_FAILED
    return EXIT_OK


# --- cat and get ------------------------------------------------------------------


def _run_cat(args: argparse.Namespace) -> int:
    with _open(args) as container:
        entry = _lookup(container, args.path)
        inode = entry.inode
        if inode.is_dir:
            raise _Failed("%r is a directory" % args.path)
        if inode.btype == Btype.LNK:
            target = (inode.obj.data or b"").decode("utf-8", "backslashreplace")
            raise _Failed("%r is a symbolic link (to %r); cat reads regular files" % (args.path, target))
        if inode.btype != Btype.REG:
            raise _Failed("%r is not a regular file" % args.path)
        before = len(container.problems)
        sys.stdout.flush()
        out = sys.stdout.buffer
        for chunk in container.iter_content(inode):
            out.write(chunk)
        out.flush()
        faults = container.problems[before:]
    if faults:
        raise _Failed("the content of %r may be damaged: %s" % (args.path, faults[0]))
    return EXIT_OK


def _run_get(args: argparse.Namespace) -> int:
    with _open(args) as container:
        _lookup(container, args.path)  # the one-line message for a missing path
        try:
            report = restore(container, _key(args.path), args.dest, overwrite=args.overwrite)
        except DestinationExistsError as exc:
            raise _Failed("%s (pass --overwrite to replace files)" % exc) from None
    print(report.summary())
    for line in report.note_lines():
        print("note: " + line, file=sys.stderr)
    for problem in report.problems:
        print("%s: container problem: %s" % (args.prog, problem), file=sys.stderr)
    for line in report.failure_lines():
        print("%s: %s" % (args.prog, line), file=sys.stderr)
    if report.failures:
        print("%s: %d entries not restored: the restored tree is incomplete" % (args.prog, len(report.failures)),
              file=sys.stderr)  # fmt: skip
    return EXIT_OK if report.complete else EXIT_FAILED


# --- dispatch -----------------------------------------------------------------------

_Command = Tuple[Callable[[str], ScrubbingParser], Callable[[argparse.Namespace], int]]

#: sub-command name -> (parser builder, runner)
COMMANDS: Dict[str, _Command] = {
    "verify": (_verify_parser, _run_verify),
    "ls": (_ls_parser, _run_ls),
    "cat": (_cat_parser, _run_cat),
    "get": (_get_parser, _run_get),
}


def _usage(prog: str) -> str:
    return (
        "usage: %(p)s {verify,ls,cat,get} ...\n\n"
        "  %(p)s verify ACCOUNT CONTAINER SOURCE [--deep | --state STATE_DIR] [--output json]\n"
        "  %(p)s ls ACCOUNT CONTAINER [PATH] [-l] [-R]\n"
        "  %(p)s cat ACCOUNT CONTAINER PATH\n"
        "  %(p)s get ACCOUNT CONTAINER PATH DEST [--overwrite]\n\n"
        "'%(p)s COMMAND --help' describes one command.\n" % {"p": prog}
    )


def _error_text(exc: BaseException) -> str:
    """The one line shown for a failure, scrubbed of anything that looks like a credential."""
    if isinstance(exc, OSError) and exc.strerror:
        text = exc.strerror
        if exc.filename is not None:
            text += ": %r" % os.fsdecode(exc.filename)
    elif isinstance(exc, FormatError):
        text = "container unreadable: %s" % exc
    else:
        text = str(exc)
    return redact(text)


def main(argv: List[str], prog: str = "clfsload") -> int:
    """Run one read-back sub-command; ``argv`` is ``[COMMAND, ARG, ...]``. Returns the exit code.

    Never raises for a bad command line (2) or a failure (1): argparse's
    exits are caught, and errors become one line on stderr.
    """
    words = list(argv)
    if not words or words[0] in ("-h", "--help"):
        print(_usage(prog), end="", file=sys.stdout if words else sys.stderr)
        return EXIT_OK if words else EXIT_USAGE
    name = words[0]
    if name not in COMMANDS:
        shown = "(a credential)" if looks_secret(name) else repr(name)
        print(_usage(prog) + "%s: error: unknown command %s" % (prog, redact(shown)), file=sys.stderr)
        return EXIT_USAGE
    build, run = COMMANDS[name]
    parser = build(prog)
    try:
        rest = words[1:]
        # the loader's parser scrubs these words out of its error messages
        parser.secret_words = sorted((w for w in rest if looks_secret(w)), key=len, reverse=True)
        args = parser.parse_intermixed_args(rest)  # options may come between positionals: ls A C -l PATH
        _check_positionals(parser, args)
        if name == "verify" and not os.path.isdir(args.source):
            parser.error("SOURCE is not a directory: %r" % args.source)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    args.prog = parser.prog
    try:
        return run(args)
    except KeyboardInterrupt:
        print("%s: interrupted" % parser.prog, file=sys.stderr)
        return EXIT_FAILED
    except BrokenPipeError:  # e.g. `cat ... | head`: the reader went away
        _silence_stdout()
        return EXIT_FAILED
    except (ClfsLoadError, OSError) as exc:
        print("%s: %s" % (parser.prog, _error_text(exc)), file=sys.stderr)
        return EXIT_FAILED
    except (MemoryError, RecursionError, ValueError, OverflowError, LookupError, TypeError) as exc:
        # a last resort: a container the checks did not foresee must still end in one line, not a traceback
        text = redact("%s: %s" % (type(exc).__name__, exc))[:500]
        print("%s: internal error reading the container (%s); please report it" % (parser.prog, text), file=sys.stderr)
        return EXIT_FAILED


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (captured output)
        pass

