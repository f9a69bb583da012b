// The console locks itself after a while without a key press, a click or a touch, and when its token
// expires: the token is dropped and everything shown (search place, results, case) is removed.
const EVENTS = ['pointerdown', 'keydown', 'wheel', 'touchstart'];

export function watchInactivity(minutes, onLock) {
  let timer = null;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(onLock, minutes * 60 * 1000);
  };
  for (const name of EVENTS) window.addEventListener(name, arm, { passive: true, capture: true });
  arm();
  return () => {
    clearTimeout(timer);
    for (const name of EVENTS) window.removeEventListener(name, arm, { capture: true });
  };
}
