/** The panel model with its event stream (a fake EventSource) and a fake API that counts calls. */
import { PanelModel } from '../model';
import { FakeSource } from './fake-source';

type Job = {
  id: string;
  status: string;
  user: string;
  app: string;
  hpc: string;
  created_at: string;
  sweep_id?: string | null;
};

const job = (id: string, status: string, extra: Partial<Job> = {}): Job => ({
  id,
  status,
  user: 'alice',
  app: 'hello',
  hpc: 'local',
  created_at: '2024-05-01T12:00:00Z',
  ...extra
});

function fakeApi(jobs: () => Job[] | Error) {
  const api = {
    url: (_kind: string, path: string, query?: { [k: string]: unknown }) =>
      `/hpcbridge/api/${path}` +
      (query?.last_event_id ? `?last_event_id=${String(query.last_event_id)}` : ''),
    listJobs: jest.fn(async (_filters: unknown) => {
      const r = jobs();
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
    apps: jest.fn(async () => [{ id: 'hello', name: 'Hello' }]),
    listSweeps: jest.fn(async () => ({ sweeps: [] }))
  };
  const calls = () =>
    api.listJobs.mock.calls.length +
    api.hpcs.mock.calls.length +
    api.me.mock.calls.length +
    api.apps.mock.calls.length +
    api.listSweeps.mock.calls.length;
  return { api, calls };
}

function makeModel(jobs: () => Job[] | Error, finished: string[] = []) {
  const { api, calls } = fakeApi(jobs);
  const model = new PanelModel({
    api: api as any,
    eventSource: url => new FakeSource(url),
    onJobFinished: j => finished.push(j.id)
  });
  return { api, calls, model };
}

describe('PanelModel with the event stream', () => {
  beforeEach(() => {
    jest.useFakeTimers();
    FakeSource.all = [];
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('loads once when the stream opens, then makes no request while it is live', async () => {
    const { api, calls, model } = makeModel(() => [job('a', 'running')]);
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(FakeSource.all).toHaveLength(1);
    expect(FakeSource.last().url).toBe('/hpcbridge/api/events/stream');
    expect(api.listJobs).not.toHaveBeenCalled(); // subscribe first, then load
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    expect(model.live).toBe(true);
    expect(model.pollingFallback).toBe(false);
    expect(api.listJobs).toHaveBeenCalledTimes(1);
    expect(model.jobs.map(j => j.id)).toEqual(['a']);
    const after = calls();
    await jest.advanceTimersByTimeAsync(120_000);
    expect(calls()).toBe(after);
    model.dispose();
    expect(FakeSource.last().closed).toBe(true);
  });

  it('updates the list from job messages, notifies once, and loads the quota once at the end', async () => {
    const finished: string[] = [];
    const { api, model } = makeModel(() => [job('a', 'running')], finished);
    const received: string[] = [];
    model.jobReceived.connect((_, j) => received.push(`${j.id}:${j.status}`));
    model.setVisible(true);
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    const source = FakeSource.last();
    source.send('job', job('b', 'queued'), '5'); // a job submitted elsewhere
    expect(model.jobs.map(j => j.id)).toEqual(['b', 'a']);
    expect(model.total).toBe(2);
    source.send('job', job('a', 'succeeded'), '6');
    source.send('job', job('a', 'succeeded'), '7'); // repeated (resumed stream)
    expect(model.jobs.find(j => j.id === 'a')?.status).toBe('succeeded');
    expect(finished).toEqual(['a']);
    expect(received).toEqual(['b:queued', 'a:succeeded', 'a:succeeded']);
    const me = api.me.mock.calls.length;
    await jest.advanceTimersByTimeAsync(5000);
    expect(api.me).toHaveBeenCalledTimes(me + 1);
    expect(api.listJobs).toHaveBeenCalledTimes(1);
    model.dispose();
  });

  it('loads the sweeps once for a burst of sweep element messages', async () => {
    const { api, model } = makeModel(() => []);
    model.setVisible(true);
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    for (const [i, status] of ['queued', 'staging', 'submitted'].entries()) {
      FakeSource.last().send('job', job(`s${i}`, status, { sweep_id: 'w' }), String(i + 1));
    }
    await jest.advanceTimersByTimeAsync(1500);
    expect(api.listSweeps).toHaveBeenCalledTimes(1);
    model.dispose();
  });

  it('drops a job from a filtered list when it leaves the filter', async () => {
    const { model } = makeModel(() => [job('a', 'running')]);
    model.setFilters({ status: 'running' });
    model.setVisible(true);
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    expect(model.jobs.map(j => j.id)).toEqual(['a']);
    FakeSource.last().send('job', job('a', 'succeeded'), '3');
    expect(model.jobs).toEqual([]);
    expect(model.total).toBe(0);
    FakeSource.last().send('job', job('c', 'queued'), '4'); // not running: not listed
    expect(model.jobs).toEqual([]);
    model.dispose();
  });

  it('polls every 3 s while the stream is unavailable, and stops when it is back', async () => {
    const { api, model } = makeModel(() => [job('a', 'running')]);
    model.setVisible(true);
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    expect(api.listJobs).toHaveBeenCalledTimes(1);
    FakeSource.last().fail(true); // e.g. the middleware restarted and answers 503
    await jest.advanceTimersByTimeAsync(2000);
    FakeSource.last().fail(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(model.streamState).toBe('unavailable');
    expect(model.pollingFallback).toBe(true);
    expect(api.listJobs).toHaveBeenCalledTimes(2); // at once
    await jest.advanceTimersByTimeAsync(9000);
    expect(api.listJobs).toHaveBeenCalledTimes(5); // and every 3 s
    await jest.advanceTimersByTimeAsync(11_000); // the stream is tried again after 20 s
    const polls = api.listJobs.mock.calls.length;
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    expect(model.live).toBe(true);
    expect(model.pollingFallback).toBe(false);
    expect(api.listJobs).toHaveBeenCalledTimes(polls + 1); // the load after reconnecting
    await jest.advanceTimersByTimeAsync(60_000);
    expect(api.listJobs).toHaveBeenCalledTimes(polls + 1);
    model.dispose();
  });

  it('keeps the stream open while hidden with an active job, and closes it after the last one', async () => {
    const { api, calls, model } = makeModel(() => [job('a', 'running')]);
    model.setVisible(true);
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    model.setVisible(false);
    const source = FakeSource.last();
    expect(source.closed).toBe(false);
    const before = calls();
    await jest.advanceTimersByTimeAsync(60_000);
    expect(calls()).toBe(before); // hidden and live: no background poll either
    source.send('job', job('a', 'succeeded'), '9');
    expect(source.closed).toBe(true);
    expect(model.streamState).toBe('off');
    // shown again: a new stream, and one load when it opens
    model.setVisible(true);
    expect(FakeSource.all).toHaveLength(2);
    const lists = api.listJobs.mock.calls.length;
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    expect(api.listJobs).toHaveBeenCalledTimes(lists + 1);
    model.dispose();
  });

  it('loads once when shown again while the stream stayed live', async () => {
    const { api, model } = makeModel(() => [job('a', 'running')]);
    model.setVisible(true);
    FakeSource.last().open();
    await jest.advanceTimersByTimeAsync(0);
    model.setVisible(false);
    model.setVisible(true);
    await jest.advanceTimersByTimeAsync(0);
    expect(api.listJobs).toHaveBeenCalledTimes(2);
    expect(FakeSource.all).toHaveLength(1);
    await jest.advanceTimersByTimeAsync(30_000);
    expect(api.listJobs).toHaveBeenCalledTimes(2);
    model.dispose();
  });

  it('passes log messages on to the views', async () => {
    const { model } = makeModel(() => []);
    const logs: string[] = [];
    model.logReceived.connect((_, m) => logs.push(`${m.job_id} ${m.stream} ${m.offset}`));
    model.setVisible(true);
    FakeSource.last().open();
    FakeSource.last().send('log', { job_id: 'a', stream: 'stderr', offset: 12, text: 'x' });
    expect(logs).toEqual(['a stderr 12']);
    model.dispose();
  });
});

describe('PanelModel and answers overtaken by the stream', () => {
  beforeEach(() => {
    jest.useFakeTimers();
    FakeSource.all = [];
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('keeps a streamed job when an older list answer arrives after it', async () => {
    const at = (s: number) => `2024-05-01T12:00:${String(s).padStart(2, '0')}Z`;
    let answer: (value: unknown) => void = () => undefined;
    const { api, model } = makeModel(() => []);
    api.listJobs.mockImplementationOnce(() => new Promise(resolve => (answer = resolve)) as any);
    model.setVisible(true);
    FakeSource.last().open(); // the load after opening waits for its answer …
    FakeSource.last().send('job', { ...job('a', 'staging'), updated_at: at(5) } as any, '2');
    answer({ jobs: [{ ...job('a', 'queued'), updated_at: at(1) }], total: 1 });
    await jest.advanceTimersByTimeAsync(0);
    expect(model.jobs.map(j => j.status)).toEqual(['staging']); // … and is older
    model.upsertJob({ ...job('a', 'queued'), updated_at: at(1) } as any);
    expect(model.jobs.map(j => j.status)).toEqual(['staging']);
    model.upsertJob({ ...job('a', 'running'), updated_at: at(9) } as any);
    expect(model.jobs.map(j => j.status)).toEqual(['running']);
    model.dispose();
  });
});
