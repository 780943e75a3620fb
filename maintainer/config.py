"""The maintainer's tuning: every interval, lease and back-off of the workers, in one place.

Read from the same `hpcbridge_config.py` as `Site` (`c.Maintainer.cancel_resend_seconds = 120`);
`hpcbridge maintainer --generate-config` writes them all, commented. The defaults suit a
shared HPC with a few thousand active jobs: change them to trade load on the login node
against how soon users see a change.
"""
from __future__ import annotations

from traitlets import Float, Int
from traitlets.config import Configurable


class Maintainer(Configurable):
    """How often the maintainer's workers poll, resend, re-read and give up."""

    # --- the poller lease ---------------------------------------------------------------
    lease_poll_intervals = Float(3.0, help="""The poller lease of an HPC lasts this many of
        its poll intervals (HPCConfig.poll_interval), renewed each cycle: when the worker
        holding it dies, another takes the HPC over after at most that long. Renewed also
        while a slow cycle waits on the HPC (every third of the lease).""").tag(config=True)
    lease_min_seconds = Float(15.0, help="""Shortest poller lease, in seconds, whatever the
        poll interval: a slow cycle must not lose the lease to another worker."""
                              ).tag(config=True)
    poll_jitter = Float(0.2, help="""Each HPC is polled every poll_interval × (1 ± this), at
        random, so that the pollers of many sites do not hit a scheduler in step."""
                        ).tag(config=True)
    cycle_deadline_seconds = Float(180.0, help="""Longest a poll cycle of one HPC may wait on
        it (each HPC is polled in a thread of its own): what is still running then is
        cancelled and the HPC counts as unreachable for that cycle. Longer than the
        connectors' own deadlines (HPCConfig.command_timeout, sftp_timeout), which normally
        end a hung call first.""").tag(config=True)
    idle_probe_seconds = Float(60.0, help="""An HPC with no job in its scheduler is asked one
        cheap command this often (and every cycle while it is unreachable), so that its
        reachability shown to users is current.""").tag(config=True)

    # --- jobs the scheduler no longer shows ----------------------------------------------
    lost_after_seconds = Float(120.0, help="""A watched job missing from the scheduler's queue
        with no end in its accounting (which lags by seconds) for this long is looked up by
        name: followed under the id it has now, or failed as lost by the scheduler (after
        twice this long when only accounting still remembers it, never ended). A job whose
        id now names another job is looked up at once.""").tag(config=True)
    lookups_per_cycle = Int(20, help="""Most lookups by name (one or two scheduler commands
        each) a poll cycle sends for such jobs; the rest wait for the next cycle."""
                            ).tag(config=True)

    # --- handing jobs to the pool ---------------------------------------------------------
    resend_seconds = Float(30.0, help="""The poller hands a queued or stuck job to the worker
        pool (an rq task) at most once per this many seconds; a job that just ended in the
        scheduler is handed over at once.""").tag(config=True)
    resend_memory = Int(100000, help="""How many recently handed-over jobs the poller
        remembers (to honour resend_seconds) before it forgets the older ones."""
                        ).tag(config=True)
    cancel_resend_seconds = Float(60.0, help="""A cancel the scheduler has not acted on yet
        (the job is still listed) is sent again after this many seconds."""
                                  ).tag(config=True)
    admission_lock_seconds = Float(30.0, help="""Admission of an HPC's queued jobs is
        serialised by a Redis lock: held at most this long, and waited for at most this long
        (then the poller offers the job again)."""
                                   ).tag(config=True)

    submit_batch_size = Int(200, help="""Most queued jobs of one HPC a worker admits, stages
        and submits together in one round (one SFTP channel, one command for all their
        sbatch); the next round takes the next ones, in fair order.""").tag(config=True)
    staging_concurrency = Int(64, help="""Jobs of a batch staged at the same time, their SFTP
        requests pipelined on one channel.""").tag(config=True)

    # --- reconciliation -------------------------------------------------------------------
    reconcile_every_cycles = Int(10, help="""Every this many poll cycles (and whenever a worker
        takes a poller lease) the jobs left in staging or finishing by a dead worker, or whose
        task was lost, are handed to the pool again.""").tag(config=True)
    stale_task_timeouts = Float(4.0, help="""A job in staging or finishing whose worker is alive
        but that has not changed for this many Site.worker_timeout is handed to the pool
        again (its task died or was lost).""").tag(config=True)
    heartbeats_per_timeout = Int(6, help="""Heartbeats each worker writes per
        Site.worker_timeout: a worker is dead after that many missed beats."""
                                 ).tag(config=True)

    # --- live logs --------------------------------------------------------------------------
    quiet_log_after_seconds = Float(60.0, help="""A running job's log that has not grown for
        this many seconds is quiet: it is read every quiet_log_every_seconds instead of every
        poll cycle (the login node is shared).""").tag(config=True)
    quiet_log_every_seconds = Float(30.0, help="""How often a quiet log is read, in seconds."""
                                    ).tag(config=True)
    final_log_rounds = Int(1000, help="""When a job ends, its logs are read to the end in rounds
        of Site.max_log_bytes_per_cycle, at most this many rounds per stream."""
                           ).tag(config=True)

    # --- statistics -------------------------------------------------------------------------
    stats_keep = Int(1000, help="""Per-cycle records kept in Redis under
        <queue_prefix>:stats:<hpc>:cycles (newest first), for operators and benchmarks."""
                     ).tag(config=True)
