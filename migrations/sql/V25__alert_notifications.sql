-- Notifications of alerts (issue 18): channels, routes, and a durable outbox of deliveries.
--
-- The notifier reads `alert_events` (V23) in id order from a cursor. The cursor row is taken
-- FOR UPDATE in the transaction that writes the deliveries of the events it passes, so two API
-- processes never enqueue one event twice. Deliveries are claimed FOR UPDATE SKIP LOCKED and
-- their row lock is held while the receiver is called, so one is never sent by two processes.

CREATE TABLE alert_channels (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name          text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_.-]{0,62}$'),
    kind          text NOT NULL CHECK (kind IN ('webhook', 'slack', 'alertmanager', 'email')),
    -- The receiver's URL, except for Slack, whose URL is the secret: there this holds only
    -- scheme and host, and the whole URL is in `secret_ciphertext`.
    url           text NOT NULL,
    -- Email: `smtp://host[:port]` (STARTTLS required, 587) or `smtps://host[:port]` (TLS, 465).
    -- Plain http:// (or SMTP without TLS) is refused unless the channel says so (a receiver on
    -- a trusted network).
    insecure_http boolean NOT NULL DEFAULT false,
    -- Email only: sender, recipients (comma-separated), the SMTP user name, and a PEM CA to
    -- trust for the server's certificate instead of the system's.
    email_from    text,
    email_to      text,
    smtp_username text,
    ca_pem        text,
    -- AES-256-GCM with the API's key file, bound to the channel id (api/src/notify/channel.rs):
    -- the webhook's HMAC key, the Slack URL or the SMTP password. Never returned by the API.
    secret_ciphertext bytea,
    -- The API's (or console's) external URL: links in notifications and Alertmanager's
    -- generatorURL become absolute under it. NULL: links are paths.
    links_base_url text,
    timeout_secs  integer NOT NULL DEFAULT 10 CHECK (timeout_secs BETWEEN 1 AND 120),
    -- A delivery still failing this long after it was enqueued is given up (state `failed`).
    give_up_secs  integer NOT NULL DEFAULT 86400 CHECK (give_up_secs BETWEEN 60 AND 604800),
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL
);

-- Which alerts go to a channel: severity at least `min_severity` and labels matching
-- `matchers` (the selector syntax of rules and silences; empty matches every alert).
CREATE TABLE alert_routes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id    bigint NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    min_severity  text NOT NULL DEFAULT 'info' CHECK (min_severity IN ('info', 'warning', 'critical')),
    matchers      text NOT NULL DEFAULT '',
    -- A firing alert is notified again after this long without news; 0: never.
    repeat_secs   integer NOT NULL DEFAULT 14400 CHECK (repeat_secs = 0 OR repeat_secs BETWEEN 60 AND 604800),
    send_resolved boolean NOT NULL DEFAULT true,
    created_at    timestamptz NOT NULL DEFAULT now(),
    created_by    text NOT NULL
);
CREATE INDEX alert_routes_channel ON alert_routes (channel_id);

-- The notifier's cursor over alert_events: one row.
CREATE TABLE alert_notifier (
    id            boolean PRIMARY KEY DEFAULT true CHECK (id),
    last_event_id bigint NOT NULL DEFAULT 0
);
-- Events recorded before notifications existed are history, not news.
INSERT INTO alert_notifier (last_event_id) SELECT coalesce(max(id), 0) FROM alert_events;

-- The outbox: one row per notification and channel.
CREATE TABLE alert_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    -- Sent to the receiver (header Idempotency-Key): a retry carries the same key.
    idempotency_key text NOT NULL UNIQUE,
    channel_id      bigint NOT NULL REFERENCES alert_channels (id) ON DELETE CASCADE,
    route_id        bigint REFERENCES alert_routes (id) ON DELETE SET NULL,
    -- No foreign keys: alerts and events are pruned before their deliveries' history.
    alert_id        bigint,
    event_id        bigint,
    kind            text NOT NULL CHECK (kind IN ('firing', 'resolved', 'repeat', 'test')),
    -- The notification (api/src/notify/payload.rs), rendered per channel kind when sent.
    notification    jsonb NOT NULL,
    state           text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    created_at      timestamptz NOT NULL DEFAULT now(),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    give_up_at      timestamptz NOT NULL,
    finished_at     timestamptz,
    last_status     integer,
    last_error      text
);
CREATE INDEX alert_deliveries_due ON alert_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX alert_deliveries_alert ON alert_deliveries (alert_id, channel_id, id);
CREATE INDEX alert_deliveries_created ON alert_deliveries (created_at);

-- Every attempt of every delivery.
CREATE TABLE alert_delivery_attempts (
    delivery_id bigint NOT NULL REFERENCES alert_deliveries (id) ON DELETE CASCADE,
    attempt     integer NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    ok          boolean NOT NULL,
    status      integer,
    error       text,
    PRIMARY KEY (delivery_id, attempt)
);
