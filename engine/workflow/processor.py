"""Workflow template processing: a template plus user variables into a role tree.

AliECS's ProcessTemplates (reference §4.4, §4.5), sequentially: each role is
templated in stages —
STAGE0 `enabled` with the parent's stack (a disabled role is pruned, nothing
else of it evaluated), STAGE1 its defaults, STAGE2 its vars, STAGE3 its user
vars, STAGE4 name and the kind's fields, STAGE5 constraints, connect targets
and bind aliases — then its iterator locals are copied into its vars and its
children are processed.
Iterators expand into copies that add no path segment; includes graft another
workflow's root under the include role's name; aggregators left without an
enabled child disappear.

Variables are layered exactly as AliECS's gera maps: defaults, vars and user
vars each flatten root → leaf (the child wins), and the consolidated stack is
user vars over vars over defaults, with the environment's global layers
(configuration defaults, configuration vars, request vars) at the bottom of
each. Flattened layers are shared between roles that add nothing, so a
workflow for 200 hosts does not copy the stack for every role.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from engine.config.service import ConfigurationError, ConfigurationService
from engine.gosyntax import is_go_duration
from engine.repos import RepoError
from engine.task.channels import parse_bind_list, parse_connect_list
from engine.task.errors import ChannelError, TaskClassError
from engine.task.taskclass import Constraint
from engine.templates.render import Renderer, TemplateError, Where, go_string
from engine.workflow.roles import (
    PATH_SEPARATOR,
    AggregatorRole,
    CallRole,
    IncludeRole,
    IteratorInfo,
    Role,
    RoleKind,
    RoleNode,
    TaskRole,
    Trigger,
    Workflow,
    WorkflowError,
    merge_channels,
    merge_constraints,
)
from engine.workflow.sources import (
    JitFile,
    PinnedCache,
    RepoReader,
    TemplateReader,
    file_stem,
)
from engine.workflow.spec import RoleSpec, SpecCache, WorkflowSpec

log = logging.getLogger("engine.workflow")

HOOK_TIMEOUT = "30s"  # a role with a trigger and no timeout
NO_TIMEOUT = "0s"
MAX_INCLUDE_DEPTH = 32  # includes within includes; a workflow that includes itself stops here
_SPECS = SpecCache()
_PINNED = PinnedCache()


@dataclass(frozen=True)
class LoadContext:
    """What a dpl.* call made while a role is templated needs to know about that role."""

    file: Any  # the template file (repo, revision, commit, path) the role was written in
    role_path: str
    renderer: Renderer


_CURRENT: ContextVar[LoadContext | None] = ContextVar("nutshell_workflow_load", default=None)


def current_load() -> LoadContext | None:
    """The role being templated in this thread, or None outside workflow loading."""
    return _CURRENT.get()


@dataclass(frozen=True)
class _Scope:
    """What a role hands its children: its flattened layers, stack and constraints."""

    role: Role | None
    path: str
    defaults: Mapping[str, str]
    vars: Mapping[str, str]
    user: Mapping[str, str]
    stack: Mapping[str, str]
    constraints: tuple[Constraint, ...] = ()


def _layer(parent: Mapping[str, str], own: Mapping[str, str]) -> Mapping[str, str]:
    """A flattened layer: the parent's when the role adds nothing (shared, not copied)."""
    return {**parent, **own} if own else parent


def _consolidate(defaults: Mapping[str, str], vars_: Mapping[str, str],
                 user: Mapping[str, str]) -> dict[str, str]:
    return {**defaults, **vars_, **user}


class _Navigator:
    """`Parent()`, `Up(n)` and `This()` for one role's templates."""

    def __init__(self, role: Role) -> None:
        self.role = role

    def parent(self) -> RoleNode:
        parent = self.role.parent
        if parent is None:
            raise WorkflowError(f"role {self.role.path}: Parent(): the workflow root has no "
                                "parent role")
        return parent.node()

    def up(self, levels: Any) -> RoleNode:
        try:
            count = int(levels)
        except (TypeError, ValueError):
            raise WorkflowError(f"role {self.role.path}: Up({levels!r}): the number of levels "
                                "must be an integer") from None
        if count <= 0:
            raise WorkflowError(f"role {self.role.path}: Up({count}): the number of levels must "
                                "be 1 or more")
        node: Role | None = self.role
        for _ in range(count):
            node = node.parent if node is not None else None
            if node is None:
                raise WorkflowError(f"role {self.role.path}: Up({count}): the role has fewer "
                                    f"than {count} ancestors")
        assert node is not None
        return node.node()

    def this(self) -> RoleNode:
        return self.role.node()

    def early(self) -> dict[str, Callable[..., RoleNode]]:
        return {"Parent": self.parent, "Up": self.up}

    def late(self) -> dict[str, Callable[..., RoleNode]]:
        return {"Parent": self.parent, "Up": self.up, "This": self.this}


