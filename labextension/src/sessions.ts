/**
 * Interactive sessions without React (pure, unit tested): which apps start one, what a
 * session's status allows, and the time it has left.
 */
import type { IApp, ISession, ISessionQuota } from './api';
import { parseTime } from './time';

/** A session's status, as the API's `SessionInfo.status` enum has it. */
export type SessionStatus = ISession['status'];

const LABELS: Record<SessionStatus, string> = {
  starting: 'Starting',
  running: 'Running',
  stopping: 'Stopping',
  stopped: 'Stopped'
};

export function sessionLabel(status: string): string {
  return (LABELS as { [s: string]: string })[status] ?? status;
}

/** The apps a session can be started from: the manifest's `"kind": "service"`. */
export function serviceApps(apps: ReadonlyArray<IApp>): IApp[] {
  return apps.filter(a => a.kind === 'service');
}

/** The apps the job form (and a sweep) offers: every app that is not a service. */
export function batchApps(apps: ReadonlyArray<IApp>): IApp[] {
  return apps.filter(a => a.kind !== 'service');
}

export function isActiveSession(status: string): boolean {
  return status === 'starting' || status === 'running';
}

export function canOpen(session: ISession): boolean {
  return session.status === 'running' && !!session.url;
}

export function canStop(session: ISession): boolean {
  return isActiveSession(session.status);
}

/**
 * Seconds before the scheduler ends the session (its time limit counted from when it
 * started running); null when not running or without a limit.
 */
export function sessionTimeLeft(session: ISession, now: number = Date.now()): number | null {
  const limit = session.time_limit_seconds;
  const since = parseTime(session.running_at);
  if (session.status !== 'running' || limit === null || limit === undefined || since === null) {
    return null;
  }
  return Math.max(0, limit - (now - since) / 1000);
}

/** Session time left in the quota (null: no limit), counting what running sessions use. */
export function quotaLeft(quota: ISessionQuota | null): number | null {
  if (!quota || quota.limit_seconds === null || quota.limit_seconds === undefined) {
    return null;
  }
  return Math.max(0, quota.limit_seconds - (quota.used_seconds ?? 0));
}

/** Newest first; active sessions before the stopped ones. */
export function sortSessions(sessions: ReadonlyArray<ISession>): ISession[] {
  return [...sessions].sort((a, b) => {
    const active = Number(isActiveSession(b.status)) - Number(isActiveSession(a.status));
    return active !== 0 ? active : (parseTime(b.created_at) ?? 0) - (parseTime(a.created_at) ?? 0);
  });
}
