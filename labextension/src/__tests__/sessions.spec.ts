import type { IApp, ISession } from '../api';
import {
  batchApps,
  canOpen,
  canStop,
  quotaLeft,
  serviceApps,
  sessionTimeLeft,
  sortSessions
} from '../sessions';

function session(over: Partial<ISession> = {}): ISession {
  return {
    id: 'a'.repeat(32),
    user: 'alice',
    app: 'jupyterlab',
    hpc: 'slurm',
    status: 'running',
    message: null,
    created_at: '2026-01-01T10:00:00Z',
    running_at: '2026-01-01T10:01:00Z',
    stopped_at: null,
    updated_at: '2026-01-01T10:01:00Z',
    time_limit_seconds: 3600,
    charged_seconds: 0,
    last_activity_at: null,
    url: '/user/alice/hpcbridge/api/sessions/aaa/proxy/',
    ...over
  };
}

const T = Date.parse('2026-01-01T10:11:00Z');

describe('sessions', () => {
  it('offers service apps for sessions and the others for jobs', () => {
    const apps = [
      { id: 'hello', kind: 'batch' },
      { id: 'jupyterlab', kind: 'service' },
      { id: 'old' }
    ] as unknown as IApp[];
    expect(serviceApps(apps).map(a => a.id)).toEqual(['jupyterlab']);
    // an app without kind is a batch app (the API's default)
    expect(batchApps(apps).map(a => a.id)).toEqual(['hello', 'old']);
  });

  it('opens only a running session and stops only an active one', () => {
    expect(canOpen(session())).toBe(true);
    expect(canOpen(session({ status: 'starting' }))).toBe(false);
    expect(canStop(session({ status: 'starting' }))).toBe(true);
    expect(canStop(session({ status: 'stopping' }))).toBe(false);
    expect(canStop(session({ status: 'stopped' }))).toBe(false);
  });

  it('counts the time left from when it started running', () => {
    expect(sessionTimeLeft(session(), T)).toBe(3000);
    expect(sessionTimeLeft(session({ status: 'starting', running_at: null }), T)).toBeNull();
    expect(sessionTimeLeft(session({ time_limit_seconds: null }), T)).toBeNull();
    expect(sessionTimeLeft(session({ time_limit_seconds: 60 }), T)).toBe(0);
  });

  it('tells the quota left', () => {
    expect(quotaLeft({ limit_seconds: 7200, used_seconds: 600 })).toBe(6600);
    expect(quotaLeft({ limit_seconds: 100, used_seconds: 600 })).toBe(0);
    expect(quotaLeft({ limit_seconds: null, used_seconds: 600 })).toBeNull();
    expect(quotaLeft(null)).toBeNull();
  });

  it('lists active sessions first, newest first', () => {
    const old = session({ id: 'old', created_at: '2026-01-01T09:00:00Z' });
    const stopped = session({ id: 'stopped', status: 'stopped' });
    const fresh = session({ id: 'fresh', created_at: '2026-01-01T10:05:00Z' });
    expect(sortSessions([stopped, old, fresh]).map(s => s.id)).toEqual(['fresh', 'old', 'stopped']);
  });
});
