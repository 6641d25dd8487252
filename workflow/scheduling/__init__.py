"""Scheduled jobs: periodic access reviews, SLA sweeps, timers, CAPA effectiveness checks,
training refreshers, notification delivery.

* :mod:`~workflow.scheduling.schedules`: the schedules file (configuration, validated with
  ``file:line`` problems) and periods;
* :mod:`~workflow.scheduling.context`: :class:`Job` and what a job gets, :class:`JobContext`;
* :mod:`~workflow.scheduling.claims`: exactly once through claims in ``job_runs``;
* :mod:`~workflow.scheduling.runner`: running one schedule for one period;
* :mod:`~workflow.scheduling.service`: the scheduler process (APScheduler as the clock, the
  leader lock, one tick);
* :mod:`~workflow.scheduling.jobs`: the shipped jobs and ``default_jobs()``, the registry
  the CLI passes to the loader and the runner.
"""
