"""The objects the Podman check plays (tests/containers/podman.py), rendered by our own
code: ``runner submit --dry-run``'s output as printed, a CronJob's Job, and the chart's
run Job and helm-test Pod (Helm into the Kubernetes emulator). Played in CI by
scripts/container-e2e.sh."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.containers import cases
from tests.containers.podman import Play, plays

pytestmark = pytest.mark.integration


@pytest.mark.slow
def test_the_plays_are_our_own_output_unmodified_but_the_cronjobs_job(tmp_path: Path) -> None:
    key = "ab" * 32
    todo = plays("runner:e2e", key=key, work=tmp_path)
    made = [p for p in todo if isinstance(p, Play)]
    submit, schedule = made[0], made[1]
    printed = cases.cli("submit", "alpha.full", "--image", "runner:e2e", "--run-id",
                        "podman-submit", "-n", cases.NAMESPACE, "--artifacts-pvc",
                        cases.CLAIM, "--dry-run", key=key)
    def untraced(text: str) -> str:  # each run has its own trace context
        return re.sub(r"00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]", "TRACE", text)

    assert untraced(submit.documents) == untraced(printed)
    assert [d["kind"] for d in cases.documents(submit.secrets)] == ["Secret"]
    kinds = [d["kind"] for d in cases.documents(schedule.documents)]
    assert kinds == ["ConfigMap", "Job"]
    assert schedule.case.run_id and schedule.case.run_id.startswith("alpha-full-")
    for play in made:
        assert play.containers and play.containers[0]["image"] == "runner:e2e"
    names = [p.name if isinstance(p, cases.Skip) else p.case.name for p in todo]
    assert names[2:] == ["podman: chart GitOps run alpha.full (Job)",
                         "podman: chart helm test (Pod)"]
    if len(made) == 4:
        chart = cases.documents(made[2].documents)
        assert [d["kind"] for d in chart][-1] == "Job"
        assert {"ConfigMap", "Secret"} <= {d["kind"] for d in chart}
        assert cases.documents(made[3].documents)[-1]["kind"] == "Pod"