def _truthy(text: str) -> bool:
    return text.strip().lower() in ("true", "1")


def template_where(file: Any, role_path: str, field: str) -> Where:
    if isinstance(file, JitFile):
        return Where(repo="", file=file.origin, role_path=role_path, field=field)
    return Where(repo=file.repo, file=f"{file.path}@{file.revision}", role_path=role_path,
                 field=field)


def _fail(file: Any, role_path: str, field: str, expression: str | None, message: str
          ) -> WorkflowError:
    text = f"{file.origin}: role {role_path}"
    if field:
        text += f": {field}"
    if expression is not None:
        text += f" {expression!r}"
    return WorkflowError(f"{text}: {message}")


class _Processor:
    """One load: renders roles depth first, in template order."""

    def __init__(self, renderer: Renderer, reader: TemplateReader, specs: SpecCache) -> None:
        self.renderer = renderer
        self.reader = reader
        self.specs = specs

    # ------------------------------------------------------------ rendering

    def _render(self, text: str, env: Callable[[], Mapping[str, Any]], file: Any,
                role_path: str, field: str) -> str:
        if "{{" not in text:
            return text
        try:
            return self.renderer.render(text, env(), template_where(file, role_path, field))
        except TemplateError as error:
            raise WorkflowError(str(error)) from None

    # ------------------------------------------------------------ children

    def children(self, specs: tuple[RoleSpec, ...], scope: _Scope, file: Any) -> list[Role]:
        """The enabled roles a list of child specs becomes (iterators expanded)."""
        roles: list[Role] = []
        for spec in specs:
            if spec.for_ is None:
                role = self.role(spec, scope, file, {}, None)
                if role is not None:
                    roles.append(role)
                continue
            for index, value in enumerate(self._range(spec, scope, file)):
                info = IteratorInfo(spec.for_.var, value, index, spec.for_.describe())
                role = self.role(spec, scope, file, {spec.for_.var: value}, info)
                if role is not None:
                    roles.append(role)
        seen: dict[str, Role] = {}
        for role in roles:
            other = seen.setdefault(role.path, role)
            if other is not role:
                raise WorkflowError(
                    f"{role.origin}: role {role.path}: two enabled sibling roles have this "
                    "path; give them different names or make their enabled conditions exclusive")
        return roles

    def _range(self, spec: RoleSpec, scope: _Scope, file: Any) -> list[str]:
        """An iterator's values, rendered with the parent's stack (§4.4)."""
        assert spec.for_ is not None
        where_path = f"{scope.path}{PATH_SEPARATOR}{spec.name}" if scope.path else spec.name
        block = spec.for_
        if block.range is not None:
            rendered = self._render(block.range, lambda: scope.stack, file, where_path,
                                    "for.range")
            try:
                values = json.loads(rendered)
            except ValueError:
                values = None
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise _fail(file, where_path, "for.range", block.range,
                            f"renders to {rendered!r}, which is not a JSON list of strings "
                            '(e.g. ["flp001","flp002"])')
            return values
        assert block.begin is not None and block.end is not None
        bounds = []
        for field, text in (("for.begin", block.begin), ("for.end", block.end)):
            rendered = self._render(text, lambda: scope.stack, file, where_path, field)
            try:
                bounds.append(int(rendered.strip()))
            except ValueError:
                raise _fail(file, where_path, field, text,
                            f"renders to {rendered!r}, which is not an integer") from None
        return [str(i) for i in range(bounds[0], bounds[1] + 1)]

    # ------------------------------------------------------------ one role

    def role(self, spec: RoleSpec, scope: _Scope, file: Any, locals_: dict[str, str],
             iterated: IteratorInfo | None) -> Role | None:
        """One role and its subtree, or None when it is disabled (pruned)."""
        cls = {RoleKind.TASK: TaskRole, RoleKind.CALL: CallRole,
               RoleKind.AGGREGATOR: AggregatorRole, RoleKind.INCLUDE: IncludeRole}[spec.kind]
        path = f"{scope.path}{PATH_SEPARATOR}{spec.name}" if scope.path else spec.name
        role: Role = cls(name=spec.name, path=path, origin=file.origin, parent=scope.role,
                         locals=dict(locals_), iterated_from=iterated)
        staged = self.stages(spec, scope, file, role, locals_, graft=False)
        if staged is None:
            return None
        inner, fields = staged
        if isinstance(role, TaskRole):
            self._task(spec, file, role, fields)
        elif isinstance(role, CallRole):
            self._call(spec, file, role, fields)
        elif isinstance(role, IncludeRole):
            inner = self._include(file, role, inner, fields)
            if inner is None:
                return None
        else:
            role.children = self.children(spec.children, inner, file)
            if not role.children:
                return None
        return role

    def stages(self, spec: RoleSpec, scope: _Scope, file: Any, role: Role,
               locals_: Mapping[str, str], *, graft: bool
               ) -> tuple[_Scope, dict[str, Any]] | None:
        """STAGE0–STAGE5 of one role: its scope for children and its STAGE4 fields;
        None when `enabled` says no.

        With `graft` the spec is an included workflow's root continuing `role`
        (an include role): its layers go over the include role's own, and the
        include role keeps its name.
        """
        token = _CURRENT.set(LoadContext(file, role.path, self.renderer))
        try:
            return self._stages(spec, scope, file, role, locals_, graft)
        finally:
            _CURRENT.reset(token)

    def _stages(self, spec: RoleSpec, scope: _Scope, file: Any, role: Role,
                locals_: Mapping[str, str], graft: bool
                ) -> tuple[_Scope, dict[str, Any]] | None:
        nav = _Navigator(role)
        cache: dict[str, Mapping[str, Any]] = {}

        def parent_env() -> Mapping[str, Any]:  # STAGE0, STAGE1
            if "p" not in cache:
                cache["p"] = {**scope.stack, **locals_, **nav.early()}
            return cache["p"]

        # STAGE0: enabled, with the parent's stack only.
        if spec.enabled is not None:
            rendered = self._render(spec.enabled, parent_env, file, role.path, "enabled")
            if not _truthy(rendered):
                return None

        # STAGE1: own defaults, parent's stack.
        defaults = {k: self._render(v, parent_env, file, role.path, f"defaults.{k}")
                    for k, v in spec.defaults}
        flat_defaults = _layer(scope.defaults, defaults)

        # STAGE2: own vars, parent's stack with own defaults.
        def vars_env() -> Mapping[str, Any]:
            if "v" not in cache:
                cache["v"] = {**flat_defaults, **scope.vars, **scope.user, **locals_,
                              **nav.early()}
            return cache["v"]

        vars_ = {k: self._render(v, vars_env, file, role.path, f"vars.{k}")
                 for k, v in spec.vars}
        flat_vars = _layer(scope.vars, vars_)
        # STAGE3: own user vars. Roles get them only at runtime (SetRuntimeVar); at load the
        # request's variables are the environment's layer, under the root.
        flat_user = scope.user
        if defaults or vars_:
            stack = _consolidate(flat_defaults, flat_vars, flat_user)
        else:
            stack = scope.stack

        def full_env() -> Mapping[str, Any]:  # STAGE4, STAGE5
            if "f" not in cache:
                cache["f"] = {**stack, **locals_, **nav.late()}
            return cache["f"]

        # STAGE4: name and the kind's scalar fields.
        if not graft:
            name = self._render(spec.name, full_env, file, role.path, "name")
            self._check_name(name, spec, file, role)
            role.name = name
            role.path = f"{scope.path}{PATH_SEPARATOR}{name}" if scope.path else name
        fields = self._stage4(spec, full_env, file, role)

        # STAGE5: constraints, connect targets, bind aliases. AliECS also templates `enabled`
        # again for call and include roles, but over its STAGE0 result, which is "true" or "1"
        # by now: that changes nothing, so it is not repeated here.
        constraints = tuple(
            Constraint(attribute, self._render(value, full_env, file, role.path,
                                               f"constraints[{i}].value"))
            for i, (attribute, value) in enumerate(spec.constraints))
        connect = self._channels(spec.connect, "connect", "target", full_env, file, role)
        bind = self._channels(spec.bind, "bind", "global", full_env, file, role)

        # After the stages the locals become vars, so children see them.
        if locals_:
            vars_ = {**vars_, **locals_}
            flat_vars = {**flat_vars, **locals_}
            stack = _consolidate(flat_defaults, flat_vars, flat_user)

        role.defaults = {**role.defaults, **defaults} if graft else defaults
        role.vars = {**role.vars, **vars_} if graft else vars_
        role.own_constraints = merge_constraints(role.own_constraints, constraints)
        role.constraints = merge_constraints(scope.constraints, constraints)
        role.connect = merge_channels(role.connect, connect)
        role.bind = merge_channels(role.bind, bind)
        role.stack = MappingProxyType(stack)   # shared with children that add nothing: read-only
        return _Scope(role=role, path=role.path, defaults=flat_defaults, vars=flat_vars,
                      user=flat_user, stack=stack, constraints=role.constraints), fields

    @staticmethod
    def _check_name(name: str, spec: RoleSpec, file: Any, role: Role) -> None:
        if not name.strip():
            raise _fail(file, role.path, "name", spec.name, "renders to an empty name")
        bad = [c for c in (":", " ", "\t", "\n") if c in name]
        if bad:
            raise _fail(file, role.path, "name", spec.name,
                        f"renders to {name!r}; a role name must not contain ':' or blanks "
                        "(they separate channel targets and paths)")

    def _stage4(self, spec: RoleSpec, env: Callable[[], Mapping[str, Any]], file: Any,
                role: Role) -> dict[str, Any]:
        """The rendered scalar fields of a task, call or include role (used once all stages
        pass)."""
        def render(text: str | None, field: str) -> str | None:
            return None if text is None else self._render(text, env, file, role.path, field)

        if spec.task is not None:
            return {"load": render(spec.task.load, "task.load") or "",
                    "trigger": render(spec.task.trigger, "task.trigger"),
                    "await": render(spec.task.await_, "task.await"),
                    "timeout": render(spec.task.timeout, "task.timeout")}
        if spec.call is not None:
            return {"func": render(spec.call.func, "call.func") or "",
                    "return": render(spec.call.return_var, "call.return") or "",
                    "trigger": render(spec.call.trigger, "call.trigger"),
                    "await": render(spec.call.await_, "call.await"),
                    "timeout": render(spec.call.timeout, "call.timeout")}
        if spec.kind is RoleKind.INCLUDE:
            return {"include": (render(spec.include, "include") or "").strip()}
        return {}

    def _channels(self, entries: tuple[dict[str, str], ...], kind: str, templated: str,
                  env: Callable[[], Mapping[str, Any]], file: Any, role: Role) -> tuple[Any, ...]:
        if not entries:
            return ()
        rendered = []
        for index, entry in enumerate(entries):
            entry = dict(entry)
            if templated in entry:
                entry[templated] = self._render(entry[templated], env, file, role.path,
                                                f"{kind}[{index}].{templated}")
            rendered.append(entry)
        context = f"{file.origin}: role {role.path}"
        try:
            if kind == "connect":
                return parse_connect_list(rendered, context)
            return parse_bind_list(rendered, context)
        except ChannelError as error:
            raise WorkflowError(str(error)) from None

    # ------------------------------------------------------------ kinds

    @staticmethod
    def _hook_fields(file: Any, role: TaskRole | CallRole, prefix: str,
                     fields: Mapping[str, Any], written: Mapping[str, str | None]) -> None:
        """trigger, await and timeout as AliECS defaults them: await = trigger; 30s with a
        trigger, else 0s. `written` holds the fields as written, for messages."""
        parsed: dict[str, Trigger | None] = {}
        for key in ("trigger", "await"):
            text = fields.get(key)
            parsed[key] = None
            if text is None or not text.strip():
                continue
            try:
                parsed[key] = Trigger.parse(text)
            except ValueError as error:
                raise _fail(file, role.path, f"{prefix}.{key}", written[key], str(error)) \
                    from None
        timeout_text = fields.get("timeout")
        given = timeout_text.strip() if timeout_text else ""
        role.trigger = parsed["trigger"]
        if role.trigger is not None:
            role.await_ = parsed["await"] or role.trigger
            timeout = given or HOOK_TIMEOUT
        else:
            role.await_ = parsed["await"]
            timeout = given or NO_TIMEOUT
        if not is_go_duration(timeout):
            raise _fail(file, role.path, f"{prefix}.timeout", written["timeout"],
                        f"{timeout!r} is not a duration (e.g. 10s, 1m, 1m30s)")
        role.timeout = timeout

    def _task(self, spec: RoleSpec, file: Any, role: TaskRole, fields: Mapping[str, Any]) -> None:
        assert spec.task is not None
        role.critical = spec.task.critical
        role.load = fields["load"].strip()
        self._hook_fields(file, role, "task", fields, {
            "trigger": spec.task.trigger, "await": spec.task.await_, "timeout": spec.task.timeout})
        if not role.load:
            raise _fail(file, role.path, "task.load", spec.task.load,
                        "renders to an empty task template name")
        try:
            loaded = self.reader.task_class(file, role.load)
        except TaskClassError as error:
            raise _fail(file, role.path, "task.load", role.load, str(error)) from None
        except (RepoError, OSError) as error:
            raise _fail(file, role.path, "task.load", role.load,
                        f"cannot read the task template: {error}") from None
        task_class = loaded.task_class
        role.task_class = task_class
        role.class_identifier = task_class.identifier
        role.class_display = (f"{task_class.repo}/tasks/{task_class.name}@{loaded.revision}"
                              if task_class.repo and not isinstance(file, JitFile)
                              else task_class.name)

    def _call(self, spec: RoleSpec, file: Any, role: CallRole, fields: Mapping[str, Any]) -> None:
        assert spec.call is not None
        role.critical = spec.call.critical
        role.func = fields["func"].strip()
        role.return_var = fields["return"].strip()
        self._hook_fields(file, role, "call", fields, {
            "trigger": spec.call.trigger, "await": spec.call.await_, "timeout": spec.call.timeout})
        if not role.func:
            raise _fail(file, role.path, "call.func", spec.call.func, "renders to an empty call")

    def _include(self, file: Any, role: IncludeRole, scope: _Scope,
                 fields: Mapping[str, Any]) -> _Scope | None:
        reference = fields["include"]
        role.include = reference
        if not reference:
            raise _fail(file, role.path, "include", None,
                        "renders to an empty workflow name; check the include expression")
        ancestor, depth = role.parent, 1
        while ancestor is not None:
            depth += isinstance(ancestor, IncludeRole)
            ancestor = ancestor.parent
        if depth > MAX_INCLUDE_DEPTH:
            raise _fail(file, role.path, "include", reference,
                        f"includes nest deeper than {MAX_INCLUDE_DEPTH} levels (does the "
                        "workflow include itself?)")
        try:
            included = self.reader.workflow(file, reference)
        except (RepoError, OSError) as error:
            raise _fail(file, role.path, "include", reference,
                        f"cannot read the included workflow: {error}") from None
        spec = self.specs.get(included.text, included.origin)
        expected = file_stem(included.path)
        if spec.name != expected:
            raise _fail(file, role.path, "include", reference,
                        f"{included.origin}: the name of the workflow template file and the "
                        f"name of the workflow don't match (file {expected!r}, "
                        f"name {spec.name!r})")
        role.included_origin = included.origin
        staged = self.stages(spec.root, scope, included, role, {}, graft=True)
        if staged is None:
            return None
        inner = staged[0]
        role.children = self.children(spec.root.children, inner, included)
        if not role.children:
            return None
        return inner


