# shellcheck shell=bash
# Sourced by scripts that drive the Keycloak of scripts/keycloak.sh over HTTP (demo.sh,
# bench-keycloak.sh): needs KEYCLOAK_URL, KEYCLOAK_ADMIN_USER and KEYCLOAK_ADMIN_PASSWORD
# (scripts/keycloak.sh env).

# field NAME: the string value of NAME in the JSON on stdin (flat, first match).
field() { sed -n "s/.*\"$1\":\"\([^\"]*\)\".*/\1/p"; }

# admin_token: a fresh token of the master realm's admin.
admin_token() {
  curl -fsS "$KEYCLOAK_URL/realms/master/protocol/openid-connect/token" \
    -d grant_type=password -d client_id=admin-cli \
    -d "username=$KEYCLOAK_ADMIN_USER" --data-urlencode "password=$KEYCLOAK_ADMIN_PASSWORD" | field access_token
}

# admin METHOD PATH [JSON]: the Admin API under /admin/realms (PATH "" for the realm list).
admin() {
  local method=$1 path=$2
  shift 2
  curl -fsS -X "$method" -H "Authorization: Bearer $(admin_token)" -H 'Content-Type: application/json' \
    "$KEYCLOAK_URL/admin/realms$path" ${1:+--data "$1"}
}
