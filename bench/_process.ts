/**
 * Stopping the bench's child processes (tern, OpenDKIM, rspamd, dnsmasq).
 *
 * @module
 */

/**
 * SIGTERM (a graceful stop), then SIGKILL if the process has not exited in
 * `graceMs`.
 *
 * @param child The process.
 * @param graceMs How long it may take to stop by itself.
 * @returns When it has exited.
 */
export async function stopChild(child: Deno.ChildProcess, graceMs = 10_000): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    // already gone
  }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }, graceMs);
  await child.status;
  clearTimeout(timer);
}
