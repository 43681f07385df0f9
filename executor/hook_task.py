"""`hook` tasks: a basic task class whose role has a trigger; the command runs when triggered.

Transitions are no-ops. Each trigger runs the command once, killing its group
after the timeout (default 30 s), and answers with its exit code and output.
"""
from __future__ import annotations

import asyncio
from collections.abc import Mapping

from executor.basic_task import CommandTask
from executor.launcher import LaunchError, describe_returncode
from executor.reports import HookResult, TransitionResponse
from occlib.states import EXPECTED_STATE, OccEvent, OccState

DEFAULT_HOOK_TIMEOUT = 30.0


class HookTask(CommandTask):
    """Runs its command on trigger(); like AliECS it also reports BASIC_TASK_TERMINATED per run."""

    @property
    def hook_timeout(self) -> float:
        return self.command.timeout or DEFAULT_HOOK_TIMEOUT

    async def transition(self, src: OccState | str, event: OccEvent | str,
                         arguments: Mapping[str, str] | None = None, timeout: float | None = None,
                         *, command_id: str = "", environment_id: str = "") -> TransitionResponse:
        refused = self._refused(event)
        if refused:
            return self._respond(self.state, refused, str(event), command_id, environment_id)
        self.state = EXPECTED_STATE[OccEvent(event)]
        return self._respond(self.state, "", str(event), command_id, environment_id)

    async def trigger(self, arguments: Mapping[str, str] | None = None, *, command_id: str = "",
                      environment_id: str = "") -> HookResult:
        """Run the hook once and wait for it; one run at a time.

        The arguments are added to the hook's environment (NAME=value). AliECS
        ignores trigger arguments; nutshell hands them over so a hook can use
        e.g. the run number. A caller that goes away (its engine died) does not end
        the run: it goes on, supervised, and still holds the task until it ends, so
        the next trigger waits for it and a kill always finds the one live run.
        """
        return await asyncio.shield(self._trigger(arguments, command_id, environment_id))

    async def _trigger(self, arguments: Mapping[str, str] | None, command_id: str,
                       environment_id: str) -> HookResult:
        async with self._lock:
            if self._killing is not None:
                return self._answer(None, "", "", f"task {self.task_id} was killed; hook not run",
                                    command_id, environment_id)
            try:
                run = await self._start_run(self.hook_timeout, extra_env=arguments)
            except LaunchError as error:
                return self._answer(None, "", "", str(error), command_id, environment_id)
            assert run.supervisor is not None
            event = await asyncio.shield(run.supervisor)
            what = f"hook {self.command.describe()!r}"
            if run.timed_out:
                problem = f"{what} timed out after {self.hook_timeout:g} s and was killed"
            elif run.killed:
                problem = f"{what} was killed with its task"
            elif event.exit_code != 0:
                problem = f"{what} {describe_returncode(event.exit_code)}"
            else:
                problem = ""
            return self._answer(event.exit_code, event.stdout, event.stderr, problem, command_id,
                                environment_id)

    def _answer(self, exit_code: int | None, stdout: str, stderr: str, error: str,
                command_id: str, environment_id: str) -> HookResult:
        result = HookResult(self.identity, exit_code, stdout, stderr, error, command_id,
                            environment_id)
        self._report(result)
        return result
