/** A fake EventSource for the unit tests of the stream and the panel model. */
import { IEventSourceLike } from '../stream';

/** An EventSource the test drives: open(), fail(), send(). */
export class FakeSource implements IEventSourceLike {
  static all: FakeSource[] = [];
  constructor(readonly url: string) {
    FakeSource.all.push(this);
  }
  readyState = 0;
  onopen: ((event: Event) => void) | null = null;
  onerror: ((event: Event) => void) | null = null;
  closed = false;
  listeners: { [type: string]: Array<(event: MessageEvent) => void> } = {};
  addEventListener(type: string, listener: (event: MessageEvent) => void): void {
    (this.listeners[type] ??= []).push(listener);
  }
  close(): void {
    this.closed = true;
    this.readyState = 2;
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({} as Event);
  }
  /** A dropped connection or failed attempt; `gaveUp`: an HTTP error answer (CLOSED). */
  fail(gaveUp = false): void {
    this.readyState = gaveUp ? 2 : 0;
    this.onerror?.({} as Event);
  }
  send(type: string, data: unknown, id = ''): void {
    const event = { data: JSON.stringify(data), lastEventId: id } as MessageEvent;
    for (const listener of this.listeners[type] ?? []) {
      listener(event);
    }
  }
  static last(): FakeSource {
    return FakeSource.all[FakeSource.all.length - 1];
  }
}
