-- Issue 18, channel edit: a channel can be switched off without losing its routes, secret
-- and history. The notifier enqueues nothing for a disabled channel; deliveries already
-- enqueued still go out (they were due when it was on).
ALTER TABLE alert_channels ADD COLUMN enabled boolean NOT NULL DEFAULT true;
