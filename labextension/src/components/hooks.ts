import { useEffect, useRef } from 'react';

/**
 * Call `tick` now and then `intervalMs` after each call has finished (never
 * two at once), until it returns false, `enabled` turns false, `restartKey`
 * changes (then it starts again) or the component unmounts. Errors thrown by
 * `tick` do not stop it.
 */
export function usePolling(
  tick: () => Promise<boolean | void>,
  intervalMs: number,
  enabled: boolean,
  restartKey: string
): void {
  const ref = useRef(tick);
  ref.current = tick;
  useEffect(() => {
    if (!enabled) {
      return;
    }
    let alive = true;
    let timer: ReturnType<typeof setTimeout> | null = null;
    const run = async () => {
      let again: boolean | void = true;
      try {
        again = await ref.current();
      } catch (error) {
        console.warn('hpcbridge: poll failed', error);
      }
      if (alive && again !== false) {
        timer = setTimeout(run, intervalMs);
      }
    };
    void run();
    return () => {
      alive = false;
      if (timer !== null) {
        clearTimeout(timer);
      }
    };
  }, [enabled, intervalMs, restartKey]);
}

/** A ref that is true while the component is mounted. */
export function useMounted(): { current: boolean } {
  const ref = useRef(true);
  useEffect(() => {
    ref.current = true;
    return () => {
      ref.current = false;
    };
  }, []);
  return ref;
}