# ---------------------------------------------------------------- entry points

def _text_value(value: Any) -> str:
    return value if isinstance(value, str) else go_string(value)


def _global_layers(config: ConfigurationService, user_vars: Mapping[str, Any],
                   environment_id: str, global_vars: Mapping[str, str] | None
                   ) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """The environment's layers under the root (§4.5): GlobalDefaults, GlobalVars, UserVars."""
    try:
        defaults = dict(config.defaults())
        vars_ = dict(config.vars())
    except ConfigurationError as error:
        raise WorkflowError(f"cannot read the global defaults and vars: {error}") from None
    if global_vars:
        vars_.update(global_vars)
    user: dict[str, str] = {}
    for key, value in user_vars.items():
        if ":" in key:
            log.info("user variable %s targets a role; ignored as AliECS does", key)
            continue
        user[key] = _text_value(value)
    if environment_id:
        user["environment_id"] = environment_id
    hosts_text = user.get("hosts")
    if hosts_text:
        try:
            hosts = json.loads(hosts_text)
        except ValueError:
            hosts = None
        if isinstance(hosts, list) and all(isinstance(h, str) for h in hosts):
            try:
                defaults["detectors"] = json.dumps(config.detectors_for_hosts(hosts),
                                                   separators=(",", ":"))
            except ConfigurationError as error:
                log.info("no detectors for hosts %s: %s", hosts, error)
    return defaults, vars_, user


