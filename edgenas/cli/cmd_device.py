"""``edgenas device ...``: list profiles, trust a host key, show a device's fingerprint."""

from __future__ import annotations

import click
import typer

from edgenas.cli._common import emit_json, err, out, project
from edgenas.errors import InputError
from edgenas.textsafe import esc, one_line


def register(app: typer.Typer) -> None:
    device_app = typer.Typer(help="Device profiles, host keys, fingerprints.", no_args_is_help=True)
    app.add_typer(device_app, name="device", help="Device profiles, host keys, fingerprints.")

    @device_app.command("list")
    def list_(json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """List device profiles (and the built-in local)."""
        from edgenas.devices.profiles import list_profiles, load_profile

        proj = project()
        rows = []
        for name in list_profiles(proj):
            try:
                p = load_profile(proj, name)
            except InputError as exc:  # one invalid profile is its own row, not a failed listing
                rows.append({"name": name, "error": one_line(exc.message, 300)})
                continue
            rows.append({"name": p.name, "host": getattr(p, "host", None) or "-", "runtime": p.runtime,
                         "provider": p.provider or "cpu", "precision": p.precision, "threads": p.threads})
        if json_out:
            emit_json(rows)
            return
        for r in rows:
            if "error" in r:
                out.print(f"{esc(r['name']):<16} [red]invalid:[/red] {esc(r['error'])}")
                continue
            where = f"{r['runtime']}/{r['provider']}" if r["runtime"] != "tensorrt" else r["runtime"]
            out.print(esc(f"{r['name']:<16} {r['host']:<24} {where:<18} {r['precision']:<5} threads={r['threads']}"))

    @device_app.command("trust")
    def trust(name: str = typer.Argument(..., help="profile name"),
              yes: bool = typer.Option(False, "--yes", help="trust without asking (for scripts)"),
              replace: bool = typer.Option(False, "--replace", help="replace a recorded key that changed"),
              fingerprint: str = typer.Option(None, "--fingerprint", help="expected SHA256:... fingerprint"),
              jump_fingerprint: str = typer.Option(None, "--jump-fingerprint",
                                                   help="expected SHA256:... fingerprint of the jump host"),
              json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Trust a device's SSH host key explicitly (and its ProxyJump host's, first).

        Shows the key's fingerprint and records it in the project's known_hosts on confirmation.
        """
        from edgenas.devices.profiles import load_profile
        from edgenas.devices.trust import has_jump_host

        if replace and yes and not (fingerprint or jump_fingerprint):  # which key changed: checked per host below
            raise InputError("--replace --yes replaces a changed host key without showing it to you: "
                             "it needs --fingerprint (or --jump-fingerprint) SHA256:... of the new key",
                             hint="get the fingerprint from the device's owner (ssh-keygen -lf "
                                  "/etc/ssh/ssh_host_ed25519_key.pub on it), or drop --yes to confirm it yourself")
        proj = project()
        prof = load_profile(proj, name)
        steps = [(True, jump_fingerprint)] if has_jump_host(prof) else []
        rows = [_trust_one(proj, prof, jump, fp, yes=yes, replace=replace, quiet=json_out)
                for jump, fp in steps + [(False, fingerprint)]]
        if json_out:
            emit_json(rows[-1] if len(rows) == 1 else {**rows[-1], "jump_host": rows[0]})

    @device_app.command("info")
    def info(name: str = typer.Argument("local", help="profile name or 'local'"),
             json_out: bool = typer.Option(False, "--json", help="print as JSON")) -> None:
        """Print a device's fingerprint and runtimes."""
        from edgenas.devices.session import open_session

        with open_session(project(), name) as s:
            info = s.info()
            mismatch = info.power_mode_mismatch(s.profile.power_mode)
            mode_note = info.power_mode_note(s.profile.power_mode)
        result = {"device": s.device, **info.to_dict()}  # the profile's name ('local' or as filed)
        fp = info.fingerprint
        if mismatch:
            result["power_mode_mismatch"] = mismatch
        if mode_note:
            result["power_mode_note"] = mode_note
        if json_out:
            emit_json(result)
            return
        out.print(f"[bold]{esc(name)}[/bold] fingerprint {esc(str(result.get('fingerprint_hash'))[:16])}…  "
                  f"agent {esc(str(result.get('agent_version'))[:12])}")
        _print_tree(fp, indent=1)
        out.print("runtimes: " + esc(", ".join(f"{k} {v.get('version', '') if isinstance(v, dict) else ''}".strip()
                                           for k, v in (result.get("runtimes") or {}).items() if v)))
        if mode_note:  # another mode than the profile expects, or none reported
            out.print(f"[yellow]{esc(mode_note)}[/yellow]")


def _trust_one(proj, prof, jump: bool, fingerprint: str | None, *, yes: bool, replace: bool, quiet: bool) -> dict:
    """Show the key of the device (``jump``: of its jump host), confirm, record; its JSON row."""
    from edgenas.devices.trust import offered_key, trust_host

    flag = "--jump-fingerprint" if jump else "--fingerprint"
    offered = offered_key(proj, prof, jump=jump, expected_fingerprint=fingerprint)
    who, seen = offered.describe(), offered.fingerprint
    row = {"device": prof.name, "host": offered.host, "key_type": offered.key_type, "fingerprint": seen,
           "known_hosts": str(proj.known_hosts)}
    if fingerprint and fingerprint != seen:  # before the key is shown: an error is one line
        raise InputError(f"{who} presents a {offered.key_type} key {seen}, not the expected {fingerprint}",
                         hint="nothing was recorded; check that you reach the right machine")
    if offered.state == "changed" and replace and yes and not fingerprint:
        raise InputError(f"{who} offers a changed host key: --replace --yes needs {flag} SHA256:... of it",
                         hint="get the fingerprint from the host's owner, or drop --yes to confirm it yourself")
    err.print(esc(f"{who} presents a {offered.key_type} key {seen}"))
    if offered.state == "trusted" and all(k.path == proj.known_hosts for k in offered.recorded if k.key == offered.key):
        if not quiet:
            out.print(f"already trusted {esc(offered.host)}: {esc(seen)} ({esc(proj.known_hosts)})")
        return row
    if not yes:
        _confirm(f"Trust this key{' of the jump host' if jump else ''} and record it in the project's known_hosts?",
                 flag)
    trust_host(proj, prof, expected_fingerprint=seen, replace=replace, jump=jump)
    if not quiet:
        out.print(f"[green]trusted[/green] {esc(who)}: {esc(seen)} -> {esc(proj.known_hosts)}")
    return row


def _confirm(question: str, flag: str) -> None:
    import contextlib
    import sys

    try:
        if sys.stdin is None:  # closed (0<&-): input() would raise "lost sys.stdin"
            raise typer.Abort()
        with contextlib.redirect_stdout(sys.stderr):  # click's prompt writes its last space to stdout (--json's)
            ok = typer.confirm(question, default=False, err=True)
    except (click.exceptions.Abort, typer.Abort):  # EOF on stdin, or Ctrl-C
        if sys.stdin is not None and sys.stdin.isatty():
            raise
        raise InputError("no answer to confirm the host key: the input is not a terminal",
                         hint=f"run it in a terminal, or pass --yes (with {flag} SHA256:... from the host's owner)")
    if not ok:
        raise InputError("host key not trusted", hint="compare the fingerprint with the host's "
                         "(ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub on it) and re-run")


def _print_tree(d: dict, indent: int) -> None:
    for k, v in d.items():
        if isinstance(v, dict):
            out.print("  " * indent + esc(f"{k}:", 300))
            _print_tree(v, indent + 1)
        else:
            out.print("  " * indent + esc(f"{k}: {v}", 1000))
