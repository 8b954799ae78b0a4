"""Import what a plan's workers need: in the driver before it forks the forkserver.

:func:`runner.orchestration.forkserver.start_forkserver` calls :func:`preload_plan`
in the driver, which then forks the forkserver; a spawned forkserver imports this
module as a preload instead, finding the plan in ``RUNNER_FORKSERVER_PLAN`` (the
manifest, the pipeline, the module folders). Either compiles the plan as the run
will and imports the engine, the plan's stage modules and its branches' declared
imports, so every worker forked later starts with them loaded. Any problem (a
bad manifest, a module that fails) only leaves the workers colder: the driver
reports it, and a stage imports what it needs when it runs.
"""

from __future__ import annotations

import json
import logging
import os

from runner.orchestration.forkserver_env import ENGINE_PRELOAD, PLAN_ENV
from runner.orchestration.warm import branch_imports, import_modules, stage_modules

__all__ = ["preload_plan"]

log = logging.getLogger("runner")


def preload_plan(spec: str, *, quiet: bool = True) -> list[str]:
    """Import what the plan ``spec`` (JSON from :data:`PLAN_ENV`) needs in a worker;
    returns the modules it asked for (none when the plan has no parallel group).

    ``quiet``: say nothing while compiling (in a spawned forkserver: the driver says
    all there is to say); the driver itself passes False, so a note said once per
    process (a user's stage replacing a shipped one) is said there, not swallowed.
    """
    was_disabled, log.disabled = log.disabled, quiet or log.disabled
    try:
        wanted = json.loads(spec)
        from runner.manifest import default_manifest, load_manifest
        from runner.orchestration.plan import compile_plan
        from runner.registry import add_module_folders

        add_module_folders(wanted.get("path") or ())
        manifest = load_manifest(wanted.get("manifest") or default_manifest())
        plan = compile_plan(manifest, str(wanted["pipeline"]))
    except Exception as exc:
        log.debug("could not compile the plan to preload for the workers (the run will "
                  "say why): %s: %s", type(exc).__name__, exc)
        return []
    finally:
        log.disabled = was_disabled
    if not plan.has_parallel:
        return []
    modules = list(dict.fromkeys([*ENGINE_PRELOAD, *stage_modules(plan),
                                  *branch_imports(plan)]))
    import_modules(modules)
    return modules


_spec = os.environ.pop(PLAN_ENV, None)  # the workers forked from here need not see it
if _spec:
    preload_plan(_spec)
