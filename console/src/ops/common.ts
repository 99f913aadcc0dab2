// What the operations pages (alerts, backups, replication) share.
import { atLeast, type Me, type Role } from '../api';

/** Whether the caller's global role (capped by an API token's) is at least `role`: the
 * alert controls need a global role, label grants do not give them. */
export function globalAtLeast(me: Me, role: Role): boolean {
  const r = me.role && me.token_role && !atLeast(me.token_role, me.role) ? me.token_role : me.role;
  return atLeast(r, role);
}

export function when(iso: string | null | undefined): string {
  return iso ? iso.replace('T', ' ').replace(/\.\d+/, '').replace('Z', ' UTC') : '–';
}
