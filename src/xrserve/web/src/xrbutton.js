// xrbutton.js: an Enter VR / Enter AR button that shows only when the browser offers the
// mode. three.js has VRButton and ARButton, but they create their own absolutely placed,
// inline-styled element; this one drives a button the page already lays out.

export async function xrButton(button, note, renderer, mode, sessionInit, { onStart, onEnd } = {}) {
  const label = button.textContent;
  const offered = await navigator.xr?.isSessionSupported(mode).catch(() => false);
  if (!offered) {
    note.textContent = `${mode} is not offered here (WebXR needs a headset and HTTPS off localhost): ` +
      "use the mouse and keyboard";
    return false;
  }
  button.hidden = false;
  let current = null;
  button.addEventListener("click", async () => {
    if (current) return current.end();
    try {
      current = await navigator.xr.requestSession(mode, sessionInit);
    } catch (error) {
      note.textContent = `${mode}: ${error.message}`;
      return;
    }
    current.addEventListener("end", () => {
      current = null;
      button.textContent = label;
      onEnd?.();
    });
    onStart?.(current);
    await renderer.xr.setSession(current);
    button.textContent = label.replace("Enter", "Exit");
  });
  return true;
}
