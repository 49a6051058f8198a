"""Fleet inventories: which devices, in which groups, with which per-group settings.

Two layouts are accepted:

* ``profiles/fleet.toml`` (or any path via ``--inventory``)::

      [fleet]
      devices = ["orin-nano", "xavier-nx", "lab-laptop"]   # names of profiles/NAME.toml
      [groups]
      jetsons = ["orin-nano", "xavier-nx"]
      [group_settings.jetsons]                             # optional: overrides profile fields
      call_timeout_s = 900

* an Ansible inventory in YAML (``all:`` / ``hosts`` / ``children`` / ``vars``): ``ansible_host``,
  ``ansible_port``, ``ansible_user`` and ``ansible_ssh_private_key_file`` map onto the profile fields;
  ``edgenas_*`` variables carry the rest (``edgenas_runtime``, ``edgenas_python``, ...). A host with a
  ``profiles/NAME.toml`` starts from that profile; variables override it. Variables take Ansible's
  precedence: ``all``'s, then its groups' (parents before children, same depth by name), the host's own last.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgenas.errors import InputError
from edgenas.devices.profiles import DeviceProfile, load_profile, profile_fields, profile_from_dict
from edgenas.io import read_toml
from edgenas.project import Project
from edgenas.safenames import NAME_RE

#: profile fields a group (or an Ansible variable) may not set: a device's name and transport say which
#: machine it is, so overriding them would file one machine's fingerprint and tables under another's name
_IDENTITY_FIELDS = ("name", "transport")
_ANSIBLE_MAP = {"ansible_host": "host", "ansible_port": "port", "ansible_user": "user",
                "ansible_ssh_private_key_file": "key_file", "ansible_python_interpreter": "python"}


@dataclass(frozen=True)
class Inventory:
    devices: tuple[DeviceProfile, ...]
    groups: dict[str, tuple[str, ...]]
    source: str

    def names(self) -> list[str]:
        return [d.name for d in self.devices]

    def select(self, group: str | None = None, names: list[str] | None = None) -> list[DeviceProfile]:
        chosen = list(self.devices)
        if group is not None:
            if group not in self.groups:
                raise InputError(f"unknown group '{group}' in {self.source}",
                                 hint=f"groups: {', '.join(sorted(self.groups)) or 'none'}")
            members = set(self.groups[group])
            chosen = [d for d in chosen if d.name in members]
        if names is not None:
            stray = [n for n in names if n not in self.names()]
            if stray:
                raise InputError(f"device(s) not in the fleet {self.source}: {', '.join(stray)}",
                                 hint=f"devices: {', '.join(self.names())}")
            chosen = [d for d in chosen if d.name in set(names)]
        return chosen


def default_inventory_path(project: Project) -> Path:
    for name in ("fleet.toml", "fleet.yaml", "fleet.yml", "inventory.yaml", "inventory.yml"):
        p = project.profiles_dir / name
        if p.exists():
            return p
    return project.profiles_dir / "fleet.toml"


def load_inventory(project: Project, path: str | Path | None = None) -> Inventory:
    path = Path(path) if path else default_inventory_path(project)
    if not path.exists():
        raise InputError(f"fleet inventory not found: {path}",
                         hint="create profiles/fleet.toml with [fleet] devices = [...] or pass --inventory")
    if path.suffix in (".yaml", ".yml"):
        return _load_ansible(project, path)
    return _load_toml(project, path)


def _override(profile: DeviceProfile, settings: dict[str, Any], where: str) -> DeviceProfile:
    if not settings:
        return profile
    data = {f: getattr(profile, f) for f in profile_fields()}
    data.update(settings)
    data = {k: v for k, v in data.items() if v is not None}
    return profile_from_dict(data, where=where)


def _no_identity(settings: dict[str, Any], where: str, prefix: str = "") -> None:
    """Refuse a setting of ``_IDENTITY_FIELDS`` (one ``InputError`` naming ``where`` and the key)."""
    key = next((f for f in _IDENTITY_FIELDS if f in settings), None)
    if key is not None:
        raise InputError(f"{where} sets {prefix}{key}, which says which machine a device is and cannot be "
                         "overridden", hint=f"remove {prefix}{key}; set it in the device's own profiles/NAME.toml")


def _load_toml(project: Project, path: Path) -> Inventory:
    data = read_toml(path, "fleet inventory")
    where = str(path)
    unknown = sorted(set(data) - {"fleet", "groups", "group_settings"})
    if unknown:
        raise InputError(f"{where}: unknown table(s) {', '.join(unknown)}",
                         hint="allowed: [fleet], [groups], [group_settings.NAME]")
    fleet = data.get("fleet")
    if not isinstance(fleet, dict) or not isinstance(fleet.get("devices"), list) or not fleet["devices"]:
        raise InputError(f"{where}: [fleet] needs devices = [\"name\", ...]",
                         hint="list at least one device, a name of profiles/NAME.toml")
    names = fleet["devices"]
    if not all(isinstance(n, str) for n in names) or len(set(names)) != len(names):
        raise InputError(f"{where}: devices must be distinct profile names")
    groups_raw = data.get("groups", {})
    if not isinstance(groups_raw, dict):
        raise InputError(f"{where}: [groups] must map group names to lists of devices")
    groups: dict[str, tuple[str, ...]] = {}
    for g, members in groups_raw.items():
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise InputError(f"{where}: group '{g}' must be a list of device names")
        stray = [m for m in members if m not in names]
        if stray:
            raise InputError(f"{where}: group '{g}' names devices not in [fleet]: {', '.join(stray)}")
        groups[g] = tuple(members)
    settings = data.get("group_settings", {})
    if not isinstance(settings, dict) or any(g not in groups for g in settings):
        raise InputError(f"{where}: [group_settings.NAME] must name a group of [groups]")
    bad = next((g for g, v in settings.items() if not isinstance(v, dict)), None)
    if bad is not None:
        raise InputError(f"{where}: [group_settings.{bad}] must be a table of profile fields",
                         hint="e.g. [group_settings.jetsons] then call_timeout_s = 900")
    for g, values in settings.items():
        _no_identity(values, f"{where}: [group_settings.{g}]")
    profiles = []
    for n in names:
        prof = load_profile(project, n)
        for g, members in groups.items():
            if n in members:
                prof = _override(prof, dict(settings.get(g, {})), f"{where} [group_settings.{g}] for {n}")
        profiles.append(prof)
    return Inventory(tuple(profiles), groups, where)


def _load_ansible(project: Project, path: Path) -> Inventory:
    from edgenas.limits import load_yaml_limited

    where = str(path)
    data = load_yaml_limited(path, "YAML inventory")
    if not isinstance(data, dict) or not isinstance(data.get("all"), dict):
        raise InputError(f"{where}: expected an Ansible inventory with a top-level 'all:' group")

    def mapping(node: Any, what: str) -> dict[str, Any]:
        """``node`` (null: empty) as a mapping with text keys, else one error naming ``what``."""
        if node is None:
            return {}
        if not isinstance(node, dict) or not all(isinstance(k, str) for k in node):
            raise InputError(f"{where}: {what} must be a mapping of names", hint="see profiles/inventory.example.yaml")
        return node

    tree = _AnsibleTree()
    groups: dict[str, list[str]] = {}

    def walk(name: str, node: Any, parents: tuple[str, ...]) -> list[str]:
        node = mapping(node, f"group '{name}'")
        tree.add_group(name, mapping(node.get("vars"), f"the vars of group '{name}'"), len(parents))
        members: list[str] = []
        for h, hv in mapping(node.get("hosts"), f"the hosts of group '{name}'").items():
            tree.add_host(h, mapping(hv, f"host '{h}'"), parents + (name,))
            members.append(h)
        for child, cnode in mapping(node.get("children"), f"the children of group '{name}'").items():
            members += walk(child, cnode, parents + (name,))
        groups[name] = sorted(set(members))
        return members

    walk("all", data["all"], ())
    hosts = tree.resolved()
    if not hosts:  # as a fleet.toml of devices = []: a fleet command over no device only printed an empty table
        raise InputError(f"{where}: no hosts; an Ansible inventory needs at least one, under all: or a group in it",
                         hint="e.g. all: {hosts: {orin-nano: {ansible_host: orin.lab}}}; "
                              "see profiles/inventory.example.yaml")
    profiles = []
    for h, hv in hosts.items():
        settings: dict[str, Any] = {}
        secrets = sorted(k for k in hv if k.startswith("ansible_") and any(w in k for w in ("pass", "secret", "token")))
        if secrets:
            raise InputError(f"{where}: host {h} sets {', '.join(secrets)}: passwords are never used",
                             hint="remove them and use ansible_ssh_private_key_file or ssh-agent")
        for k, v in hv.items():
            if k in _ANSIBLE_MAP:
                settings[_ANSIBLE_MAP[k]] = v
            elif k.startswith("edgenas_"):
                settings[k[len("edgenas_"):]] = v
        _no_identity(settings, f"{where}: host {h}", prefix="edgenas_")
        if not NAME_RE.match(h):
            raise InputError(f"{where}: invalid host name {h!r}",
                             hint="host names are device names: letters, digits, '.', '_' and '-'")
        base_path = project.profiles_dir / f"{h}.toml"
        base = load_profile(project, h) if base_path.exists() else None
        if base is None:
            settings.setdefault("host", h)
            profiles.append(profile_from_dict(dict(settings, name=h), where=f"{where} host {h}"))
        else:
            profiles.append(_override(base, settings, f"{where} host {h}"))
    groups.pop("all", None)
    return Inventory(tuple(profiles), {g: tuple(m) for g, m in groups.items()}, where)


@dataclass
class _AnsibleTree:
    """The variables of an Ansible inventory as Ansible resolves them for a host: ``all``'s lowest, then its
    groups' by depth (a parent's before its child's; groups of the same depth by name), the host's own last.
    Merging them in file order let a later group's inherited ``ansible_user`` overwrite the one a host set
    for itself in an earlier group."""

    group_vars: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    depth: dict[str, int] = dataclasses.field(default_factory=dict)
    host_vars: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    host_groups: dict[str, set[str]] = dataclasses.field(default_factory=dict)

    def add_group(self, name: str, vars_: dict[str, Any], depth: int) -> None:
        """A group may be listed under several parents: its vars merge, its depth is the deepest."""
        self.group_vars.setdefault(name, {}).update(vars_)
        self.depth[name] = max(self.depth.get(name, 0), depth)

    def add_host(self, host: str, vars_: dict[str, Any], groups: tuple[str, ...]) -> None:
        """``groups``: the group listing the host and every group above it (a host is in its ancestors too)."""
        self.host_vars.setdefault(host, {}).update(vars_)
        self.host_groups.setdefault(host, set()).update(groups)

    def resolved(self) -> dict[str, dict[str, Any]]:
        """Host -> its variables, in the order the hosts first appear."""
        out = {}
        for host, own in self.host_vars.items():
            merged: dict[str, Any] = {}
            for g in sorted(self.host_groups[host], key=lambda g: (self.depth[g], g)):
                merged.update(self.group_vars[g])
            out[host] = dict(merged, **own)
        return out


def with_overrides(profile: DeviceProfile, **changes: Any) -> DeviceProfile:
    return dataclasses.replace(profile, **changes)
