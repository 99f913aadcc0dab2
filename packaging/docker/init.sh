#!/bin/sh
# First start of the compose stack (docker-compose.yml): generates the passwords, the TLS
# material and the services' configs into volumes, once. A later start finds them and changes
# nothing (`lasect-api ca init` only completes what is missing). There is no default password
# anywhere: each one is made here from /dev/urandom, and the one a person needs (Grafana's
# admin) is printed on the start that made it, never again.
#
# Volumes (mount points are docker-compose.yml's):
#   /store-secrets, /sample-secrets, /grafana-secrets   passwords, one file each, owned by the
#                user of the one container that mounts that volume
#   /ca          the Lasect CA (ca init's directory) and the store's CA; mounted here only
#   /tls-agent, /tls-ingest, /tls-api   each service's certificate and key (and the CA cert)
#   /store-tls   the store's server certificate and key; /store-ca its CA certificate
#   /config      the rendered configs, from the templates in /templates
set -eu
umask 077

LASECT_UID=10001     # the user of the lasect images (packaging/docker/Dockerfile)
POSTGRES_UID=70      # postgres in the Alpine-based timescale/timescaledb and postgres images
GRAFANA_UID=472      # grafana in grafana/grafana-oss

made=""

# A password of 32 characters from [A-Za-z0-9]: safe unquoted in a libpq key=value DSN.
secret() { # directory name owner
    if [ ! -s "$1/$2" ]; then
        tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >"$1/$2.tmp"
        mv "$1/$2.tmp" "$1/$2"
        made="$made $2"
    fi
    chown "$3:$3" "$1/$2"
    chmod 0400 "$1/$2"
}

secret /store-secrets superuser_password "$POSTGRES_UID"
secret /store-secrets lasect_password "$POSTGRES_UID"
secret /store-secrets grafana_password "$POSTGRES_UID"
secret /sample-secrets superuser_password "$POSTGRES_UID"
secret /sample-secrets agent_password "$POSTGRES_UID"
secret /grafana-secrets admin_password "$GRAFANA_UID"
# Grafana's datasource logs in with the password the store gave its role.
cp /store-secrets/grafana_password /grafana-secrets/store_password
chown "$GRAFANA_UID:$GRAFANA_UID" /grafana-secrets/store_password
chmod 0400 /grafana-secrets/store_password

# The Lasect CA and its certificates; the services reach each other by service name.
lasect-api ca init --dir /ca --agent compose-agent \
    --ingest-san ingest --api-san api >/dev/null
# The store's certificate comes from a CA of its own: `ca init`'s server certificate, issued
# for the name `store`, serves PostgreSQL (clients check it with sslmode=verify-full).
lasect-api ca init --dir /ca/store --ingest-san store >/dev/null

place() { # source destination owner mode
    cp "$1" "$2"
    chown "$3:$3" "$2"
    chmod "$4" "$2"
}
place /ca/ca.pem /tls-agent/ca.pem "$LASECT_UID" 0444
place /ca/agents/compose-agent.pem /tls-agent/agent.pem "$LASECT_UID" 0444
place /ca/agents/compose-agent.key /tls-agent/agent.key "$LASECT_UID" 0400
place /ca/ca.pem /tls-ingest/ca.pem "$LASECT_UID" 0444
place /ca/ingest.pem /tls-ingest/ingest.pem "$LASECT_UID" 0444
place /ca/ingest.key /tls-ingest/ingest.key "$LASECT_UID" 0400
place /ca/api.pem /tls-api/api.pem "$LASECT_UID" 0444
place /ca/api.key /tls-api/api.key "$LASECT_UID" 0400
place /ca/ca.pem /tls-api/ca.pem "$LASECT_UID" 0444
place /ca/store/ingest.pem /store-tls/server.pem "$POSTGRES_UID" 0444
place /ca/store/ingest.key /store-tls/server.key "$POSTGRES_UID" 0400
place /ca/store/ca.pem /store-ca/store-ca.pem "$LASECT_UID" 0444

render() { # template destination
    sed -e "s|@LASECT_STORE_PASSWORD@|$(cat /store-secrets/lasect_password)|g" \
        -e "s|@SAMPLE_AGENT_PASSWORD@|$(cat /sample-secrets/agent_password)|g" \
        "/templates/$1" >"/config/$1.tmp"
    mv "/config/$1.tmp" "/config/$1"
    chown "root:$LASECT_UID" "/config/$1"
    chmod 0640 "/config/$1"
}
for conf in agent.toml ingest.toml api.toml; do
    render "$conf"
done

if [ -n "$made" ]; then
    echo "lasect-init: generated passwords:$made"
    case "$made" in
        *admin_password*)
            echo "lasect-init: Grafana (http://localhost:3000) user admin, password $(cat /grafana-secrets/admin_password)"
            echo "lasect-init: this is the only time it is printed"
            ;;
    esac
fi
echo "lasect-init: the Lasect admin password is written by lasect-api on its first start:"
echo "lasect-init:   docker compose exec api cat /var/lib/lasect/initial-admin-password"
