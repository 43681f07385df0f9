"""JIT DPL workflows: `dpl.Generate(cmd)`, `dpl.GenerateFromUri(name)` and
`dpl.GenerateFromUriOrFallbackToTemplate(name)` (reference §4.6).

A DPL command (given, or read from `jit/<name>` in the workflow's repository
at its commit) is templated with the role's stack and named
`jit-<sha1(command + O2 package versions + jit_env_vars + configuration payloads)>`.
The generated workflow and task templates are kept in the working
directory's JIT directory (`<jit>/workflows/<name>.yaml`, `<jit>/tasks/*.yaml`,
as DPL's `--o2-control` writes them) and reused while the hash holds.
Otherwise the command runs, in the JIT directory, only where the O2
environment exists (`/etc/profile.d/o2.sh`); elsewhere generation fails with
a message saying so. The include then loads the generated workflow.
"""
from __future__ import annotations

import hashlib
import logging
import re
import shlex
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.config.service import ConfigurationError, ConfigurationService
from engine.repos import RepoError
from engine.templates.render import TemplateError
from engine.workflow.processor import LoadContext, current_load, template_where
from engine.workflow.roles import WorkflowError
from engine.workflow.sources import jit_workflow_path

log = logging.getLogger("engine.workflow.dpl")

O2_PROFILE = Path("/etc/profile.d/o2.sh")
MAX_PAYLOADS = 2
_CONFIG_URI = re.compile(r"""['"]?(consul-json|apricot)://[^ |\n]*""")
DEFAULT_TIMEOUT = 600.0


class DplError(WorkflowError):
    """A JIT DPL workflow cannot be generated; names the role, the jit file and command."""


