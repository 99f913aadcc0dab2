/** `#/alerts`, `#/backups?instance=3`, `#/replication` → the page's name, else null. */
export function opsPage(hash: string): 'alerts' | 'backups' | 'replication' | null {
  const m = /^#\/(alerts|backups|replication)(?:\?.*)?$/.exec(hash);
  return m ? (m[1] as 'alerts' | 'backups' | 'replication') : null;
}
