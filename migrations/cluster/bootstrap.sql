-- Cluster bootstrap: roles are cluster-wide, so they live outside the per-database
-- migrations and are never rolled back. Idempotent; the runner retries it when a
-- concurrent bootstrap wins a race on the catalog.
--
-- anon, authenticated, service_role: as Supabase has them (left alone where they exist).
-- functions_authenticator: the login role of the nine functions, like PostgREST's
-- `authenticator`: NOINHERIT, so it holds no table privileges of its own and must
-- `SET ROLE authenticated` or `SET ROLE service_role` inside each transaction.
-- Its password comes from the setting sfts.functions_password (bound by the runner
-- from FUNCTIONS_DB_PASSWORD), never from a file.
DO $bootstrap$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'anon') THEN
    CREATE ROLE anon NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'authenticated') THEN
    CREATE ROLE authenticated NOLOGIN NOINHERIT;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
    CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'functions_authenticator') THEN
    CREATE ROLE functions_authenticator LOGIN NOINHERIT;
  END IF;
  EXECUTE format(
    'ALTER ROLE functions_authenticator WITH LOGIN NOINHERIT NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L',
    current_setting('sfts.functions_password'));
  IF NOT EXISTS (
    SELECT FROM pg_auth_members m
    JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
    WHERE r.rolname = 'authenticated' AND u.rolname = 'functions_authenticator'
  ) THEN
    GRANT authenticated TO functions_authenticator;
  END IF;
  IF NOT EXISTS (
    SELECT FROM pg_auth_members m
    JOIN pg_roles r ON r.oid = m.roleid JOIN pg_roles u ON u.oid = m.member
    WHERE r.rolname = 'service_role' AND u.rolname = 'functions_authenticator'
  ) THEN
    GRANT service_role TO functions_authenticator;
  END IF;
END
$bootstrap$;
