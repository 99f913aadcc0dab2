// The read-then-change cycle of the admin pages (agents, users, tokens).

/**
 * What an admin page that shows a list and changes it keeps: the last failed call (`error`, for
 * ErrorBox) and whether a change is under way (`busy`, which disables the page's buttons).
 * `read` is the page's own load of its list.
 */
export class Changes {
  error = $state<unknown>(null);
  busy = $state(false);
  readonly #read: () => Promise<void>;

  constructor(read: () => Promise<void>) {
    this.#read = read;
  }

  /** Reads the list again; a failure is kept in `error`. */
  async load(): Promise<void> {
    try {
      await this.#read();
    } catch (e) {
      this.error = e;
    }
  }

  /** One change, then a fresh read so the list shows its effect; a failure of either goes to
   * `error` (cleared when the change starts). */
  async act(change: () => Promise<void>): Promise<void> {
    this.busy = true;
    this.error = null;
    try {
      await change();
      await this.#read();
    } catch (e) {
      this.error = e;
    } finally {
      this.busy = false;
    }
  }
}
