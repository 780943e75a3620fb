import { ServerConnection } from '@jupyterlab/services';

import { HpcBridgeApi, newIdempotencyKey } from '../api';

const SETTINGS = {
  baseUrl: 'http://lab/',
  appUrl: '',
  wsUrl: 'ws://lab/'
} as unknown as ServerConnection.ISettings;
const BODY = { app: 'hello', hpc: 'slurm', params: {}, resources: {} };

function keyOf(call: unknown[]): string | null {
  return new Headers((call[1] as RequestInit).headers).get('Idempotency-Key');
}

describe('submitJob', () => {
  afterEach(() => jest.restoreAllMocks());

  it('sends a lost submission again with the same Idempotency-Key', async () => {
    const fetch = jest
      .spyOn(ServerConnection, 'makeRequest')
      .mockRejectedValueOnce(new TypeError('connection reset'))
      .mockResolvedValueOnce(new Response(JSON.stringify({ id: 'j1' }), { status: 201 }));
    const job = await new HpcBridgeApi(SETTINGS).submitJob(BODY as never);
    expect(job).toEqual({ id: 'j1' });
    expect(fetch).toHaveBeenCalledTimes(2);
    const [first, second] = fetch.mock.calls.map(keyOf);
    expect(first).toMatch(/^[0-9a-f]{32}$/);
    expect(second).toBe(first);
  });

  it('does not resend a submission the middleware answered', async () => {
    const fetch = jest
      .spyOn(ServerConnection, 'makeRequest')
      .mockResolvedValue(
        new Response(JSON.stringify({ error: 'validation_error', message: 'no' }), { status: 422 })
      );
    await expect(new HpcBridgeApi(SETTINGS).submitJob(BODY as never)).rejects.toMatchObject({
      status: 422
    });
    expect(fetch).toHaveBeenCalledTimes(1);
  });

  it('gives up after the last attempt', async () => {
    const fetch = jest
      .spyOn(ServerConnection, 'makeRequest')
      .mockRejectedValue(new TypeError('down'));
    await expect(new HpcBridgeApi(SETTINGS).submitJob(BODY as never, 2)).rejects.toMatchObject({
      status: 0
    });
    expect(fetch).toHaveBeenCalledTimes(2);
  });
});

describe('newIdempotencyKey', () => {
  it('is a fresh random key each time', () => {
    const keys = new Set(Array.from({ length: 100 }, newIdempotencyKey));
    expect(keys.size).toBe(100);
  });
});
