// The console locks itself after a while without a key press, a click or a touch, and when its token
// expires: the token is dropped and everything shown (search place, results, case) is removed.
// Both deadlines are read on the wall clock, not only by timers: timers stop while a machine sleeps or
// a tab is frozen, so the page checks again whenever it becomes visible and every few seconds.
const EVENTS = ['pointerdown', 'keydown', 'wheel', 'touchstart'];
const CHECK_EVERY_MS = 5000;

// Returns { stop, idleMs }: idleMs() is how long since the last activity (a lock for expiry asks
// whether the person was still there).
export function watchInactivity(minutes, { expiresAt, onIdle, onExpired }) {
  const idleMs = minutes * 60 * 1000;
  let last = Date.now();
  let done = false;
  const check = () => {
    if (done) return;
    const now = Date.now();
    // Inactivity first: a console left alone (or a machine woken from sleep) is a walk-away, whatever
    // else has expired meanwhile.
    if (now - last >= idleMs) finish(onIdle);
    else if (now >= expiresAt) finish(onExpired);
  };
  const active = () => {
    check(); // activity after the deadline does not rescue the session
    last = Date.now();
  };
  const visible = () => { if (document.visibilityState === 'visible') check(); };
  const interval = setInterval(check, CHECK_EVERY_MS);
  for (const name of EVENTS) window.addEventListener(name, active, { passive: true, capture: true });
  document.addEventListener('visibilitychange', visible);
  window.addEventListener('focus', check);
  function stop() {
    done = true;
    clearInterval(interval);
    for (const name of EVENTS) window.removeEventListener(name, active, { capture: true });
    document.removeEventListener('visibilitychange', visible);
    window.removeEventListener('focus', check);
  }
  function finish(callback) {
    stop();
    callback();
  }
  return { stop, idleMs: () => Date.now() - last };
}
