import { ApiError } from '../errors';
import { PanelModel } from '../model';

type Job = {
  id: string;
  status: string;
  user: string;
  app: string;
  hpc: string;
  created_at: string;
};

function fakeApi(script: { jobs: () => Job[] | Error }) {
  const calls: any[] = [];
  const api = {
    calls,
    listJobs: jest.fn(async (filters: any) => {
      calls.push(filters);
      const r = script.jobs();
      if (r instanceof Error) {
        throw r;
      }
      return { jobs: r, total: r.length };
    }),
    hpcs: jest.fn(async () => [{ id: 'local', name: 'Local', reachable: true, draining: false }]),
    me: jest.fn(async () => ({
      name: 'alice',
      admin: false,
      quota: { limit_seconds: null, used_seconds: 0 }
    })),
    apps: jest.fn(async () => [{ id: 'hello', name: 'Hello' }])
  };
  return api;
}

const job = (id: string, status: string, user = 'alice'): Job => ({
  id,
  status,
  user,
  app: 'hello',
  hpc: 'local',
  created_at: '2024-05-01T12:00:00Z'
});

describe('PanelModel', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('polls every 3 s while visible; hidden with no active job it stops', async () => {
    const api = fakeApi({ jobs: () => [] });
    const model = new PanelModel({ api: api as any });
    await jest.advanceTimersByTimeAsync(10_000);
    expect(api.listJobs).not.toHaveBeenCalled();
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(api.listJobs).toHaveBeenCalledTimes(1);
    expect(model.loaded).toBe(true);
    await jest.advanceTimersByTimeAsync(3000);
    expect(api.listJobs).toHaveBeenCalledTimes(2);
    model.setVisible(false);
    await jest.advanceTimersByTimeAsync(30_000);
    expect(api.listJobs).toHaveBeenCalledTimes(2);
    model.dispose();
  });

  it('notifies once when a job becomes final while open', async () => {
    let jobs = [job('a', 'running'), job('b', 'succeeded'), job('c', 'running', 'bob')];
    const api = fakeApi({ jobs: () => jobs });
    const finished: string[] = [];
    const model = new PanelModel({ api: api as any, onJobFinished: j => finished.push(j.id) });
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(finished).toEqual([]);
    jobs = [job('a', 'succeeded'), job('b', 'succeeded'), job('c', 'failed', 'bob')];
    await jest.advanceTimersByTimeAsync(3000);
    expect(finished).toEqual(['a']); // bob's job is not alice's
    await jest.advanceTimersByTimeAsync(3000);
    expect(finished).toEqual(['a']);
    model.dispose();
  });

  it('keeps polling slowly while hidden as long as a job is active', async () => {
    let jobs = [job('a', 'running')];
    const api = fakeApi({ jobs: () => jobs });
    const finished: string[] = [];
    const model = new PanelModel({ api: api as any, onJobFinished: j => finished.push(j.id) });
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    model.setVisible(false);
    await jest.advanceTimersByTimeAsync(3000); // the cycle already scheduled
    const calls = api.listJobs.mock.calls.length;
    await jest.advanceTimersByTimeAsync(14_000);
    expect(api.listJobs.mock.calls.length).toBe(calls);
    jobs = [job('a', 'failed')];
    await jest.advanceTimersByTimeAsync(1000);
    expect(api.listJobs.mock.calls.length).toBe(calls + 1);
    expect(finished).toEqual(['a']);
    // nothing active any more: the hidden panel stops polling
    await jest.advanceTimersByTimeAsync(120_000);
    expect(api.listJobs.mock.calls.length).toBe(calls + 1);
    // shown again: polls at once
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(api.listJobs.mock.calls.length).toBe(calls + 2);
    expect(finished).toEqual(['a']);
    model.dispose();
  });

  it('notifies for jobs it learns about from the detail view or a submit', async () => {
    const api = fakeApi({ jobs: () => [] });
    const finished: string[] = [];
    const model = new PanelModel({ api: api as any, onJobFinished: j => finished.push(j.id) });
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    model.upsertJob(job('n', 'queued') as any);
    expect(model.jobs.map(j => j.id)).toEqual(['n']);
    model.upsertJob(job('n', 'cancelled') as any);
    expect(finished).toEqual(['n']);
    expect(model.jobs[0].status).toBe('cancelled');
    model.dispose();
  });

  it('keeps unchanged job objects so rows do not re-render', async () => {
    let jobs = [job('a', 'running'), job('b', 'queued')];
    const api = fakeApi({ jobs: () => jobs.map(j => ({ ...j })) });
    const model = new PanelModel({ api: api as any });
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    const [a1, b1] = model.jobs;
    const list1 = model.jobs;
    await jest.advanceTimersByTimeAsync(3000);
    expect(model.jobs).toBe(list1);
    jobs = [job('a', 'running'), job('b', 'running')];
    await jest.advanceTimersByTimeAsync(3000);
    expect(model.jobs[0]).toBe(a1);
    expect(model.jobs[1]).not.toBe(b1);
    expect(model.jobs[1].status).toBe('running');
    model.dispose();
  });

  it('reports a failed poll and recovers, keeping the last list', async () => {
    let answer: Job[] | Error = [job('a', 'running')];
    const api = fakeApi({ jobs: () => answer });
    const model = new PanelModel({ api: api as any });
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    answer = new ApiError(502, 'middleware_unreachable', 'connection refused');
    await jest.advanceTimersByTimeAsync(3000);
    expect(model.error?.status).toBe(502);
    expect(model.jobs.map(j => j.id)).toEqual(['a']);
    answer = [job('a', 'running')];
    await jest.advanceTimersByTimeAsync(3000);
    expect(model.error).toBeNull();
    model.dispose();
  });

  it('sends the filters and polls at once when they change', async () => {
    const api = fakeApi({ jobs: () => [] });
    const model = new PanelModel({ api: api as any });
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    model.setFilters({ status: 'running' });
    await jest.advanceTimersByTimeAsync(0);
    expect(api.calls[api.calls.length - 1]).toMatchObject({ status: 'running', app: '', hpc: '' });
    expect(api.listJobs).toHaveBeenCalledTimes(2);
    model.dispose();
  });

  it('loads HPCs, the user and the apps with the first poll', async () => {
    const api = fakeApi({ jobs: () => [] });
    const model = new PanelModel({ api: api as any });
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(model.me?.name).toBe('alice');
    expect(model.hpcName('local')).toBe('Local');
    expect(model.appName('hello')).toBe('Hello');
    expect(model.appName('other')).toBe('other');
    model.dispose();
  });

  it('navigates and remembers the selected job', () => {
    const api = fakeApi({ jobs: () => [] });
    const model = new PanelModel({ api: api as any });
    let changes = 0;
    model.changed.connect(() => changes++);
    model.navigate({ kind: 'detail', jobId: 'x' });
    expect(model.selectedId).toBe('x');
    model.openSubmit({ upload: 'data' });
    expect(model.view).toMatchObject({ kind: 'submit', upload: 'data' });
    model.navigate({ kind: 'list' });
    expect(model.selectedId).toBe('x');
    expect(changes).toBe(3);
    model.dispose();
  });
});

describe('PanelModel sweeps', () => {
  beforeEach(() => {
    jest.useFakeTimers();
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('asks for the sweeps only once the list holds a sweep element (or a sweep was sent)', async () => {
    let jobs: any[] = [job('a', 'running')];
    const api: any = fakeApi({ jobs: () => jobs });
    const sweep = { id: 's1', size: 2, finished: 1, progress: 0.5, counts: { running: 1 } };
    api.listSweeps = jest.fn(async () => ({ sweeps: [sweep], total: 1 }));
    const model = new PanelModel({ api });
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(api.listSweeps).not.toHaveBeenCalled();
    model.refresh(true); // a sweep was just submitted
    await jest.advanceTimersByTimeAsync(0);
    expect(api.listSweeps).toHaveBeenCalledTimes(1);
    expect(model.sweeps.s1.progress).toBe(0.5);
    jobs = [{ ...job('b', 'running'), sweep_id: 's1', sweep_index: 0 }];
    await jest.advanceTimersByTimeAsync(3000); // the list has none yet when the poll starts
    await jest.advanceTimersByTimeAsync(3000);
    expect(api.listSweeps).toHaveBeenCalledTimes(2);
    model.dispose();
  });
});
