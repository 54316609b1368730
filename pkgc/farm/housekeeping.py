"""The farm's periodic chores: publish the job backlog for autoscaling, and deal with dead jobs.

On AWS the metrics Lambda (`pkgc.farm.aws_lambda.metrics_handler`, every minute) runs `tend`. The backlog per build
platform (its queue's waiting + in-flight jobs) is what the workers' target tracking divides by the number of
instances. A dead job (one its queue moved to the dead letters after too many receives: every worker that took it
crashed or vanished before finishing) would otherwise leave its build queued forever and its clients waiting:
`BuildLifecycle.bury` marks the build failed with the reason, and the dead letter is deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from pkgc.farm.ports import BacklogMetrics, JobQueue
from pkgc.farm.work import BuildLifecycle, Buried

log = logging.getLogger(__name__)

# A dead job whose build a live worker holds is looked at again after this long (the next run, a minute later).
KEPT_DEAD_LETTER_SECONDS = 55.0
# Dead jobs dealt with per platform per run: bounds one run's time (Lambda: 30 s); the rest wait for the next run.
MAX_DEAD_LETTERS_PER_RUN = 50


@dataclass
class HousekeepingReport:
    backlog: dict[str, int] = field(default_factory=dict)
    buried: dict[str, list[tuple[str, Buried]]] = field(default_factory=dict)  # platform -> (job body, outcome)

    def summary(self) -> dict[str, object]:
        """A JSON-able summary (the Lambda's return value, visible in its logs and test invocations)."""
        return {
            "backlog": dict(self.backlog),
            "dead_letters": {
                platform: [{"key": body[:64], "outcome": b.outcome, "detail": b.detail} for body, b in items]
                for platform, items in self.buried.items()
            },
        }


def drain_dead_letters(
    lifecycle: BuildLifecycle, queue: JobQueue, limit: int = MAX_DEAD_LETTERS_PER_RUN
) -> list[tuple[str, Buried]]:
    """Bury each dead job of `queue` (at most `limit`); delete the dead letter unless its build must be kept."""
    done: list[tuple[str, Buried]] = []
    for _ in range(limit):
        job = queue.receive_dead_letter(KEPT_DEAD_LETTER_SECONDS)
        if job is None:
            break
        buried = lifecycle.bury(job.body)
        if buried.outcome != "kept":
            queue.delete_dead_letter(job)
        log.info("dead job %s: %s (%s)", job.body[:64], buried.outcome, buried.detail)
        done.append((job.body, buried))
    return done


def tend(lifecycle: BuildLifecycle, metrics: BacklogMetrics) -> HousekeepingReport:
    """Bury the dead jobs of every platform's queue, then publish every platform's backlog (in one call).

    Dead jobs first: a build failed now may send its waiters' jobs (which then fail at once), and those belong
    in this run's backlog.
    """
    report = HousekeepingReport()
    platforms = lifecycle.queues.platforms()
    for platform in platforms:
        report.buried[platform] = drain_dead_letters(lifecycle, lifecycle.queue_for(platform))
    report.backlog = {platform: lifecycle.queue_for(platform).depth() for platform in platforms}
    metrics.publish_backlog(report.backlog)
    return report
