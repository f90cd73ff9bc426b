-- Keycloak's own database, next to the application database (`app`) keycloak-sync writes.
CREATE ROLE keycloak LOGIN PASSWORD 'keycloak';
CREATE DATABASE keycloak OWNER keycloak;