class JitGenerator:
    """The DplGenerator of engine.templates.functions, for workflow loading.

    It learns which role (and so which repository and commit) it works for
    from engine.workflow.processor's load context. Thread-safe: generation of
    one name is serialised, different names run in parallel.
    """

    def __init__(self, repos: Any, jit_dir: Path, config: ConfigurationService | None = None,
                 *, profile: Path = O2_PROFILE, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.repos = repos
        self.jit_dir = Path(jit_dir)
        self.config = config
        self.profile = profile
        self.timeout = timeout
        self._lock = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}
        self._versions: str | None = None

    # ------------------------------------------------------------ DplGenerator

    def generate(self, command: str, stack: Mapping[str, Any]) -> str:
        """dpl.Generate(cmd): the name of the workflow generated from a literal command."""
        context = self._context("dpl.Generate")
        if command.strip() == "none":
            raise DplError("dpl.Generate: the DPL command is 'none'")
        rendered = self._template(command, stack, context, "dpl.Generate command")
        # AliECS joins these without a space for literal commands; the name depends on it.
        return self._generate(rendered, "&&", stack, context, "the given command")

    def generate_from_uri(self, name: str, stack: Mapping[str, Any]) -> str:
        """dpl.GenerateFromUri(name): generate from the command in `jit/<name>`."""
        return self._from_uri(name, stack, fallback=False)

    def generate_from_uri_or_fallback(self, name: str, stack: Mapping[str, Any]) -> str:
        """dpl.GenerateFromUriOrFallbackToTemplate(name): as GenerateFromUri, or `name`
        unchanged when there is no `jit/<name>` (the include then loads workflows/<name>)."""
        return self._from_uri(name, stack, fallback=True)

    # ------------------------------------------------------------ steps

    @staticmethod
    def _context(call: str) -> LoadContext:
        context = current_load()
        if context is None:
            raise DplError(f"{call}: JIT DPL workflows can only be generated while a workflow "
                           "loads (in a role's include)")
        return context

    @staticmethod
    def _at(context: LoadContext) -> str:
        """The role for log lines (error messages get it from the template error around them)."""
        return f"{context.file.origin}: role {context.role_path}"

    def _from_uri(self, name: str, stack: Mapping[str, Any], *, fallback: bool) -> str:
        call = "dpl.GenerateFromUriOrFallbackToTemplate" if fallback else "dpl.GenerateFromUri"
        context = self._context(call)
        name = str(name).strip()
        if not name:
            raise DplError(f"{call}(''): no jit command name given")
        if name == "none":
            raise DplError(f"{call}('none'): the DPL command is 'none'")
        file = context.file
        try:
            command = self.repos.read_file(file.repo, file.commit, f"jit/{name}")
        except (RepoError, OSError) as error:  # bad path or unknown repo
            raise DplError(f"{call}({name!r}): {error}") from None
        if command is None:
            if fallback:
                log.debug("%s: no jit/%s, falling back to workflows/%s", self._at(context),
                          name, name)
                return name
            raise DplError(f"{call}({name!r}): no file jit/{name} in "
                           f"{file.repo} at {file.revision}")
        rendered = self._template(command, stack, context, f"jit/{name}")
        return self._generate(rendered, " && ", stack, context, f"jit/{name}")

    @staticmethod
    def _template(command: str, stack: Mapping[str, Any], context: LoadContext,
                  field: str) -> str:
        try:
            return context.renderer.render(command, stack,
                                           template_where(context.file, context.role_path, field))
        except TemplateError as error:
            raise DplError(f"JIT failed in template resolution of the DPL command: {error}") \
                from None

    def _payloads(self, command: str, context: LoadContext, what: str) -> list[str]:
        """The configuration payloads a command reads (up to 2 consul-json:// or apricot://
        URIs), so a change of configuration changes the name. The raw payload is hashed
        (AliECS hashes apricot's processed one: either changes when the entry does)."""
        payloads: list[str] = []
        for match in _CONFIG_URI.finditer(command):
            if len(payloads) >= MAX_PAYLOADS:
                break
            uri = match.group(0).strip("'\"")
            _, found, key = uri.partition("components/")
            if not found:
                raise DplError(f"{what}: configuration URI {uri!r} has no "
                               "components/<component>/<RUNTYPE>/<role>/<entry> path")
            path = key.partition("?")[0]
            if self.config is None:
                raise DplError(f"{what}: configuration URI {uri!r} needs "
                               "a configuration service")
            try:
                payload = self.config.get_component(path)
            except ConfigurationError as error:
                raise DplError(f"{what}: JIT failed trying to query "
                               f"configuration payload {uri!r}: {error}") from None
            payloads.append(payload)
        return payloads

    def _o2_versions(self) -> str:
        """`rpm -qa o2-O2 o2-QualityControl`, once; empty where rpm or O2 is missing."""
        if self._versions is None:
            text = ""
            if shutil.which("rpm"):
                try:
                    text = subprocess.run(["rpm", "-qa", "o2-O2", "o2-QualityControl"],
                                          capture_output=True, text=True, timeout=30,
                                          check=False).stdout
                except (OSError, subprocess.SubprocessError):
                    text = ""
            self._versions = text
        return self._versions

    def name_for(self, command: str, jit_env_vars: str, payloads: list[str]) -> str:
        """`jit-` + sha1(command + O2 versions + jit_env_vars + payloads), AliECS's naming."""
        digest = hashlib.sha1((command + self._o2_versions() + jit_env_vars).encode())
        for payload in payloads:
            digest.update(payload.encode())
        return "jit-" + digest.hexdigest()

    def jit_name(self, rendered: str, *, from_uri: bool = True, jit_env_vars: str = "",
                 payloads: tuple[str, ...] = ()) -> str:
        """The name a templated command gets (GenerateFromUri's when from_uri, Generate's
        otherwise): where a pre-generated workflow must be put to be reused."""
        joiner = " && " if from_uri else "&&"
        return self.name_for(f"source {O2_PROFILE}{joiner}{rendered}", jit_env_vars,
                             list(payloads))

    def _lock_for(self, name: str) -> threading.Lock:
        with self._lock:
            return self._locks.setdefault(name, threading.Lock())

    def _generate(self, rendered: str, joiner: str, stack: Mapping[str, Any],
                  context: LoadContext, what: str) -> str:
        """The name for a templated command; generates the workflow unless it is cached.

        The name hashes the command as AliECS writes it (sourcing O2_PROFILE); the
        command that runs sources this generator's profile.
        """
        jit_env_vars = str(stack.get("jit_env_vars", "") or "")
        command = f"source {O2_PROFILE}{joiner}{rendered}"
        name = self.name_for(command, jit_env_vars, self._payloads(command, context, what))
        target = jit_workflow_path(self.jit_dir, name)
        with self._lock_for(name):
            if target.is_file():
                log.info("%s: reusing JIT workflow %s for %s", self._at(context), name, what)
                return name
            if not self.profile.is_file():
                raise DplError(
                    f"cannot generate DPL workflow from {what}: "
                    f"{self.profile} not found on this machine, so the DPL command cannot run "
                    f"here (command: {command}); generate it where O2 is installed and put "
                    f"the result at {target} with its tasks under {self.jit_dir / 'tasks'}")
            runnable = f"source {shlex.quote(str(self.profile))}{joiner}{rendered}"
            self._run(runnable, jit_env_vars, name, context, what)
            if not target.is_file():
                raise DplError(f"the DPL command of {what} ran but wrote no "
                               f"{target} (command: {command})")
        return name

    def _run(self, command: str, jit_env_vars: str, name: str, context: LoadContext,
             what: str) -> None:
        # A bare `export` would print the whole environment into the output.
        exports = f"export {jit_env_vars} && " if jit_env_vars.strip() else ""
        line = f"{exports}{command} --o2-control {name}".replace("\n", " ")
        (self.jit_dir / "workflows").mkdir(parents=True, exist_ok=True)
        (self.jit_dir / "tasks").mkdir(parents=True, exist_ok=True)
        log.info("%s: generating JIT workflow %s for %s", self._at(context), name, what)
        try:
            done = subprocess.run(["bash", "-c", line], cwd=self.jit_dir, capture_output=True,
                                  text=True, timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DplError(f"the DPL command of {what} did not finish in "
                           f"{self.timeout:g}s (command: {line})") from None
        except OSError as error:
            raise DplError(f"cannot run the DPL command of {what}: "
                           f"{error}") from None
        if done.returncode != 0:
            output = (done.stdout + done.stderr).strip()[-2000:]
            raise DplError(f"failed to run the DPL command of {what} "
                           f"(exit code {done.returncode}; command: {line}): {output}")