def _jit_dir(explicit: Path | None, library: Any) -> Path | None:
    """Where generated workflows are: as given, else the library's JIT generator's."""
    if explicit is not None:
        return explicit
    found = getattr(getattr(library, "dpl", None), "jit_dir", None)
    return Path(found) if found is not None else None


def load_workflow_file(file: Any, user_vars: Mapping[str, Any], *, repos: RepoReader,
                       library: Any, renderer: Renderer, config: ConfigurationService,
                       environment_id: str = "", jit_dir: Path | None = None,
                       global_vars: Mapping[str, str] | None = None,
                       pinned: PinnedCache | None = None) -> Workflow:
    """Process an already-read workflow template file (engine.repos.TemplateFile).

    `user_vars` are the request's variables (values that are not strings are
    written Go-style: lists as JSON); `global_vars` are engine-kept globals
    such as `__fmq_cleanup_count`. Raises WorkflowError, naming the repo and
    file, role path, field and expression.
    """
    spec: WorkflowSpec = _SPECS.get(file.text, file.origin)
    expected = file_stem(file.path)
    if spec.name != expected:
        raise WorkflowError(f"{file.origin}: the name of the workflow template file and the name "
                            f"of the workflow don't match (file {expected!r}, name {spec.name!r})")
    defaults, vars_, user = _global_layers(config, user_vars, environment_id, global_vars)
    scope = _Scope(role=None, path="", defaults=defaults, vars=vars_, user=user,
                   stack=_consolidate(defaults, vars_, user))
    reader = TemplateReader(repos, _jit_dir(jit_dir, library),
                            pinned if pinned is not None else _PINNED)
    processor = _Processor(renderer, reader, _SPECS)
    root = AggregatorRole(name=spec.name, path=spec.name, origin=file.origin)
    try:
        staged = processor.stages(spec.root, scope, file, root, {}, graft=False)
        if staged is not None:
            root.children = processor.children(spec.root.children, staged[0], file)
    except RecursionError:  # roles are processed depth first, one frame chain per level
        raise WorkflowError(f"{file.origin}: the role tree is nested too deeply") from None
    root.enabled = bool(root.children)
    return Workflow(root=root, name=spec.name, origin=file.origin,
                    description=spec.description, public=spec.public,
                    environment_id=environment_id, global_defaults=defaults,
                    global_vars=vars_, env_user_vars=user,
                    commit=str(getattr(file, "commit", "") or ""))


def load_workflow(reference: str, user_vars: Mapping[str, Any], *, repos: RepoReader,
                  library: Any, renderer: Renderer, config: ConfigurationService,
                  environment_id: str = "",
                  jit_dir: Path | None = None, global_vars: Mapping[str, str] | None = None,
                  pinned: PinnedCache | None = None) -> Workflow:
    """Resolve `[<repo>/workflows/]<name>[@<revision>]` and process it (see load_workflow_file)."""
    try:
        file = repos.resolve_workflow(reference)
    except (RepoError, OSError) as error:  # unknown repo, revision or file
        raise WorkflowError(f"cannot load workflow {reference!r}: {error}") from None
    return load_workflow_file(file, user_vars, repos=repos, library=library, renderer=renderer,
                              config=config, environment_id=environment_id, jit_dir=jit_dir,
                              global_vars=global_vars, pinned=pinned)
