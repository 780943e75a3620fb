import { ILogMessage, JobStream, StreamState } from '../stream';
import { FakeSource } from './fake-source';

function makeStream() {
  const states: StreamState[] = [];
  const jobs: string[] = [];
  const logs: ILogMessage[] = [];
  const stream = new JobStream({
    url: last => `/events/stream${last ? `?last_event_id=${last}` : ''}`,
    create: url => new FakeSource(url),
    onJob: job => jobs.push(`${job.id}:${job.status}`),
    onLog: message => logs.push(message),
    onState: state => states.push(state)
  });
  return { stream, states, jobs, logs };
}

describe('JobStream', () => {
  beforeEach(() => {
    jest.useFakeTimers();
    FakeSource.all = [];
  });
  afterEach(() => {
    jest.useRealTimers();
  });

  it('goes live on open and passes job and log messages on', () => {
    const { stream, states, jobs, logs } = makeStream();
    stream.start();
    stream.start(); // a second start does not open a second connection
    expect(FakeSource.all).toHaveLength(1);
    expect(FakeSource.last().url).toBe('/events/stream');
    FakeSource.last().open();
    expect(states).toEqual(['connecting', 'live']);
    FakeSource.last().send('job', { id: 'a', status: 'running' }, '7');
    FakeSource.last().send('log', { job_id: 'a', stream: 'stdout', offset: 0, text: 'hi\n' });
    expect(jobs).toEqual(['a:running']);
    expect(logs).toEqual([{ job_id: 'a', stream: 'stdout', offset: 0, text: 'hi\n' }]);
    expect(stream.lastEventId).toBe('7');
    stream.stop();
    expect(FakeSource.last().closed).toBe(true);
    expect(states[states.length - 1]).toBe('off');
  });

  it('ignores messages that are not JSON or not jobs', () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { stream, jobs, logs } = makeStream();
    stream.start();
    const source = FakeSource.last();
    source.open();
    for (const listener of source.listeners['job']) {
      listener({ data: 'not json', lastEventId: '1' } as MessageEvent);
    }
    source.send('job', { status: 'running' }, '2');
    source.send('log', { job_id: 'a', stream: 'stdout', offset: 'x', text: '' });
    expect(jobs).toEqual([]);
    expect(logs).toEqual([]);
    warn.mockRestore();
  });

  it('rides out one dropped connection that the browser re-establishes', () => {
    const { stream, states } = makeStream();
    stream.start();
    FakeSource.last().open();
    FakeSource.last().fail(); // the browser reconnects by itself
    expect(states).toEqual(['connecting', 'live', 'connecting']);
    FakeSource.last().open();
    expect(states).toEqual(['connecting', 'live', 'connecting', 'live']);
    expect(FakeSource.all).toHaveLength(1);
    jest.advanceTimersByTime(60_000);
    expect(stream.state).toBe('live');
  });

  it('falls back after two failed attempts and tries again, resuming after the last id', () => {
    const { stream, states } = makeStream();
    stream.start();
    FakeSource.last().open();
    FakeSource.last().send('job', { id: 'a', status: 'queued' }, '41');
    FakeSource.last().fail(true); // an HTTP error answer: the browser gives up
    expect(stream.state).toBe('connecting');
    jest.advanceTimersByTime(2000); // the stream opens a new connection itself
    expect(FakeSource.all).toHaveLength(2);
    expect(FakeSource.last().url).toBe('/events/stream?last_event_id=41');
    FakeSource.last().fail(true);
    expect(states[states.length - 1]).toBe('unavailable');
    expect(FakeSource.last().closed).toBe(true);
    // tried again every 20 s, staying unavailable until one gets through
    jest.advanceTimersByTime(19_999);
    expect(FakeSource.all).toHaveLength(2);
    jest.advanceTimersByTime(1);
    expect(FakeSource.all).toHaveLength(3);
    FakeSource.last().fail(true);
    expect(stream.state).toBe('unavailable');
    jest.advanceTimersByTime(20_000);
    expect(FakeSource.all).toHaveLength(4);
    FakeSource.last().open();
    expect(stream.state).toBe('live');
    expect(FakeSource.last().url).toBe('/events/stream?last_event_id=41');
  });

  it('falls back when a connection hangs for 10 s', () => {
    const { stream } = makeStream();
    stream.start();
    jest.advanceTimersByTime(9_999);
    expect(stream.state).toBe('connecting');
    jest.advanceTimersByTime(1);
    expect(stream.state).toBe('unavailable');
    expect(FakeSource.last().closed).toBe(true);
  });

  it('does not fall back on errors of a connection it already closed', () => {
    const { stream } = makeStream();
    stream.start();
    const first = FakeSource.last();
    stream.stop();
    first.fail();
    first.fail();
    expect(stream.state).toBe('off');
    stream.start();
    FakeSource.last().open();
    expect(stream.state).toBe('live');
  });

  it("leaves a middleware's `event: error` message to the stream's end", () => {
    const warn = jest.spyOn(console, 'warn').mockImplementation(() => undefined);
    const { stream } = makeStream();
    stream.start();
    FakeSource.last().open();
    FakeSource.last().onerror?.({ data: '{"error": "unauthorized"}' } as unknown as Event);
    expect(stream.state).toBe('live');
    warn.mockRestore();
  });
});
