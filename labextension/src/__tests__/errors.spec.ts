import { actionMessage, ApiError, describeError, isBlockingError } from '../errors';

describe('describeError', () => {
  it('names the unreachable middleware on 502 and 503', () => {
    expect(describeError({ status: 502 })).toBe('hpcbridge middleware unreachable (HTTP 502)');
    expect(describeError({ status: 503, message: 'connection refused' })).toBe(
      'hpcbridge middleware unreachable (HTTP 503): connection refused'
    );
  });
  it('does not repeat what the server extension already says', () => {
    expect(
      describeError({
        status: 503,
        code: 'middleware_unreachable',
        message: 'hpcbridge middleware unreachable at http://127.0.0.1:8090: refused'
      })
    ).toBe('hpcbridge middleware unreachable at http://127.0.0.1:8090: refused (HTTP 503)');
  });
  it('explains 401', () => {
    expect(describeError({ status: 401 })).toMatch(/^Not logged in to hpcbridge \(HTTP 401\)/);
  });
  it('explains a missing server extension', () => {
    expect(describeError({ status: 404 })).toMatch(/server extension not found/);
    expect(describeError({ status: 404, code: 'not_found', message: 'no such job' })).toBe(
      'Not found: no such job'
    );
  });
  it('explains a dead Jupyter server and other errors', () => {
    expect(describeError({ status: 0 })).toBe('Jupyter server unreachable');
    expect(describeError({ status: 500, message: 'boom' })).toBe('Request failed (HTTP 500): boom');
  });
  it('tells blocking from local errors', () => {
    expect(isBlockingError({ status: 502 })).toBe(true);
    expect(isBlockingError({ status: 401 })).toBe(true);
    expect(isBlockingError({ status: 0 })).toBe(true);
    expect(isBlockingError({ status: 422, code: 'invalid' })).toBe(false);
    expect(isBlockingError({ status: 404, code: 'not_found' })).toBe(false);
  });
  it('uses the server message for request errors', () => {
    expect(actionMessage({ status: 409, code: 'conflict', message: 'job already final' })).toBe(
      'job already final'
    );
    expect(actionMessage({ status: 413, code: 'too_large', message: 'upload too large' })).toBe(
      'upload too large'
    );
    expect(actionMessage({ status: 503 })).toBe('hpcbridge middleware unreachable (HTTP 503)');
  });
});

describe('ApiError.fromResponse', () => {
  it('reads the JSON error body', async () => {
    const body = {
      error: 'invalid',
      message: 'invalid job',
      details: [{ loc: ['params', 'n'], msg: 'must be at most 10' }, { bad: 1 }]
    };
    const e = await ApiError.fromResponse(new Response(JSON.stringify(body), { status: 422 }));
    expect(e).toBeInstanceOf(ApiError);
    expect(e.status).toBe(422);
    expect(e.code).toBe('invalid');
    expect(e.message).toBe('invalid job');
    expect(e.details).toEqual([{ loc: ['params', 'n'], msg: 'must be at most 10' }]);
  });
  it('copes with HTML and empty bodies', async () => {
    const e = await ApiError.fromResponse(
      new Response('<html>502 Bad Gateway</html>', { status: 502, statusText: 'Bad Gateway' })
    );
    expect(e.status).toBe(502);
    expect(e.code).toBeNull();
    expect(e.message).toBe('Bad Gateway');
    expect(e.details).toBeNull();
    const f = await ApiError.fromResponse(new Response(null, { status: 404 }));
    expect(f.message).toBe('HTTP 404');
  });
  it('reads jupyter_server reasons', async () => {
    const e = await ApiError.fromResponse(
      new Response(JSON.stringify({ message: '', reason: 'Forbidden' }), { status: 403 })
    );
    expect(e.message).toBe('Forbidden');
    expect(e.code).toBeNull();
  });
});
