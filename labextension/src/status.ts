/**
 * Job status helpers (pure: no JupyterLab imports, unit tested).
 */

import type { components } from './api-types';

/** A job's status, as the API's `JobInfo.status` enum has it. */
export type JobStatus = components['schemas']['JobInfo']['status'];

// A Record must name every status of the API enum, and no other: tsc fails when they drift.
const LABELS: Record<JobStatus, string> = {
  queued: 'Queued',
  staging: 'Staging',
  submitted: 'Submitted',
  running: 'Running',
  finishing: 'Finishing',
  succeeded: 'Succeeded',
  failed: 'Failed',
  cancelled: 'Cancelled'
};

/** Every status a job can have, in lifecycle order. */
export const JOB_STATUSES = Object.keys(LABELS) as ReadonlyArray<JobStatus>;

/** Statuses after which a job never changes again. */
export const FINAL_STATUSES: ReadonlyArray<JobStatus> = ['succeeded', 'failed', 'cancelled'];

export function isJobStatus(value: unknown): value is JobStatus {
  return typeof value === 'string' && (JOB_STATUSES as ReadonlyArray<string>).includes(value);
}

/** True once the job has reached succeeded, failed or cancelled. */
export function isFinal(status: string | null | undefined): boolean {
  return typeof status === 'string' && (FINAL_STATUSES as ReadonlyArray<string>).includes(status);
}

/** Human label of a status ("Running"); unknown statuses are shown as they are. */
export function statusLabel(status: string): string {
  return isJobStatus(status) ? LABELS[status] : status;
}

/** CSS class of a status badge: `hpcbridge-status-<status>`. */
export function statusClass(status: string): string {
  const safe = String(status)
    .toLowerCase()
    .replace(/[^a-z0-9-]/g, '-');
  return `hpcbridge-status-${safe || 'unknown'}`;
}

/** Whether a job in this status can still be cancelled. */
export function isCancellable(status: string, cancelRequested = false): boolean {
  return !cancelRequested && isJobStatus(status) && !isFinal(status);
}

/** The minimal shape of a job that the transition detection needs. */
export interface IStatusLike {
  id: string;
  status: string;
  user?: string;
}

/**
 * Jobs that reached a final status between two polls.
 *
 * `previous` maps job id → status from the previous poll. A job is reported
 * only if it was seen before in a non-final status and is final now, so the
 * first poll (empty map) and jobs that were already final never notify.
 * If `user` is given, other users' jobs (an admin's view) are skipped.
 */
export function finalTransitions<T extends IStatusLike>(
  previous: ReadonlyMap<string, string>,
  current: ReadonlyArray<T>,
  user?: string | null
): T[] {
  const out: T[] = [];
  for (const job of current) {
    const before = previous.get(job.id);
    if (before === undefined || isFinal(before) || !isFinal(job.status)) {
      continue;
    }
    if (user && job.user && job.user !== user) {
      continue;
    }
    out.push(job);
  }
  return out;
}

/** id → status map of a job list, the `previous` of the next poll. */
export function statusMap(jobs: ReadonlyArray<IStatusLike>): Map<string, string> {
  return new Map(jobs.map(j => [j.id, j.status]));
}

/** Short form of a job id for narrow tables (first 8 characters of a uuid). */
export function shortId(id: string): string {
  return id.length > 8 ? id.slice(0, 8) : id;
}
